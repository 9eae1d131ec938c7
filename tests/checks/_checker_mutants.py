"""Wrong answers that no checker lists as a known mistake, with what a specific message must say.

Each :class:`Mutant` is an answer a student could plausibly write for one exercise function (a
dropped gradient, a float64 result from float32 data, a 0-d tensor where a float is asked, a slip
of the lecture decks, a wrong term, a wrong random draw, ...) and a regular expression that a
message naming *this* mistake contains. None of them is one of the checker's listed mistakes, so
the message has to come from the checkers' general diagnoses (the return value, its dtype and
gradient, the terms probed one at a time, the model's inputs, the random draws) or from the
failing input with expected and got values.

``tests/checks/test_checks_mutants.py`` asserts that every mutant is rejected and that at least
90 % of them get a specific message; ``python tests/checks/_checker_mutants.py`` prints the share
per exercise.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nbtools import ROOT, exec_tagged  # noqa: E402

Fn = Callable[..., Any]
SOLUTIONS = ROOT / "exercises" / "solutions"


@dataclass(frozen=True)
class Mutant:
    """One wrong answer to ``chapter``'s ``name`` and the pattern a specific message matches."""

    chapter: str
    name: str
    key: str
    fn: Fn
    expect: str

    @property
    def id(self) -> str:
        return f"{self.chapter}-{self.name}-{self.key}"

    def specific(self, message: str) -> bool:
        text = message.replace("−", "-")  # the messages write a real minus sign
        return re.search(self.expect.replace("−", "-"), text, flags=re.IGNORECASE) is not None


_SOL: dict[str, dict[str, Any]] = {}


def sol(chapter: str) -> dict[str, Any]:
    """The namespace of the solution notebook of ``chapter`` ("ch04" -> ex04_*.ipynb)."""
    if chapter not in _SOL:
        _SOL[chapter] = exec_tagged(next(SOLUTIONS.glob(f"ex{chapter[2:]}_*.ipynb")))
    return _SOL[chapter]


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *[1] * (like.dim() - 1))


def _col64(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # the classic slip: a float64 schedule value that meets float32 data without `.to(x.dtype)`
    return v.reshape(-1, *[1] * (like.dim() - 1))


# --- wrappers around a right answer --------------------------------------------------------------

GRADIENT = r"gradient|no_grad|detach"
DTYPE = r"dtype|float64|float32"
INPLACE = r"in place"


def f64(fn: Fn) -> Fn:
    return lambda *a: fn(*a).double()


def no_grad(fn: Fn) -> Fn:
    def run(*a: Any) -> Any:
        with torch.no_grad():
            return fn(*a)

    return run


def detached(fn: Fn) -> Fn:
    return lambda *a: fn(*a).detach()


def one_tuple(fn: Fn) -> Fn:
    return lambda *a: (fn(*a),)


def as_list(fn: Fn) -> Fn:
    return lambda *a: fn(*a).tolist()


def as_item(fn: Fn) -> Fn:
    return lambda *a: fn(*a).item()


def as_numpy(fn: Fn) -> Fn:
    return lambda *a: fn(*a).detach().numpy()


MUTANTS: list[Mutant] = []


def add(chapter: str, name: str, key: str, fn: Fn, expect: str) -> None:
    MUTANTS.append(Mutant(chapter, name, key, fn, expect))


def lazy(chapter: str, name: str) -> Fn:
    """The solution's function, looked up when first called (the notebooks run on demand)."""
    return lambda *a, **k: sol(chapter)[name](*a, **k)


# === chapter 1 ===================================================================================

S = lazy("ch01", "q_sample")
add("ch01", "alpha_bar_from_betas", "alphas_only", lambda b: 1 - b, r"product|cumprod")
add(
    "ch01",
    "alpha_bar_from_betas",
    "sqrt_product",
    lambda b: torch.cumprod((1 - b).sqrt(), 0),
    r"square root|√",
)
add(
    "ch01",
    "alpha_bar_from_betas",
    "drops_index_0",
    lambda b: torch.cumprod(1 - b[1:], 0),
    r"shape",
)
add(
    "ch01",
    "alpha_bar_from_betas",
    "list",
    lambda b: torch.cumprod(1 - b, 0).tolist(),
    r"\blist\b",
)
add(
    "ch01",
    "alpha_bar_from_betas",
    "exp_minus_sum",
    lambda b: torch.exp(-torch.cumsum(b, 0)),
    r"product|approximat|exp",
)
add(
    "ch01",
    "alpha_bar_from_betas",
    "in_place",
    lambda b: b.neg_().add_(1).cumprod(0),
    INPLACE,
)
add(
    "ch01",
    "alpha_bar_from_betas",
    "reversed",
    lambda b: torch.flip(torch.cumprod(torch.flip(1 - b, (0,)), 0), (0,)),
    r"index 0|alpha_bar\[0\]|ᾱ_0|revers|order",
)

add(
    "ch01",
    "q_sample",
    "float64",
    lambda x0, t, ab, e: _col64(ab[t], x0).sqrt() * x0 + (1 - _col64(ab[t], x0)).sqrt() * e,
    DTYPE,
)


def _alpha(ab: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ab[t] / ab[t - 1]


add(
    "ch01",
    "q_sample",
    "alpha_for_alpha_bar",
    lambda x0, t, ab, e: (
        _col(_alpha(ab, t), x0).sqrt() * x0 + (1 - _col(_alpha(ab, t), x0)).sqrt() * e
    ),
    r"α_t",
)
add(
    "ch01",
    "q_sample",
    "no_reshape",
    lambda x0, t, ab, e: (
        ab[t].to(x0.dtype)[None, :].sqrt() * x0 + (1 - ab[t].to(x0.dtype)).sqrt() * e
    ),
    r"reshape|\[:, None\]|broadcast",
)
add(
    "ch01",
    "q_sample",
    "no_noise",
    lambda x0, t, ab, e: _col(ab[t], x0).sqrt() * x0,
    r"noise",
)
add(
    "ch01",
    "q_sample",
    "minus_noise",
    lambda x0, t, ab, e: _col(ab[t], x0).sqrt() * x0 - (1 - _col(ab[t], x0)).sqrt() * e,
    r"noise.*sign|sign.*noise",
)
add(
    "ch01",
    "q_sample",
    "one_minus_sqrt",
    lambda x0, t, ab, e: _col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0).sqrt()) * e,
    r"noise",
)
add(
    "ch01",
    "q_sample",
    "in_place",
    lambda x0, t, ab, e: x0.mul_(_col(ab[t], x0).sqrt()).add_((1 - _col(ab[t], x0)).sqrt() * e),
    INPLACE,
)
add(
    "ch01",
    "q_sample",
    "returns_tuple",
    lambda x0, t, ab, e: (S(x0, t, ab, e), e),
    r"tuple|2 values|one torch\.Tensor",
)
add(
    "ch01",
    "q_sample",
    "first_t_for_all",
    lambda x0, t, ab, e: S(x0, t[:1].expand_as(t), ab, e),
    r"t\[0\]|one timestep|each sample|per sample|first",
)

Q = lazy("ch01", "q_step")
add(
    "ch01",
    "q_step",
    "float64",
    lambda x, t, b, e: (1 - _col64(b[t], x)).sqrt() * x + _col64(b[t], x).sqrt() * e,
    DTYPE,
)
add("ch01", "q_step", "no_noise", lambda x, t, b, e: (1 - _col(b[t], x)).sqrt() * x, r"noise")
add(
    "ch01",
    "q_step",
    "noise_sqrt_alpha",
    lambda x, t, b, e: (1 - _col(b[t], x)).sqrt() * x + (1 - _col(b[t], x)).sqrt() * e,
    r"noise",
)
add(
    "ch01",
    "q_step",
    "beta_t_plus_one",
    lambda x, t, b, e: Q(x, t + 1, b, e),
    r"out of range|index|t \+ 1|t\+1",
)
add(
    "ch01",
    "q_step",
    "first_t_for_all",
    lambda x, t, b, e: Q(x, t[:1].expand_as(t), b, e),
    r"t\[0\]|one timestep|each sample|per sample|first",
)
add(
    "ch01",
    "q_step",
    "in_place",
    lambda x, t, b, e: x.mul_((1 - _col(b[t], x)).sqrt()).add_(_col(b[t], x).sqrt() * e),
    INPLACE,
)
add(
    "ch01",
    "q_step",
    "variance_on_noise_no_shrink",
    lambda x, t, b, e: x + _col(b[t], x) * e,
    r"x_\{t-1\}|x_prev|shrink|coefficient",
)

add("ch01", "snr", "log_snr", lambda ab: torch.log(ab / (1 - ab)), r"log")
add("ch01", "snr", "no_denominator", lambda ab: ab.clone(), r"1 ?[-−] ?ᾱ|denominator|divide")
add("ch01", "snr", "in_place", lambda ab: ab.div_(1 - ab), INPLACE)
add("ch01", "snr", "list", lambda ab: (ab / (1 - ab)).tolist(), r"\blist\b")
add(
    "ch01",
    "snr",
    "sqrt_denominator",
    lambda ab: ab / (1 - ab).sqrt(),
    r"square root|variance|std|standard|√",
)

add(
    "ch01",
    "prior_kl",
    "no_sum",
    lambda x0, ab: 0.5 * ((1 - ab) + ab * x0**2 - 1 - math.log(1 - ab)),
    r"shape|sum",
)
add(
    "ch01",
    "prior_kl",
    "mean_over_dims",
    lambda x0, ab: (0.5 * ((1 - ab) + ab * x0**2 - 1 - math.log(1 - ab))).mean(1),
    r"mean|sum",
)
add(
    "ch01",
    "prior_kl",
    "no_log",
    lambda x0, ab: (0.5 * ((1 - ab) + ab * x0**2 - 1)).sum(1),
    r"log",
)
add(
    "ch01",
    "prior_kl",
    "mean_sqrt_one_minus",
    lambda x0, ab: (0.5 * ((1 - ab) + (1 - ab) * x0**2 - 1 - math.log(1 - ab))).sum(1),
    r"mean",
)
add(
    "ch01",
    "prior_kl",
    "torch_log_of_float",
    lambda x0, ab: (0.5 * ((1 - ab) + ab * x0**2 - 1 - torch.log(1 - ab))).sum(1),
    r"in the line",
)
add(
    "ch01",
    "prior_kl",
    "batch_mean",
    lambda x0, ab: (0.5 * ((1 - ab) + ab * x0**2 - 1 - math.log(1 - ab))).sum(1).mean(),
    r"shape|per sample|\(B,\)",
)
add(
    "ch01",
    "prior_kl",
    "plus_one",
    lambda x0, ab: (0.5 * ((1 - ab) + ab * x0**2 + 1 - math.log(1 - ab))).sum(1),
    r"offset|constant|- ?1",
)

# === chapter 2 ===================================================================================

P = lazy("ch02", "posterior_mean_var")


def _post(x0, x_t, t, b, ab, *, ct_ab=False, var_inv=False, no_beta=False, f64_=False):  # type: ignore[no-untyped-def]
    c = _col64 if f64_ else _col
    be, a_, abp = c(b[t], x_t), c(ab[t], x_t), c(ab[t - 1], x_t)
    c0 = abp.sqrt() / (1 - a_) * (1 if no_beta else be)
    ct = (a_.sqrt() if ct_ab else (1 - be).sqrt()) * (1 - abp) / (1 - a_)
    var = (1 - a_) / (1 - abp) * be if var_inv else (1 - abp) / (1 - a_) * be
    return c0 * x0 + ct * x_t, var


add("ch02", "posterior_mean_var", "float64", lambda *a: _post(*a, f64_=True), DTYPE)
add(
    "ch02",
    "posterior_mean_var",
    "var_shape_B",
    lambda *a: (P(*a)[0], P(*a)[1].reshape(-1)),
    r"shape",
)
add(
    "ch02",
    "posterior_mean_var",
    "var_full_shape",
    lambda *a: (P(*a)[0], P(*a)[1].expand_as(a[1])),
    r"shape",
)
add(
    "ch02",
    "posterior_mean_var",
    "alpha_bar_in_xt_coef",
    lambda *a: _post(*a, ct_ab=True),
    r"x_t|α_t",
)
add(
    "ch02",
    "posterior_mean_var",
    "var_inverted",
    lambda *a: _post(*a, var_inv=True),
    r"varian|β̃|ᾱ_0 = 0",
)
add("ch02", "posterior_mean_var", "mean_only", lambda *a: P(*a)[0], r"tuple|2 values|two")
add("ch02", "posterior_mean_var", "var_then_mean", lambda *a: P(*a)[::-1], r"order|swap|shape")
add("ch02", "posterior_mean_var", "x0_coef_no_beta", lambda *a: _post(*a, no_beta=True), r"x_0|x0")

M = lazy("ch02", "mu_tilde_from_eps")


def _mu(x_t, t, e, b, ab, *, num="beta", den="sqrt_alpha", shift=0, f64_=False):  # type: ignore[no-untyped-def]
    c = _col64 if f64_ else _col
    be, a_ = c(b[t - shift], x_t), c(ab[t - shift], x_t)
    n = {"beta": be, "one_minus_ab": 1 - a_}[num]
    inner = x_t - n / (1 - a_).sqrt() * e
    return {"sqrt_alpha": inner / (1 - be).sqrt(), "times": inner * (1 - be).sqrt()}[den]


add("ch02", "mu_tilde_from_eps", "float64", lambda *a: _mu(*a, f64_=True), DTYPE)
add(
    "ch02",
    "mu_tilde_from_eps",
    "x0_hat_instead",
    lambda x_t, t, e, b, ab: (x_t - _col(1 - ab[t], x_t).sqrt() * e) / _col(ab[t], x_t).sqrt(),
    r"x̂_0|x_0|x0",
)
add(
    "ch02",
    "mu_tilde_from_eps",
    "one_minus_alpha_bar_numerator",
    lambda *a: _mu(*a, num="one_minus_ab"),
    r"ε|eps|noise|β_t",
)
add(
    "ch02",
    "mu_tilde_from_eps",
    "times_sqrt_alpha",
    lambda *a: _mu(*a, den="times"),
    r"√α_t|divide|x_t",
)
add(
    "ch02",
    "mu_tilde_from_eps",
    "index_t_minus_one",
    lambda *a: _mu(*a, shift=1),
    r"t ?- ?1|t-1|off",
)
add(
    "ch02",
    "mu_tilde_from_eps",
    "in_place",
    lambda x_t, t, e, b, ab: x_t.sub_(_col(b[t], x_t) / _col(1 - ab[t], x_t).sqrt() * e).div_(
        _col(1 - b[t], x_t).sqrt()
    ),
    INPLACE,
)

# === chapter 3 ===================================================================================

add(
    "ch03",
    "gaussian_kl",
    "log_var1_over_var2",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v1 / v2) + (v1 + (m1 - m2) ** 2) / v2 - 1),
    r"log",
)
add(
    "ch03",
    "gaussian_kl",
    "no_var1_in_trace",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (m1 - m2) ** 2 / v2 - 1),
    r"var1|v1|variance",
)
add(
    "ch03",
    "gaussian_kl",
    "divides_by_var1",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v1 - 1),
    r"var2|v2|divid",
)
add(
    "ch03",
    "gaussian_kl",
    "abs_mean_difference",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2).abs()) / v2 - 1),
    r"square|mean",
)
add(
    "ch03",
    "gaussian_kl",
    "variances_as_stds",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v2**2 / v1**2) + (v1**2 + (m1 - m2) ** 2) / v2**2 - 1),
    r"varian|standard dev",
)
add(
    "ch03",
    "gaussian_kl",
    "summed",
    lambda m1, v1, m2, v2: (0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)).sum(),
    r"shape|elementwise",
)

V = lazy("ch03", "vlb_term")


def _vlb(
    eps_model,
    x0,
    t,
    betas,
    ab,
    noise,
    *,
    model_x="x_t",
    model_t=0,
    slip3=False,
    var_q="tilde",
    use_noise=False,
    reduce="sum",
):  # type: ignore[no-untyped-def]
    gk = sol("ch03")["gaussian_kl"]
    shape = (-1, *[1] * (x0.dim() - 1))
    beta = betas[t].reshape(shape).to(x0.dtype)
    a_ = ab[t].reshape(shape).to(x0.dtype)
    abp = ab[t - 1].reshape(shape).to(x0.dtype)
    x_t = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
    mq = abp.sqrt() * beta / (1 - a_) * x0 + (1 - beta).sqrt() * (1 - abp) / (1 - a_) * x_t
    vq = (1 - abp) / (1 - a_) * beta if var_q == "tilde" else beta
    e = noise if use_noise else eps_model(x0 if model_x == "x0" else x_t, t - model_t)
    mp = (x_t - beta / (1 - a_).sqrt() * e) / (a_.sqrt() if slip3 else (1 - beta).sqrt())
    kl = gk(mq, vq, mp, beta).expand_as(x0).reshape(x0.shape[0], -1)
    return kl.sum(1) if reduce == "sum" else kl.sum(1).mean()


add("ch03", "vlb_term", "no_grad", no_grad(V), GRADIENT)
add("ch03", "vlb_term", "detached", detached(V), GRADIENT)
add("ch03", "vlb_term", "x0_into_model", lambda *a: _vlb(*a, model_x="x0"), r"x_0|x0")
add("ch03", "vlb_term", "model_at_t_minus_1", lambda *a: _vlb(*a, model_t=1), r"t ?- ?1|timestep")
add("ch03", "vlb_term", "slip_3_alpha_bar", lambda *a: _vlb(*a, slip3=True), r"ᾱ|α_t|slip")
add(
    "ch03", "vlb_term", "batch_mean", lambda *a: _vlb(*a, reduce="mean"), r"shape|per sample|\(B,\)"
)
add(
    "ch03",
    "vlb_term",
    "q_variance_beta",
    lambda *a: _vlb(*a, var_q="beta"),
    r"β̃|posterior|variance of q",
)
add(
    "ch03",
    "vlb_term",
    "true_noise_not_model",
    lambda *a: _vlb(*a, use_noise=True),
    r"model|ε_θ|eps_model|gradient",
)

L = lazy("ch03", "l_simple")


def _simple(
    eps_model,
    x0,
    t,
    ab,
    noise,
    *,
    model_x="x_t",
    model_t=0,
    target="noise",
    reduce="mean",
    alpha=False,
):  # type: ignore[no-untyped-def]
    a_ = (ab[t] / ab[t - 1]) if alpha else ab[t]
    a_ = a_.reshape(-1, *[1] * (x0.dim() - 1)).to(x0.dtype)
    x_t = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
    out = eps_model(x0 if model_x == "x0" else x_t, t - model_t)
    err = {"noise": (noise - out) ** 2, "plus": (noise + out) ** 2, "abs": (noise - out).abs()}[
        target
    ]
    return {
        "mean": err.mean(),
        "sum": err.sum(),
        "per_sample": err.reshape(err.shape[0], -1).mean(1),
    }[reduce]


add("ch03", "l_simple", "no_grad", no_grad(L), GRADIENT)
add("ch03", "l_simple", "detached", detached(L), GRADIENT)
add("ch03", "l_simple", "item", as_item(L), r"Python float|\.item|tensor itself")
add("ch03", "l_simple", "x0_into_model", lambda *a: _simple(*a, model_x="x0"), r"x_0|x0")
add("ch03", "l_simple", "target_sign", lambda *a: _simple(*a, target="plus"), r"sign|target|-ε|−ε")
add("ch03", "l_simple", "sum_all", lambda *a: _simple(*a, reduce="sum"), r"\bsum\b|mean")
add(
    "ch03",
    "l_simple",
    "per_sample",
    lambda *a: _simple(*a, reduce="per_sample"),
    r"shape|scalar|one number",
)
add(
    "ch03", "l_simple", "model_at_t_minus_1", lambda *a: _simple(*a, model_t=1), r"t ?- ?1|timestep"
)
add("ch03", "l_simple", "absolute_error", lambda *a: _simple(*a, target="abs"), r"square|absolute")
add("ch03", "l_simple", "alpha_for_alpha_bar", lambda *a: _simple(*a, alpha=True), r"α_t")

# === chapter 4 ===================================================================================

DL = lazy("ch04", "ddpm_training_loss")


def _model_data(eps_model, x0, t, ab, noise):  # type: ignore[no-untyped-def]
    a_ = ab[t].to(x0.dtype)[:, None]
    x_t = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
    return ((noise - eps_model(x_t, t).data) ** 2).mean()


def _t_float(eps_model, x0, t, ab, noise):  # type: ignore[no-untyped-def]
    a_ = ab[t].to(x0.dtype)[:, None]
    x_t = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
    T = ab.shape[0] - 1
    return ((noise - eps_model(x_t, t.float() / T)) ** 2).mean()


add("ch04", "ddpm_training_loss", "no_grad", no_grad(DL), GRADIENT)
add("ch04", "ddpm_training_loss", "dot_data", _model_data, GRADIENT)
add("ch04", "ddpm_training_loss", "x0_into_model", lambda *a: _simple(*a, model_x="x0"), r"x_0|x0")
add(
    "ch04",
    "ddpm_training_loss",
    "model_at_t_minus_1",
    lambda *a: _simple(*a, model_t=1),
    r"t ?- ?1|timestep",
)
add("ch04", "ddpm_training_loss", "sum_all", lambda *a: _simple(*a, reduce="sum"), r"\bsum\b|mean")
add(
    "ch04",
    "ddpm_training_loss",
    "absolute_error",
    lambda *a: _simple(*a, target="abs"),
    r"square|absolute",
)
add("ch04", "ddpm_training_loss", "alpha_for_alpha_bar", lambda *a: _simple(*a, alpha=True), r"α_t")
add(
    "ch04",
    "ddpm_training_loss",
    "target_sign",
    lambda *a: _simple(*a, target="plus"),
    r"sign|target|-ε|−ε",
)
add("ch04", "ddpm_training_loss", "t_normalised", _t_float, r"\bt\b|timestep")
add("ch04", "ddpm_training_loss", "item", as_item(DL), r"Python float|\.item|tensor itself")


def _train(
    *,
    t_lo=1,
    t_hi=1,
    t_gen=True,
    n_gen=True,
    one_t=False,
    ret="item",
    loss_ctx="grad",
    order="zero_back_step",
    double=False,
):  # type: ignore[no-untyped-def]
    def step(model, optimizer, x0, ab, generator):  # type: ignore[no-untyped-def]
        T = ab.shape[0] - 1
        B = x0.shape[0]
        size = (1,) if one_t else (B,)
        gen = {"generator": generator} if t_gen else {}
        t = torch.randint(t_lo, T + t_hi, size, **gen).expand(B)
        noise = torch.randn(x0.shape, generator=generator) if n_gen else torch.randn_like(x0)
        if loss_ctx == "no_grad":
            with torch.no_grad():
                loss = DL(model, x0, t, ab, noise)
        else:
            loss = DL(model, x0, t, ab, noise)
        if order == "zero_back_step":
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        elif order == "step_first":
            optimizer.zero_grad()
            optimizer.step()
            loss.backward()
        if double:
            optimizer.step()
        return {"item": loss.item(), "tensor": loss, "none": None}[ret]

    return step


add("ch04", "train_step", "loss_under_no_grad", _train(loss_ctx="no_grad"), GRADIENT)
add(
    "ch04",
    "train_step",
    "t_from_0_to_T",
    _train(t_lo=0, t_hi=1),
    r"range|\{1\.\.T\}|1, T \+ 1|t = 0",
)
add("ch04", "train_step", "t_without_generator", _train(t_gen=False), r"generator")
add("ch04", "train_step", "noise_randn_like", _train(n_gen=False), r"generator|randn_like")
add(
    "ch04",
    "train_step",
    "one_t_per_batch",
    _train(one_t=True),
    r"one t|one draw|per batch|every sample|each sample|same t",
)
add("ch04", "train_step", "returns_tensor", _train(ret="tensor"), r"float|\.item")
add("ch04", "train_step", "returns_none", _train(ret="none"), r"None|return")
add("ch04", "train_step", "two_optimizer_steps", _train(double=True), r"step|twice|weights")

AS = lazy("ch04", "ancestral_step")


def _anc(
    x_t,
    t,
    e,
    b,
    ab,
    variance,
    z,
    *,
    den="alpha",
    num="beta",
    noise="std",
    mask="per_sample",
    var_inv=False,
    f64_=False,
):  # type: ignore[no-untyped-def]
    c = (lambda v: v[:, None]) if f64_ else (lambda v: v.to(x_t.dtype)[:, None])
    beta, a_, abp = c(b[t]), c(ab[t]), c(ab[t - 1])
    alpha = 1 - beta
    nume = {"beta": beta, "slip5": 1 - alpha}[num]
    scale = {"beta": (1 - a_).sqrt(), "slip5": (1 - alpha).sqrt()}[num]
    mean = (x_t - nume / scale * e) / {"alpha": alpha.sqrt(), "alpha_bar": a_.sqrt()}[den]
    bt = (1 - a_) / (1 - abp).clamp(min=1e-12) * beta if var_inv else (1 - abp) / (1 - a_) * beta
    var = beta if variance == "beta" else bt
    sd = var.sqrt() if noise == "std" else var
    if mask == "per_sample":
        m = (t > 1).to(x_t.dtype)[:, None]
    else:
        m = torch.ones_like(beta) if int(t[0]) > 1 else torch.zeros_like(beta)
    return mean + m * sd * z


add("ch04", "ancestral_step", "float64", lambda *a: _anc(*a, f64_=True), DTYPE)
add(
    "ch04",
    "ancestral_step",
    "slip_3_alpha_bar",
    lambda *a: _anc(*a, den="alpha_bar"),
    r"ᾱ|α_t|slip",
)
add("ch04", "ancestral_step", "slip_5", lambda *a: _anc(*a, num="slip5"), r"slip|1 ?[-−] ?ᾱ|√\(1")
add(
    "ch04",
    "ancestral_step",
    "variance_times_z",
    lambda *a: _anc(*a, noise="var"),
    r"standard dev|variance|σ",
)
add(
    "ch04",
    "ancestral_step",
    "mask_from_first_t",
    lambda *a: _anc(*a, mask="first"),
    r"t == 1|t = 1|each sample|per sample|last step",
)
add(
    "ch04",
    "ancestral_step",
    "beta_tilde_inverted",
    lambda *a: _anc(*a, var_inv=True),
    r"β̃|variance|coefficient of z",
)
add(
    "ch04",
    "ancestral_step",
    "in_place",
    lambda x_t, t, e, b, ab, v, z: (
        x_t.sub_(b[t].to(x_t.dtype)[:, None] / (1 - ab[t].to(x_t.dtype)[:, None]).sqrt() * e)
        .div_((1 - b[t].to(x_t.dtype)[:, None]).sqrt())
        .add_(
            (t > 1).to(x_t.dtype)[:, None]
            * (b[t] if v == "beta" else (1 - ab[t - 1]) / (1 - ab[t]) * b[t])
            .to(x_t.dtype)[:, None]
            .sqrt()
            * z
        )
    ),
    INPLACE,
)


def _sample(
    *,
    dtype="f32",
    gen=True,
    one_z=False,
    start="randn",
    lo=0,
    ret="x",
    variance=None,
    order="x_first",
):  # type: ignore[no-untyped-def]
    def sample(eps_model, betas, ab, shape, variance_, generator):  # type: ignore[no-untyped-def]
        step = sol("ch04")["ancestral_step"] if dtype == "f32" else (lambda *a: _anc(*a, f64_=True))
        T = betas.shape[0] - 1
        kw = {"generator": generator} if gen else {}
        if order == "z_first":
            z0 = torch.randn(shape, **kw)
        x = torch.randn(shape, **kw) if start == "randn" else torch.zeros(shape)
        xs = [x]
        if one_z:
            z_once = torch.randn(shape, **kw)
        with torch.no_grad():
            for i, s in enumerate(range(T, lo, -1)):
                t = torch.full((shape[0],), s, dtype=torch.long)
                if order == "z_first" and i == 0:
                    z = z0
                else:
                    z = z_once if one_z else torch.randn(shape, **kw)
                x = step(x, t, eps_model(x, t), betas, ab, variance or variance_, z)
                if dtype == "f32":
                    x = x.to(torch.float32)
                xs.append(x)
        return x if ret == "x" else xs

    return sample


add("ch04", "sample", "float64", _sample(dtype="f64"), DTYPE)
add("ch04", "sample", "ignores_generator", _sample(gen=False), r"generator")
add(
    "ch04",
    "sample",
    "one_z_for_all_steps",
    _sample(one_z=True),
    r"every step|each step|one z|same z|fresh",
)
add("ch04", "sample", "starts_from_zeros", _sample(start="zeros"), r"x_T|start|randn")
add("ch04", "sample", "returns_list", _sample(ret="list"), r"\blist\b|tensor")
add("ch04", "sample", "always_beta", _sample(variance="beta"), r"variance")
add("ch04", "sample", "z_before_x_T", _sample(order="z_first"), r"order|first|replay")

# === chapter 5 ===================================================================================

LS = lazy("ch05", "langevin_step")
add("ch05", "langevin_step", "float64", f64(LS), DTYPE)
add(
    "ch05",
    "langevin_step",
    "sqrt_eps_on_score",
    lambda x, s, e, z: x + math.sqrt(e) * s + math.sqrt(e) * z,
    r"score|drift",
)
add(
    "ch05",
    "langevin_step",
    "noise_sqrt_half",
    lambda x, s, e, z: x + e / 2 * s + math.sqrt(e / 2) * z,
    r"noise",
)
add(
    "ch05",
    "langevin_step",
    "in_place",
    lambda x, s, e, z: x.add_(e / 2 * s + math.sqrt(e) * z),
    INPLACE,
)
add(
    "ch05",
    "langevin_step",
    "own_noise",
    lambda x, s, e, z: x + e / 2 * s + math.sqrt(e) * torch.randn_like(x),
    r"noise.*given|given.*noise|`noise`|own random",
)
add("ch05", "langevin_step", "list_return", as_list(LS), r"\blist\b")

add(
    "ch05",
    "annealed_step_sizes",
    "list",
    lambda s, e: [e * float(v) ** 2 / float(s[-1]) ** 2 for v in s],
    r"\blist\b",
)


def _annealed_in_place(s: torch.Tensor, e: float) -> torch.Tensor:
    last = float(s[-1])
    return s.pow_(2).mul_(e / last**2)


add("ch05", "annealed_step_sizes", "in_place", _annealed_in_place, INPLACE)
add(
    "ch05",
    "annealed_step_sizes",
    "reversed",
    lambda s, e: torch.flip(e * s**2 / s[-1] ** 2, (0,)),
    r"order|revers|decreas|first|last",
)
add(
    "ch05",
    "annealed_step_sizes",
    "divided_by_levels",
    lambda s, e: e * s**2 / s[-1] ** 2 / len(s),
    r"factor",
)
add(
    "ch05",
    "annealed_step_sizes",
    "python_float",
    lambda s, e: float(e * s[0] ** 2 / s[-1] ** 2),
    r"float|shape|tensor",
)

add(
    "ch05",
    "stationary_variance",
    "tensor",
    lambda s2, e: torch.tensor(math.inf if e >= 4 * s2 else s2 / (1 - e / (4 * s2))),
    r"float",
)
add(
    "ch05",
    "stationary_variance",
    "no_branch",
    lambda s2, e: s2 / (1 - e / (4 * s2)),
    r"boundary|division by zero|4 s²",
)
add(
    "ch05",
    "stationary_variance",
    "none_when_divergent",
    lambda s2, e: None if e >= 4 * s2 else s2 / (1 - e / (4 * s2)),
    r"None|return",
)
add(
    "ch05",
    "step_for_bias",
    "one_tuple",
    lambda s2, tol: (4 * s2 * tol / (1 + tol),),
    r"tuple|float",
)
add(
    "ch05",
    "step_for_bias",
    "tolerance_ignored",
    lambda s2, tol: 4 * s2 * 0.05 / 1.05,
    r"constant|factor|differs|expected|tolerance",
)

# === chapter 6 ===================================================================================

T6 = lazy("ch06", "dsm_target")
add("ch06", "dsm_target", "float64", f64(T6), DTYPE)
add(
    "ch06",
    "dsm_target",
    "no_reshape",
    lambda xt, x0, s: -(xt - x0) / s**2,
    r"reshape|\[:, None\]|broadcast",
)
add(
    "ch06",
    "dsm_target",
    "times_sigma_squared",
    lambda xt, x0, s: -(xt - x0) * s[:, None] ** 2,
    r"divid|σ²",
)
add(
    "ch06",
    "dsm_target",
    "in_place",
    lambda xt, x0, s: xt.sub_(x0).div_(-(s[:, None] ** 2)),
    INPLACE,
)
add("ch06", "dsm_target", "x_tilde_only", lambda xt, x0, s: -xt / s[:, None] ** 2, r"x0|x_0")

DS = lazy("ch06", "dsm_loss")


def _dsm(model, x0, s, z, *, xt="right", weight="sq", reduce="mean", model_x="xt", model_s="s"):  # type: ignore[no-untyped-def]
    x_t = x0 + (s[:, None] ** 2 if xt == "sq" else s[:, None]) * z
    target = -(x_t - x0) / s[:, None] ** 2
    inp = x0 if model_x == "x0" else x_t
    out = model(inp, s**2 if model_s == "sq" else s)
    per = 0.5 * ((out - target) ** 2).sum(1)
    w = {"sq": s**2, "lin": s}[weight]
    return (w * per).mean() if reduce == "mean" else (w * per).sum()


def _dsm_data(model, x0, s, z):  # type: ignore[no-untyped-def]
    x_t = x0 + s[:, None] * z
    out = model(x_t, s).data
    return (s**2 * 0.5 * ((out + z / s[:, None]) ** 2).sum(1)).mean()


add("ch06", "dsm_loss", "no_grad", no_grad(DS), GRADIENT)
add("ch06", "dsm_loss", "dot_data", _dsm_data, GRADIENT)
add("ch06", "dsm_loss", "item", as_item(DS), r"Python float|\.item|tensor itself")
add("ch06", "dsm_loss", "x_tilde_with_variance", lambda *a: _dsm(*a, xt="sq"), r"x̃|x_tilde|noise|σ")
add("ch06", "dsm_loss", "sum_over_batch", lambda *a: _dsm(*a, reduce="sum"), r"\bsum\b|mean")
add("ch06", "dsm_loss", "weight_sigma", lambda *a: _dsm(*a, weight="lin"), r"weight|σ²|λ")
add("ch06", "dsm_loss", "x0_into_model", lambda *a: _dsm(*a, model_x="x0"), r"x0|x_0")
add("ch06", "dsm_loss", "model_gets_variance", lambda *a: _dsm(*a, model_s="sq"), r"σ|sigma")


def _ism(*, create=True, reduce="mean", norm="sq", dims="sum", no_grad_=False):  # type: ignore[no-untyped-def]
    def loss(model, x):  # type: ignore[no-untyped-def]
        x = x.detach().requires_grad_(True)
        ctx = torch.no_grad() if no_grad_ else torch.enable_grad()
        with ctx:
            s = model(x)
            tr = torch.zeros(x.shape[0], dtype=s.dtype)
            for i in range(x.shape[1]):
                g = torch.autograd.grad(s[:, i].sum(), x, create_graph=create, retain_graph=True)[0]
                tr = tr + g[:, i]
        n2 = (s**2).sum(1) if dims == "sum" else (s**2).mean(1)
        nrm = n2 if norm == "sq" else n2.sqrt()
        per = tr + 0.5 * nrm
        return per.mean() if reduce == "mean" else (per.sum() if reduce == "sum" else per)

    return loss


add("ch06", "ism_loss", "retain_graph_only", _ism(create=False), r"create_graph|gradient")
add("ch06", "ism_loss", "under_no_grad", _ism(no_grad_=True), r"gradient|no_grad|enable_grad")
add("ch06", "ism_loss", "norm_mean_over_dims", _ism(dims="mean"), r"½|sum|norm")
add("ch06", "ism_loss", "sum_over_batch", _ism(reduce="sum"), r"\bsum\b|mean")
add("ch06", "ism_loss", "norm_not_squared", _ism(norm="abs"), r"square|norm")
add("ch06", "ism_loss", "per_sample", _ism(reduce="none"), r"shape|scalar|one number")

SE = lazy("ch06", "score_from_eps")
add("ch06", "score_from_eps", "float64", lambda e, t, ab: -e / (1 - _col64(ab[t], e)).sqrt(), DTYPE)
add(
    "ch06",
    "score_from_eps",
    "t_minus_one",
    lambda e, t, ab: -e / (1 - _col(ab[t - 1], e)).sqrt(),
    r"t ?- ?1|off",
)
add(
    "ch06",
    "score_from_eps",
    "alpha_for_alpha_bar",
    lambda e, t, ab: -e / (1 - _col(ab[t] / ab[t - 1], e)).sqrt(),
    r"α_t",
)
add(
    "ch06",
    "score_from_eps",
    "in_place",
    lambda e, t, ab: e.div_(-(1 - _col(ab[t], e)).sqrt()),
    INPLACE,
)
add(
    "ch06",
    "score_from_eps",
    "no_reshape",
    lambda e, t, ab: -e / (1 - ab[t].to(e.dtype)).sqrt(),
    r"reshape|\[:, None\]|broadcast",
)

# === chapter 7 ===================================================================================


def _marg(t, a, b, *, sig="std", swap=False, half=True):  # type: ignore[no-untyped-def]
    if swap:
        a, b = b, a
    integral = a * t + (0.5 if half else 1.0) * (b - a) * t**2
    alpha = torch.exp(-0.5 * integral)
    return alpha, {"std": (1 - alpha**2).sqrt(), "one_minus": 1 - alpha}[sig]


add(
    "ch07",
    "vp_marginal",
    "sigma_one_minus_alpha",
    lambda *a: _marg(*a, sig="one_minus"),
    r"sigma|σ",
)
add("ch07", "vp_marginal", "stacked", lambda *a: torch.stack(_marg(*a)), r"tuple")
add(
    "ch07",
    "vp_marginal",
    "beta_min_max_swapped",
    lambda *a: _marg(*a, swap=True),
    r"β_min|beta_min|swap|integral|β",
)
add(
    "ch07",
    "vp_marginal",
    "math_exp",
    lambda t, a, b: (math.exp(-0.5 * (a * t + 0.5 * (b - a) * t**2)), 0.0),
    r"in the line",
)


def _drift(x, t, s, a, b, *, f="right", beta_at=None):  # type: ignore[no-untyped-def]
    tt = (1 - t) if beta_at == "one_minus" else t
    beta = (a + tt * (b - a))[:, None]
    fx = {
        "right": -0.5 * beta * x,
        "sqrt": -0.5 * beta.sqrt() * x,
        "no_half": -beta * x,
        "plus": 0.5 * beta * x,
    }[f]
    return fx - beta * s


add(
    "ch07",
    "reverse_sde_drift",
    "f_with_sqrt_beta",
    lambda *a: _drift(*a, f="sqrt"),
    r"\bf\b|f\(x|forward drift|x term",
)
add(
    "ch07",
    "reverse_sde_drift",
    "f_no_half",
    lambda *a: _drift(*a, f="no_half"),
    r"\bf\b|f\(x|½|forward drift|x term",
)
add(
    "ch07",
    "reverse_sde_drift",
    "f_sign",
    lambda *a: _drift(*a, f="plus"),
    r"\bf\b|f\(x|sign|forward drift|x term",
)
add(
    "ch07",
    "reverse_sde_drift",
    "beta_of_one_minus_t",
    lambda *a: _drift(*a, beta_at="one_minus"),
    r"β\(t\)|time|\bt\b",
)
add(
    "ch07",
    "reverse_sde_drift",
    "no_reshape",
    lambda x, t, s, a, b: -0.5 * (a + t * (b - a)) * x - (a + t * (b - a)) * s,
    r"reshape|\[:, None\]|broadcast",
)

RD = lazy("ch07", "reverse_sde_drift")


def _em(x, t, dt, score_fn, a, b, z, *, g_noise="g", score_t="t", drift="sde", own=False):  # type: ignore[no-untyped-def]
    beta = (a + t * (b - a))[:, None]
    s = score_fn(x, t - dt if score_t == "t-dt" else t)
    d = -0.5 * beta * x - (0.5 if drift == "pf" else 1.0) * beta * s
    g = {"g": beta.sqrt(), "none": torch.ones_like(beta), "g2": beta}[g_noise]
    noise = torch.randn_like(x) if own else z
    return x - d * dt + g * math.sqrt(dt) * noise


add(
    "ch07",
    "euler_maruyama_step",
    "noise_without_g",
    lambda *a: _em(*a, g_noise="none"),
    r"g\(t\)|\bg\b|diffusion",
)
add(
    "ch07",
    "euler_maruyama_step",
    "score_at_t_minus_dt",
    lambda *a: _em(*a, score_t="t-dt"),
    r"t ?- ?dt|time",
)
add(
    "ch07",
    "euler_maruyama_step",
    "noise_g_squared",
    lambda *a: _em(*a, g_noise="g2"),
    r"g\(t\)|\bg\b|noise",
)
add(
    "ch07",
    "euler_maruyama_step",
    "pf_drift_with_noise",
    lambda *a: _em(*a, drift="pf"),
    r"½|probability.flow",
)
add(
    "ch07",
    "euler_maruyama_step",
    "own_noise",
    lambda *a: _em(*a, own=True),
    r"noise.*given|given.*noise|`noise`|own random|generator",
)
EMs = lazy("ch07", "euler_maruyama_step")
add("ch07", "euler_maruyama_step", "float64", f64(EMs), DTYPE)


def _heun(x, t, dt, score_fn, a, b, *, kind="heun", f_sign=-0.5, g_pow=2):  # type: ignore[no-untyped-def]
    def Fn_(y, s):  # type: ignore[no-untyped-def]
        beta = (a + s * (b - a))[:, None]
        g2 = beta if g_pow == 2 else beta.sqrt()
        return f_sign * beta * y - 0.5 * g2 * score_fn(y, s)

    h = -dt
    k1 = Fn_(x, t)
    if kind == "midpoint":
        return x + h * Fn_(x + 0.5 * h * k1, t + 0.5 * h)
    if kind == "second_at_x":
        return x + 0.5 * h * (k1 + Fn_(x, t + h))
    if kind == "no_half":
        return x + h * (k1 + Fn_(x + h * k1, t + h))
    return x + 0.5 * h * (k1 + Fn_(x + h * k1, t + h))


HE = lazy("ch07", "pf_ode_heun_step")
add(
    "ch07",
    "pf_ode_heun_step",
    "midpoint",
    lambda *a: _heun(*a, kind="midpoint"),
    r"Heun|midpoint|average|trapez",
)
add(
    "ch07",
    "pf_ode_heun_step",
    "second_at_x",
    lambda *a: _heun(*a, kind="second_at_x"),
    r"Euler prediction|x \+ h",
)
add(
    "ch07",
    "pf_ode_heun_step",
    "no_half_average",
    lambda *a: _heun(*a, kind="no_half"),
    r"½|average|twice|factor",
)
add(
    "ch07",
    "pf_ode_heun_step",
    "f_sign",
    lambda *a: _heun(*a, f_sign=0.5),
    r"\bf\b|f\(x|sign|forward drift|x term",
)
add(
    "ch07",
    "pf_ode_heun_step",
    "g_not_squared",
    lambda *a: _heun(*a, g_pow=1),
    r"g\(t\)²|g²|\bg\b|square",
)
add("ch07", "pf_ode_heun_step", "float64", f64(HE), DTYPE)

# === chapter 8 ===================================================================================


def _ddim(x_t, t, tp, e, ab, *, f64_=False, ret="x", alpha=False, prev_shift=0):  # type: ignore[no-untyped-def]
    c = (lambda v: v[:, None]) if f64_ else (lambda v: v[:, None].to(x_t.dtype))
    a_t = c(ab[t] / ab[t - 1]) if alpha else c(ab[t])
    a_p = c(ab[tp + prev_shift])
    x0 = (x_t - (1 - a_t).sqrt() * e) / a_t.sqrt()
    if ret == "x0":
        return x0
    return a_p.sqrt() * x0 + (1 - a_p).sqrt() * e


DD = lazy("ch08", "ddim_step_deterministic")
add("ch08", "ddim_step_deterministic", "float64", lambda *a: _ddim(*a, f64_=True), DTYPE)
add(
    "ch08",
    "ddim_step_deterministic",
    "returns_x0_hat",
    lambda *a: _ddim(*a, ret="x0"),
    r"x̂_?0|re-?nois|x0",
)
add(
    "ch08",
    "ddim_step_deterministic",
    "alpha_for_alpha_bar",
    lambda *a: _ddim(*a, alpha=True),
    r"α_t|ᾱ",
)
add(
    "ch08",
    "ddim_step_deterministic",
    "t_prev_plus_one",
    lambda *a: _ddim(*a, prev_shift=1),
    r"t_prev|t_\{?prev",
)
add(
    "ch08",
    "ddim_step_deterministic",
    "in_place",
    lambda x_t, t, tp, e, ab: (
        x_t.sub_((1 - ab[t][:, None]).sqrt().to(x_t.dtype) * e)
        .div_(ab[t][:, None].sqrt().to(x_t.dtype))
        .mul_(ab[tp][:, None].sqrt().to(x_t.dtype))
        .add_((1 - ab[tp][:, None]).sqrt().to(x_t.dtype) * e)
    ),
    INPLACE,
)

add(
    "ch08",
    "ddim_sigma",
    "ratio_without_sqrt",
    lambda t, tp, ab, eta: eta * (1 - ab[tp]) / (1 - ab[t]) * (1 - ab[t] / ab[tp]).sqrt(),
    r"square root|√",
)
add(
    "ch08",
    "ddim_sigma",
    "inner_inverted",
    lambda t, tp, ab, eta: eta * ((1 - ab[tp]) / (1 - ab[t])).sqrt() * (1 - ab[tp] / ab[t]).sqrt(),
    r"NaN|ᾱ_t ?/ ?ᾱ|inverted|upside",
)
add(
    "ch08",
    "ddim_sigma",
    "column",
    lambda t, tp, ab, eta: (
        eta * ((1 - ab[tp]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[tp]).sqrt()
    )[:, None],
    r"shape",
)
add(
    "ch08",
    "ddim_sigma",
    "list",
    lambda t, tp, ab, eta: (
        eta * ((1 - ab[tp]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[tp]).sqrt()
    ).tolist(),
    r"\blist\b",
)


def _ddim_s(x_t, t, tp, e, ab, eta, z, *, f64_=False, noise="sigma", direction="right"):  # type: ignore[no-untyped-def]
    c = (lambda v: v[:, None]) if f64_ else (lambda v: v[:, None].to(x_t.dtype))
    a_t, a_p = c(ab[t]), c(ab[tp])
    sig = c(eta * ((1 - ab[tp]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[tp]).sqrt())
    x0 = (x_t - (1 - a_t).sqrt() * e) / a_t.sqrt()
    d = {
        "right": (1 - a_p - sig**2).clamp(min=0).sqrt(),
        "no_sqrt": (1 - a_p - sig**2),
        "slip2": (1 - a_p).sqrt() - sig**2,
    }[direction]
    out = a_p.sqrt() * x0 + d * e
    return out + {"sigma": sig * z, "none": 0 * z, "eta": eta * z}[noise]


add("ch08", "ddim_step", "float64", lambda *a: _ddim_s(*a, f64_=True), DTYPE)
add("ch08", "ddim_step", "no_noise", lambda *a: _ddim_s(*a, noise="none"), r"noise|σ_t ?z|σ z")
add("ch08", "ddim_step", "eta_times_noise", lambda *a: _ddim_s(*a, noise="eta"), r"σ|noise")
add(
    "ch08",
    "ddim_step",
    "direction_without_sqrt",
    lambda *a: _ddim_s(*a, direction="no_sqrt"),
    r"square root|√|direction",
)
add(
    "ch08",
    "ddim_step",
    "slip_2",
    lambda *a: _ddim_s(*a, direction="slip2"),
    r"slip|inside|direction",
)

# === chapter 9 ===================================================================================


def _cg(
    *,
    enable=True,
    how="log_softmax",
    y_shift=0,
    t_shift=0,
    w_pow=1,
    factor="sqrt_one_minus",
    ret="eps",
    f64_=False,
):  # type: ignore[no-untyped-def]
    def guided(eps_model, classifier, x_t, t, y, ab, w):  # type: ignore[no-untyped-def]
        ctx = torch.enable_grad() if enable else torch.no_grad()
        with ctx:
            x = x_t.detach().requires_grad_(True)
            logits = classifier(x, t)
            lp = torch.log_softmax(logits, 1)
            C = logits.shape[1]
            obj = (
                lp.sum()
                if how == "sum_classes"
                else lp.gather(1, ((y + y_shift) % C)[:, None]).sum()
            )
            (grad,) = torch.autograd.grad(obj, x)
        a_ = ab[t - t_shift]
        f = {"sqrt_one_minus": (1 - a_).sqrt(), "sqrt_ab": a_.sqrt()}[factor]
        f = f[:, None] if f64_ else f.to(x_t.dtype)[:, None]
        g = f * w**w_pow * grad
        return -g if ret == "grad" else eps_model(x_t, t) - g

    return guided


add(
    "ch09",
    "classifier_guided_eps",
    "no_enable_grad",
    _cg(enable=False),
    r"enable_grad|no_grad|sampler",
)
add(
    "ch09",
    "classifier_guided_eps",
    "sum_over_classes",
    _cg(how="sum_classes"),
    r"class|gather|\by\b",
)
add("ch09", "classifier_guided_eps", "wrong_class", _cg(y_shift=1), r"class|label|\by\b")
add("ch09", "classifier_guided_eps", "alpha_bar_t_minus_1", _cg(t_shift=1), r"t ?- ?1|off")
add("ch09", "classifier_guided_eps", "w_squared", _cg(w_pow=2), r"\bw\b|weight|factor")
add("ch09", "classifier_guided_eps", "guidance_term_only", _cg(ret="grad"), r"ε_θ|eps_model|model")
add(
    "ch09",
    "classifier_guided_eps",
    "sqrt_alpha_bar",
    _cg(factor="sqrt_ab"),
    r"√ᾱ|√\(1|1 ?- ?ᾱ|signal",
)
add("ch09", "classifier_guided_eps", "float64", _cg(f64_=True), DTYPE)


def _cfg(*, null=None, sign=-1.0, kind="cfg", inplace=False):  # type: ignore[no-untyped-def]
    def cfg(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
        e_c = model(x_t, t, y)
        nl = null_label if null is None else null(null_label)
        if inplace:
            e_u = model(x_t, t, y.fill_(nl))
        else:
            e_u = model(x_t, t, torch.full_like(y, nl))
        if kind == "average":
            return 0.5 * (e_c + e_u)
        return (1 + w) * e_c + sign * w * e_u

    return cfg


add("ch09", "cfg_eps", "null_minus_one", _cfg(null=lambda n: -1), r"null|∅|label")
add("ch09", "cfg_eps", "plus_uncond", _cfg(sign=1.0), r"sign|minus|−w|-w|unconditional")
add("ch09", "cfg_eps", "average", _cfg(kind="average"), r"\bw\b|weight|(1 ?\+ ?w)")
add("ch09", "cfg_eps", "null_label_plus_one", _cfg(null=lambda n: n + 1), r"null|∅|label")
add("ch09", "cfg_eps", "fills_y_in_place", _cfg(inplace=True), INPLACE)


def _drop(
    *,
    ctx="grad",
    ret="tensor",
    gen_u=True,
    one_u=False,
    t_lo=1,
    null=None,
    model_x="x_t",
    reduce="mean",
):  # type: ignore[no-untyped-def]
    def loss(model, x0, y, ab, p, null_label, generator):  # type: ignore[no-untyped-def]
        T = ab.shape[0] - 1
        B = x0.shape[0]
        t = torch.randint(t_lo, T + t_lo, (B,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        kw = {"generator": generator} if gen_u else {}
        u = torch.rand(1, **kw).expand(B) if one_u else torch.rand(B, **kw)
        nl = null_label if null is None else null
        y_in = torch.where(u < p, torch.full_like(y, nl), y)
        a_ = ab[t.clamp(max=T)].to(x0.dtype)[:, None]
        x_t = a_.sqrt() * x0 + (1 - a_).sqrt() * noise
        cm = torch.no_grad() if ctx == "no_grad" else torch.enable_grad()
        with cm:
            err = (noise - model(x0 if model_x == "x0" else x_t, t, y_in)) ** 2
            out = err.mean() if reduce == "mean" else err.sum()
        return out.item() if ret == "item" else out

    return loss


add("ch09", "label_dropout_loss", "no_grad", _drop(ctx="no_grad"), GRADIENT)
add("ch09", "label_dropout_loss", "item", _drop(ret="item"), r"Python float|\.item|tensor itself")
add("ch09", "label_dropout_loss", "rand_without_generator", _drop(gen_u=False), r"generator")
add(
    "ch09",
    "label_dropout_loss",
    "one_draw_per_batch",
    _drop(one_u=True),
    r"one draw|per batch|each sample|every sample|whole batch",
)
add("ch09", "label_dropout_loss", "t_from_0", _drop(t_lo=0), r"range|\{1\.\.T\}|1, T \+ 1|t = 0")
add("ch09", "label_dropout_loss", "null_minus_one", _drop(null=-1), r"null|∅|label")
add("ch09", "label_dropout_loss", "x0_into_model", _drop(model_x="x0"), r"x0|x_0")
add("ch09", "label_dropout_loss", "sum", _drop(reduce="sum"), r"\bsum\b|mean")

# === chapter 10 ==================================================================================


def _psd(*, fft="fft2", norm=None, rnd="round", chan="mean", dtype=None, upto="half"):  # type: ignore[no-untyped-def]
    def radial(x):  # type: ignore[no-untyped-def]
        B, C, H, _ = x.shape
        X = torch.fft.fft2(x, norm=norm)
        X = torch.fft.fftshift(X, dim=(-2, -1))
        p = X.abs() ** 2
        p = {"mean": p.mean(1), "sum": p.sum(1), "first": p[:, 0]}[chan]
        c = torch.arange(H, dtype=torch.float64) - H // 2
        rr = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
        r = (rr.round() if rnd == "round" else rr.floor()).long()
        K = H // 2 + 1 if upto == "half" else int(r.max()) + 1
        out = torch.stack([p[:, r == k].mean(1) for k in range(K)], 1)
        return out.double() if dtype == "f64" else out

    return radial


add("ch10", "radial_psd", "ortho_norm", _psd(norm="ortho"), r"norm|factor|unnormali")
add("ch10", "radial_psd", "floor_radius", _psd(rnd="floor"), r"round|ring|radius")
add("ch10", "radial_psd", "sum_over_channels", _psd(chan="sum"), r"channel|factor")
add("ch10", "radial_psd", "first_channel_only", _psd(chan="first"), r"channel")
add("ch10", "radial_psd", "float64", _psd(dtype="f64"), DTYPE)
add("ch10", "radial_psd", "every_ring", _psd(upto="all"), r"shape|ring")

add(
    "ch10",
    "noised_psd",
    "noise_std",
    lambda p, ab, n: ab * p + (1 - ab) ** 0.5 * n,
    r"noise|√|square",
)
add(
    "ch10",
    "noised_psd",
    "pixels_squared",
    lambda p, ab, n: ab * p + (1 - ab) * n**2,
    r"\bN\b|pixel",
)
add("ch10", "noised_psd", "float64", lambda p, ab, n: (ab * p + (1 - ab) * n).double(), DTYPE)
add("ch10", "noised_psd", "in_place", lambda p, ab, n: p.mul_(ab).add_((1 - ab) * n), INPLACE)

add("ch10", "frequency_snr", "log", lambda p, ab, n: torch.log(ab * p / ((1 - ab) * n)), r"log")
add("ch10", "frequency_snr", "in_place", lambda p, ab, n: p.mul_(ab).div_((1 - ab) * n), INPLACE)
add(
    "ch10",
    "frequency_snr",
    "no_spectrum",
    lambda p, ab, n: torch.full_like(p, ab / ((1 - ab) * n)),
    r"P_0|psd0|spectrum",
)
add("ch10", "frequency_snr", "float64", lambda p, ab, n: (ab * p / ((1 - ab) * n)).double(), DTYPE)

# === chapter 11 ==================================================================================


def _emb(*, first="cos", denom="h", base=10_000.0, times_t=True, half_only=False):  # type: ignore[no-untyped-def]
    def emb(t, dim):  # type: ignore[no-untyped-def]
        h = dim // 2
        d = h - 1 if denom == "h-1" else h
        k = torch.arange(h, dtype=torch.float64)
        freqs = torch.exp(-math.log(base) * k / d)
        ph = (
            t.double()[:, None] if times_t else torch.ones(t.shape[0], 1, dtype=torch.float64)
        ) * freqs
        if half_only:
            return ph.cos()
        a, b = (ph.cos(), ph.sin()) if first == "cos" else (ph.sin(), ph.cos())
        return torch.cat([a, b], 1)

    return emb


add("ch11", "sinusoidal_embedding", "natural_log_base", _emb(base=math.e), r"10000|10 ?000")
add("ch11", "sinusoidal_embedding", "t_not_multiplied", _emb(times_t=False), r"\bt\b|timestep")
add("ch11", "sinusoidal_embedding", "cosines_only", _emb(half_only=True), r"shape|sin")

TI = lazy("ch11", "time_injection")
add("ch11", "time_injection", "float64", f64(TI), DTYPE)
add("ch11", "time_injection", "no_grad", no_grad(TI), GRADIENT)
add(
    "ch11",
    "time_injection",
    "detached_embedding",
    lambda h, e, w, b: h + (F.silu(e.detach()) @ w.T + b)[:, :, None, None],
    GRADIENT,
)
add(
    "ch11",
    "time_injection",
    "in_place",
    lambda h, e, w, b: h.add_((F.silu(e) @ w.T + b)[:, :, None, None]),
    INPLACE,
)
add(
    "ch11",
    "time_injection",
    "weight_not_transposed",
    lambda h, e, w, b: h + (F.silu(e) @ w + b)[:, :, None, None],
    r"transpose|\.T|weight",
)
add(
    "ch11",
    "time_injection",
    "relu",
    lambda h, e, w, b: h + (F.relu(e) @ w.T + b)[:, :, None, None],
    r"SiLU",
)
add(
    "ch11",
    "time_injection",
    "broadcast_last_axis",
    lambda h, e, w, b: h + (F.silu(e) @ w.T + b)[:, None, None, :],
    r"reshape|\[:, :, None, None\]|broadcast|shape|axis",
)
add(
    "ch11",
    "time_injection",
    "sigmoid",
    lambda h, e, w, b: h + (torch.sigmoid(e) @ w.T + b)[:, :, None, None],
    r"SiLU",
)

# === chapter 12 ==================================================================================

EMA = lazy("ch12", "ema_update")
add("ch12", "ema_update", "float64", f64(EMA), DTYPE)
add(
    "ch12",
    "ema_update",
    "in_place",
    lambda s, p, d, n: s.mul_(min(d, (1 + n) / (10 + n))).add_(
        (1 - min(d, (1 + n) / (10 + n))) * p
    ),
    INPLACE,
)
add(
    "ch12",
    "ema_update",
    "warm_n_over_10_plus_n",
    lambda s, p, d, n: min(d, n / (10 + n)) * s + (1 - min(d, n / (10 + n))) * p,
    r"\(1 ?\+ ?n\)|warm",
)
add(
    "ch12",
    "ema_update",
    "warm_up_only",
    lambda s, p, d, n: (1 + n) / (10 + n) * s + (1 - (1 + n) / (10 + n)) * p,
    r"min|decay",
)
add("ch12", "ema_update", "list", lambda s, p, d, n: EMA(s, p, d, n).tolist(), r"\blist\b")

add(
    "ch12",
    "warmup_lr",
    "zero_d_tensor",
    lambda st, lr, w: torch.tensor(lr if w == 0 else lr * min(1.0, st / w)),
    r"AdamW|float|tensor",
)
add(
    "ch12",
    "warmup_lr",
    "one_tuple",
    lambda st, lr, w: (lr if w == 0 else lr * min(1.0, st / w),),
    r"tuple|float",
)
add(
    "ch12",
    "warmup_lr",
    "none_without_warmup",
    lambda st, lr, w: None if w == 0 else lr * min(1.0, st / w),
    r"None|return",
)
add(
    "ch12",
    "warmup_lr",
    "integer_division",
    lambda st, lr, w: lr if w == 0 else lr * min(1, st // w),
    r"integer|//",
)
add(
    "ch12",
    "warmup_lr",
    "one_step_ahead",
    lambda st, lr, w: lr if w == 0 else lr * min(1.0, (st + 1) / w),
    r"ahead|step \+ 1|off by one|one step",
)
add(
    "ch12",
    "warmup_lr",
    "list",
    lambda st, lr, w: [lr if w == 0 else lr * min(1.0, st / w)],
    r"\blist\b|float",
)
add(
    "ch12",
    "warmup_lr",
    "divides_by_zero",
    lambda st, lr, w: lr * min(1.0, st / w),
    r"warmup_steps ?= ?0|ZeroDivision|divid",
)
add(
    "ch12",
    "warmup_lr",
    "decays_after_warmup",
    lambda st, lr, w: lr if w == 0 else (lr * st / w if st <= w else lr * w / st),
    r"after the warm-up|constant|decay",
)


# === a second set, written after the diagnoses and not used to tune them ====================
# ``table(HELD_OUT)`` measures how the diagnoses do on wrong answers they were not built for.

HELD_OUT: list[Mutant] = []


def held(chapter: str, name: str, key: str, fn: Fn, expect: str) -> None:
    HELD_OUT.append(Mutant(chapter, name, key, fn, expect))


held(
    "ch01",
    "alpha_bar_from_betas",
    "one_minus_cumprod_betas",
    lambda b: 1 - torch.cumprod(b, 0),
    r"product|cumprod|index 0|alpha_bar\[0\]",
)
held(
    "ch01",
    "q_sample",
    "noise_at_t_minus_1",
    lambda x0, t, ab, e: _col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t - 1], x0)).sqrt() * e,
    r"noise|t ?- ?1",
)
held(
    "ch01",
    "q_step",
    "noise_with_alpha_bar",
    lambda x, t, b, e: (
        (1 - _col(b[t], x)).sqrt() * x + (1 - _col(torch.cumprod(1 - b, 0)[t], x)).sqrt() * e
    ),
    r"noise",
)
held("ch01", "snr", "plus_in_denominator", lambda ab: ab / (1 + ab), r"ᾱ|denominator|1 ?[-−] ?ᾱ")
held(
    "ch01",
    "prior_kl",
    "variance_alpha_bar",
    lambda x0, ab: (0.5 * (ab + ab * x0**2 - 1 - math.log(ab))).sum(1),
    r"varian|σ²|x0 = 0",
)
held(
    "ch02",
    "posterior_mean_var",
    "variance_beta_t_minus_1",
    lambda x0, x_t, t, b, ab: (
        P(x0, x_t, t, b, ab)[0],
        _col((1 - ab[t - 1]) / (1 - ab[t]) * b[t - 1], x_t),
    ),
    r"varian|β",
)
held(
    "ch02",
    "mu_tilde_from_eps",
    "sqrt_one_minus_alpha_bar_eps",
    lambda x_t, t, e, b, ab: (x_t - _col(1 - ab[t], x_t).sqrt() * e) / _col(1 - b[t], x_t).sqrt(),
    r"eps|coefficient",
)
held(
    "ch03",
    "gaussian_kl",
    "minus_one_outside",
    lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2) - 1,
    r"constant|offset|½|- ?1|variance part",
)
held("ch03", "vlb_term", "halved", lambda *a: V(*a) / 2, r"factor|½|0\.5")
held(
    "ch03",
    "l_simple",
    "float_t",
    lambda m, x0, t, ab, e: (
        (e - m(_col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0)).sqrt() * e, t.float())) ** 2
    ).mean(),
    r"float|\bt\b",
)
held(
    "ch04",
    "ddpm_training_loss",
    "weighted_by_one_minus_alpha_bar",
    lambda m, x0, t, ab, e: (
        (1 - _col(ab[t], x0))
        * (e - m(_col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0)).sqrt() * e, t)) ** 2
    ).mean(),
    r"weight|factor",
)


def _uniform_noise(model, optimizer, x0, ab, generator):  # type: ignore[no-untyped-def]
    T = ab.shape[0] - 1
    t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator)
    loss = DL(model, x0, t, ab, torch.rand(x0.shape, generator=generator))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


held("ch04", "train_step", "uniform_noise", _uniform_noise, r"noise|replay|generator")
held(
    "ch04",
    "ancestral_step",
    "variances_swapped",
    lambda x_t, t, e, b, ab, v, z: AS(x_t, t, e, b, ab, "beta_tilde" if v == "beta" else "beta", z),
    r"varian|β̃|β_t|coefficient of z",
)


def _sample_float_t(eps_model, betas, ab, shape, variance, generator):  # type: ignore[no-untyped-def]
    step = sol("ch04")["ancestral_step"]
    x = torch.randn(shape, generator=generator)
    for s_ in range(betas.shape[0] - 1, 0, -1):
        t = torch.full((shape[0],), float(s_))
        x = step(
            x, t, eps_model(x, t), betas, ab, variance, torch.randn(shape, generator=generator)
        )
    return x


def _sample_x_T_float64(eps_model, betas, ab, shape, variance, generator):  # type: ignore[no-untyped-def]
    step = sol("ch04")["ancestral_step"]
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    for s_ in range(betas.shape[0] - 1, 0, -1):
        t = torch.full((shape[0],), s_, dtype=torch.long)
        x = step(
            x,
            t,
            eps_model(x.float(), t).double(),
            betas,
            ab,
            variance,
            torch.randn(shape, generator=generator),
        )
    return x


held("ch04", "sample", "float_t", _sample_float_t, r"in the line|index|\bt\b")
held("ch04", "sample", "float64_x_T", _sample_x_T_float64, DTYPE)
held(
    "ch05",
    "langevin_step",
    "half_noise",
    lambda x, s, e, z: x + e / 2 * s + 0.5 * math.sqrt(e) * z,
    r"noise",
)
held(
    "ch05",
    "annealed_step_sizes",
    "unsquared_denominator",
    lambda s, e: e * s**2 / s[-1],
    r"σ_L|factor|square",
)
held(
    "ch06",
    "dsm_target",
    "halved",
    lambda xt, x0, s: -(xt - x0) / s[:, None] ** 2 * 0.5,
    r"factor|½|0\.5",
)
held(
    "ch06",
    "dsm_loss",
    "per_sample",
    lambda m, x0, s, z: 0.5 * s**2 * ((m(x0 + s[:, None] * z, s) + z / s[:, None]) ** 2).sum(1),
    r"shape|scalar",
)


def _ism_plain_x(model, x):  # type: ignore[no-untyped-def]
    s_ = model(x)
    tr = sum(
        torch.autograd.grad(s_[:, i].sum(), x, create_graph=True)[0][:, i]
        for i in range(x.shape[1])
    )
    return (tr + 0.5 * (s_**2).sum(1)).mean()


held("ch06", "ism_loss", "x_without_requires_grad", _ism_plain_x, r"in the line|requires|gradient")
held(
    "ch06",
    "score_from_eps",
    "no_reshape_2d",
    lambda e, t, ab: (
        -e / (1 - ab[t].to(e.dtype)).sqrt()[:, None, None, None]
        if e.dim() == 4
        else -e / (1 - ab[t].to(e.dtype)).sqrt()
    ),
    r"reshape|\[:, None\]|broadcast",
)
held(
    "ch07",
    "vp_marginal",
    "swapped_outputs",
    lambda t, a, b: _marg(t, a, b)[::-1],
    r"swap|order|sigma|alpha|σ|α",
)
held(
    "ch07",
    "reverse_sde_drift",
    "beta_squared_on_score",
    lambda x, t, s, a, b: (
        -0.5 * (a + t * (b - a))[:, None] * x - ((a + t * (b - a)) ** 2)[:, None] * s
    ),
    r"score|g",
)
held(
    "ch07",
    "euler_maruyama_step",
    "no_f",
    lambda x, t, dt, sf, a, b, z: (
        x
        + (a + t * (b - a))[:, None] * sf(x, t) * dt
        + (a + t * (b - a))[:, None].sqrt() * math.sqrt(dt) * z
    ),
    r"\bf\b|drift|deterministic",
)


def _two_eulers(x, t, dt, sf, a, b):  # type: ignore[no-untyped-def]
    def F_(y, s_):  # type: ignore[no-untyped-def]
        beta = (a + s_ * (b - a))[:, None]
        return -0.5 * beta * y - 0.5 * beta * sf(y, s_)

    x2 = x - dt * F_(x, t)
    return x2 - dt * F_(x2, t - dt)


held("ch07", "pf_ode_heun_step", "two_euler_steps", _two_eulers, r"Heun|step|slope")
held(
    "ch08",
    "ddim_step_deterministic",
    "x0_with_alpha_bar_prev",
    lambda x_t, t, tp, e, ab: _ddim_x0prev(x_t, t, tp, e, ab),
    r"x̂|coefficient|ᾱ",
)
held(
    "ch08",
    "ddim_sigma",
    "no_eta",
    lambda t, tp, ab, eta: ((1 - ab[tp]) / (1 - ab[t])).sqrt() * (1 - ab[t] / ab[tp]).sqrt(),
    r"η|factor",
)
held(
    "ch08",
    "ddim_step",
    "sqrt_eta",
    lambda x_t, t, tp, e, ab, eta, z: sol("ch08")["ddim_step"](x_t, t, tp, e, ab, eta**0.5, z),
    r"σ|η",
)


def _cg_in_place(eps_model, classifier, x_t, t, y, ab, w):  # type: ignore[no-untyped-def]
    x_t.requires_grad_(True)
    lp = torch.log_softmax(classifier(x_t, t), 1).gather(1, y[:, None]).sum()
    (g,) = torch.autograd.grad(lp, x_t)
    return eps_model(x_t, t).detach() - (1 - ab[t]).sqrt().to(x_t.dtype)[:, None] * w * g


held(
    "ch09",
    "classifier_guided_eps",
    "requires_grad_on_input",
    _cg_in_place,
    r"enable_grad|no_grad|sampler",
)
held(
    "ch09",
    "cfg_eps",
    "one_minus_w",
    lambda m, x_t, t, y, w, n: (1 - w) * m(x_t, t, y) + w * m(x_t, t, torch.full_like(y, n)),
    r"ε|weight|\bw\b",
)


held(
    "ch10",
    "radial_psd",
    "rfft2",
    lambda x: torch.fft.rfft2(x).abs().pow(2).mean(1).mean(-1),
    r"shape",
)
held(
    "ch10",
    "noised_psd",
    "divided_by_pixels",
    lambda p, ab, n: (ab * p + (1 - ab) * n) / n,
    r"\bN\b|factor|pixel",
)
held(
    "ch10",
    "frequency_snr",
    "sqrt_noise",
    lambda p, ab, n: ab * p / ((1 - ab) * n) ** 0.5,
    r"\bN\b|√|square|factor",
)
held(
    "ch11",
    "sinusoidal_embedding",
    "wrong_axis",
    lambda t, d: torch.cat([_emb()(t, d)[:, : d // 2], _emb()(t, d)[:, d // 2 :]], 0),
    r"shape",
)
held(
    "ch11",
    "time_injection",
    "one_trailing_axis",
    lambda h, e, w, b: h + (F.silu(e) @ w.T + b).unsqueeze(-1),
    r"reshape|broadcast|shape|axis",
)
held(
    "ch12",
    "ema_update",
    "no_update",
    lambda s_, p_, d, n: s_.clone(),
    r"\bd\b|decay|shadow|param|missing",
)


def _ddim_x0prev(x_t, t, tp, e, ab):  # type: ignore[no-untyped-def]
    a_p = ab[tp][:, None].to(x_t.dtype)  # x̂_0 with ᾱ_prev where ᾱ_t belongs
    x0 = (x_t - (1 - a_p).sqrt() * e) / a_p.sqrt()
    return a_p.sqrt() * x0 + (1 - a_p).sqrt() * e


def _mk_opt_alias(model, opt, gen, step):  # type: ignore[no-untyped-def]
    import copy

    return {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "step": step,
    }


def _mk_gen_object(model, opt, gen, step):  # type: ignore[no-untyped-def]
    import copy

    return {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "generator": gen,
        "step": step,
    }


def _rs_no_model(ckpt, model, opt, gen):  # type: ignore[no-untyped-def]
    opt.load_state_dict(ckpt["optimizer"])
    gen.set_state(ckpt["generator"])
    return ckpt["step"]


def _rs_float_step(ckpt, model, opt, gen):  # type: ignore[no-untyped-def]
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    gen.set_state(ckpt["generator"])
    return float(ckpt["step"])


add(
    "ch12", "make_checkpoint", "optimizer_aliased", _mk_opt_alias, r"optimizer.*later step|deepcopy"
)
add("ch12", "make_checkpoint", "generator_object", _mk_gen_object, r"generator itself|get_state")
add("ch12", "make_checkpoint", "list", lambda m, o, g, s: [m.state_dict()], r"\blist\b|dict")
add("ch12", "restore_checkpoint", "no_model", _rs_no_model, r"weights|load_state_dict")
add("ch12", "restore_checkpoint", "float_step", _rs_float_step, r"float|int")
add(
    "ch12",
    "frechet_distance",
    "tensor",
    lambda m1, c1, m2, c2: torch.tensor(sol("ch12")["frechet_distance"](m1, c1, m2, c2)),
    r"float",
)
add(
    "ch12",
    "frechet_distance",
    "covariances_swapped_in_root",
    lambda m1, c1, m2, c2: sol("ch12")["frechet_distance"](m1, c2, m2, c1) + 0.1,
    r"constant|offset|expected|0\.1",
)
add(
    "ch12",
    "fid_at_infinity",
    "fit_without_intercept",
    lambda ns, fids: 0.0,
    r"expected|differs|constant",
)


# --- ten more, written after the diagnoses for the four above were added --------------------


def _em_g_not_squared(x, t, dt, sf, a, b, z):  # type: ignore[no-untyped-def]
    beta = (a + t * (b - a))[:, None]  # g = sqrt(beta) on the score where g² = beta belongs
    return x - dt * (-0.5 * beta * x - beta.sqrt() * sf(x, t)) + beta.sqrt() * math.sqrt(dt) * z


def _ema_uncapped(s_, p_, d, n):  # type: ignore[no-untyped-def]
    dd = (1 + n) / (10 + n)  # the warm-up decay alone, never capped by `decay`
    return dd * s_ + (1 - dd) * p_


held(
    "ch01",
    "prior_kl",
    "mean_part_only",
    lambda x0, ab: (0.5 * ab * x0**2).sum(1),
    r"varian|σ²|x0 = 0|log|term",
)
held(
    "ch02",
    "mu_tilde_from_eps",
    "times_sqrt_alpha_for_divide",
    lambda x_t, t, e, b, ab: (
        (x_t - _col(b[t] / (1 - ab[t]).sqrt(), x_t) * e) * _col(1 - b[t], x_t).sqrt()
    ),
    r"α|alpha|factor|divide|coefficient",
)
held(
    "ch03",
    "gaussian_kl",
    "no_half_on_log",
    lambda m1, v1, m2, v2: torch.log(v2 / v1) + 0.5 * ((v1 + (m1 - m2) ** 2) / v2 - 1),
    r"log|½|variance part|term",
)
held(
    "ch04",
    "ddpm_training_loss",
    "scaled_noise_target",
    lambda m, x0, t, ab, e: (
        (
            (1 - _col(ab[t], x0)).sqrt() * e
            - m(_col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0)).sqrt() * e, t)
        )
        ** 2
    ).mean(),
    r"target|noise|ε|coefficient|weight",
)
held(
    "ch05",
    "langevin_step",
    "eps_squared_on_score",
    lambda x, s, e, z: x + e**2 / 2 * s + math.sqrt(e) * z,
    r"score|ε|step|factor",
)
held("ch07", "euler_maruyama_step", "g_not_squared", _em_g_not_squared, r"score|g²|g\(t\)²|β\(t\)")
held(
    "ch08",
    "ddim_step_deterministic",
    "x0_not_divided",
    lambda x_t, t, tp, e, ab: (
        ab[tp][:, None].to(x_t.dtype).sqrt() * (x_t - (1 - ab[t][:, None].to(x_t.dtype)).sqrt() * e)
        + (1 - ab[tp][:, None].to(x_t.dtype)).sqrt() * e
    ),
    r"x̂|coefficient|√ᾱ|divide",
)
held(
    "ch09",
    "cfg_eps",
    "w_missing_on_uncond",
    lambda m, x_t, t, y, w, n: (1 + w) * m(x_t, t, y) - m(x_t, t, torch.full_like(y, n)),
    r"ε|weight|\bw\b",
)
held(
    "ch10",
    "noised_psd",
    "sqrt_pixels",
    lambda p, ab, n: ab * p + (1 - ab) * n**0.5,
    r"\bN\b|pixel|noise|√",
)
held("ch12", "ema_update", "decay_not_capped", _ema_uncapped, r"decay|min|\bd\b|warm")


def _mk_step_plus_one(model, opt, gen, step):  # type: ignore[no-untyped-def]
    import copy

    return {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "generator": gen.get_state(),
        "step": step + 1,  # the next step stored in place of the last one taken
    }


def _rs_step_plus_one(ckpt, model, opt, gen):  # type: ignore[no-untyped-def]
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    gen.set_state(ckpt["generator"])
    return ckpt["step"] + 1


held(
    "ch01",
    "prior_kl",
    "mean_over_dims",
    lambda x0, ab: (0.5 * (ab * x0**2 + (1 - ab) - 1 - math.log(1 - ab))).mean(1),
    r"mean where a sum|sum over",
)
held(
    "ch01",
    "prior_kl",
    "std_in_variance_term",
    lambda x0, ab: (0.5 * (ab * x0**2 + (1 - ab) ** 0.5 - 1 - math.log(1 - ab))).sum(1),
    r"variance term is σ|standard deviation",
)
held(
    "ch01",
    "prior_kl",
    "log_sign",
    lambda x0, ab: (0.5 * (ab * x0**2 + (1 - ab) - 1 + math.log(1 - ab))).sum(1),
    r"log term has the wrong sign",
)
held(
    "ch12",
    "warmup_lr",
    "no_zero_branch",
    lambda step, lr, warmup: lr * min(1.0, step / warmup),
    r"denominator zero",
)
held(
    "ch05",
    "stationary_variance",
    "first_order_with_branch",
    lambda s2, e: math.inf if e >= 4 * s2 else s2 * (1 + e / (4 * s2)),
    r"first-order",
)
held(
    "ch05",
    "step_for_bias",
    "tolerance_on_std",
    lambda s2, tol: 4 * s2 * (1 - 1 / (1 + tol) ** 2),
    r"standard deviation",
)


def _vp_alpha_squared(t, bmin, bmax):  # type: ignore[no-untyped-def]
    alpha2 = torch.exp(-(bmin * t + 0.5 * (bmax - bmin) * t**2))  # ᾱ returned as α
    return alpha2, torch.sqrt(1 - alpha2)


def _sigma_variance_eta(t, tp, ab, eta):  # type: ignore[no-untyped-def]
    a, ap = ab[t], ab[tp]
    return eta * ((1 - ap) / (1 - a)) * (1 - a / ap)


def _sigma_upside_down(t, tp, ab, eta):  # type: ignore[no-untyped-def]
    a, ap = ab[t], ab[tp]
    return eta * ((1 - a) / (1 - ap)).sqrt() * (1 - a / ap).sqrt()


def _ddim_x0_over_alpha_bar(x, t, tp, e, ab):  # type: ignore[no-untyped-def]
    a, ap = ab[t][:, None].to(x.dtype), ab[tp][:, None].to(x.dtype)
    return ap.sqrt() * (x - (1 - a).sqrt() * e) / a + (1 - ap).sqrt() * e


def _fd_elementwise_root(m1, c1, m2, c2):  # type: ignore[no-untyped-def]
    cross = torch.trace((c1 @ c2).clamp(min=0).sqrt())
    return float(((m1 - m2) ** 2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * cross)


def _pmv_slip(x0_alpha_bar_t: bool):  # type: ignore[no-untyped-def]
    def pmv(x0, x_t, t, betas, ab):  # type: ignore[no-untyped-def]
        beta, a, ap = _col(betas[t], x_t), _col(ab[t], x_t), _col(ab[t - 1], x_t)
        c0 = (a if x0_alpha_bar_t else ap).sqrt() * beta / (1 - a)
        ct = (1 - beta) ** (0.5 if x0_alpha_bar_t else 1.0) * (1 - ap) / (1 - a)
        return c0 * x0 + ct * x_t, (1 - ap) / (1 - a) * beta

    return pmv


held(
    "ch02", "posterior_mean_var", "alpha_bar_t_in_x0_coefficient", _pmv_slip(True), r"ᾱ_t in place"
)
held(
    "ch02",
    "posterior_mean_var",
    "alpha_not_sqrt_in_xt",
    _pmv_slip(False),
    r"without its square root",
)
held("ch07", "vp_marginal", "alpha_squared", _vp_alpha_squared, r"alpha\(t\)²|continuous ᾱ")
held("ch08", "ddim_sigma", "variance_with_eta", _sigma_variance_eta, r"variance|standard deviation")
held("ch08", "ddim_sigma", "ratio_upside_down", _sigma_upside_down, r"upside down")
held(
    "ch08",
    "ddim_step_deterministic",
    "x0_over_alpha_bar",
    _ddim_x0_over_alpha_bar,
    r"divides by ᾱ_t where √ᾱ_t",
)
held(
    "ch10",
    "frequency_snr",
    "amplitude_coefficients",
    lambda p, ab, n: math.sqrt(ab) * p / (math.sqrt(1 - ab) * n),
    r"√ᾱ and √\(1 − ᾱ\)|squares",
)
held("ch12", "frechet_distance", "elementwise_root", _fd_elementwise_root, r"elementwise")
held("ch12", "make_checkpoint", "step_plus_one", _mk_step_plus_one, r"stores step")
held("ch12", "restore_checkpoint", "step_plus_one", _rs_step_plus_one, r"returns \d+ .*step")

# --- measuring ---------------------------------------------------------------------------------


def run(mutant: Mutant) -> tuple[bool, str]:
    """Run the checker of ``mutant``; return (rejected, message)."""
    import importlib

    module = importlib.import_module(f"minidiff.checks.{mutant.chapter}")
    res = getattr(module, f"check_{mutant.name}")(mutant.fn, display=False)
    return (not res.passed), res.message


def table(mutants: list[Mutant] | None = None) -> dict[str, tuple[int, int, int]]:
    """Per chapter: (mutants, rejected, rejected with a specific message)."""
    out: dict[str, list[int]] = {}
    for m in MUTANTS if mutants is None else mutants:
        rejected, message = run(m)
        row = out.setdefault(m.chapter, [0, 0, 0])
        row[0] += 1
        row[1] += rejected
        row[2] += rejected and m.specific(message)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    verbose = "-v" in sys.argv
    which = HELD_OUT if "--held-out" in sys.argv else MUTANTS
    tot = [0, 0, 0]
    for m in which:
        rejected, message = run(m)
        ok = rejected and m.specific(message)
        if verbose and not ok:
            print(f"{'GENERIC' if rejected else 'PASSED'} {m.id}: {message}")
    for ch, (n, r, s) in table(which).items():
        tot = [tot[0] + n, tot[1] + r, tot[2] + s]
        print(f"{ch}: {n:3d} mutants, {r:3d} rejected, {s:3d} specific ({s / n:.0%})")
    n, r, s = tot
    print(f"all : {n:3d} mutants, {r:3d} rejected, {s:3d} specific ({s / n:.0%})")
