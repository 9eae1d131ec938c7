"""Checkers for exercise 4 (DDPM: Algorithm 1 and Algorithm 2 by hand).

The student writes, on explicit schedule arrays (length ``T + 1``, index 0 = clean data):

- ``ddpm_training_loss(eps_model, x0: (B, D), t: (B,), alpha_bar, noise: (B, D)) -> scalar``
      ``L_simple = mean ||noise - eps_model(sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, t)||²``
- ``train_step(model, optimizer, x0: (B, D), alpha_bar, generator) -> float``
      one step of Algorithm 1: ``t ~ U{1..T}`` (drawn first), ``noise ~ N(0, I)`` (drawn second),
      zero the gradients, backward, optimizer step; returns the loss
- ``ancestral_step(x_t, t: (B,), eps, betas, alpha_bar, variance, z) -> x_{t-1}``
      ``(x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) + sigma_t z`` with ``sigma_t² = beta_t``
      or ``beta_tilde_t``, and no noise where ``t == 1``
- ``sample(eps_model, betas, alpha_bar, shape, variance, generator) -> x_0``
      Algorithm 2: ``x_T = randn(shape)``, then for ``t = T..1`` draw ``z = randn(shape)`` (at every
      step, also ``t = 1``) and apply ``ancestral_step``

References come from ``minidiff`` (``simple_loss``, ``ddpm_step``, ``ddpm_sample``). The two
checkers of procedures (``train_step``, ``sample``) run the student's function inside a fixed
*harness* (a fresh model, optimizer and generator per case), so the mistakes are whole wrong
procedures; ``SPECS[name].mistakes`` holds them in the student's own signature and
``SPECS[name].wrapped_mistakes()`` as functions of the cases.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..losses import simple_loss
from ..samplers.ddpm import ddpm_sample, ddpm_step
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._calls import (
    ReturnError,
    case_timesteps,
    schedule_from_alpha_bar,
    schedule_from_betas,
    seeded_mlp,
)
from ._core import (
    Case,
    Checker,
    Mistake,
    Spec,
    Terms,
    returned_number,
    returned_tensor,
    specs_of,
)
from ._probe import schedule_candidates
from ._spy import Spy, draw_problem, eps_loss_calls, t_range_problem

Fn = Callable[..., Any]


def _schedules() -> list[NoiseSchedule]:
    # Short schedules with large betas, so that ab vs sqrt(ab) or beta vs beta_tilde differ clearly.
    return [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)]


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    return case_timesteps(T, B, seed, start=(1, 2))  # where off-by-one and last-step errors show


def _col(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


class TinyEps(nn.Module):
    """A small deterministic ``eps_model(x (B, D), t (B,)) -> (B, D)`` used by the checkers.

    ``t`` enters through ``t / T``, so an off-by-one in ``t`` changes the output. Weights are
    drawn from a fixed seed.
    """

    def __init__(self, T: int, dim: int = 2, hidden: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.T = T
        self.net = seeded_mlp(dim + 1, hidden, dim, seed)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x.shape[0]:
            what = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"eps_model(x, t) needs t as a (B,) tensor with B = {x.shape[0]}, one timestep per "
                f"sample; it got {what}"
            )
        if t.is_floating_point():
            scaled = " (t / T? pass t itself: the model scales it)" if bool((t <= 1).all()) else ""
            raise TypeError(
                "eps_model(x_t, t) takes t as the integer timesteps, a long tensor (B,), like the "
                f"course's networks; it got {t.dtype}{scaled}"
            )
        h = torch.cat([x, (t.to(x.dtype) / self.T)[:, None]], dim=1)
        return self.net(h)


# --- ddpm_training_loss ------------------------------------------------------------------------


def _cases_loss() -> list[Case]:
    cases: list[Case] = []
    for i, s in enumerate(_schedules()):
        g = torch.Generator().manual_seed(40 + i)
        x0, noise = torch.randn(7, 2, generator=g), torch.randn(7, 2, generator=g)
        model = TinyEps(s.T, seed=i)  # trainable: the loss must keep its gradient
        cases.append(((model, x0, _ts(s.T, 7, 50 + i), s.alpha_bar.clone(), noise), {}))
    return cases


def _ref_loss(
    eps_model: Fn, x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    return simple_loss(eps_model, x0, schedule_from_alpha_bar(alpha_bar), t=t, noise=noise)


def _loss_with(
    x_t_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], reduce: str = "mean"
) -> Fn:
    def loss(
        eps_model: Fn,
        x0: torch.Tensor,
        t: torch.Tensor,
        alpha_bar: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        x_t = x_t_fn(x0, noise, alpha_bar.to(x0.device)[t].to(x0.dtype)[:, None])
        err = (noise - eps_model(x_t, t)) ** 2
        return err.mean() if reduce == "mean" else err.sum(dim=1).mean()

    return loss


def _loss_off_by_one(
    eps_model: Fn, x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    ab = alpha_bar[t - 1].to(x0.dtype)[:, None]
    return ((noise - eps_model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t)) ** 2).mean()


def _loss_x0_target(
    eps_model: Fn, x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    ab = alpha_bar[t].to(x0.dtype)[:, None]
    return ((x0 - eps_model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t)) ** 2).mean()


_LOSS = Spec(
    _cases_loss,
    _ref_loss,
    {
        "alpha_bar_not_sqrt": Mistake(
            _loss_with(lambda x0, e, ab: ab * x0 + (1 - ab).sqrt() * e),
            "x_t uses ᾱ_t x_0; the signal coefficient is √ᾱ_t: x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε.",
        ),
        "noise_coef_not_sqrt": Mistake(
            _loss_with(lambda x0, e, ab: ab.sqrt() * x0 + (1 - ab) * e),
            "the noise is scaled by (1-ᾱ_t); it should be its square root √(1-ᾱ_t) (a standard "
            "deviation, not a variance).",
        ),
        "off_by_one": Mistake(
            _loss_off_by_one,
            "you used ᾱ_{t-1}. Schedule arrays are indexed so that alpha_bar[t] is ᾱ_t (index 0 "
            "is clean data).",
        ),
        "x0_target": Mistake(
            _loss_x0_target,
            "you compared the model's output with x_0. In L_simple the network predicts the "
            "noise: ||ε - ε_θ(x_t, t)||².",
        ),
        "sum_over_dims": Mistake(
            _loss_with(lambda x0, e, ab: ab.sqrt() * x0 + (1 - ab).sqrt() * e, reduce="sum"),
            "you summed the squared error over data dimensions; average over every element "
            "(batch and dimensions): .mean().",
        ),
    },
    calls=eps_loss_calls(lambda case: schedule_candidates(case[0][3], case[0][2])),
    keep_dtype=True,
    doc="""Check ``ddpm_training_loss(eps_model, x0, t, alpha_bar, noise) -> scalar`` (L_simple).

    Shapes: ``x0, noise: (B, D)``, ``alpha_bar: (T+1,)``, ``t: (B,)`` long.
    """,
)
check_ddpm_training_loss = Checker("ddpm_training_loss", _LOSS)


# --- train_step ---------------------------------------------------------------------------------

_LR = 0.05


def _train_harness(fn: Fn) -> Fn:
    """Run ``fn(model, optimizer, x0, alpha_bar, generator)`` twice on a fresh model; return
    ``(loss_1, loss_2, parameters after step 2)``. ``record`` (a list) receives the model's
    :class:`Spy` and the parameters after each step, for the diagnoses."""

    def run(
        T: int, seed: int, gen_seed: int | None = None, record: list[Any] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sched = linear_schedule(T, 0.01, 0.2)
        model: nn.Module = TinyEps(T, seed=seed)
        opt = torch.optim.SGD(model.parameters(), lr=_LR)
        if record is not None:
            model = Spy(model)
            record.append(model)
        data_gen = torch.Generator().manual_seed(100 + seed)
        gen = torch.Generator().manual_seed(200 + seed if gen_seed is None else gen_seed)
        losses = []
        for _ in range(2):
            x0 = torch.randn(16, 2, generator=data_gen)
            value = fn(model, opt, x0, sched.alpha_bar.clone(), gen)
            if isinstance(value, torch.Tensor) and value.requires_grad:
                raise ReturnError(
                    "returned the loss tensor with its graph; return it as a Python float, "
                    "`loss.item()` (a tensor keeps the whole graph of the step alive, and a list "
                    "of them fills the memory over a long run)"
                )
            out = returned_number(value)
            losses.append(torch.tensor(out, dtype=torch.float64))
            if record is not None:
                record.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
        params = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
        return losses[0], losses[1], params

    return run


def _train_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """The draws of the first step (t, then the noise) against the replayed generator, then the
    weights after the first step against one SGD step."""
    for (T, seed), _ in cases:
        rec: list[Any] = []
        again: list[Any] = []
        other: list[Any] = []
        ref: list[Any] = []
        got = student(T, seed, record=rec)
        student(T, seed, record=again)
        student(T, seed, 999, record=other)
        reference(T, seed, record=ref)
        spy, spy2, spy_r = rec[0], again[0], ref[0]
        if not spy.calls:
            return "your step never calls the model: the loss compares its output with the noise."
        x, t = spy.calls[0][0], spy.calls[0][1]
        x_r, t_r = spy_r.calls[0][0], spy_r.calls[0][1]
        if not t.is_floating_point() and t.shape == t_r.shape:
            problem = t_range_problem(t, T) or draw_problem(
                "timesteps t",
                t,
                spy2.calls[0][1],
                t_r,
                "torch.randint(1, T + 1, (B,), generator=generator), drawn first",
                other[0].calls[0][1] if other[0].calls else None,
            )
            if problem:
                return problem + "."
        if torch.equal(t, t_r) and x.shape == x_r.shape:
            ab = linear_schedule(T, 0.01, 0.2).alpha_bar.to(x.dtype)[t][:, None]
            x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(100 + seed))
            noise, noise_r = ((v - ab.sqrt() * x0) / (1 - ab).sqrt() for v in (x, x_r))
            noise2 = (spy2.calls[0][0] - ab.sqrt() * x0) / (1 - ab).sqrt()
            problem = draw_problem(
                "noise",
                noise,
                noise2,
                noise_r,
                "torch.randn(x0.shape, generator=generator), drawn after t; torch.randn_like "
                "takes no generator",
            )
            if problem:
                return problem + "."
        if torch.allclose(got[0], ref_loss := reference(T, seed)[0], rtol=rtol, atol=atol):
            start = TinyEps(T, seed=seed)
            p0 = torch.cat([p.detach().reshape(-1) for p in start.parameters()])
            moved, moved_r = rec[1] - p0, ref[1] - p0
            if not torch.allclose(moved, moved_r, rtol=1e-4, atol=1e-7):
                ratio = float((moved * moved_r).sum() / (moved_r * moved_r).sum())
                if abs(ratio) < 1e-6:
                    what = "did not move"
                elif abs(ratio - 2) < 1e-2:
                    what = "moved twice as far as one optimizer step (two optimizer.step() calls?)"
                else:
                    what = f"moved {ratio:.3g} × as far as one optimizer step"
                return (
                    f"your first loss is right ({float(ref_loss):.5g}), but after it the weights "
                    f"{what}. One step is optimizer.zero_grad(), loss.backward(), "
                    "optimizer.step(), each once, in this order."
                )
    return None


def _train_step(
    *,
    t_low: int = 1,
    t_high: int = 1,
    noise_first: bool = False,
    calls: Sequence[str] = ("zero_grad", "backward", "step"),
) -> Callable[..., float]:
    """``train_step`` (Algorithm 1), or a slip of it, as ``(model, optimizer, x0, ab, g) -> loss``.

    ``t ~ randint(t_low, T + t_high)`` (right: ``{1..T}``), drawn before the noise unless
    ``noise_first``; then the optimizer ``calls`` in this order (right: zero_grad, backward, step).
    """

    def step(
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        x0: torch.Tensor,
        alpha_bar: torch.Tensor,
        generator: torch.Generator,
    ) -> float:
        T, B = alpha_bar.shape[0] - 1, x0.shape[0]
        if noise_first:
            noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(t_low, T + t_high, (B,), generator=generator)
        if not noise_first:
            noise = torch.randn(x0.shape, generator=generator)
        # t = 0 (a slip) gives x_t = x_0, which the package's loss refuses: computed by hand then
        loss = (_ref_loss if t_low >= 1 else _loss_any_t)(model, x0, t, alpha_bar, noise)
        actions: dict[str, Callable[[], object]] = {
            "zero_grad": optimizer.zero_grad,
            "backward": loss.backward,
            "step": optimizer.step,
        }
        for name in calls:
            actions[name]()
        return loss.item()

    return step


def _loss_any_t(
    model: Fn, x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    ab = alpha_bar[t].to(x0.dtype)[:, None]
    return ((noise - model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t)) ** 2).mean()


def _reseed(case: Case, k: int) -> Case:
    (T, seed, *_), kwargs = case
    return (T, seed, 1000 + k), kwargs


_TRAIN = Spec(
    lambda: [((20, 0), {}), ((12, 1), {})],
    _train_harness(_train_step()),
    {
        "no_zero_grad": Mistake(
            _train_step(calls=("backward", "step")),
            "the first step is right but the second is not: gradients accumulate across steps. "
            "Call optimizer.zero_grad() before loss.backward().",
        ),
        "no_update": Mistake(
            _train_step(calls=("backward", "zero_grad", "step")),
            "the weights did not change. Order: optimizer.zero_grad(), loss.backward(), "
            "optimizer.step().",
        ),
        "t_from_zero": Mistake(
            _train_step(t_low=0, t_high=0),
            "t was drawn from {0..T-1}; Algorithm 1 draws t ~ Uniform{1..T}: torch.randint(1, T "
            "+ 1, ...).",
        ),
        "t_excludes_T": Mistake(
            _train_step(t_high=0),
            "t was drawn from {1..T-1}: torch.randint(1, T, ...) excludes its upper bound, so t "
            "= T never appears. Algorithm 1 draws t ~ Uniform{1..T}: torch.randint(1, T + 1, "
            "...).",
        ),
        "noise_first": Mistake(
            _train_step(noise_first=True),
            "draw t first and the noise second (the check replays the same generator), as the "
            "exercise says.",
        ),
    },
    wrap=_train_harness,
    reseed=_reseed,
    diagnoses=(_train_diagnosis,),
    hint="If your formula is right, check the random numbers: the checker replays them, so draw "
    "t first with torch.randint(1, T + 1, (B,), generator=generator), then the noise with "
    "torch.randn(x0.shape, generator=generator).",
    doc="""Check ``train_step(model, optimizer, x0 (B, D), alpha_bar (T+1,), generator) -> float``
    over two steps.
    """,
)
check_train_step = Checker("train_step", _TRAIN)


# --- ancestral_step ----------------------------------------------------------------------------


def _cases_step() -> list[Case]:
    cases: list[Case] = []
    for i, s in enumerate(_schedules()):
        for variance in ("beta", "beta_tilde"):
            g = torch.Generator().manual_seed(60 + i)
            x_t, eps, z = (torch.randn(8, 2, generator=g) for _ in range(3))
            t = _ts(s.T, 8, 70 + i)
            if i == 1:  # a batch that starts with t > 1: "if t[0] > 1" must not look right
                t = t.roll(2)
            cases.append(
                (
                    (
                        x_t,
                        t,
                        eps,
                        s.betas.clone(),
                        s.alpha_bar.clone(),
                        variance,
                        z,
                    ),
                    {},
                )
            )
    return cases


def _finite(fn: Fn) -> Fn:
    # t - 1 indexing divides 0 by 0 at t = 1; a sentinel keeps that answer comparable.
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return torch.nan_to_num(out.detach(), nan=1e6, posinf=1e6, neginf=-1e6)
        return out

    return run


def _ref_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    betas: torch.Tensor,
    alpha_bar: torch.Tensor,
    variance: str,
    z: torch.Tensor,
) -> torch.Tensor:
    return ddpm_step(x_t, t, eps, schedule_from_betas(betas), variance=variance, noise=z)


def _step_variant(
    *,
    var_rule: str = "asked",
    noise_at_1: bool = False,
    never_noise: bool = False,
    eps_coef: str = "sqrt",
    inv_alpha: str = "sqrt",
    shift: int = 0,
) -> Fn:
    def step(
        x_t: torch.Tensor,
        t: torch.Tensor,
        eps: torch.Tensor,
        betas: torch.Tensor,
        alpha_bar: torch.Tensor,
        variance: str,
        z: torch.Tensor,
    ) -> torch.Tensor:
        ti = t - shift
        b, ab = betas.double(), alpha_bar.double()
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        beta_tilde = torch.where(
            1 - ab > 0, (1 - ab_prev) / (1 - ab).clamp(min=1e-300) * b, torch.zeros_like(b)
        )
        beta_t, ab_t = _col(b, ti, x_t), _col(ab, ti, x_t)
        coef = beta_t / ((1 - ab_t).sqrt() if eps_coef == "sqrt" else (1 - ab_t))
        alpha_t = 1 - beta_t
        mean = (x_t - coef * eps) / (alpha_t.sqrt() if inv_alpha == "sqrt" else alpha_t)
        use = variance if var_rule == "asked" else var_rule
        var = _col(b if use == "beta" else beta_tilde, ti, x_t)
        if never_noise:
            return mean
        mask = torch.ones_like(var) if noise_at_1 else (t > 1).to(x_t.dtype).reshape(var.shape)
        return mean + mask * var.sqrt() * z

    return step


def _step_candidates(case: Case) -> dict[str, torch.Tensor]:
    x_t, t, _, betas, alpha_bar, variance, _ = case[0]
    ab = alpha_bar.double()
    a_t, a_p = ab[t], ab[t - 1]
    beta = 1 - a_t / a_p
    tilde = (1 - a_p) / (1 - a_t) * beta
    on = (t > 1).double()
    sd = beta.sqrt() if variance == "beta" else tilde.sqrt()
    extra = {
        "σ_t = √β_t where t > 1, 0 at t = 1": beta.sqrt() * on,
        "σ_t = √β̃_t where t > 1, 0 at t = 1": tilde.sqrt() * on,
        f"σ_t² ({'β_t' if variance == 'beta' else 'β̃_t'}), the variance (the noise is scaled "
        "by the standard deviation σ_t)": sd**2 * on,
        "σ_t also at t = 1": sd,
        "−β_t / (√α_t √(1 − ᾱ_t))": -beta / ((1 - beta).sqrt() * (1 - a_t).sqrt()),
        "−β_t / (√ᾱ_t √(1 − ᾱ_t))": -beta / (a_t.sqrt() * (1 - a_t).sqrt()),
        "−(1 − α_t) / (√α_t √(1 − α_t)) (the decks' Algorithm 2 has √(1 − α_t) where √(1 − ᾱ_t) "
        "belongs: see the table of slips in the course tour)": -beta.sqrt() / (1 - beta).sqrt(),
        "−β_t / (√α_t (1 − ᾱ_t))": -beta / ((1 - beta).sqrt() * (1 - a_t)),
    }
    return schedule_candidates(ab, t, extra)


def _noise_per_batch(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """Noise switched on or off for the whole batch by one sample's t (``if t[0] > 1``)."""
    seen = False
    for args, kw in cases:
        z0 = (*args[:6], torch.zeros_like(args[6]))
        d = student(*args, **kw) - student(*z0, **kw)
        t = args[1]
        on = (d.abs().reshape(d.shape[0], -1).amax(1) > 0)[t > 1]
        if not (bool(on.all()) or bool((~on).all())):  # decided per sample
            return None
        if bool(on.all()) != bool(t[0] > 1):
            return None
        seen = seen or bool(t[0] == 1)
    if not seen:
        return None
    return (
        "whether your step adds noise depends on the first sample's t (like `if t[0] > 1:`), not "
        "on each sample's own t: multiply σ_t z by the mask (t > 1) per sample, so that only the "
        "samples at t = 1 get none."
    )


_STEP = Spec(
    _cases_step,
    _finite(_ref_step),
    {
        "beta_instead_of_beta_tilde": Mistake(
            _step_variant(var_rule="beta"),
            "with variance='beta_tilde' you used σ_t² = β_t. β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t) β_t.",
        ),
        "beta_tilde_instead_of_beta": Mistake(
            _step_variant(var_rule="beta_tilde"),
            "with variance='beta' you used β̃_t; σ_t² = β_t is asked for there.",
        ),
        "noise_at_last_step": Mistake(
            _step_variant(noise_at_1=True),
            "you added noise at t = 1. The last step returns the mean: x_0 = μ_θ(x_1, 1), z = 0 "
            "where t == 1.",
        ),
        "never_noise": Mistake(
            _step_variant(never_noise=True),
            "you never added σ_t z. For t > 1, x_{t-1} = μ_θ + σ_t z.",
        ),
        "one_minus_alpha_bar_not_sqrt": Mistake(
            _step_variant(eps_coef="plain"),
            "the ε coefficient in the mean is β_t / √(1-ᾱ_t), not β_t / (1-ᾱ_t).",
        ),
        "inv_alpha_not_sqrt": Mistake(
            _step_variant(inv_alpha="plain"),
            "you divided by α_t; the mean is (x_t - β_t/√(1-ᾱ_t) ε) / √α_t.",
        ),
        "off_by_one": Mistake(
            _step_variant(shift=1),
            "you read the schedule at t-1 (β_{t-1}, ᾱ_{t-1}). Arrays are indexed so that "
            "betas[t] is β_t.",
        ),
    },
    wrap=_finite,
    keep_dtype=True,
    terms=Terms({"x_t": 0, "eps": 2, "z": 6}, _step_candidates, t_arg=1),
    diagnoses=(_noise_per_batch,),
    t_arg=1,
    doc="Check ``ancestral_step(x_t, t (B,), eps, betas, alpha_bar, variance, z) -> x_{t-1}``.",
)
check_ancestral_step = Checker("ancestral_step", _STEP)


# --- sample -------------------------------------------------------------------------------------


def _sample_harness(fn: Fn) -> Fn:
    """Run ``fn`` under ``torch.no_grad()``, as a sampler is run, on a fresh model and generator.

    ``record`` (a list) receives the model's :class:`Spy`, for the diagnoses."""

    def run(
        T: int,
        variance: str,
        seed: int,
        gen_seed: int | None = None,
        record: list[Any] | None = None,
    ) -> torch.Tensor:
        sched = linear_schedule(T, 0.01, 0.2)
        model: nn.Module = TinyEps(T, seed=seed).requires_grad_(False)
        if record is not None:
            model = Spy(model)
            record.append(model)
        g = torch.Generator().manual_seed(300 + seed if gen_seed is None else gen_seed)
        with torch.no_grad():
            out = fn(model, sched.betas.clone(), sched.alpha_bar.clone(), (9, 2), variance, g)
        out = returned_tensor(out, "the samples x_0, a tensor of the given shape")
        # a wrong variance can make the samples overflow: compared as large numbers, not inf; a
        # NaN stays NaN, so that the diagnoses can say where it comes from (a step at t = 0)
        return torch.nan_to_num(out.detach(), nan=math.nan, posinf=1e6, neginf=-1e6)

    return run


def _sample_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """The loop's timesteps, x_T and each step's z (recovered from consecutive model inputs)
    against the replayed generator."""
    for (T, variance, seed), _ in cases:
        rec: list[Any] = []
        again: list[Any] = []
        student(T, variance, seed, record=rec)
        student(T, variance, seed, record=again)
        calls = rec[0].calls
        g = torch.Generator().manual_seed(300 + seed)
        x_T = torch.randn(9, 2, generator=g)
        zs_want = [torch.randn(9, 2, generator=g) for _ in range(T)]
        problem = (
            _loop_times_problem(calls, T)
            or _start_problem(calls[0][0], again[0].calls[0][0], x_T, zs_want[0])
            or _step_noise_problem(calls, rec[0].outputs, T, variance, zs_want)
        )
        if problem:
            return problem
    return None


def _loop_times_problem(calls: list[Any], T: int) -> str | None:
    """The model is called at t = T, T − 1, …, 1, once each."""
    if not calls:
        return "your loop never calls the model: each step needs ε_θ(x_t, t)."
    ts = [int(c[1][0]) for c in calls]
    if ts == list(range(T, 0, -1)):
        return None
    shown = f"{ts[:3]}…{ts[-2:]}" if len(ts) > 5 else f"{ts}"
    return (
        f"your loop calls the model at t = {shown} ({len(ts)} calls); Algorithm 2 runs t = "
        f"T, T − 1, …, 1, that is {T} calls: range(T, 0, -1)."
    )


def _start_problem(
    x0: torch.Tensor, x0_again: torch.Tensor, x_T: torch.Tensor, z_first: torch.Tensor
) -> str | None:
    """x_T is the generator's first draw (not zeros, not drawn after a z, not unseeded)."""
    if not bool(x0.abs().any()):
        return (
            "your x_T is all zeros: Algorithm 2 starts from pure noise, x_T = "
            "torch.randn(shape, generator=generator)."
        )
    if torch.allclose(x0, z_first) and not torch.allclose(x0, x_T):
        return (
            "your draws come in another order than the checker replays: draw x_T first, then "
            "one z per step."
        )
    problem = draw_problem("x_T", x0, x0_again, x_T, "torch.randn(shape, generator=generator)")
    return problem + "." if problem else None


def _step_noise_problem(
    calls: list[Any], outputs: list[Any], T: int, variance: str, zs_want: list[torch.Tensor]
) -> str | None:
    """Each step's z, read off x_{t-1} - mean under both variances, against the replayed draws."""
    sched = linear_schedule(T, 0.01, 0.2)
    zs: dict[str, list[torch.Tensor]] = {v: [] for v in ("beta", "beta_tilde")}
    for (x_t, t), (x_prev, _), eps in zip(calls, calls[1:], outputs, strict=False):
        for v in zs:
            zero = torch.zeros_like(eps.double())
            mean = ddpm_step(x_t.double(), t, eps.double(), sched, variance=v, noise=zero)
            var = sched.betas if v == "beta" else sched.posterior_variance
            zs[v].append((x_prev.double() - mean) / var[int(t[0])].sqrt())
    got = zs[variance]
    if len(got) > 1 and all(torch.allclose(a, got[0], atol=1e-4) for a in got[1:]):
        return "you add the same z at every step: draw a fresh z at each step."
    want = [z.double() for z in zs_want[: len(got)]]
    if all(torch.allclose(a, b, atol=1e-3) for a, b in zip(got, want, strict=True)):
        return None
    other = zs["beta_tilde" if variance == "beta" else "beta"]
    if all(torch.allclose(a, b, atol=1e-3) for a, b in zip(other, want, strict=True)):
        used = "β̃_t" if variance == "beta" else "β_t"
        return (
            f"with variance={variance!r} your steps use σ_t² = {used}: pass the `variance` you "
            "were given on to each step."
        )
    return (
        "your x_T is right, but the noise of your steps differs from the checker's replay: "
        "draw one z = torch.randn(shape, generator=generator) per step, after x_T, also at t "
        "= 1 (where it is multiplied by 0)."
    )


def _ref_sample_impl(
    eps_model: Fn,
    betas: torch.Tensor,
    alpha_bar: torch.Tensor,
    shape: tuple[int, ...],
    variance: str,
    generator: torch.Generator,
) -> torch.Tensor:
    return ddpm_sample(
        eps_model, schedule_from_betas(betas), shape, variance=variance, generator=generator
    )


def _loop(ts: Callable[[int], range], *, noise_at_1: bool = False) -> Fn:
    def sample(
        eps_model: Fn,
        betas: torch.Tensor,
        alpha_bar: torch.Tensor,
        shape: tuple[int, ...],
        variance: str,
        generator: torch.Generator,
    ) -> torch.Tensor:
        T = betas.shape[0] - 1
        x = torch.randn(shape, generator=generator)
        step = _step_variant(noise_at_1=noise_at_1)
        for s in ts(T):
            t = torch.full((shape[0],), s, dtype=torch.long)
            z = torch.randn(shape, generator=generator)
            x = step(x, t, eps_model(x, t), betas, alpha_bar, variance, z).to(torch.float32)
        return x

    return sample


_SAMPLE = Spec(
    lambda: [((20, "beta", 0), {}), ((15, "beta_tilde", 1), {})],
    _sample_harness(_ref_sample_impl),
    {
        "skips_last_step": Mistake(
            _loop(lambda T: range(T, 1, -1)),
            "your loop stops at t = 2 and returns x_1. Run t = T, T-1, …, 1: range(T, 0, -1).",
        ),
        "starts_at_T_minus_1": Mistake(
            _loop(lambda T: range(T - 1, 0, -1)),
            "your loop starts at T-1. The first step denoises x_T with t = T: range(T, 0, -1).",
        ),
        "noise_at_last_step": Mistake(
            _loop(lambda T: range(T, 0, -1), noise_at_1=True),
            "noise was added at the last step (t = 1): check ancestral_step first.",
        ),
    },
    wrap=_sample_harness,
    reseed=lambda case, k: ((*case[0][:3], 2000 + k), case[1]),
    keep_dtype=True,
    diagnoses=(_sample_diagnosis,),
    hint="If your steps are right, check the random numbers: the checker replays them, so draw "
    "x_T = torch.randn(shape, generator=generator) first, then one z of the same shape at every "
    "step, also at t = 1.",
    doc="Algorithm 2: ``sample(eps_model, betas, alpha_bar, shape, variance, generator) -> x_0``.",
)
check_sample = Checker("sample", _SAMPLE)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += ["TinyEps"]
