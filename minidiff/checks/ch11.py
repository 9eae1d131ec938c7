"""Checkers for exercise 11 (the U-Net): the sinusoidal embedding and a ResBlock's time injection.

- ``sinusoidal_embedding(t: (B,) long, dim: int even) -> (B, dim)``:
  ``[cos(w_0 t) .. cos(w_{h-1} t), sin(w_0 t) .. sin(w_{h-1} t)]``, ``w_k = 10000 ** (-k / h)``,
  ``h = dim // 2`` (the layout of :func:`minidiff.nn.sinusoidal_embedding`)
- ``time_injection(h: (B, C, H, W), emb: (B, E), weight: (C, E), bias: (C,)) -> (B, C, H, W)``:
  ``h + (SiLU(emb) @ weight.T + bias)[:, :, None, None]`` (DDPM's ResBlock, as in
  :class:`minidiff.nn.ResBlock` with ``time_injection="add"``)

``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from ..nn.mlp import sinusoidal_embedding as _sinusoidal_embedding
from ._core import Case, CheckResult, Mistake, Spec, check_spec

__all__ = ["check_sinusoidal_embedding", "check_time_injection", "SPECS"]


# --- sinusoidal_embedding ------------------------------------------------------------------------


def _cases_embedding() -> list[Case]:
    return [
        ((torch.tensor([1, 2, 10, 500, 1000]), 8), {}),
        ((torch.tensor([3, 77, 250]), 16), {}),
        ((torch.arange(1, 41, 3), 6), {}),
    ]


def _phases(t: torch.Tensor, dim: int, denom: float, sign: float = -1.0) -> torch.Tensor:
    k = torch.arange(dim // 2, dtype=torch.float64)
    return t.double()[:, None] * torch.exp(sign * math.log(10_000.0) * k / denom)[None, :]


_EMBEDDING = Spec(
    _cases_embedding,
    lambda t, dim: _sinusoidal_embedding(t, dim).double(),
    {
        "sin_first": Mistake(
            lambda t, d: torch.cat([_phases(t, d, d // 2).sin(), _phases(t, d, d // 2).cos()], 1),
            "your halves are swapped: this course puts the cosines first, then the sines (either "
            "order works in a network, but the checker follows minidiff.nn.sinusoidal_embedding).",
        ),
        "exponent_over_dim": Mistake(
            lambda t, d: torch.cat([_phases(t, d, d).cos(), _phases(t, d, d).sin()], 1),
            "your frequencies use 10000**(-k/dim); with dim/2 frequencies the exponent is "
            "-k/(dim/2), so that the lowest frequency reaches 1/10000 and the features cover "
            "all scales of t.",
        ),
        "interleaved": Mistake(
            lambda t, d: torch.stack(
                [_phases(t, d, d // 2).cos(), _phases(t, d, d // 2).sin()], 2
            ).reshape(t.shape[0], d),
            "you interleaved cos and sin (cos w0, sin w0, cos w1, ...); concatenate them instead: "
            "all cosines, then all sines.",
        ),
        "positive_exponent": Mistake(
            lambda t, d: torch.cat(
                [_phases(t, d, d // 2, 1.0).cos(), _phases(t, d, d // 2, 1.0).sin()], 1
            ),
            "your frequencies grow (10000**(+k/h)); they should *decrease*, w_k = 10000**(-k/h), "
            "from 1 (tells neighbouring steps apart) to 1/10000 (a smooth, coarse position).",
        ),
    },
    atol=2e-4,  # float32 phases of t up to 1000 are good to about 1e-4
)


# --- time_injection -----------------------------------------------------------------------------


def _cases_injection() -> list[Case]:
    cases: list[Case] = []
    for i, (b, c, hw, e) in enumerate([(2, 4, 3, 5), (3, 6, 2, 8), (1, 2, 4, 3)]):
        g = torch.Generator().manual_seed(110 + i)
        h = torch.randn(b, c, hw, hw, generator=g)
        emb = torch.randn(b, e, generator=g)
        weight = torch.randn(c, e, generator=g) / math.sqrt(e)
        bias = torch.randn(c, generator=g)
        cases.append(((h, emb, weight, bias), {}))
    return cases


def _inject(
    act_in: bool = True, act_out: bool = False, use_bias: bool = True, op: str = "add"
) -> Callable[..., Any]:
    def fn(h: torch.Tensor, emb: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        e = (F.silu(emb) if act_in else emb) @ w.T + (b if use_bias else 0)
        e = (F.silu(e) if act_out else e)[:, :, None, None]
        return h + e if op == "add" else h * e

    return fn


_INJECTION = Spec(
    _cases_injection,
    _inject(),
    {
        "no_silu": Mistake(
            _inject(act_in=False),
            "the embedding goes through SiLU *before* the projection: h + (SiLU(emb) @ W.T + b). "
            "(The time MLP ends with a Linear layer, so each block applies its own nonlinearity.)",
        ),
        "silu_after": Mistake(
            _inject(act_in=False, act_out=True),
            "you applied SiLU after the projection; DDPM applies it to the embedding first: "
            "h + (SiLU(emb) @ W.T + b).",
        ),
        "no_bias": Mistake(
            _inject(use_bias=False),
            "you left out the projection's bias b: h + (SiLU(emb) @ W.T + b).",
        ),
        "multiplied": Mistake(
            _inject(op="mul"),
            "you multiplied h by the projection; the time is *added* to every channel: h + proj "
            "(a scale-and-shift is adaptive GroupNorm, a different block).",
        ),
    },
)

SPECS: dict[str, Spec] = {"sinusoidal_embedding": _EMBEDDING, "time_injection": _INJECTION}


def check_sinusoidal_embedding(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``sinusoidal_embedding(t: (B,), dim) -> [cos(w_k t), sin(w_k t)]: (B, dim)``."""
    return check_spec("sinusoidal_embedding", SPECS["sinusoidal_embedding"], fn, display=display)


def check_time_injection(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``time_injection(h, emb, weight, bias) -> h + (SiLU(emb) @ weight.T + bias)``
    broadcast over the pixels."""
    return check_spec("time_injection", SPECS["time_injection"], fn, display=display)
