"""Checkers for exercise 16 (flow matching): the conditional velocity and the CFM loss, the
ε ↔ velocity converters, and DDIM as an Euler step.

Convention of the course: ``t = 0`` is the data, ``t = 1`` the noise, ``x_t = alpha x_0 +
sigma eps``; on the rectified-flow path ``alpha = 1 - t``, ``sigma = t``. The student writes

- ``conditional_velocity(x0, eps, t) -> u``: ``d/dt [(1 - t) x0 + t eps] = eps - x0``;
- ``cfm_loss(velocity_model, x0, eps, t) -> scalar``: the mean over batch and dimensions of
  ``(u_theta(x_t, t) - (eps - x0))²`` (every element averaged, ``.mean()``);
- ``velocity_from_eps(x_t, eps, alpha, sigma, d_alpha, d_sigma)`` and
  ``eps_from_velocity(x_t, u, alpha, sigma, d_alpha, d_sigma)`` for any path, with the
  coefficients given as ``(B,)`` tensors;
- ``ddim_as_euler(x_t, eps, alpha_t, sigma_t, alpha_s, sigma_s) -> x_s``: one Euler step of
  ``d(x/alpha)/d(sigma/alpha) = eps`` from ``t`` to ``s``.

References come from ``minidiff`` (:mod:`minidiff.paths`, :mod:`minidiff.flow_matching`); the
converters are called under ``torch.no_grad()`` (as a sampler calls them), in float32 and float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..flow_matching import flow_matching_loss
from ..paths import CosinePath, PathCoefficients, RectifiedFlowPath, VPPath, convert_with
from ._calls import seeded_mlp, under_no_grad
from ._core import Case, Checker, Mistake, Spec, specs_of

Fn = Callable[..., Any]
T_CONVENTION = (
    "In this course t = 0 is the data and t = 1 the noise (x_t = (1 - t) x0 + t eps on the "
    "rectified-flow path, as in Stable Diffusion 3); "
)


class TinyVelocity(nn.Module):
    """A small deterministic ``velocity_model(x (B, D), t (B,) float) -> (B, D)`` (checkers)."""

    def __init__(self, dim: int = 2, hidden: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.net = seeded_mlp(dim + 1, hidden, dim, seed)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, t.to(x.dtype)[:, None]], dim=1))


def _times(n: int, g: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    return t.to(dtype)


# --- section 1: the rectified-flow path ---------------------------------------------------------


def _cases_velocity() -> list[Case]:
    cases: list[Case] = []
    for i, dtype in enumerate((torch.float64, torch.float32)):
        g = torch.Generator().manual_seed(160 + i)
        x0 = torch.randn(6, 2, generator=g, dtype=dtype)
        cases.append(((x0, torch.randn(6, 2, generator=g, dtype=dtype), _times(6, g, dtype)), {}))
    return cases


def _ref_velocity(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return RectifiedFlowPath().conditional_velocity(x0, eps, t.double())


_VELOCITY_SIGN = (
    "the velocity points the wrong way. "
    + T_CONVENTION
    + "so u = d x_t / dt = eps - x0 (from data towards noise). x0 - eps is the velocity of the "
    "reversed time, where t = 0 is noise (Lipman et al.'s convention); our sampler integrates "
    "from t = 1 down to 0 with negative steps instead."
)

_VELOCITY = Spec(
    _cases_velocity,
    _ref_velocity,
    {
        "velocity_sign": Mistake(lambda x0, e, t: x0 - e, _VELOCITY_SIGN),
        "path_not_velocity": Mistake(
            lambda x0, e, t: (1 - t[:, None]) * x0 + t[:, None] * e,
            "you returned the point x_t = (1 - t) x0 + t eps; the velocity is its time "
            "derivative, d x_t / dt = eps - x0.",
        ),
    },
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-7,
    doc="Check ``fn(x0, eps, t) -> u``, the conditional velocity of the rectified-flow path.",
)
check_conditional_velocity = Checker("conditional_velocity", _VELOCITY)


def _cases_loss() -> list[Case]:
    cases: list[Case] = []
    for i, dtype in enumerate((torch.float32, torch.float64)):
        g = torch.Generator().manual_seed(170 + i)
        model = TinyVelocity(seed=i).to(dtype)  # trainable: the loss must keep its gradient
        x0 = 1.5 * torch.randn(7, 2, generator=g, dtype=dtype)
        eps = torch.randn(7, 2, generator=g, dtype=dtype)
        cases.append(((model, x0, eps, _times(7, g, dtype)), {}))
    return cases


def _ref_loss(model: Fn, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return flow_matching_loss(model, x0, t=t, noise=eps)


def _loss_with(
    path: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    target: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reduce: str = "mean",
) -> Fn:
    def loss(model: Fn, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tc = t[:, None]
        err = (model(path(x0, eps, tc), t) - target(x0, eps)) ** 2
        return err.mean() if reduce == "mean" else err.sum(dim=1).mean()

    return loss


def _rf(x0: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - t) * x0 + t * e


def _swapped(x0: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - t) * e + t * x0


def _time_reversed_call(model: Fn, x0: torch.Tensor, e: torch.Tensor, t: torch.Tensor) -> Any:
    x_t = _rf(x0, e, t[:, None])
    return ((model(x_t, 1 - t) - (e - x0)) ** 2).mean()


_LOSS = Spec(
    _cases_loss,
    _ref_loss,
    {
        "t0_is_noise": Mistake(
            _loss_with(_swapped, lambda x0, e: x0 - e),
            "you put the noise at t = 0 and the data at t = 1 (x_t = t x0 + (1 - t) eps, target "
            "x0 - eps), the convention of Lipman et al. and of the flow_matching library. "
            + T_CONVENTION
            + "the target is then eps - x0.",
        ),
        "x0_eps_swapped_in_path": Mistake(
            _loss_with(_swapped, lambda x0, e: e - x0),
            "x0 and eps are swapped in the path: x_t = (1 - t) x0 + t eps (alpha = 1 - t "
            "multiplies the data, sigma = t the noise).",
        ),
        "velocity_sign": Mistake(_loss_with(_rf, lambda x0, e: x0 - e), _VELOCITY_SIGN),
        "model_time_reversed": Mistake(
            _time_reversed_call,
            "the path and the target are right, but you called the model at 1 - t. "
            + T_CONVENTION
            + "call velocity_model(x_t, t) with the t of x_t: the sampler asks the model for "
            "the velocity at the time of the point it is at.",
        ),
        "eps_target": Mistake(
            _loss_with(_rf, lambda x0, e: e),
            "you regressed the noise eps; flow matching regresses the velocity eps - x0.",
        ),
        "model_at_x0": Mistake(
            _loss_with(lambda x0, e, t: x0, lambda x0, e: e - x0),
            "you called the model on the clean x0; it must see the point of the path, x_t = "
            "(1 - t) x0 + t eps, where the sampler will ask it for the velocity.",
        ),
        "sum_over_dims": Mistake(
            _loss_with(_rf, lambda x0, e: e - x0, reduce="sum"),
            "you summed the squared error over the data dimensions; average over every element "
            "(batch and dimensions): .mean().",
        ),
    },
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-7,
    doc="Check ``fn(velocity_model, x0, eps, t) -> scalar``, the conditional flow matching loss.",
)
check_cfm_loss = Checker("cfm_loss", _LOSS)


# --- section 2: converters on any path ----------------------------------------------------------


def _cases_converter() -> list[Case]:
    """``(x_t, value, alpha, sigma, d_alpha, d_sigma)`` on three paths, float64 and float32."""
    cases: list[Case] = []
    paths = [RectifiedFlowPath(), VPPath(), CosinePath()]
    for i, path in enumerate(paths):
        dtype = torch.float32 if i == 1 else torch.float64
        g = torch.Generator().manual_seed(180 + i)
        t = _times(6, g, torch.float64)
        x0, eps = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        c = path.coefficients(t)
        x_t = path.sample(x0.double(), t, noise=eps.double()).to(dtype)
        value = torch.randn(6, 2, generator=g).to(dtype)  # any prediction: not the true eps
        cases.append(((x_t, value, *(v.to(dtype) for v in c)), {}))
    return cases


def _conv(src: str, dst: str) -> Fn:
    def ref(x_t: torch.Tensor, value: torch.Tensor, *coefs: torch.Tensor) -> torch.Tensor:
        return convert_with(PathCoefficients(*coefs), value, x_t, src=src, dst=dst)

    return ref


def _col(v: torch.Tensor) -> torch.Tensor:
    return v[:, None]


def _u_from_eps(x: Any, e: Any, a: Any, s: Any, da: Any, ds: Any) -> torch.Tensor:
    a, s, da, ds = map(_col, (a, s, da, ds))
    return da / a * x + (ds - da * s / a) * e


def _eps_from_u(x: Any, u: Any, a: Any, s: Any, da: Any, ds: Any) -> torch.Tensor:
    a, s, da, ds = map(_col, (a, s, da, ds))
    return (a * u - da * x) / (a * ds - s * da)


_RF_ONLY = (
    "your converter works on the rectified-flow path (alpha = 1 - t, sigma = t) but not on the "
    "VP and cosine paths: you wrote that path's coefficients (1 - t, t, -1, 1) into the formula. "
    "Use the alpha, sigma, d_alpha, d_sigma you are given, so that one converter serves every "
    "path."
)


def _rf_coefficients(s: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rectified-flow coefficients at ``t = sigma``, as a converter that ignores the path."""
    return 1 - s, s, -torch.ones_like(s), torch.ones_like(s)


_SWAPPED_DERIVATIVES = (
    "alpha' and sigma' are swapped: the velocity is alpha' x0 + sigma' eps, the derivative of "
    "each coefficient times what it multiplies."
)


def _derivatives_swapped(converter: Fn) -> Mistake:
    """The mistake of either converter that exchanges alpha' and sigma'."""
    return Mistake(lambda x, v, a, s, da, ds: converter(x, v, a, s, ds, da), _SWAPPED_DERIVATIVES)


def _rectified_flow_only(converter: Fn) -> Mistake:
    """The mistake of either converter that writes in the rectified-flow coefficients."""
    return Mistake(lambda x, v, a, s, da, ds: converter(x, v, *_rf_coefficients(s)), _RF_ONLY)


_RF_DERIVATIVES = (
    "your converter uses the alpha and sigma you are given, but the rectified-flow path's "
    "derivatives (d_alpha = -1, d_sigma = 1), which hold on that path only. Use the d_alpha, "
    "d_sigma you are given, so that one converter serves every path."
)


def _rectified_flow_derivatives(converter: Fn) -> Mistake:
    """The mistake of either converter that writes in the rectified-flow derivatives alone."""

    def fn(x: Any, v: Any, a: Any, s: Any, da: Any, ds: Any) -> torch.Tensor:
        return converter(x, v, a, s, -torch.ones_like(da), torch.ones_like(ds))

    return Mistake(fn, _RF_DERIVATIVES)


def _u_swapped_x0_eps(x: Any, e: Any, a: Any, s: Any, da: Any, ds: Any) -> torch.Tensor:
    a, s, da, ds = map(_col, (a, s, da, ds))
    x0 = (x - a * e) / s  # as if x_t = alpha eps + sigma x0
    return da * x0 + ds * e


_U_FROM_EPS = Spec(
    _cases_converter,
    _conv("eps", "velocity"),
    {
        "derivatives_swapped": _derivatives_swapped(_u_from_eps),
        "x0_eps_swapped_in_path": Mistake(
            _u_swapped_x0_eps,
            "you solved x_t = alpha eps + sigma x0 for x0; the path is x_t = alpha x0 + sigma "
            "eps, so x0 = (x_t - sigma eps) / alpha.",
        ),
        "velocity_sign": Mistake(
            lambda *args: -_u_from_eps(*args),
            "your velocity has the wrong sign: u = dx_t/dt = alpha' x0 + sigma' eps, with t "
            "running from the data (0) to the noise (1).",
        ),
        "missing_x_term": Mistake(
            lambda x, e, a, s, da, ds: _u_from_eps(torch.zeros_like(x), e, a, s, da, ds),
            "the term (alpha'/alpha) x_t is missing: u = alpha' x0 + sigma' eps with x0 = (x_t - "
            "sigma eps) / alpha.",
        ),
        "rectified_flow_only": _rectified_flow_only(_u_from_eps),
        "rectified_flow_derivatives": _rectified_flow_derivatives(_u_from_eps),
    },
    wrap=under_no_grad,  # converters run inside samplers
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(x_t, eps, alpha, sigma, d_alpha, d_sigma) -> u`` on any Gaussian path.",
)
check_velocity_from_eps = Checker("velocity_from_eps", _U_FROM_EPS)

_EPS_FROM_U = Spec(
    _cases_converter,
    _conv("velocity", "eps"),
    {
        "derivatives_swapped": _derivatives_swapped(_eps_from_u),
        "denominator_sign": Mistake(
            lambda *args: -_eps_from_u(*args),
            "the sign is flipped: solving x_t = alpha x0 + sigma eps and u = alpha' x0 + "
            "sigma' eps gives eps = (alpha u - alpha' x_t) / (alpha sigma' - sigma alpha').",
        ),
        "eps_from_x0_formula": Mistake(
            lambda x, u, a, s, da, ds: (x - _col(a) * u) / _col(s),
            "you treated the velocity as if it were x0 (eps = (x_t - alpha x0) / sigma); eliminate "
            "x0 between the two equations instead.",
        ),
        "rectified_flow_only": _rectified_flow_only(_eps_from_u),
        "rectified_flow_derivatives": _rectified_flow_derivatives(_eps_from_u),
        "no_denominator": Mistake(
            lambda x, u, a, s, da, ds: _col(a) * u - _col(da) * x,
            "you stopped at alpha u - alpha' x_t = (alpha sigma' - sigma alpha') eps: divide by "
            "alpha sigma' - sigma alpha' to get eps.",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(x_t, u, alpha, sigma, d_alpha, d_sigma) -> eps`` on any Gaussian path.",
)
check_eps_from_velocity = Checker("eps_from_velocity", _EPS_FROM_U)


# --- section 3: DDIM as an Euler step -----------------------------------------------------------


def _cases_ddim() -> list[Case]:
    """``(x_t, eps, alpha_t, sigma_t, alpha_s, sigma_s)`` with ``s < t`` (also ``s = 0``)."""
    cases: list[Case] = []
    for i, path in enumerate([VPPath(), RectifiedFlowPath()]):
        dtype = (torch.float64, torch.float32)[i]
        g = torch.Generator().manual_seed(190 + i)
        t = 0.3 + 0.65 * torch.rand(6, generator=g, dtype=torch.float64)
        s = t * torch.rand(6, generator=g, dtype=torch.float64)
        s[0] = 0.0  # the last step lands on the data
        ct, cs = path.coefficients(t), path.coefficients(s)
        x, e = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        coefs = (ct.alpha, ct.sigma, cs.alpha, cs.sigma)
        cases.append(((x.to(dtype), e.to(dtype), *(c.to(dtype) for c in coefs)), {}))
    return cases


def _ref_ddim(
    x: torch.Tensor, e: torch.Tensor, a_t: Any, s_t: Any, a_s: Any, s_s: Any
) -> torch.Tensor:
    """The DDIM (η = 0) step written in (alpha, sigma): alpha_s x0_hat + sigma_s eps."""
    a_t, s_t, a_s, s_s = map(_col, (a_t, s_t, a_s, s_s))
    return a_s * (x - s_t * e) / a_t + s_s * e


_DDIM = Spec(
    _cases_ddim,
    _ref_ddim,
    {
        "not_rescaled": Mistake(
            lambda x, e, a_t, s_t, a_s, s_s: (
                x / _col(a_t) + (_col(s_s / a_s) - _col(s_t / a_t)) * e
            ),
            "you returned x_s / alpha_s, the state of the rescaled ODE; multiply by alpha_s to "
            "get x_s back.",
        ),
        "euler_in_sigma": Mistake(
            lambda x, e, a_t, s_t, a_s, s_s: x + (_col(s_s) - _col(s_t)) * e,
            "you took the Euler step in sigma on x itself; DDIM is the Euler step of "
            "d(x/alpha) / d(sigma/alpha) = eps: divide by alpha first, step in tau = sigma/alpha, "
            "multiply back.",
        ),
        "step_in_sigma_rescaled": Mistake(
            lambda x, e, a_t, s_t, a_s, s_s: (
                _col(a_s) * (x / _col(a_t) + (_col(s_s) - _col(s_t)) * e)
            ),
            "you rescaled by alpha but stepped in sigma, (sigma_s - sigma_t) eps; the variable "
            "of the ODE d(x/alpha) / d(sigma/alpha) = eps is tau = sigma/alpha, so the step is "
            "(sigma_s/alpha_s - sigma_t/alpha_t) eps.",
        ),
        "step_direction": Mistake(
            lambda x, e, a_t, s_t, a_s, s_s: (
                _col(a_s) * (x / _col(a_t) + (_col(s_t / a_t) - _col(s_s / a_s)) * e)
            ),
            "the step goes the wrong way: from t to s < t the noise-to-signal ratio "
            "tau = sigma/alpha falls, so the step is (tau_s - tau_t) eps, a negative multiple "
            "of eps.",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="""Check ``fn(x_t, eps, alpha_t, sigma_t, alpha_s, sigma_s) -> x_s``, an Euler step in
    ``sigma/alpha`` of ``x/alpha`` (= the DDIM step).
    """,
)
check_ddim_as_euler = Checker("ddim_as_euler", _DDIM)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += ["TinyVelocity"]
