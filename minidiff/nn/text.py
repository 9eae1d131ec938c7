"""Prompts for a small image model: a word vocabulary, a token encoder and prompt guidance.

Stable Diffusion turns a prompt into CLIP's token states ``(B, 77, 768)``: a tokenizer maps words to
ids, a Transformer maps ids to one vector per token, and the U-Net reads them by cross-attention
(``nn.attention``). The course's version keeps the interface and drops the size:

- :class:`Vocabulary`: whole words to ids, ``<pad>`` = 0 fills a prompt up to a fixed length;
  an unknown word is an error that names it (never a silent ``<unk>``).
- :class:`TokenEncoder`: ``ids (B, L) -> (B, L, D)``, a learned embedding per word plus one per
  position, trained with the diffusion model (SD's CLIP is pretrained and frozen). With
  ``pool=True`` it returns the mean over the tokens ``(B, 1, D)``: one vector per prompt.
- :class:`PromptUNet`: the encoder and a U-Net with ``context_dim = D``,
  ``model(x_t, t, ids) -> eps``, trained with :func:`prompt_eps_loss` (prompt dropout: the null
  prompt, all ``<pad>``, plays the part of the null label) and sampled with
  :func:`prompt_guidance` (classifier-free guidance over prompts).

Mean pooling forgets word order: ``mean_i (E[w_i] + P[i])`` is the same for every permutation of
the words, because the sums of word and of position embeddings do not depend on which word sits
where. "3 left of 7" and "7 left of 3" become the same vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Number,
    Rng,
    check_positive_int,
    check_weights_dtype,
    check_with,
    checked,
    describe,
)
from ..diffusion import EpsModel, q_sample
from ..guidance import cfg_combine, check_guidance_weight
from ..losses import sample_timesteps
from ..schedules import NoiseSchedule
from ..tensors import noise_like
from .unet import UNet

__all__ = ["PAD", "Vocabulary", "TokenEncoder", "PromptUNet", "prompt_eps_loss", "prompt_guidance"]

PAD = "<pad>"


class Vocabulary:
    """Whole-word tokenizer: ``words`` get ids ``1..V-1`` in order, ``<pad>`` is id 0.

    ``vocab(prompts, length)`` -> long ``(B, length)``; ``vocab.decode(ids)`` -> the words.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if not words or any(not isinstance(w, str) or not w or " " in w for w in words):
            raise ValueError(f"words must be a non-empty list of single words, got {words!r}")
        if len(set(words)) != len(words) or PAD in words:
            raise ValueError(f"words must be distinct and must not contain {PAD!r}, got {words!r}")
        self.tokens = [PAD, *words]
        self.ids = {w: i for i, w in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({self.tokens[1:]!r})"

    def encode(self, prompt: str, length: int) -> Tensor:
        """One prompt (words separated by spaces) -> long ``(length,)``, padded with 0."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        length = check_positive_int(length, "length")
        words = prompt.split()
        unknown = [w for w in words if w not in self.ids or w == PAD]
        if unknown:
            raise ValueError(
                f"prompt {prompt!r} has unknown word(s) {unknown}; the vocabulary is "
                f"{self.tokens[1:]}"
            )
        if len(words) > length:
            raise ValueError(f"prompt {prompt!r} has {len(words)} words, more than length={length}")
        ids = [self.ids[w] for w in words] + [0] * (length - len(words))
        return torch.tensor(ids, dtype=torch.long)

    def __call__(self, prompts: str | Sequence[str], length: int) -> Tensor:
        """Prompts -> long ``(B, length)`` (a single string gives ``B = 1``).

        ``prompts``: a str or a sequence of str; ``length``: an int >= 1 (``TypeError`` for the
        wrong kind, ``ValueError`` for an empty sequence, ``length < 1`` or a prompt that does not
        fit, as :meth:`encode`).
        """
        length = check_positive_int(length, "length")
        items = [prompts] if isinstance(prompts, str) else _prompt_list(prompts)
        if not items:
            raise ValueError("prompts must hold at least one prompt")
        return torch.stack([self.encode(p, length) for p in items])

    def decode(self, ids: Tensor) -> list[str]:
        """Long ``(B, L)`` -> one string per row, padding dropped."""
        check_token_ids(ids, len(self))
        return [" ".join(self.tokens[i] for i in row.tolist() if i != 0) for row in ids]


def _prompt_list(prompts: object) -> list[str]:
    """``prompts`` as a list of str, or a ``TypeError`` naming ``prompts``."""
    items = (
        list(prompts) if isinstance(prompts, Iterable) and not isinstance(prompts, bytes) else None
    )
    bad = [] if items is None else [p for p in items if not isinstance(p, str)]
    if items is None or bad:
        holding = f" holding {describe(bad[0])}" if bad else ""
        raise TypeError(
            "prompts must be a str or a sequence of str (words separated by spaces), got "
            f"{describe(prompts)}{holding}"
        )
    return items


def check_token_ids(ids: object, vocab_size: int, max_length: int | None = None) -> Tensor:
    """Token ids: an integer tensor ``(B, L)`` with values in ``0..vocab_size-1``."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"ids must be a long tensor (B, L) of token ids, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[1] < 1:
        raise ValueError(f"ids must have shape (B, L), got {tuple(ids.shape)}")
    if max_length is not None and ids.shape[1] > max_length:
        raise ValueError(f"ids has L = {ids.shape[1]} tokens, more than max_length={max_length}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
        raise ValueError(
            f"ids contains the unknown token id {bad}; ids must lie in 0..{vocab_size - 1} "
            f"(vocab_size={vocab_size})"
        )
    return ids


class TokenEncoder(nn.Module):
    """``ids (B, L) -> (B, L, dim)``: ``E[ids] + P[0..L-1]`` (word and position embeddings).

    With ``pool=True`` the output is the mean over the ``L`` tokens, ``(B, 1, dim)``: the same
    tokens as one vector (which cannot tell word orders apart, see the module docstring).
    """

    def __init__(self, vocab_size: int, dim: int, max_length: int, *, pool: bool = False) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("dim", dim), ("max_length", max_length)):
            check_positive_int(value, name)
        pool = check_with(Flag, pool, "pool")
        self.vocab_size, self.dim, self.max_length, self.pool = vocab_size, dim, max_length, pool
        self.words = nn.Embedding(vocab_size, dim)
        self.positions = nn.Parameter(torch.randn(max_length, dim))

    def forward(self, ids: Tensor) -> Tensor:
        check_token_ids(ids, self.vocab_size, self.max_length)
        states = self.words(ids) + self.positions[: ids.shape[1]]
        return states.mean(dim=1, keepdim=True) if self.pool else states


class PromptUNet(nn.Module):
    """A prompt-conditioned noise predictor ``model(x_t (B, C, S, S), t (B,), ids (B, L))``.

    ``encoder`` maps the ids to tokens ``(B, L', D)`` and ``unet`` (built with
    ``context_dim = D``) cross-attends to them. The null prompt (all ``<pad>``, id 0) is the
    unconditional model of classifier-free guidance.
    """

    def __init__(self, encoder: TokenEncoder, unet: UNet) -> None:
        super().__init__()
        if not isinstance(encoder, TokenEncoder):
            raise TypeError(f"encoder must be a TokenEncoder, got {type(encoder).__name__}")
        if not isinstance(unet, UNet):
            raise TypeError(f"unet must be a UNet, got {type(unet).__name__}")
        if unet.config.context_dim != encoder.dim:
            raise ValueError(
                f"unet.config.context_dim ({unet.config.context_dim}) must equal the encoder's "
                f"dim ({encoder.dim})"
            )
        self.encoder, self.unet = encoder, unet

    def null_prompt(
        self, batch_size: int, length: int, device: torch.device | None = None
    ) -> Tensor:
        """The null prompt's ids: zeros ``(batch_size, length)``."""
        batch_size = check_positive_int(batch_size, "batch_size")
        length = check_positive_int(length, "length")
        return torch.zeros(batch_size, length, dtype=torch.long, device=device)

    def forward(self, x: Tensor, t: Tensor, ids: Tensor) -> Tensor:
        return self.unet(x, t, context=self.encoder(ids))


def _guidance_weight(w: object, name: str) -> float:
    return check_guidance_weight(w, name)


def _ids(ids: object, name: str) -> Tensor:
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name} must be a long tensor (B, L) of token ids, got {type(ids).__name__}"
        )
    return ids


@checked(
    model=PromptUNet,
    x0=FloatTensor(dim=4, finite=True),
    ids=Check(_ids),
    schedule=NoiseSchedule,
    p_uncond=Number(low=0.0, high=1.0, low_open=False, high_open=False),
    generator=Rng,
)
def prompt_eps_loss(
    model: PromptUNet,
    x0: Tensor,
    ids: Tensor,
    schedule: NoiseSchedule,
    *,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean ||eps - eps_theta(x_t, t, ids')||²`` with prompt dropout (``ids' = 0`` w.p. ``p``).

    The ``conditional_eps_loss`` of labels, for prompts. Random numbers in this order:
    ``t ~ U{1..T}``, ``eps ~ N(0, I)``, ``u ~ U(0, 1)`` per row (dropped where ``u < p_uncond``).
    ``x0: (B, C, S, S)`` in the dtype of the model's weights (else ``TypeError``, before any
    draw), ``ids: (B, L)`` long.
    """
    check_weights_dtype(model.unet.conv_in.weight, "prompt U-Net", x0=x0)
    check_token_ids(ids, model.encoder.vocab_size, model.encoder.max_length)
    if ids.shape[0] != x0.shape[0]:
        raise ValueError(f"ids must have one row per image ({x0.shape[0]}), got {ids.shape[0]}")
    t = sample_timesteps(x0.shape[0], schedule.T, generator, x0.device)
    noise = noise_like(x0, generator)
    gen_device = generator.device if generator is not None else x0.device
    u = torch.rand(x0.shape[0], generator=generator, device=gen_device).to(ids.device)
    ids_in = torch.where((u < p_uncond)[:, None], torch.zeros_like(ids), ids)
    x_t = q_sample(x0, t, schedule, noise=noise)
    return ((noise - model(x_t, t, ids_in)) ** 2).mean()


@checked(model=PromptUNet, ids=Check(_ids), w=Check(_guidance_weight))
def prompt_guidance(model: PromptUNet, ids: Tensor, w: float) -> EpsModel:
    """Classifier-free guidance over prompts: ``(1 + w) eps(x_t, t, ids) - w eps(x_t, t, ∅)``.

    ``ids: (B, L)`` one prompt per sample (the null prompt ∅ is all zeros); ``w = 0`` is the
    prompt-conditional model. Returns an ``eps_model(x_t, t)`` for any sampler.
    """
    check_token_ids(ids, model.encoder.vocab_size, model.encoder.max_length)

    def eps(x_t: Tensor, t: Tensor) -> Tensor:
        if ids.shape[0] != x_t.shape[0]:
            raise ValueError(f"ids has {ids.shape[0]} prompts for a batch of {x_t.shape[0]}")
        cond = ids.to(x_t.device)
        if w == 0:
            return model(x_t, t, cond)
        both = model(
            torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)])
        )
        e_c, e_u = both.chunk(2)
        return cfg_combine(e_c, e_u, w)

    return eps
