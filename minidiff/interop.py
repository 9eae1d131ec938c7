"""minidiff and Hugging Face ``diffusers``: the same model, the same schedule, the same samples.

Three adapters (``diffusers`` is imported only by the functions that need it):

- :func:`unet_from_diffusers`: a diffusers ``UNet2DModel`` of DDPM's architecture (for example
  google/ddpm-cifar10-32) copied into minidiff's :class:`~minidiff.nn.UNet`; the result computes
  the same function to float precision, so minidiff's samplers sample the paper's model;
- :class:`DiffusersEpsModel`: a diffusers ``UNet2DModel`` called as a minidiff ε-model
  ``model(x_t, t)`` with ``t`` in ``1..T``;
- :func:`diffusers_betas` and :func:`diffusers_scheduler`: a minidiff
  :class:`~minidiff.schedules.NoiseSchedule` as diffusers' ``betas`` / a configured
  ``DDPMScheduler`` or ``DDIMScheduler``; :func:`schedule_from_diffusers` goes back.

The settings under which the two libraries take the same steps (the README's table; each row
is asserted in ``tests/test_interop.py``):

    the t offset      diffusers' timestep k is minidiff's t = k + 1 (its arrays start at step 1,
                      minidiff's index 0 is clean data): alphas_cumprod[k] == alpha_bar[k + 1]
    betas             trained_betas = diffusers_betas(schedule)
    DDPM variance     variance="beta_tilde" <-> variance_type="fixed_small";
                      variance="beta" <-> "fixed_large"
    DDIM timesteps    ddim_timesteps(schedule, steps) <-> timestep_spacing="trailing",
                      steps_offset=0, for steps dividing T (diffusers steps to t - T // steps)
    DDIM last step    set_alpha_to_one=True (the last step lands on clean data, alpha_bar_0 = 1)
    x0 clipping       clip_x0=None <-> clip_sample=False (diffusers' default is True);
                      clip_x0="static" <-> clip_sample=True, and for DDIM
                      step(..., use_clipped_model_output=True); clip_x0="dynamic" <->
                      thresholding=True, dynamic_thresholding_ratio=0.995, sample_max_value=inf
    prediction        prediction_type="epsilon"

A DDPM ``UNet2DModel`` maps onto :class:`~minidiff.nn.UNet` when it has DDPM's time features
(``flip_sin_to_cos=False, freq_shift=1``, what every google/ddpm-* model has), one attention head,
``resnet_time_scale_shift="default"`` and blocks of the types ``DownBlock2D``/``AttnDownBlock2D``
mirrored by ``UpBlock2D``/``AttnUpBlock2D``; anything else is refused with the field named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._validation import OneOf, checked, index_tensor, value_checks_enabled
from .nn.unet import UNet, UNetConfig
from .schedules import NoiseSchedule

__all__ = [
    "DDPM_CIFAR10_UNET2D_CONFIG",
    "unet_config_from_diffusers",
    "unet_from_diffusers",
    "DiffusersEpsModel",
    "diffusers_betas",
    "diffusers_scheduler",
    "schedule_from_diffusers",
]

DDPM_CIFAR10_UNET2D_CONFIG: dict[str, Any] = {
    # google/ddpm-cifar10-32 (Ho et al. 2020's CIFAR-10 model converted to diffusers): the
    # keyword arguments of UNet2DModel from its config.json, with the paper's training dropout.
    "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": (128, 256, 256, 256), "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": None, "norm_num_groups": 32, "norm_eps": 1e-6, "act_fn": "silu",
    "time_embedding_type": "positional", "flip_sin_to_cos": False, "freq_shift": 1,
    "downsample_padding": 0, "center_input_sample": False, "dropout": 0.1,
}  # fmt: skip
"""``UNet2DModel(**DDPM_CIFAR10_UNET2D_CONFIG)`` is DDPM's CIFAR-10 network in diffusers; its
minidiff twin is ``UNet("ddpm_cifar10_diffusers")``."""

_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}
# (field, value required, why) for the fields that have no counterpart in minidiff's U-Net
_REQUIRED: tuple[tuple[str, Any, str], ...] = (
    ("center_input_sample", False, "minidiff's U-Net takes images in [-1, 1] as they are"),
    ("time_embedding_type", "positional", "minidiff uses sinusoidal time features"),
    ("flip_sin_to_cos", False, "DDPM's time features are [sin, cos]"),
    ("freq_shift", 1, "DDPM's frequencies are 10000^(-k/(half - 1))"),
    ("mid_block_type", "UNetMidBlock2D", "minidiff's middle is ResBlock, attention, ResBlock"),
    ("mid_block_scale_factor", 1, "minidiff's blocks add their skip unscaled"),
    ("act_fn", "silu", "minidiff's U-Net uses SiLU"),
    ("resnet_time_scale_shift", "default", 'only time_injection="add" maps one to one'),
    ("add_attention", True, "minidiff's middle has attention"),
    ("class_embed_type", None, "minidiff's UNet here is unconditional"),
    ("num_class_embeds", None, "minidiff's UNet here is unconditional"),
    ("downsample_type", "conv", "minidiff downsamples with a stride-2 conv"),
    ("upsample_type", "conv", "minidiff upsamples with nearest x2 and a conv"),
    ("attn_norm_num_groups", None, "attention uses the U-Net's GroupNorm groups"),
    ("time_embedding_dim", None, "minidiff's embedding width is 4 x base_channels"),
)


def _check_required(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Each field of ``_REQUIRED`` (given, or diffusers' default) has the one value minidiff has."""
    for key, want, why in _REQUIRED:
        got = config.get(key, defaults[key])
        if got != want:
            raise ValueError(
                f"{key} must be {want!r} to map onto minidiff's UNet ({why}), got {got!r}"
            )


def _block_channels(config: Mapping[str, Any]) -> tuple[int, ...]:
    """``block_out_channels``, multiples of the first (minidiff's base times ``channel_mult``)."""
    channels = tuple(int(c) for c in config["block_out_channels"])
    if any(c % channels[0] for c in channels):
        raise ValueError(f"block_out_channels must be multiples of the first one, got {channels}")
    return channels


def _attention_levels(config: Mapping[str, Any]) -> list[bool]:
    """Whether each down level has attention; the up blocks must mirror the down blocks."""
    down, up = tuple(config["down_block_types"]), tuple(config["up_block_types"])
    if any(b not in _DOWN for b in down) or any(b not in _UP for b in up):
        raise ValueError(
            f"down_block_types must be among {list(_DOWN)} and up_block_types among {list(_UP)}, "
            f"got {down} and {up}"
        )
    attn = [_DOWN[b] for b in down]
    if len(up) != len(down) or [_UP[b] for b in reversed(up)] != attn:
        raise ValueError(
            "up_block_types must mirror down_block_types (attention at the same resolutions), "
            f"got {down} and {up}"
        )
    return attn


def _check_head_dim(head_dim: Any, channels: tuple[int, ...], attn: list[bool]) -> None:
    """One attention head per block (minidiff's AttentionBlock): ``None`` or the channel count."""
    for c, has_attn in zip(channels, attn, strict=True):
        if has_attn and head_dim is not None and head_dim != c:
            raise ValueError(
                f"attention_head_dim must be None or the channel count (one head, as in "
                f"minidiff's AttentionBlock), got {head_dim} at a level of {c} channels"
            )
    if head_dim is not None and head_dim != channels[-1]:  # the middle's attention
        raise ValueError(
            f"attention_head_dim must be None or {channels[-1]} (one head in the middle), "
            f"got {head_dim}"
        )


def unet_config_from_diffusers(config: Mapping[str, Any]) -> UNetConfig:
    """The :class:`~minidiff.nn.UNetConfig` of a diffusers ``UNet2DModel`` configuration.

    ``config``: ``model.config`` or the dict of a ``config.json``. Raises ``ValueError`` naming
    the field for an architecture that minidiff's U-Net does not have.
    """
    if not isinstance(config, Mapping):
        raise TypeError(
            "config must be a UNet2DModel's config (a mapping such as model.config), "
            f"got {type(config).__name__}"
        )
    defaults = {
        "mid_block_type": "UNetMidBlock2D", "mid_block_scale_factor": 1, "add_attention": True,
        "downsample_type": "conv", "upsample_type": "conv", "center_input_sample": False,
        "time_embedding_type": "positional", "act_fn": "silu", "class_embed_type": None,
        "num_class_embeds": None, "attn_norm_num_groups": None, "time_embedding_dim": None,
        "resnet_time_scale_shift": "default", "flip_sin_to_cos": True, "freq_shift": 0,
    }  # fmt: skip
    _check_required(config, defaults)
    channels = _block_channels(config)
    attn = _attention_levels(config)
    size = config["sample_size"]
    if not isinstance(size, int):
        raise ValueError(f"sample_size must be one int (square images), got {size!r}")
    if config.get("out_channels", 3) != config.get("in_channels", 3):
        raise ValueError(
            "out_channels must equal in_channels (an eps-model), got "
            f"{config.get('out_channels')} and {config.get('in_channels')}"
        )
    _check_head_dim(config.get("attention_head_dim", 8), channels, attn)
    base = channels[0]
    return UNetConfig(
        image_size=size,
        in_channels=int(config.get("in_channels", 3)),
        base_channels=base,
        channel_mult=tuple(c // base for c in channels),
        num_res_blocks=int(config["layers_per_block"]),
        attn_resolutions=tuple(size // 2**i for i, a in enumerate(attn) if a),
        dropout=float(config.get("dropout", 0.0)),
        groups=int(config.get("norm_num_groups", 32)),
        downsample_padding="asymmetric"
        if config.get("downsample_padding", 1) == 0
        else "symmetric",
        time_features="ddpm",
        norm_eps=float(config.get("norm_eps", 1e-5)),
    )


def _attention(prefix: str, sd: Mapping[str, Tensor], c: int) -> dict[str, Tensor]:
    """diffusers' separate q, k, v and output Linears -> minidiff's 1x1 ``qkv`` and ``proj``."""
    q, k, v = (sd[f"{prefix}.to_{n}.weight"] for n in "qkv")
    return {
        "norm.weight": sd[f"{prefix}.group_norm.weight"],
        "norm.bias": sd[f"{prefix}.group_norm.bias"],
        "qkv.weight": torch.cat([q, k, v]).reshape(3 * c, c, 1, 1),
        "qkv.bias": torch.cat([sd[f"{prefix}.to_{n}.bias"] for n in "qkv"]),
        "proj.weight": sd[f"{prefix}.to_out.0.weight"].reshape(c, c, 1, 1),
        "proj.bias": sd[f"{prefix}.to_out.0.bias"],
    }


_RES = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "emb_proj", "norm2": "norm2",
        "conv2": "conv2", "conv_shortcut": "skip"}  # fmt: skip


def _resblock(prefix: str, sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for theirs, ours in _RES.items():
        for p in ("weight", "bias"):
            key = f"{prefix}.{theirs}.{p}"
            if key in sd:
                out[f"{ours}.{p}"] = sd[key]
    return out


def _state_dict_from_diffusers(unet: UNet, sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """diffusers' state dict renamed (and the attention reshaped) into ``unet``'s."""
    ours: dict[str, Tensor] = {}

    def put(prefix: str, part: Mapping[str, Tensor]) -> None:
        ours.update({f"{prefix}.{k}": v for k, v in part.items()})

    def layer(prefix: str) -> dict[str, Tensor]:
        return {p: sd[f"{prefix}.{p}"] for p in ("weight", "bias")}

    put("time_embed.mlp.0", layer("time_embedding.linear_1"))
    put("time_embed.mlp.2", layer("time_embedding.linear_2"))
    put("conv_in", layer("conv_in"))
    put("norm_out", layer("conv_norm_out"))
    put("conv_out", layer("conv_out"))
    for side, levels in (("down", unet.down), ("up", unet.up)):
        for i, level in enumerate(levels):
            theirs = f"{side}_blocks.{i}"
            for j, (block, attn) in enumerate(level.pairs()):  # type: ignore[operator]
                put(f"{side}.{i}.blocks.{j}", _resblock(f"{theirs}.resnets.{j}", sd))
                if not isinstance(attn, nn.Identity):
                    c = block.conv2.out_channels
                    put(f"{side}.{i}.attns.{j}", _attention(f"{theirs}.attentions.{j}", sd, c))
    for i, m in enumerate(unet.downsample):
        if not isinstance(m, nn.Identity):
            put(f"downsample.{i}.conv", layer(f"down_blocks.{i}.downsamplers.0.conv"))
    for i, m in enumerate(unet.upsample):
        if not isinstance(m, nn.Identity):
            put(f"upsample.{i}.conv", layer(f"up_blocks.{i}.upsamplers.0.conv"))
    put("mid1", _resblock("mid_block.resnets.0", sd))
    put("mid2", _resblock("mid_block.resnets.1", sd))
    put("mid_attn", _attention("mid_block.attentions.0", sd, unet.mid_attn.proj.out_channels))
    return ours


def unet_from_diffusers(model: nn.Module) -> UNet:
    """Copy a diffusers ``UNet2DModel`` of DDPM's architecture into a minidiff ``UNet``.

    The configuration comes from :func:`unet_config_from_diffusers`; every weight is copied (the
    attention's separate q, k, v Linears become minidiff's one 1x1 ``qkv`` convolution). The
    result, called as ``unet(x, t)`` with ``t`` in ``1..T``, equals ``model(x, t - 1).sample``
    to float precision. Example, with google/ddpm-cifar10-32 downloaded to ``DIR``::

        from diffusers import UNet2DModel
        unet = unet_from_diffusers(UNet2DModel.from_pretrained(DIR))
        x = minidiff.ddim_sample(unet, minidiff.linear_schedule(1000), (16, 3, 32, 32), steps=50)
    """
    config = getattr(model, "config", None)
    if not isinstance(model, nn.Module) or not isinstance(config, Mapping):
        raise TypeError(
            f"model must be a diffusers UNet2DModel (an nn.Module with a config), got "
            f"{type(model).__name__}"
        )
    unet = UNet(unet_config_from_diffusers(config))
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    ours = _state_dict_from_diffusers(unet, sd)
    missing = sorted(set(unet.state_dict()) - set(ours))
    if missing:
        raise ValueError(f"model has no weights for minidiff's {missing[:5]}")
    param = next(model.parameters())
    # in the source's dtype before the copy: a float64 model loaded into float32 weights would
    # come back rounded to float32
    unet = unet.to(device=param.device, dtype=param.dtype)
    unet.load_state_dict(ours)
    return unet


class DiffusersEpsModel(nn.Module):
    """A diffusers ``UNet2DModel`` as a minidiff ε-model: ``(x_t (B, C, H, W), t (B,)) -> eps``.

    ``t`` counts from 1 as in the lectures; diffusers counts from 0, so the network is called at
    ``t - 1`` (see the module docstring's table). ``t`` is an int or an integer tensor ``(B,)``
    with values ``>= 1``; ``t = 0`` (clean data, which no ε-model is asked about) would call the
    network at ``-1`` and is a ``ValueError`` naming ``t``.

    The range check costs no device synchronisation in a sampling loop: an int ``t`` is checked
    on the host, a ``t`` on the CPU (where a diffusers scheduler keeps its ``timesteps`` unless
    told otherwise) is read there and moved to ``x``'s device without waiting for it, and a
    ``t`` already on an accelerator is read back on this model's first such call only (a host
    read there waits for every queued kernel), as the training loop checks its loss; a bad ``t``
    on an accelerator after that reaches the network unchecked. Inside
    :func:`~minidiff._validation.skip_value_checks` no tensor ``t`` is read at all.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a diffusers UNet2DModel, got {type(model).__name__}")
        self.model = model
        self._read_device_t = False  # whether a t on an accelerator was read back once

    def forward(self, x: Tensor, t: Tensor | int) -> Tensor:
        what = "timesteps in 1..T, counted from 1"
        on_x = x.device if isinstance(t, int) else None  # an int becomes a tensor on x's device
        tt = index_tensor(t, "t", x.shape[0], what, device=on_x)
        lowest = t if isinstance(t, int) else self._lowest(tt)
        if lowest is not None and lowest < 1:
            raise ValueError(f"t must hold {what} (diffusers' step k = t - 1), got {lowest}")
        if lowest is not None and not isinstance(t, int) and tt.device.type != "cpu":
            self._read_device_t = True  # read and passed: later calls skip the read
        steps = (tt - 1).to(x.device, non_blocking=True)  # non-blocking: from the CPU, no wait
        out: Tensor = self.model(x, steps, return_dict=False)[0]
        return out

    def _lowest(self, tt: Tensor) -> int | None:
        """The smallest of ``tt``, where reading it is due (see the class docstring), else None."""
        if not tt.numel() or not value_checks_enabled():
            return None
        if tt.device.type != "cpu" and self._read_device_t:
            return None
        return int(tt.min())


def diffusers_betas(schedule: NoiseSchedule) -> Tensor:
    """``beta_1..beta_T`` as diffusers' ``betas`` (float32 ``(T,)``; its index k is our t = k+1).

    Pass them as ``trained_betas=diffusers_betas(schedule).tolist()`` to a diffusers scheduler.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    return schedule.betas[1:].to(torch.float32)


def schedule_from_diffusers(scheduler: Any) -> NoiseSchedule:
    """The :class:`~minidiff.schedules.NoiseSchedule` of a diffusers scheduler (its ``betas``)."""
    if isinstance(scheduler, NoiseSchedule):
        raise TypeError(
            "scheduler must be a diffusers scheduler (DDPMScheduler, DDIMScheduler, ...), got a "
            "minidiff NoiseSchedule, which is already the schedule: use it as it is"
        )
    betas = getattr(scheduler, "betas", None)
    if not isinstance(betas, Tensor) or betas.ndim != 1:
        raise TypeError(
            "scheduler must be a diffusers scheduler with a 1-D betas tensor, got "
            f"{type(scheduler).__name__}"
        )
    return NoiseSchedule(betas.double())


@checked(
    schedule=NoiseSchedule,
    kind=OneOf(("ddim", "ddpm")),
    variance=OneOf(("beta_tilde", "beta")),
    clip_x0=OneOf(("static", "dynamic"), optional=True),
)
def diffusers_scheduler(
    schedule: NoiseSchedule,
    kind: str = "ddim",
    *,
    variance: str = "beta_tilde",
    clip_x0: str | None = None,
) -> Any:
    """A diffusers ``DDIMScheduler`` (``kind="ddim"``) or ``DDPMScheduler`` (``"ddpm"``) that
    takes the steps of minidiff's ``ddim_sample`` / ``ddpm_sample(variance=variance)`` on
    ``schedule``, with the settings of the module docstring's table.

    ``variance`` (used by ``"ddpm"``, checked for both): ``"beta_tilde"`` by default
    (``variance_type="fixed_small"``, diffusers' own default), which is *not* ``ddpm_sample``'s
    default ``"beta"`` (``"fixed_large"``): pass the same ``variance`` to both.
    ``clip_x0`` as the samplers' option: None (``clip_sample=False``), ``"static"``
    (``clip_sample=True``) or ``"dynamic"`` (``thresholding=True`` with Imagen's percentile 0.995
    and no cap, ``sample_max_value=inf``). With clipping, call the DDIM scheduler's
    ``step(..., use_clipped_model_output=True)``: minidiff's DDIM re-derives ε from the clipped
    x̂₀, diffusers does so only when asked. Unknown values of ``kind``, ``variance`` or
    ``clip_x0`` are refused (``ValueError``; a non-string: ``TypeError``) before diffusers is
    imported.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    clips: dict[str | None, dict[str, Any]] = {
        None: {"clip_sample": False},
        "static": {"clip_sample": True, "clip_sample_range": 1.0},
        "dynamic": {"clip_sample": False, "thresholding": True,
                    "dynamic_thresholding_ratio": 0.995, "sample_max_value": math.inf},
    }  # fmt: skip
    betas = diffusers_betas(schedule).tolist()
    common = {"num_train_timesteps": schedule.T, "trained_betas": betas,
              "prediction_type": "epsilon", "steps_offset": 0, "timestep_spacing": "trailing",
              **clips[clip_x0]}  # fmt: skip
    if kind == "ddim":
        return DDIMScheduler(**common, set_alpha_to_one=True)
    variances = {"beta_tilde": "fixed_small", "beta": "fixed_large"}
    return DDPMScheduler(**common, variance_type=variances[variance])
