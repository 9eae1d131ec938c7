"""Exact log-likelihoods through the probability-flow ODE (chapter 7).

Along a solution of the PF-ODE ``dx/dt = F(x, t) = f(x, t) - ½ g(t)² ∇log p_t(x)`` the
instantaneous change of variables (Chen et al. 2018, "Neural ODEs", Thm. 1) gives
``d log p_t(x(t)) / dt = -div F(x(t), t)``, so, integrating from a small ``t_start`` to 1,

    log p_0(x) ≈ log p_{t_start}(x(t_start)) = log p_1(x(1)) + ∫_{t_start}^1 div F(x(t), t) dt

(Song et al. 2021, Appx. D.2), with ``p_1`` replaced by the prior. One ODE solve carries the
augmented state ``(x, ∫ div F)``. The divergence is exact (``D`` backward passes, fine in 2D)
or Hutchinson's estimate ``E_v[vᵀ (∂F/∂x) v] = tr(∂F/∂x)`` for ``E[v vᵀ] = I`` (Hutchinson
1989; Grathwohl et al. 2019, FFJORD), one vector–Jacobian product per probe. The estimate of the
integral is unbiased because the path ``x(t)`` does not depend on the probes (expectation and
integral commute); the probes are drawn once and kept along the trajectory so that the augmented
ODE is deterministic (a solver's several evaluations per step see the same integrand).

The integration starts at ``t_start`` (default ``sde.t_min``), so strictly the result is
``log p_{t_start}(x)``, the log-density of the data after noising to ``t_start``; chapter 7 measures
the gap to ``log p_0`` for the default start.

The batch is assumed independent across rows (``∂F_i / ∂x_j = 0`` for samples ``i ≠ j``), as for
every per-sample network in this course.
"""

from __future__ import annotations

import math

import torch

from ._validation import (
    Check,
    FloatTensor,
    Function,
    Int,
    Number,
    OneOf,
    Rng,
    check_finite,
    check_tensor,
    checked,
)
from .samplers.sde_solvers import ode_solve, time_grid
from .sde import SDE, SDE_ARG, ReverseSDE, ScoreFn
from .tensors import standard_normal, uniform

__all__ = [
    "DIVERGENCES",
    "PROBES",
    "divergence",
    "ode_log_likelihood",
    "bits_per_dim",
    "uniform_dequantize",
]

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def _differentiable_input(x: object, name: str) -> torch.Tensor:
    """A floating tensor with ``requires_grad`` (the ``x`` that ``fx = F(x)`` was computed from)."""
    x = check_tensor(x, name)
    if not x.requires_grad:
        raise ValueError(
            f"{name} must require grad: call x.requires_grad_(True) before computing fx = F(x) "
            "(under torch.enable_grad(), outside torch.inference_mode())"
        )
    return x


def _differentiable_output(fx: object, name: str, x: object) -> torch.Tensor:
    """``fx = F(x)``: a floating tensor of ``x``'s shape that carries a graph back to ``x``."""
    fx = check_tensor(fx, name)
    if isinstance(x, torch.Tensor) and fx.shape != x.shape:
        raise ValueError(
            f"{name} must have the shape of x, {tuple(x.shape)} (F maps x to a vector field "
            f"like x), got {tuple(fx.shape)}"
        )
    if not fx.requires_grad:
        raise ValueError(
            f"{name} has no autograd graph: compute it from x (with x.requires_grad) with "
            "gradients enabled, not under torch.no_grad() or torch.inference_mode()"
        )
    if isinstance(x, torch.Tensor) and x.requires_grad and not _reaches(fx, x):
        raise ValueError(
            f"{name} has an autograd graph, but not back to x (only through parameters, or "
            "from a detached copy of x): compute it from x itself"
        )
    return fx


def _reaches(out: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``out``'s graph leads back to ``x`` (one backward pass, the graph kept)."""
    (grad,) = torch.autograd.grad(out.sum(), x, allow_unused=True, retain_graph=True)
    return grad is not None


def _probes(probes: object, name: str, x: object) -> torch.Tensor:
    """Hutchinson probes ``(K, *x.shape)``, ``K >= 1``: one probe vector per sample."""
    probes = check_tensor(probes, name, min_dim=2)
    if isinstance(x, torch.Tensor) and (probes.shape[1:] != x.shape or probes.shape[0] < 1):
        raise ValueError(
            f"{name} must have shape (K, *x.shape) = (K, {', '.join(map(str, x.shape))}) with "
            f"K >= 1 probes, got {tuple(probes.shape)}"
        )
    return probes


@checked(
    fx=Check(_differentiable_output, uses=("x",)),
    x=Check(_differentiable_input),
    probes=Check(_probes, uses=("x",), optional=True),
)
def divergence(
    fx: torch.Tensor,
    x: torch.Tensor,
    *,
    probes: torch.Tensor | None = None,
    create_graph: bool = False,
) -> torch.Tensor:
    """``div F = tr(∂F/∂x)`` per sample, ``(B,)``, from ``fx = F(x)`` (``x.requires_grad``).

    Exact (one backward pass per coordinate) when ``probes`` is None, else the Hutchinson average
    ``mean_k v_kᵀ (∂F/∂x) v_k`` over ``probes: (K, *x.shape)`` (one backward pass per probe).
    ``fx`` must have ``x``'s shape and a graph back to ``x`` (checked with one extra backward
    pass); otherwise a ``ValueError`` names it (a field computed without gradients, or only
    through parameters, would silently count as divergence-free).
    """
    B = x.shape[0]
    if probes is None:
        flat = fx.reshape(B, -1)
        D = flat.shape[1]
        div = torch.zeros(B, dtype=fx.dtype, device=fx.device)
        for d in range(D):
            (grad,) = torch.autograd.grad(
                flat[:, d].sum(), x, retain_graph=True, create_graph=create_graph
            )
            div = div + grad.reshape(B, -1)[:, d]
        return div
    est = torch.zeros(B, dtype=fx.dtype, device=fx.device)
    for v in probes:
        (vjp,) = torch.autograd.grad(
            (fx * v).sum(), x, retain_graph=True, create_graph=create_graph
        )
        est = est + (vjp * v).reshape(B, -1).sum(1)
    return est / probes.shape[0]


@checked(
    score_fn=Function("(x, t) -> score"),
    sde=SDE_ARG,
    x=FloatTensor(finite=True, nonempty=True),
    steps=Int(),
    method=OneOf(("heun", "rk4", "euler")),
    divergence=OneOf(DIVERGENCES),
    n_probes=Int(),
    probe=OneOf(PROBES),
    generator=Rng,
    t_start=Number(low=0.0, high=1.0, low_open=False, optional=True),
)
def ode_log_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: torch.Tensor,
    *,
    steps: int,
    method: str = "heun",
    divergence: str = "exact",
    n_probes: int = 1,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    t_start: float | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``log p_0(x)`` in nats through the PF-ODE: ``prior_logp(x(1)) + ∫_{t_start}^1 div F dt``.

    Args:
        score_fn: ``(x (B, ...), t (B,) float) -> score``; must be differentiable in ``x``: a
            score computed under ``torch.no_grad()`` (or this call under
            ``torch.inference_mode()``) is refused with a ``ValueError`` at its first evaluation,
            since its divergence would silently be left out.
        sde: the forward SDE (``sde.reverse(score_fn, probability_flow=True)`` is integrated).
        x: data ``(N, ...)``; the ODE runs in ``x``'s dtype (pass float64 for tight checks).
        steps: ODE steps from ``t_start`` to 1 on a uniform grid.
        t_start: the start time of the integration, in ``[0, 1)``; default ``sde.t_min`` (``1e-3``
            for ``VPSDE()``). The result estimates ``log p_{t_start}(x)``, which approaches
            ``log p_0(x)`` as ``t_start -> 0``; ``0`` is allowed when the score stays finite there
            (e.g. a mixture).
        method: ``"heun"`` (2 evaluations per step) or ``"rk4"`` (4); ``"euler"`` is accepted too.
        divergence: ``"exact"`` (``D`` backward passes per evaluation) or ``"hutchinson"``.
        n_probes, probe: number and law (``"rademacher"`` ±1 or ``"gaussian"``) of the probes,
            drawn once from ``generator`` and kept along the trajectory (a deterministic ODE).
    Returns:
        ``(N,)`` log-likelihoods (nats, summed over data dimensions).
    """
    if torch.is_inference_mode_enabled():
        raise ValueError(
            "score_fn cannot be differentiated under torch.inference_mode(), and "
            "ode_log_likelihood needs its divergence: call it outside inference_mode "
            "(torch.no_grad() is fine; gradients are enabled inside)"
        )
    t0 = sde.t_min if t_start is None else t_start
    ts = time_grid(steps, float(t0), 1.0)
    rsde = sde.reverse(_differentiable_score(score_fn), probability_flow=True)
    B, shape = x.shape[0], x.shape
    D = x[0].numel()

    probes = None
    if divergence == "hutchinson":
        size = (n_probes, *shape)
        probes = standard_normal(size, generator=generator, dtype=x.dtype, device=x.device)
        if probe == "rademacher":
            probes = probes.sign()  # symmetric ±1 with probability ½ each
            probes[probes == 0] = 1.0

    def augmented(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xs = state[:, :D].detach().reshape(shape).requires_grad_(True)
            fx = ReverseSDE.drift.unchecked(rsde, xs, t)
            div = _divergence.unchecked(fx, xs, probes=probes)
        return torch.cat([fx.detach().reshape(B, D), div.detach()[:, None]], dim=1)

    state = torch.cat(
        [x.detach().reshape(B, D), torch.zeros(B, 1, dtype=x.dtype, device=x.device)], dim=1
    )
    sol = ode_solve(
        augmented, state, ts, method=method, name="ode_log_likelihood", progress=progress
    )
    z, delta = sol.x[:, :D].reshape(shape), sol.x[:, D]
    return sde.prior_logp(z) + delta


def _differentiable_score(score_fn: ScoreFn) -> ScoreFn:
    """``score_fn``, whose first output is checked to carry a graph back to its input ``x``
    (a score under ``torch.no_grad()`` would drop its part of the divergence without a word)."""
    first = [True]

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = score_fn(x, t)
        if first[0] and x.requires_grad:
            first[0] = False
            if isinstance(out, torch.Tensor) and not out.requires_grad:
                raise ValueError(
                    "score_fn must be differentiable in x: its output has no autograd graph "
                    "(computed under torch.no_grad(), or detached), so its part of the "
                    "divergence would be lost; remove the no_grad/detach"
                )
            if isinstance(out, torch.Tensor) and not _reaches(out, x):
                raise ValueError(
                    "score_fn must be differentiable in x: its output has an autograd graph, "
                    "but not back to x (only through parameters, or from x.detach()), so its "
                    "divergence would be lost; remove the detach"
                )
        return out

    return score


_divergence = divergence  # the argument of ode_log_likelihood shadows the function's name


def _nats(value: object, name: str) -> torch.Tensor:
    """A number or a tensor ``(N,)`` of finite log-likelihoods, as a floating tensor."""
    if not isinstance(value, torch.Tensor):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a tensor (N,) or a number, got {type(value).__name__}")
        value = torch.tensor(float(value), dtype=torch.float64)
    if not value.is_floating_point():
        value = value.to(torch.float64)
    if value.dim() > 1:
        raise ValueError(
            f"{name} must have shape (N,) (one value per sample), got {tuple(value.shape)}"
        )
    return check_finite(value, name)


@checked(log_likelihood_nats=Check(_nats), dims=Int(), scale=Number(low=0.0))
def bits_per_dim(
    log_likelihood_nats: torch.Tensor, dims: int, *, scale: float = 127.5
) -> torch.Tensor:
    """Bits per dimension of 8-bit data from a continuous log-density of the scaled images.

    Convention (as in Song et al. 2021 and Ho et al. 2020): pixels ``k ∈ {0, …, 255}`` are
    dequantised ``k + u``, ``u ~ U[0, 1)``, then scaled ``y = (k + u) / scale - 1``
    (``scale = 127.5`` maps ``[0, 255]`` onto ``[-1, 1]``). The density of ``k + u`` is
    ``p_y(y) / scale^D``, hence

        bpd = -(log p_y(y) - D log(scale)) / (D ln 2).

    A uniform density over the dequantised cube gives exactly 8 bits. ``scale=1`` turns nats into
    plain bits per dimension. ``log_likelihood_nats: (N,)`` -> ``(N,)``.
    """
    return -(log_likelihood_nats - dims * math.log(scale)) / (dims * math.log(2.0))


@checked(x=FloatTensor(finite=True), generator=Rng, scale=Number(low=0.0))
def uniform_dequantize(
    x: torch.Tensor, generator: torch.Generator | None = None, *, scale: float = 127.5
) -> torch.Tensor:
    """Add ``u / scale``, ``u ~ U[0, 1)``, to 8-bit images ``k / scale - 1`` (see bits_per_dim)."""
    u = uniform(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + u / scale
