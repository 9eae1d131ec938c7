"""DDIM: denoising diffusion implicit models (Song, Meng & Ermon 2021).

A non-Markovian forward process with the same marginals ``q(x_t | x_0)`` as DDPM gives the
reverse step (Eq. 12), for any earlier timestep ``t_prev < t``:

    x0_hat     = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)                      "predicted x_0"
    x_{t_prev} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma²) eps + sigma z
    sigma(eta) = eta · sqrt((1 - ab_prev) / (1 - ab_t)) · sqrt(1 - ab_t / ab_prev)   (Eq. 16)

``ab`` is ``alpha_bar`` and ``ab_prev = alpha_bar[t_prev]`` (``alpha_bar[0] = 1``, so the last step
``t -> 0`` returns ``x0_hat``). Two knobs cover a family of samplers: the *timesteps* (all ``T..1``
or a strided subset) and ``eta``. With ``eta = 1`` and every timestep, ``sigma² = beta_tilde_t``
and the step *is* ancestral DDPM with ``sigma² = beta_tilde``; with ``eta = 0`` the sampler is
deterministic: an Euler step of the probability-flow ODE in the variables
``(x / sqrt(ab), sqrt(1 - ab) / sqrt(ab))`` (chapter 8).

``diffusers`` calls this ``DDIMScheduler`` (``eta`` has the same meaning; their ``timesteps`` are
our ``t - 1``) and the inversion ``DDIMInverseScheduler``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .._validation import (
    check_all_finite,
    check_callable,
    check_device,
    check_float_dtype,
    check_generator,
    check_instance,
    check_noise,
    check_number,
    check_positive_int,
    check_tensor,
)
from ..diffusion import EpsModel, call_eps_model
from ..schedules import NoiseSchedule, check_timesteps
from ..tensors import noise_like
from ._start import check_start, check_start_device
from .clipping import clip_eps, resolve_clip
from .ddpm import NonFiniteSampleError
from .registry import register_sampler

__all__ = [
    "ddim_sigma",
    "ddim_step",
    "ddim_sample",
    "ddim_invert",
    "ddim_timesteps",
    "respace_schedule",
    "respace_eps_model",
]


def _check_eta(eta: object) -> float:
    """``eta`` as a float: finite and ``>= 0`` (0 = deterministic DDIM, 1 = DDPM)."""
    return check_number(eta, "eta", low=0.0, low_open=False)


def _check_prev(t_prev: object, tt: torch.Tensor, T: int) -> torch.Tensor:
    """``t_prev`` as a long tensor ``(B,)`` in ``0..T-1`` with ``t_prev < t`` elementwise."""
    B = tt.shape[0]
    if isinstance(t_prev, bool):
        raise TypeError("t_prev must be an int or an integer tensor, got bool")
    if isinstance(t_prev, int):
        t_prev = torch.full((B,), t_prev, dtype=torch.long)
    if not isinstance(t_prev, torch.Tensor):
        raise TypeError(
            f"t_prev must be an int or an integer torch.Tensor, got {type(t_prev).__name__}"
        )
    if t_prev.dtype.is_floating_point or t_prev.dtype.is_complex or t_prev.dtype == torch.bool:
        raise TypeError(
            f"t_prev must be an integer (long) tensor of timesteps in 0..{T - 1}, "
            f"got dtype {t_prev.dtype}"
        )
    if t_prev.dim() != 1 or t_prev.shape[0] != B:
        raise ValueError(
            f"t_prev must have shape ({B},) (one timestep per sample), got {tuple(t_prev.shape)}"
        )
    tp = t_prev.long().to(tt.device)
    if tp.numel() and bool(((tp >= 0) & (tp <= T - 1) & (tp < tt)).all()):
        return tp  # one host read when all is well
    if tp.numel() and (int(tp.min()) < 0 or int(tp.max()) > T - 1):
        raise ValueError(
            f"t_prev must lie in 0..{T - 1}, got values in {int(tp.min())}..{int(tp.max())}"
        )
    if bool((tp >= tt).any()):
        raise ValueError(
            "t_prev must be smaller than t for every sample (a DDIM step goes back in time)"
        )
    return tp


def ddim_sigma(
    t: torch.Tensor | int, t_prev: torch.Tensor | int, schedule: NoiseSchedule, eta: float
) -> torch.Tensor:
    """``sigma_t(eta) = eta sqrt((1 - ab_prev)/(1 - ab_t)) sqrt(1 - ab_t/ab_prev)`` (Song et al.
    2021, Eq. 16).

    ``t: (B,)`` long in ``1..T`` (or an int), ``t_prev: (B,)`` in ``0..T-1`` with ``t_prev < t``.
    Returns a float64 tensor ``(B,)``. For ``t_prev = t - 1`` and ``eta = 1``,
    ``sigma² = beta_tilde_t``.
    """
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    eta = _check_eta(eta)
    B = (
        t.shape[0]
        if isinstance(t, torch.Tensor)
        else (t_prev.shape[0] if isinstance(t_prev, torch.Tensor) else 1)
    )
    tt = check_timesteps(t, B, sched.T)
    tp = _check_prev(t_prev, tt, sched.T)
    return _sigma(tt, tp, sched, eta)


def _sigma(tt: torch.Tensor, tp: torch.Tensor, sched: NoiseSchedule, eta: float) -> torch.Tensor:
    ab = sched.alpha_bar.to(tt.device)
    ab_t, ab_p = ab[tt], ab[tp]
    return eta * ((1 - ab_p) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_p).clamp(min=0.0).sqrt()


def ddim_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: object = None,
) -> torch.Tensor:
    """One DDIM step ``x_t -> x_{t_prev}`` (Song et al. 2021, Eq. 12) given
    ``eps = eps_theta(x_t, t)``.

    ``x_{t_prev} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma²) eps + sigma z`` with
    ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)`` and ``sigma = ddim_sigma(t, t_prev, eta)``.

    Shapes: ``x_t, eps, noise: (B, ...)``; ``t: (B,)`` long in ``1..T``; ``t_prev: (B,)`` long in
    ``0..T-1`` (ints broadcast). Randomness: when ``eta > 0`` and ``noise`` is None, one ``z`` is
    drawn from ``generator`` (also on the last step, where ``sigma = 0``, so that the draws line up
    with :func:`~minidiff.samplers.ddpm.ddpm_step`); when ``eta = 0`` nothing is drawn.
    ``clip_x0``: the step uses ``clip(x̂₀)`` and the ``ε`` re-derived from it
    (:mod:`minidiff.samplers.clipping`).
    """
    check_tensor(x_t, "x_t")
    clip = resolve_clip(clip_x0)
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    eta = _check_eta(eta)
    tt = check_timesteps(t, x_t.shape[0], sched.T).to(x_t.device)
    tp = _check_prev(t_prev, tt, sched.T)
    check_tensor(eps, "eps")
    if eps.shape != x_t.shape:
        raise ValueError(
            f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}"
        )
    if noise is not None:
        check_tensor(noise, "noise")
    check_all_finite((x_t, "x_t"), (eps, "eps"), (noise, "noise"))
    _check_eta_fits(tt, tp, sched, eta)
    z = check_noise(noise, x_t, "x_t", generator) if (eta > 0 or noise is not None) else None
    if clip is not None:
        eps = clip_eps(x_t, tt, eps, sched, clip)
    return _ddim_step(x_t, tt, tp, eps, sched, eta, z)


def _check_eta_fits(tt: torch.Tensor, tp: torch.Tensor, sched: NoiseSchedule, eta: float) -> None:
    """``sigma² <= 1 - alpha_bar[t_prev]`` for every step (always true for ``eta <= 1``)."""
    ab = sched.alpha_bar.to(tt.device)
    dir_var = 1.0 - ab[tp] - _sigma(tt, tp, sched, eta) ** 2
    if bool((dir_var < -1e-12).any()):
        raise ValueError(
            f"eta={eta} is too large for this step: sigma² exceeds 1 - alpha_bar[t_prev]"
        )


def _ddim_step(
    x_t: torch.Tensor,
    tt: torch.Tensor,
    tp: torch.Tensor,
    eps: torch.Tensor,
    sched: NoiseSchedule,
    eta: float,
    z: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`ddim_step` without checks (``tt``, ``tp`` long tensors; ``z`` None: no noise)."""
    nd = x_t.dim()
    sigma64 = _sigma(tt, tp, sched, eta)
    ab = sched.alpha_bar.to(tt.device)
    ab_t, ab_p = ab[tt], ab[tp]
    dir_var = 1.0 - ab_p - sigma64**2

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.to(dtype=x_t.dtype, device=x_t.device).reshape(-1, *([1] * (nd - 1)))

    x0_hat = (x_t - col((1 - ab_t).sqrt()) * eps) / col(ab_t.sqrt())
    x_prev = col(ab_p.sqrt()) * x0_hat + col(dir_var.clamp(min=0.0).sqrt()) * eps
    if z is not None:
        x_prev = x_prev + col(sigma64) * z
    return x_prev


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """``steps`` evenly strided, strictly decreasing timesteps ``T, T - T/steps, …, T/steps``
    (rounded).

    Returns a long tensor ``(steps,)``. ``steps == T`` gives every timestep ``T, …, 1``;
    ``steps == 1`` gives ``[T]`` (one jump to 0). This is the "trailing" spacing of Lin et al.
    (2024, Table 2): the first step starts from the schedule's own ``x_T`` and the ``steps`` jumps
    (the last one from ``tau_1 ≈ T/steps`` to 0) are equally long, like a uniform grid on
    ``t/T ∈ [0, 1]``. (``schedule.timesteps(steps)`` ends at ``t = 1`` instead, which wastes one
    network call on the tiny jump ``1 -> 0``.)
    """
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    check_positive_int(steps, "steps")
    if steps > sched.T:
        raise ValueError(
            f"steps must be <= T={sched.T} (one network call per timestep), got {steps}"
        )
    k = torch.arange(steps, dtype=torch.float64)
    # the stride T/steps >= 1 keeps the rounded values distinct
    return (sched.T - k * sched.T / steps).round().long()


def _resolve_timesteps(schedule: NoiseSchedule, steps: object, timesteps: object) -> torch.Tensor:
    if timesteps is None:
        if steps is None:
            raise TypeError("give steps (an int in 1..T) or an explicit timesteps sequence")
        return ddim_timesteps(schedule, steps)  # type: ignore[arg-type]
    if isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    try:
        ts = torch.as_tensor(timesteps)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}") from exc
    if ts.dtype.is_floating_point or ts.dtype == torch.bool or ts.dim() != 1 or ts.numel() < 1:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    ts = ts.long().cpu()
    if int(ts.min()) < 1 or int(ts.max()) > schedule.T:
        raise ValueError(
            f"timesteps must lie in 1..{schedule.T}, got {int(ts.min())}..{int(ts.max())}"
        )
    if ts.numel() > 1 and bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("timesteps must be strictly decreasing (e.g. 1000, 980, …, 1)")
    if steps is not None:
        check_positive_int(steps, "steps")
        if steps != ts.numel():
            raise ValueError(f"steps={steps} disagrees with len(timesteps)={ts.numel()}")
    return ts


@register_sampler("ddim")
def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    timesteps: Sequence[int] | torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
    clip_x0: object = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw ``shape[0]`` samples with ``steps`` DDIM steps (one network call each).

    Args:
        eps_model: callable ``(x_t (B, ...), t (B,) long) -> eps (B, ...)``.
        shape: batch shape, e.g. ``(10_000, 2)``; may be omitted when ``x_T`` is given.
        x_T: a given starting point ``(B, ...)`` at ``t = T`` (e.g. the latents of
            :func:`ddim_invert`) instead of a draw ``x_T ~ N(0, I)``. The sampler then runs in
            ``x_T``'s dtype and on its device (``dtype`` is ignored, ``device`` must be None or
            agree) and ``generator`` is used only for the per-step noise when ``eta > 0``.
        steps: number of timesteps, evenly strided ``T .. 1`` (:func:`ddim_timesteps`).
        eta: 0 = deterministic DDIM, 1 = ancestral DDPM with ``sigma² = beta_tilde`` on these
            timesteps.
        generator: draws ``x_T`` first, then (only if ``eta > 0``) one ``z`` per step, in the
            same order as :func:`~minidiff.samplers.ddpm.ddpm_sample`.
        return_trajectory: also return ``[x_{tau_S}, …, x_{tau_1}, x_0]`` (``steps + 1`` tensors).
        timesteps: an explicit strictly decreasing sequence in ``1..T`` instead of ``steps``.
        clip_x0: None (the maths of chapter 8), ``"static"``, ``"dynamic"`` or a map
            ``x̂₀ -> x̂₀``: each step uses the clipped ``x̂₀`` and the ``ε`` re-derived from it
            (:mod:`minidiff.samplers.clipping`; for images in ``[-1, 1]``).
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    clip = resolve_clip(clip_x0)
    shape = check_start(x_T, shape)
    eta = _check_eta(eta)
    ts = _resolve_timesteps(sched, steps, timesteps)
    check_generator(generator)
    device = check_device(device)
    check_float_dtype(dtype)
    _check_eta_fits(ts, torch.cat([ts[1:], ts.new_zeros(1)]), sched, eta)
    if x_T is not None:
        check_start_device(x_T, device)
        x = x_T.detach().clone()
        device = x.device
    else:
        if device is None:
            device = generator.device if generator is not None else "cpu"
        gen_device = generator.device if generator is not None else device
        x = torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)
    trajectory = [x] if return_trajectory else []
    prev = torch.cat([ts[1:], ts.new_zeros(1)])
    with torch.no_grad():
        for i, (t, tp) in enumerate(
            tqdm(
                list(zip(ts.tolist(), prev.tolist(), strict=True)),
                desc="DDIM",
                disable=not progress,
                leave=False,
            )
        ):
            tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
            eps = call_eps_model(eps_model, x, tt)
            if clip is not None:
                eps = clip_eps(x, tt, eps, sched, clip)
            tpp = torch.full((shape[0],), tp, dtype=torch.long, device=device)
            z = noise_like(x, generator) if eta > 0 else None
            x = _ddim_step(x, tt, tpp, eps, sched, eta, z)
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteSampleError(
                    f"ddim_sample produced non-finite values at step {i + 1} of {len(ts)} "
                    f"(t={t} -> {tp})"
                )
            if return_trajectory:
                trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def ddim_invert(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    steps: int | None = None,
    return_trajectory: bool = False,
    timesteps: Sequence[int] | torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Deterministic DDIM encoding ``x_0 -> x_T`` (the ``eta = 0`` ODE run forwards).

    The ``eta = 0`` step from ``s`` up to ``t > s`` is
    ``x_t = sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps`` with
    ``x0_hat = (x_s - sqrt(1 - ab_s) eps) / sqrt(ab_s)``. The exact inverse of the sampler's step
    ``t -> s`` would need ``eps_theta(x_t, t)`` at the unknown ``x_t``; we use ``eps_theta(x_s, t)``
    instead (``x_t ≈ x_s`` inside the network, the usual approximation of DDIM inversion), so no
    call at ``t = 0`` is needed and the round-trip error ``|ddim_sample(ddim_invert(x0)) - x0|``
    shrinks as ``steps`` grows.

    Args:
        x0: data ``(B, ...)``.
        steps / timesteps: the same strided set as :func:`ddim_sample` (visited upwards).
    Returns:
        ``x_T`` (``(B, ...)``) or ``(x_T, [x_0, x_{tau_1}, …, x_{tau_S}])``. Decode it with
        ``ddim_sample(eps_model, schedule, steps=steps, x_T=x_T)`` (the same strided steps).
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    check_tensor(x0, "x0", finite=True)
    ts = _resolve_timesteps(sched, steps, timesteps).flip(0)  # increasing tau_1 < … < tau_S
    prev = torch.cat([ts.new_zeros(1), ts[:-1]])
    ab = sched.alpha_bar
    x = x0
    trajectory = [x] if return_trajectory else []
    nd = x0.dim()

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.to(dtype=x0.dtype, device=x0.device).reshape(-1, *([1] * (nd - 1)))

    with torch.no_grad():
        for i, (s, t) in enumerate(
            tqdm(
                list(zip(prev.tolist(), ts.tolist(), strict=True)),
                desc="DDIM inversion",
                disable=not progress,
                leave=False,
            )
        ):
            tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
            eps = call_eps_model(eps_model, x, tt)
            ab_s, ab_t = ab[s].expand(1), ab[t].expand(1)
            x0_hat = (x - col((1 - ab_s).sqrt()) * eps) / col(ab_s.sqrt())
            x = col(ab_t.sqrt()) * x0_hat + col((1 - ab_t).sqrt()) * eps
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteSampleError(
                    f"ddim_invert produced non-finite values at step {i + 1} of {len(ts)} "
                    f"(t={s} -> {t})"
                )
            if return_trajectory:
                trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


def respace_schedule(
    schedule: NoiseSchedule, timesteps: Sequence[int] | torch.Tensor
) -> NoiseSchedule:
    """The schedule of the sub-chain ``tau_1 < … < tau_S``: ``ab'_i = ab_{tau_i}``,
    ``beta'_i = 1 - ab_{tau_i}/ab_{tau_{i-1}}``.

    ``timesteps`` may be given in either order (values in ``1..T``). DDPM on the respaced schedule
    with ``eps'(x, i) = eps(x, tau_i)`` (:func:`respace_eps_model`) and ``sigma² = beta_tilde`` is
    exactly DDIM with ``eta = 1`` on the strided timesteps (Nichol & Dhariwal 2021, Sec. 4).
    """
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    if timesteps is None or isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints in 1..T, got {timesteps!r}")
    try:
        raw = torch.as_tensor(timesteps)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}") from exc
    if raw.dim() == 1 and raw.numel() > 1:
        raw = raw.sort(descending=True).values
        if bool((raw[1:] == raw[:-1]).any()):
            raise ValueError(f"timesteps must not repeat a value, got {timesteps!r}")
    ts = _resolve_timesteps(sched, None, raw).flip(0)
    ab = sched.alpha_bar[ts]
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    return NoiseSchedule(1.0 - ab / ab_prev)


def respace_eps_model(eps_model: EpsModel, timesteps: Sequence[int] | torch.Tensor) -> EpsModel:
    """Wrap ``eps_model`` so that step ``i`` of the respaced chain calls it at ``tau_i``
    (increasing order)."""
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    if timesteps is None or isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints in 1..T, got {timesteps!r}")
    raw = torch.as_tensor(timesteps)
    if raw.dtype.is_floating_point or raw.dtype == torch.bool or raw.dim() != 1 or raw.numel() < 1:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    if bool((raw < 1).any()):
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    ts = raw.long().sort().values
    table = torch.cat([ts.new_zeros(1), ts])

    def eps(x_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return eps_model(x_t, table.to(i.device)[i])

    return eps
