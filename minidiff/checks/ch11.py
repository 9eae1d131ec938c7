"""Checkers for exercise 11 (the U-Net): the sinusoidal embedding and a ResBlock's time injection.

- ``sinusoidal_embedding(t: (B,) long, dim: int even) -> (B, dim)``:
  ``[cos(w_0 t) .. cos(w_{h-1} t), sin(w_0 t) .. sin(w_{h-1} t)]``, ``w_k = 10000 ** (-k / h)``,
  ``h = dim // 2`` (the layout of :func:`minidiff.nn.sinusoidal_embedding`)
- ``time_injection(h: (B, C, H, W), emb: (B, E), weight: (C, E), bias: (C,)) -> (B, C, H, W)``:
  ``h + (SiLU(emb) @ weight.T + bias)[:, :, None, None]`` (DDPM's ResBlock, as in
  :class:`minidiff.nn.ResBlock` with ``time_injection="add"``)

- ``attention(h: (B, C, H, W), w_qkv: (3C, C), b_qkv: (3C,), w_proj: (C, C), b_proj: (C,))``:
  ``W_o (v softmax(q^T k / sqrt(C))^T) + b_o`` over the ``H W`` positions,
  ``[q; k; v] = W_qkv h + b``
  (the inside of :class:`minidiff.nn.AttentionBlock`, without its GroupNorm and residual)
- ``skip_channels(base, mult, n_blocks) -> list[int]``: channels pushed on the skip stack by the
  down path of :class:`minidiff.nn.UNet` (``conv_in``, every ResBlock, every downsample)
- ``up_block_inputs(base, mult, n_blocks) -> list[int]``: input channels of every up ResBlock

``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from ..nn.mlp import sinusoidal_embedding as _sinusoidal_embedding
from ._calls import ReturnError
from ._core import Case, Checker, Fn, Mistake, Spec, specs_of, with_dtype
from ._probe import named_result

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


def _published(first: str, denom_shift: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """A published layout: ``first`` half ``"sin"`` or ``"cos"``, exponent ``-k / (h - shift)``."""

    def emb(t: torch.Tensor, d: int) -> torch.Tensor:
        ph = _phases(t, d, d // 2 - denom_shift)
        a, b = (ph.sin(), ph.cos()) if first == "sin" else (ph.cos(), ph.sin())
        return torch.cat([a, b], 1)

    return emb


_CONVENTION = (
    " That is a valid, published convention; this course (and the checker) follows "
    "minidiff.nn.sinusoidal_embedding: cosines first, then sines, w_k = 10000**(-k/h) with h = "
    "dim/2, so that the lowest frequency is exactly 1/10000. Use it here, so that your embedding "
    "matches the course's networks."
)


def _frequencies(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """Probe the embedding at t = 0 (cos 0 = 1, sin 0 = 0) and t = 1 (the frequencies)."""
    for (_, dim), _kw in cases:
        h = dim // 2
        at = student(torch.tensor([0, 1, 2]), dim).double()
        if at.shape != (3, dim):
            return None
        if torch.allclose(at[0], at[1], atol=1e-6) and torch.allclose(at[1], at[2], atol=1e-6):
            return (
                "your embedding is the same for every t: the phases are w_k · t, so multiply the "
                "frequencies by the timesteps t[:, None]."
            )
        start = torch.cat([torch.ones(h), torch.zeros(h)]).double()
        if not torch.allclose(at[0], start, atol=1e-6):
            if torch.allclose(at[0], start.flip(0), atol=1e-6):
                return None  # sines first: a listed convention says so
            return (
                "at t = 0 every phase is 0, so the embedding must be [1, …, 1, 0, …, 0] (the "
                "cosines, then the sines); yours is not."
            )
        w = torch.atan2(at[1, h:], at[1, :h])  # the phases at t = 1 are the frequencies (< π)
        want = torch.exp(-math.log(10_000.0) * torch.arange(h, dtype=torch.float64) / h)
        if torch.allclose(w, want, rtol=1e-4):
            return None
        base = float(w[1]) ** (-h) if h > 1 and float(w[1]) > 0 else float("nan")
        hint = (
            f" They fall like base**(-k/h) with base ≈ {base:.4g}: the base is 10000, w_k = "
            "exp(-log(10000) · k / h)."
            if math.isfinite(base) and abs(base - 10_000) > 1
            else ""
        )
        return (
            f"your frequencies (the phases at t = 1) are {[round(float(v), 4) for v in w[:4]]}…, "
            f"expected w_k = 10000**(-k/h) = {[round(float(v), 4) for v in want[:4]]}….{hint}"
        )
    return None


_EMBEDDING = Spec(
    _cases_embedding,
    lambda t, dim: _sinusoidal_embedding(t, dim).double(),
    {
        "sin_first": Mistake(
            _published("sin", 0),
            "your halves are swapped, sines first: the layout of diffusers' "
            "get_timestep_embedding with downscale_freq_shift=0." + _CONVENTION,
        ),
        "ddpm_code": Mistake(
            _published("sin", 1),
            "this is the embedding of the DDPM reference code (Ho et al.'s "
            "get_timestep_embedding, and diffusers' default): sines first and the exponent "
            "-k/(h - 1), so that the last frequency is exactly 1/10000." + _CONVENTION,
        ),
        "cos_first_h_minus_1": Mistake(
            _published("cos", 1),
            "cosines first with the exponent -k/(h - 1): diffusers' get_timestep_embedding with "
            "flip_sin_to_cos=True and its default downscale_freq_shift=1." + _CONVENTION,
        ),
        "exponent_over_dim": Mistake(
            lambda t, d: torch.cat([_phases(t, d, d).cos(), _phases(t, d, d).sin()], 1),
            "your frequencies use 10000**(-k/dim); with dim/2 frequencies the exponent is "
            "-k/(dim/2), so that the lowest frequency reaches 1/10000 and the features cover all "
            "scales of t.",
        ),
        "interleaved": Mistake(
            lambda t, d: torch.stack(
                [_phases(t, d, d // 2).cos(), _phases(t, d, d // 2).sin()], 2
            ).reshape(t.shape[0], d),
            "you interleaved cos and sin (cos w0, sin w0, cos w1, ...); concatenate them "
            "instead: all cosines, then all sines.",
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
    diagnoses=(_frequencies,),
    doc="Check ``sinusoidal_embedding(t: (B,), dim) -> [cos(w_k t), sin(w_k t)]: (B, dim)``.",
)
check_sinusoidal_embedding = Checker("sinusoidal_embedding", _EMBEDDING)


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
    return cases + with_dtype(cases, (0, 1, 2, 3), torch.float64)[:1]


def _activation_forms(case: Case) -> dict[str, torch.Tensor]:
    h, emb, w, b = (a.double() for a in case[0])
    acts: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "SiLU": F.silu,
        "ReLU": F.relu,
        "GELU": F.gelu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }
    return {
        f"h + ({name}(emb) @ W.T + b)": h + (act(emb) @ w.T + b)[:, :, None, None]
        for name, act in acts.items()
    }


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
            "you applied SiLU after the projection; DDPM applies it to the embedding first: h + "
            "(SiLU(emb) @ W.T + b).",
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
    keep_dtype=True,
    grad_args={"h": 0, "emb": 1, "weight": 2, "bias": 3},
    diagnoses=(named_result(_activation_forms),),
    doc="""Check ``time_injection(h, emb, weight, bias) -> h + (SiLU(emb) @ weight.T + bias)``
    broadcast over the pixels.
    """,
)
check_time_injection = Checker("time_injection", _INJECTION)

# --- attention ----------------------------------------------------------------------------------


def _cases_attention() -> list[Case]:
    cases: list[Case] = []
    for i, (b, c, hw) in enumerate([(2, 4, 3), (1, 6, 4), (3, 2, 2)]):
        g = torch.Generator().manual_seed(130 + i)
        h = torch.randn(b, c, hw, hw, generator=g)
        w_qkv = torch.randn(3 * c, c, generator=g) / math.sqrt(c)
        b_qkv = 0.3 * torch.randn(3 * c, generator=g)
        w_proj = torch.randn(c, c, generator=g) / math.sqrt(c)
        b_proj = 0.3 * torch.randn(c, generator=g)
        cases.append(((h, w_qkv, b_qkv, w_proj, b_proj), {}))
    return cases + with_dtype(cases, (0, 1, 2, 3, 4), torch.float64)[:1]


def _attend(
    *,
    softmax_dim: int = -1,
    scale: str = "sqrt",
    order: str = "qkv",
    proj: bool = True,
    residual: bool = False,
    over: str = "positions",
) -> Callable[..., torch.Tensor]:
    def fn(
        h: torch.Tensor,
        w_qkv: torch.Tensor,
        b_qkv: torch.Tensor,
        w_p: torch.Tensor,
        b_p: torch.Tensor,
    ) -> torch.Tensor:
        B, C, H, W = h.shape
        seq = h.reshape(B, C, H * W)
        qkv = torch.einsum("oc,bcn->bon", w_qkv, seq) + b_qkv[None, :, None]
        parts = dict(zip(order, qkv.split(C, dim=1), strict=True))
        q, k, v = parts["q"], parts["k"], parts["v"]
        d = {"sqrt": math.sqrt(C), "none": 1.0, "C": float(C)}[scale]
        if over == "positions":
            w = torch.softmax(q.transpose(1, 2) @ k / d, dim=softmax_dim)  # (B, HW, HW)
            out = v @ w.transpose(1, 2)
        else:  # the channels as the sequence: a (C, C) attention
            w = torch.softmax(q @ k.transpose(1, 2) / d, dim=-1)
            out = w @ v
        if proj:
            out = torch.einsum("oc,bcn->bon", w_p, out) + b_p[None, :, None]
        out = out.reshape(B, C, H, W)
        return h + out if residual else out

    return fn


def _ref_attention(
    h: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor, w_p: torch.Tensor, b_p: torch.Tensor
) -> torch.Tensor:
    B, C, H, W = h.shape
    qkv = F.conv2d(h, w_qkv[:, :, None, None], b_qkv)
    q, k, v = (z.reshape(B, C, H * W).transpose(1, 2).unsqueeze(1) for z in qkv.split(C, dim=1))
    out = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(B, C, H, W)
    return F.conv2d(out, w_p[:, :, None, None], b_p)


def _key_bias_gradient_zeroed(fn: Fn) -> Fn:
    """``fn`` with the gradient that reaches the key part of ``b_qkv`` set to exactly zero.

    A bias on the keys adds ``q · b_k`` to every score of one query, which the softmax cancels:
    its true gradient is zero, and what autograd returns there is float32 rounding (about 1e-6
    beside gradients near 30), different for every correct way of writing attention
    (``scaled_dot_product_attention``, einsum, a convolution). The comparison of gradients would
    judge that rounding; zeroing it leaves the values, and the gradients of the query and value
    biases, as they are. The student's function gets the very tensors of the case.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        b_qkv = args[2] if len(args) > 2 else None
        if isinstance(b_qkv, torch.Tensor) and b_qkv.requires_grad and b_qkv.ndim == 1:
            C = b_qkv.shape[0] // 3
            keep = torch.ones_like(b_qkv)
            keep[C : 2 * C] = 0
            b_qkv.register_hook(lambda g: g * keep)
        return fn(*args, **kwargs)

    return run


_ATTENTION = Spec(
    _cases_attention,
    _key_bias_gradient_zeroed(_ref_attention),
    {
        "softmax_over_queries": Mistake(
            _attend(softmax_dim=1),
            "your softmax runs over the queries: each query's weights over the keys must sum to "
            "1, so normalise the (B, HW queries, HW keys) scores along the last axis (dim=-1).",
        ),
        "no_scale": Mistake(
            _attend(scale="none"),
            "the scores are q^T k / sqrt(C): without the 1/sqrt(C) their size grows with the "
            "channels and the softmax saturates.",
        ),
        "scale_by_C": Mistake(
            _attend(scale="C"),
            "you divided the scores by C; the scale is 1/sqrt(C), the standard deviation of q^T "
            "k for unit-variance entries.",
        ),
        "channels_as_sequence": Mistake(
            _attend(over="channels"),
            "your attention runs over the channels (a C x C matrix). Self-attention in the U-Net "
            "runs over the H W positions: each position is a token with C features, so the "
            "scores are (HW, HW).",
        ),
        "no_projection": Mistake(
            _attend(proj=False),
            "the output projection W_o, b_o is missing: apply it to the attended values.",
        ),
        "residual_added": Mistake(
            _attend(residual=True),
            "you added the input h: return the attention branch alone; the block adds its own "
            "input x (before the GroupNorm), x + attention(GN(x), ...).",
        ),
        "order_kqv": Mistake(
            _attend(order="kqv"),
            "your split is in another order: the first C channels of W_qkv h are the queries, "
            "then the keys, then the values ([q; k; v], as AttentionBlock's qkv convolution).",
        ),
    },
    wrap=_key_bias_gradient_zeroed,
    keep_dtype=True,
    grad_args={"h": 0, "w_qkv": 1, "b_qkv": 2, "w_proj": 3, "b_proj": 4},
    doc="Check ``attention(h, w_qkv, b_qkv, w_proj, b_proj) -> (B, C, H, W)`` (no residual).",
)
check_attention = Checker("attention", _ATTENTION)


# --- skip_channels and up_block_inputs -----------------------------------------------------------


def _as_channels(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``fn``; its result must be a list (or tuple) of ints, compared as a long tensor."""

    def run(base: int, mult: tuple[int, ...], n: int) -> torch.Tensor:
        value = fn(base, tuple(mult), n)
        if value is None:
            raise ReturnError(
                "returned None; it should return a list of ints. Did you forget `return`?"
            )
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ReturnError(
                f"returned {type(value).__name__}; return a list of ints (channel counts), one per "
                "tensor pushed or per up ResBlock"
            )
        return torch.tensor(list(value), dtype=torch.long)

    return run


def _skips(
    base: int, mult: tuple[int, ...], n: int, *, conv_in: bool = True, down: str = "all"
) -> list[int]:
    chans = [base] if conv_in else []
    for i, m in enumerate(mult):
        chans += [base * m] * n
        if down == "all" and i < len(mult) - 1 or down == "every":
            chans.append(base * m)
        elif down == "next" and i < len(mult) - 1:
            chans.append(base * mult[i + 1])
    return chans


def _ups(
    base: int,
    mult: tuple[int, ...],
    n: int,
    *,
    extra: int = 1,
    fifo: bool = False,
    concat: bool = True,
) -> list[int]:
    stack = _skips(base, mult, n)
    c, out = base * mult[-1], []
    for i in reversed(range(len(mult))):
        for _ in range(n + extra):
            if not stack:
                break
            s = stack.pop(0) if fifo else stack.pop()
            out.append(c + s if concat else c)
            c = base * mult[i]
    return out


_CONFIGS = [(64, (1, 2, 2, 2), 2), (32, (1, 2, 4), 1), (16, (1, 1, 2), 3), (8, (2, 4), 2)]

_SKIPS = Spec(
    lambda: [((b, m, n), {}) for b, m, n in _CONFIGS],
    lambda b, m, n: torch.tensor(_skips(b, m, n)),
    {
        "no_conv_in": Mistake(
            lambda b, m, n: _skips(b, m, n, conv_in=False),
            "the output of conv_in is missing: it is pushed first (the last up ResBlock pops it).",
        ),
        "no_downsamples": Mistake(
            lambda b, m, n: _skips(b, m, n, down="none"),
            "the outputs of the downsamples are missing: each one is pushed too (it is the skip "
            "of the first up ResBlock of the level above).",
        ),
        "downsample_after_last_level": Mistake(
            lambda b, m, n: _skips(b, m, n, down="every"),
            "the coarsest level has no downsample: nothing is pushed after its ResBlocks but "
            "their own outputs.",
        ),
        "downsample_with_next_channels": Mistake(
            lambda b, m, n: _skips(b, m, n, down="next"),
            "a downsample keeps its level's channels (a stride-2 convolution c -> c); the next "
            "level's first ResBlock is what widens them.",
        ),
    },
    wrap=_as_channels,
    doc="Check ``skip_channels(base, mult, n_blocks) -> list[int]`` (push order).",
)
check_skip_channels = Checker("skip_channels", _SKIPS)

_UPS = Spec(
    lambda: [((b, m, n), {}) for b, m, n in _CONFIGS],
    lambda b, m, n: torch.tensor(_ups(b, m, n)),
    {
        "n_blocks_per_level": Mistake(
            lambda b, m, n: _ups(b, m, n, extra=0),
            "the up path has n_blocks + 1 ResBlocks per level, one more than the down path: one "
            "per tensor pushed (conv_in and every downsample add one each).",
        ),
        "fifo": Mistake(
            lambda b, m, n: _ups(b, m, n, fifo=True),
            "you took the skips in the order they were pushed; the stack is last in, first out: "
            "the up path starts with the coarsest skip (`stack.pop()`, not `stack.pop(0)`).",
        ),
        "no_concat": Mistake(
            lambda b, m, n: _ups(b, m, n, concat=False),
            "each up ResBlock reads its input concatenated with the skip: its input channels are "
            "the received channels plus the skip's.",
        ),
    },
    wrap=_as_channels,
    doc="Check ``up_block_inputs(base, mult, n_blocks) -> list[int]`` (the order the blocks run).",
)
check_up_block_inputs = Checker("up_block_inputs", _UPS)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
