"""Neural networks for diffusion models: time embeddings and a time-conditioned MLP for 2D data.

The denoiser ``eps_theta(x_t, t)`` of DDPM (Ho et al., 2020, Algorithm 1) needs to know the noise
level, so every network here takes the timestep ``t`` next to the noisy input ``x_t``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Int,
    Number,
    checked,
    describe,
    value_checks_enabled,
)

__all__ = ["sinusoidal_embedding", "TimeMLP", "NoiseConditionalScoreMLP"]


def _times(t: object, name: str, x: Tensor | None = None) -> Tensor:
    """Timesteps ``(B,)``: an integer or a floating tensor (``B`` rows like ``x``)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B,), got {describe(t)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be an integer or floating tensor, got dtype {t.dtype}")
    if t.ndim != 1 or (isinstance(x, Tensor) and t.shape[0] != x.shape[0]):
        rows = f" = ({x.shape[0]},) matching x" if isinstance(x, Tensor) else ""
        raise ValueError(f"{name} must have shape (B,){rows}, got {tuple(t.shape)}")
    return t


def _finite_times(t: object, name: str) -> Tensor:
    tt = _times(t, name)
    if tt.is_floating_point() and value_checks_enabled() and not bool(torch.isfinite(tt).all()):
        raise ValueError(f"{name} must be finite")
    return tt


class _Rows(FloatTensor):
    """``x: (B, D)`` with the network's ``D`` (the method's ``self.data_dim``)."""

    def __init__(self) -> None:
        super().__init__(min_dim=0)
        self.refs = ("self",)

    def check(self, value: object, name: str, call: Any) -> Tensor:
        x = super().check(value, name, call)
        D = call.get("self").data_dim
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"{name} must have shape (B, {D}), got {tuple(x.shape)}")
        return x


# The checks of x and t in a time-conditioned network's forward (no value is read: a forward runs
# at every step of a loop).
TIME_NET_INPUTS = {"x": _Rows(), "t": Check(_times, uses=("x",))}


@checked(t=Check(_finite_times), dim=Int(), max_period=Number(low=0.0))
def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    As in "Attention is all you need" (Vaswani et al., 2017) and DDPM (Ho et al., 2020):
    with ``half = dim // 2`` and frequencies ``w_k = max_period ** (-k / half)``, ``k = 0..half-1``,

        emb(t) = [cos(t * w_0), ..., cos(t * w_{half-1}), sin(t * w_0), ..., sin(t * w_{half-1})]

    (one trailing zero column when ``dim`` is odd). The lowest frequency has period
    ``2 * pi * max_period``, so integer timesteps ``t in {1..T}`` with ``T <= max_period`` stay
    distinct.

    Args:
        t: ``(B,)`` integer or floating tensor of timesteps (finite).
        dim: embedding width, ``>= 1``.
        max_period: longest period scale, ``> 0``.

    Returns:
        ``(B, dim)`` tensor; float dtype of ``t`` if ``t`` is floating, else the default dtype.
    """
    out_dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    half = dim // 2
    # float64 for the phases: t * w_k reaches ~1e3 and float32 would lose the low bits of the angle.
    tt = t.to(torch.float64)
    k = torch.arange(half, dtype=torch.float64, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))
    args = tt[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2 == 1:  # (for dim = 1 the only column: emb is (B, 0) here)
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=1)
    return emb.to(out_dtype)


class TimeMLP(nn.Module):
    """Time-conditioned residual MLP ``eps_theta(x, t)`` for low-dimensional data (2D toys).

    Architecture (shapes for a batch of ``B``):

        e      = MLP(sinusoidal_embedding(t * time_scale, time_dim))          (B, time_dim)
        (s_l, b_l) = Linear(e)  for every block l                             FiLM scale / shift
        h_0    = Linear(gamma(x))                                             (B, hidden)
        h_l    = h_{l-1} + SiLU( Linear(LN(h_{l-1})) * (1 + s_l) + b_l )      l = 1..n_layers
        out    = Linear(SiLU(LN(h_L)))                                        (B, D), zero init

    ``gamma(x) = x`` by default. With ``x_frequencies = K > 0`` it is the positional encoding of
    NeRF (Mildenhall et al., 2020), ``gamma(x) = [x, sin(2^k pi x), cos(2^k pi x)]_{k < K}`` per
    coordinate: an MLP learns sharp functions of a low-dimensional input slowly ("spectral
    bias", Tancik et al., 2020), and thin 2D structures (spirals, rolls) need sharp denoisers at
    small ``t``. FiLM conditioning (Perez et al., 2018) injects the time into every hidden block.
    The output layer starts at zero so the untrained network predicts ``eps = 0`` (loss 1 per
    dimension for L_simple) instead of a random offset. In eval mode or without gradients the
    time branch runs once per *distinct* timestep, which makes sampling (all rows share ``t``)
    cheap; in training, where every row has its own ``t``, it runs per row without that
    bookkeeping.

    Args:
        data_dim: ``D``, the data dimension.
        hidden: width of the hidden blocks.
        n_layers: number of residual blocks.
        time_dim: width of the sinusoidal embedding.
        time_scale: multiply ``t`` by this before embedding; 1 for integer ``t in {1..T}``,
            e.g. 1000 for continuous ``t in [0, 1]``.
        layer_norm: use LayerNorm before each block (True) or not.
        x_frequencies: number ``K`` of octaves in the input encoding ``gamma`` (0: none).
    """

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        data_dim=Int(),
        hidden=Int(),
        n_layers=Int(),
        time_dim=Int(),
        time_scale=Number(low=0.0),
        layer_norm=Flag,
        x_frequencies=Int(minimum=0, maximum=16),
    )
    def __init__(
        self,
        data_dim: int = 2,
        hidden: int = 256,
        n_layers: int = 4,
        time_dim: int = 64,
        time_scale: float = 1.0,
        layer_norm: bool = True,
        x_frequencies: int = 0,
    ) -> None:
        super().__init__()
        self.data_dim = data_dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.time_dim = time_dim
        self.time_scale = float(time_scale)
        self.x_frequencies = x_frequencies
        # not persistent: a function of x_frequencies, so state dicts stay as they were
        freqs = math.pi * 2.0 ** torch.arange(x_frequencies, dtype=torch.float32)
        self.register_buffer("x_freqs", freqs, persistent=False)

        # The time branch stays time_dim wide: t is a scalar, and the FiLM projection, evaluated
        # once per distinct timestep, would otherwise cost more than the main network.
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim), nn.SiLU()
        )
        self.film = nn.Linear(time_dim, 2 * hidden * n_layers)
        # Start every block as a plain (unmodulated) layer: scale 0, shift 0.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.input = nn.Linear(data_dim * (1 + 2 * x_frequencies), hidden)
        self.norms = nn.ModuleList(
            [nn.LayerNorm(hidden) if layer_norm else nn.Identity() for _ in range(n_layers)]
        )
        self.linears = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n_layers)])
        self.out_norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.output = nn.Linear(hidden, data_dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def encode_input(self, x: Tensor) -> Tensor:
        """``gamma(x)``: ``(B, D) -> (B, D * (1 + 2K))`` (the identity when ``K = 0``)."""
        if self.x_frequencies == 0:
            return x
        freqs = self.get_buffer("x_freqs").to(x.dtype)
        angles = (x[:, :, None] * freqs).flatten(1)  # (B, D * K)
        return torch.cat([x, angles.sin(), angles.cos()], dim=1)

    def _film(self, t: Tensor, extra: Tensor | None = None) -> Tensor:
        """FiLM scales and shifts ``(B, 2 * hidden * n_layers)`` from ``t`` (B,); ``extra``
        ``(B, time_dim)`` is added to the time embedding (a class embedding, for instance)."""
        emb = sinusoidal_embedding.unchecked(t.to(torch.float64) * self.time_scale, self.time_dim)
        emb = emb.to(dtype=self.input.weight.dtype)
        return self.film(self.time_mlp(emb if extra is None else emb + extra))

    def _trunk(self, x: Tensor, film: Tensor) -> Tensor:
        """The FiLM-modulated residual blocks and the output layer, given one row of ``film``
        per row of ``x``."""
        scales_shifts = film.chunk(2 * self.n_layers, dim=1)
        h = self.input(self.encode_input(x.to(self.input.weight.dtype)))
        for i, (norm, linear) in enumerate(zip(self.norms, self.linears, strict=True)):
            scale, shift = scales_shifts[2 * i], scales_shifts[2 * i + 1]
            # FiLM: a * (1 + scale) + shift, fused into one kernel
            h = h + nn.functional.silu(torch.addcmul(shift, linear(norm(h)), 1 + scale))
        return self.output(nn.functional.silu(self.out_norm(h))).to(x.dtype)

    @checked(**TIME_NET_INPUTS)
    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # type: ignore[override]
        """Predict the noise: ``x: (B, D)`` noisy data, ``t: (B,)`` timesteps -> ``(B, D)``."""
        if self.training and torch.is_grad_enabled():
            # Training draws a fresh t per row: deduplicating would cost a sort and a host sync
            # and save nothing.
            film = self._film(t)  # (B, 2 * hidden * n_layers)
        else:
            # Sampling shares one t across the batch: run the time branch once per distinct t.
            t_unique, inverse = torch.unique(t, return_inverse=True)
            film = self._film(t_unique)  # (U, 2 * hidden * n_layers)
            if t_unique.numel() > 1:  # a single timestep broadcasts without a gather
                film = film[inverse]
        return self._trunk(x, film)


def _per_sample_levels(sigma: object, name: str, x: Tensor) -> Tensor:
    """A noise level per sample: a number or a tensor ``(B,)`` (or one element), finite and > 0,
    returned as ``(B,)`` in ``x``'s dtype and device."""
    if isinstance(sigma, Tensor):
        s = sigma.to(device=x.device, dtype=x.dtype).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
    elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        s = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
    else:
        raise TypeError(f"{name} must be a tensor (B,) or a number, got {describe(sigma)}")
    if s.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must have shape ({x.shape[0]},) like the batch of x, got {tuple(s.shape)}"
        )
    if not bool(((s > 0) & torch.isfinite(s)).all()):  # one host read, NaN included
        raise ValueError(f"{name} must be finite and > 0")
    return s


class NoiseConditionalScoreMLP(nn.Module):
    """A noise-conditional score network ``s_θ(x, σ)`` for low-dimensional data (2D toys).

    ``s_θ(x, σ) = f_θ(x, log σ) / σ`` when ``scale_by_sigma`` (the NCSN v2 parameterisation,
    Song & Ermon 2020: the true score of ``q_σ`` scales like ``1/σ``, so ``f_θ`` only has to output
    ``O(1)`` values — it is ``-E[z | x̃]``), else ``f_θ(x, log σ)`` directly. ``f_θ`` is a
    :class:`~minidiff.nn.TimeMLP` with ``log σ`` (times ``sigma_scale``) in place of the time.

    Forward: ``x: (B, D)``, ``sigma: (B,)`` tensor or a number ``> 0`` -> ``(B, D)``.
    """

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        data_dim=Int(),
        hidden=Int(),
        n_layers=Int(),
        emb_dim=Int(),
        scale_by_sigma=Flag,
        sigma_scale=Number(low=0.0),
    )
    def __init__(
        self,
        data_dim: int = 2,
        hidden: int = 128,
        n_layers: int = 3,
        emb_dim: int = 32,
        *,
        scale_by_sigma: bool = True,
        sigma_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.net = TimeMLP(
            data_dim=data_dim,
            hidden=hidden,
            n_layers=n_layers,
            time_dim=emb_dim,
            time_scale=sigma_scale,
        )
        self.scale_by_sigma = scale_by_sigma
        self.data_dim = data_dim

    @checked(x=FloatTensor(dim=2), sigma=Check(_per_sample_levels, uses=("x",)))
    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:  # type: ignore[override]
        """Score at level ``sigma``: ``x (B, D)``, ``sigma (B,)`` or a number -> ``(B, D)``."""
        s = torch.as_tensor(sigma)  # @checked made it a (B,) tensor like x
        out = self.net(x, s.log())
        return out / s[:, None] if self.scale_by_sigma else out
