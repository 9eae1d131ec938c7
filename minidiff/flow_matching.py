"""The (conditional) flow matching objective (Lipman et al. 2023; Liu et al. 2023; chapter 16).

On a Gaussian path ``x_t = alpha(t) x_0 + sigma(t) eps`` (:mod:`minidiff.paths`) the *conditional*
velocity is ``u_t(x_t | x_0, eps) = alpha'(t) x_0 + sigma'(t) eps`` and the *marginal* velocity is
its posterior mean ``u_t(x) = E[u_t(x_t | x_0, eps) | x_t = x]``. The two losses

    FM   E_{t, x_t} ||u_theta(x_t, t) - u_t(x_t)||²               (needs the unknown u_t)
    CFM  E_{t, x_0, eps} ||u_theta(x_t, t) - u_t(x_t | x_0, eps)||²

differ by a constant independent of theta (the posterior variance of the conditional velocity),
so they have the same gradients and the same minimiser ``u_theta = u_t``. :func:`flow_matching_loss`
is CFM with optional choices: the law of ``t`` (uniform, or logit-normal as in Stable Diffusion 3,
Esser et al. 2024, Sec. 3.1), a given pairing of ``(x_0, eps)`` (reflow, Liu et al. 2023), or a
minibatch optimal-transport pairing (:func:`ot_coupling`; Pooladian et al. 2023, Tong et al. 2024).

**As a weighted ε-loss.** At a fixed ``x_t``, ``u_hat - u = c(t) (eps_hat - eps)`` with
``c = (alpha sigma' - sigma alpha') / alpha`` (:meth:`~minidiff.paths.GaussianPath.error_factor`).
So CFM with ``t ~ p(t)`` is ``L_w = ½ ∫ w(λ) E||eps_hat - eps||² dλ`` (Kingma & Gao 2023, chapter
10) with ``w(λ(t)) = 2 p(t) c(t)² / (-dλ/dt)`` (:func:`implied_eps_weighting`); on the
rectified-flow path with uniform ``t`` that is ``w(λ) = exp(-λ/2) = sigma/alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ._validation import (
    Device,
    FloatTensor,
    Function,
    Instance,
    Int,
    Number,
    OneOf,
    Rng,
    Times,
    call_like,
    check_batch_time,
    check_time,
    checked,
    value_checks_enabled,
)
from .paths import KINDS, GaussianPath, RectifiedFlowPath
from .tensors import noise_like

_TIME = Times()

__all__ = [
    "TIME_SAMPLINGS",
    "sample_flow_times",
    "flow_time_density",
    "flow_matching_loss",
    "ot_coupling",
    "implied_eps_weighting",
    "ScaledTime",
]

TIME_SAMPLINGS = ("uniform", "logit_normal", "power")
"""Laws of the training time ``t``: ``U(0, 1)``; ``sigmoid(N(loc, scale²))`` (SD3's default
``loc = 0, scale = 1`` puts most draws near ``t = ½``, where the velocity is hardest to predict);
or ``u^power`` with ``u ~ U(0, 1)`` (``power = 2``: small ``t``, near the data, drawn more often,
the law chapter 4 uses for DDPM's ``t = floor(T u²) + 1``)."""

VelocityModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity_model(x_t (B, ...), t (B,) float in [0, 1]) -> u (B, ...)``."""


@checked(
    n=Int(), generator=Rng, sampling=OneOf(TIME_SAMPLINGS), loc=Number(), scale=Number(low=0.0),
    power=Number(low=0.0), device=Device,
)  # fmt: skip
def sample_flow_times(
    n: int,
    generator: torch.Generator | None = None,
    *,
    sampling: str = "uniform",
    loc: float = 0.0,
    scale: float = 1.0,
    power: float = 2.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` training times in ``(0, 1)``, float32 ``(n,)``, drawn from ``TIME_SAMPLINGS``.

    The ends are open: a draw that rounds to 0 (``torch.rand`` returns 0 about once in 2^24
    draws) or to 1 (a logit-normal far in its tail) is moved to the nearest float32 inside, since
    some paths' targets are infinite there (the VP path's ``sigma'(0)``)."""
    gen_device = generator.device if generator is not None else "cpu"
    if sampling == "uniform":
        t = torch.rand(n, generator=generator, device=gen_device)
    elif sampling == "power":
        t = torch.rand(n, generator=generator, device=gen_device) ** power
    else:
        t = torch.sigmoid(loc + scale * torch.randn(n, generator=generator, device=gen_device))
    inside = torch.finfo(t.dtype)
    return t.clamp(min=inside.tiny, max=1.0 - inside.eps / 2).to(device or gen_device)


@checked(
    t=_TIME, sampling=OneOf(TIME_SAMPLINGS), loc=Number(), scale=Number(low=0.0),
    power=Number(low=0.0),
)  # fmt: skip
def flow_time_density(
    t: torch.Tensor,
    sampling: str = "uniform",
    loc: float = 0.0,
    scale: float = 1.0,
    power: float = 2.0,
) -> torch.Tensor:
    """The density ``p(t)`` of :func:`sample_flow_times` (logit-normal:
    ``N(logit t; loc, scale²) / (t (1 - t))``; power: ``t^(1/power - 1) / power``), float64 like
    ``t``."""
    t = t.to(torch.float64)
    if sampling == "uniform":
        return torch.ones_like(t)
    if sampling == "power":
        return t ** (1.0 / power - 1.0) / power
    z = (torch.log(t) - torch.log1p(-t) - loc) / scale
    return torch.exp(-0.5 * z**2) / (scale * math.sqrt(2 * math.pi) * t * (1 - t))


@checked(x0=FloatTensor(finite=True), noise=FloatTensor(like="x0", finite=True))
def ot_coupling(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Reorder ``noise`` so that the pairs ``(x0[i], noise[i])`` solve the minibatch OT problem.

    Minimises ``sum_i ||x0[i] - noise[perm[i]]||²`` over permutations (exact, with SciPy's
    ``linear_sum_assignment``, O(B³)): the squared-Euclidean optimal transport between the two
    empirical measures (Pooladian et al. 2023; Tong et al. 2024). Returns ``noise[perm]``
    ``(B, ...)``; nothing flows back through the pairing.
    """
    from scipy.optimize import linear_sum_assignment  # scikit-learn's dependency

    cost = torch.cdist(x0.detach().flatten(1).double(), noise.detach().flatten(1).double()) ** 2
    _, perm = linear_sum_assignment(cost.cpu().numpy())
    return noise[torch.as_tensor(perm, device=noise.device)]


def _check_finite_coefficients(path: GaussianPath, t: torch.Tensor) -> None:
    """A given ``t`` where the path's target ``alpha' x_0 + sigma' eps`` is finite (``VPPath``'s
    ``sigma'`` is infinite at ``t = 0``): ``ValueError`` naming ``t`` (one host read)."""
    if not value_checks_enabled():
        return
    c = path._coefficients(t.to(torch.float64))
    bad = ~(c.d_alpha.isfinite() & c.d_sigma.isfinite() & c.alpha.isfinite() & c.sigma.isfinite())
    if bool(bad.any()):
        raise ValueError(
            f"t: the target velocity alpha'(t) x0 + sigma'(t) eps of {path!r} is not finite at "
            f"t={float(t[bad][0]):.6g} (sigma' is infinite where a VP path starts); "
            "give times in (0, 1]"
        )


@checked(
    velocity_model=Function("(x_t, t) -> velocity"), x0=FloatTensor(finite=True),
    path=Instance(GaussianPath, optional=True),
    noise=FloatTensor(like="x0", finite=True, optional=True), generator=Rng,
    time_sampling=OneOf(TIME_SAMPLINGS), loc=Number(), scale=Number(low=0.0),
    power=Number(low=0.0), coupling=OneOf(("independent", "ot")),
)  # fmt: skip
def flow_matching_loss(
    velocity_model: VelocityModel,
    x0: torch.Tensor,
    path: GaussianPath | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    time_sampling: str = "uniform",
    loc: float = 0.0,
    scale: float = 1.0,
    power: float = 2.0,
    coupling: str = "independent",
) -> torch.Tensor:
    """CFM: ``E ||u_theta(x_t, t) - (alpha'(t) x_0 + sigma'(t) eps)||²``, averaged over the batch
    and the data dimensions (a scalar with gradients).

    Args:
        velocity_model: ``(x_t (B, ...), t (B,) float) -> (B, ...)``.
        x0: data ``(B, ...)``.
        path: the Gaussian path (default :class:`~minidiff.paths.RectifiedFlowPath`).
        t: training times ``(B,)`` in ``[0, 1]``, where the path's coefficients are finite
            (not ``t = 0`` on a VP path: ``ValueError``); drawn by :func:`sample_flow_times` if
            omitted.
        noise: the ``eps`` paired with each row of ``x0`` (reflow trains on given pairs);
            drawn from ``generator`` if omitted (after ``t``).
        coupling: ``"independent"`` (the pairs as given or drawn) or ``"ot"`` (re-paired within
            the batch by :func:`ot_coupling`).
    """
    path = RectifiedFlowPath() if path is None else path
    drawn = t is None
    if t is None:  # t first, then eps: the order of DDPM's Algorithm 1 and simple_loss
        t = sample_flow_times(
            x0.shape[0],
            generator,
            sampling=time_sampling,
            loc=loc,
            scale=scale,
            power=power,
            device=x0.device,
        )
    tt = check_batch_time(x0, t)
    if not drawn:
        _check_finite_coefficients(path, tt)
    eps = noise if noise is not None else noise_like(x0, generator)
    if coupling == "ot":
        eps = ot_coupling(x0, eps)
    tt = tt.to(x0.dtype)
    x_t = path.sample(x0, tt, noise=eps)
    target = path.conditional_velocity(x0, eps, tt)
    err = (call_like(velocity_model, x_t, tt, name="velocity_model", like="x_t") - target) ** 2
    return err.reshape(err.shape[0], -1).mean(dim=1).mean()


@checked(path=GaussianPath, kind=OneOf(KINDS), density=FloatTensor(min_dim=0, optional=True))
def implied_eps_weighting(
    path: GaussianPath,
    t: torch.Tensor | float,
    *,
    kind: str = "velocity",
    density: torch.Tensor | None = None,
) -> torch.Tensor:
    """``w(λ(t)) = 2 p(t) c(t)² / (-dλ/dt)``: the weighting over log-SNR (chapter 10's ``L_w``)
    that a squared error on ``kind``, with ``t ~ p``, puts on the ε-error.

    ``density`` is ``p(t)`` at ``t`` (default 1, uniform ``t``), a tensor of ``t``'s shape;
    ``c`` is :meth:`~minidiff.paths.GaussianPath.error_factor`. Float64, shaped like ``t``.
    """
    if density is not None and density.shape != check_time(t).shape:
        raise ValueError(
            f"density must have t's shape {tuple(check_time(t).shape)} (p(t) at each t), "
            f"got shape {tuple(density.shape)}"
        )
    c = path.error_factor(kind, t)
    p = torch.ones_like(c) if density is None else density
    return 2 * p.to(c) * c**2 / (-path.d_log_snr(t))


class ScaledTime(nn.Module):
    """``net(x, scale · t)``: a network built for timesteps ``1..T`` fed continuous ``t ∈ [0, 1]``.

    Sinusoidal time embeddings (``TimeMLP``, ``UNet``) are tuned for integer timesteps; a flow
    model's ``t ∈ [0, 1]`` is spread over the same range by ``scale`` (``T``, 1000 by default).
    ``x: (B, ...)``, ``t: (B,)`` float -> ``net``'s output.
    """

    @checked(net=Instance(nn.Module, "a torch.nn.Module"), scale=Number(low=0.0))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, net: nn.Module, scale: float = 1000.0) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t * self.scale)
