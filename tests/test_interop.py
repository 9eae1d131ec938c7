"""minidiff <-> diffusers: the U-Net conventions, the weight copy, and the README's table of the
settings under which the two libraries take the same steps (run where diffusers is installed;
nothing is downloaded: the diffusers networks are randomly initialised)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from minidiff import ddim_sample, ddpm_sample, linear_schedule
from minidiff.interop import (
    DDPM_CIFAR10_UNET2D_CONFIG,
    DiffusersEpsModel,
    diffusers_betas,
    diffusers_scheduler,
    schedule_from_diffusers,
    unet_config_from_diffusers,
    unet_from_diffusers,
)
from minidiff.nn import UNET_CONFIGS, UNet

diffusers = pytest.importorskip("diffusers")

SMALL = {
    "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": (16, 32),
    "layers_per_block": 1, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 4, "norm_eps": 1e-6,
    "flip_sin_to_cos": False, "freq_shift": 1, "downsample_padding": 0,
    "attention_head_dim": None,
}  # fmt: skip
"""DDPM's conventions at the size of UNet("tiny")."""


def _diffusers_unet(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """A randomly initialised UNet2DModel, every weight moved off its initial value (so that no
    zero-initialised layer hides a wrong copy)."""
    torch.manual_seed(seed)
    net = diffusers.UNet2DModel(**config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


T_CHECK = torch.tensor([1, 2, 10, 500, 999, 1000])


def test_a_copied_network_computes_the_same_function() -> None:
    net = _diffusers_unet(SMALL)
    unet = unet_from_diffusers(net).eval()
    x = torch.randn(len(T_CHECK), 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        gap32 = _rel(unet(x, T_CHECK), net(x, T_CHECK - 1).sample)
        net64, unet64 = net.double(), unet.double()
        gap64 = _rel(unet64(x.double(), T_CHECK), net64(x.double(), T_CHECK - 1).sample)
    assert gap32 < 1e-5, gap32
    assert gap64 < 1e-12, gap64  # equal to float64 precision: the same function


@pytest.mark.parametrize(
    ("field", "other"),
    [("downsample_padding", "symmetric"), ("time_features", "minidiff"), ("norm_eps", 1e-5)],
)
def test_each_convention_changes_the_output(field: str, other: object) -> None:
    # Three wrong conventions, one at a time: the copied weights no longer give diffusers' output.
    net = _diffusers_unet(SMALL).double()
    unet = unet_from_diffusers(net)
    wrong = UNet(dataclasses.replace(unet.config, **{field: other})).double().eval()
    wrong.load_state_dict(unet.state_dict())
    x = torch.randn(len(T_CHECK), 1, 8, 8, generator=torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        gap = _rel(wrong(x, T_CHECK), net(x, T_CHECK - 1).sample)
    assert gap > 1e-7, (field, gap)  # far above the 1e-12 of the right conventions


def test_google_ddpm_cifar10_32_maps_onto_the_preset_and_agrees() -> None:
    config = unet_config_from_diffusers(DDPM_CIFAR10_UNET2D_CONFIG)
    assert config == UNET_CONFIGS["ddpm_cifar10_diffusers"]
    plain = UNET_CONFIGS["ddpm_cifar10"]
    assert (
        dataclasses.replace(
            config, downsample_padding="symmetric", time_features="minidiff", norm_eps=1e-5
        )
        == plain
    )  # the paper's network; only the three conventions differ
    net = _diffusers_unet(DDPM_CIFAR10_UNET2D_CONFIG)
    unet = unet_from_diffusers(net).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 1000])
    with torch.no_grad():
        gap = _rel(unet(x, t), net(x, t - 1).sample)
        naive = UNet(plain).eval()  # the name-by-name copy into the default conventions
        naive.load_state_dict(unet.state_dict())
        naive_gap = _rel(naive(x, t), net(x, t - 1).sample)
    assert gap < 1e-5, gap
    assert naive_gap > 0.1, naive_gap


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"flip_sin_to_cos": True}, "flip_sin_to_cos"),
        ({"freq_shift": 0}, "freq_shift"),
        ({"attention_head_dim": 8}, "attention_head_dim"),
        ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift"),
        ({"up_block_types": ("UpBlock2D", "AttnUpBlock2D")}, "mirror"),
        ({"down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D")}, "down_block_types"),
        ({"block_out_channels": (16, 24)}, "multiples"),
        ({"center_input_sample": True}, "center_input_sample"),
    ],
)
def test_an_architecture_minidiff_lacks_is_named(change: dict[str, Any], match: str) -> None:
    # 8 configurations that have no minidiff counterpart: each is refused naming its field.
    with pytest.raises(ValueError, match=match):
        unet_config_from_diffusers({**SMALL, **change})


def test_bad_arguments_of_the_adapters() -> None:
    # 6 bad inputs: each names its argument.
    with pytest.raises(TypeError, match="model"):
        unet_from_diffusers(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="config"):
        unet_config_from_diffusers([("sample_size", 8)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule"):
        diffusers_betas(torch.linspace(1e-4, 0.02, 10))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        diffusers_scheduler(linear_schedule(10), "euler")
    with pytest.raises(ValueError, match="variance"):
        diffusers_scheduler(linear_schedule(10), "ddpm", variance="learned")
    with pytest.raises(ValueError, match="clip_x0"):
        diffusers_scheduler(linear_schedule(10), "ddim", clip_x0="hard")


def test_the_adapters_refuse_what_they_used_to_pass_on() -> None:
    sched = linear_schedule(10)
    # a typo in variance was ignored for DDIM; a list in clip_x0 raised "unhashable"
    with pytest.raises(ValueError, match="variance"):
        diffusers_scheduler(sched, "ddim", variance="nonsense")
    with pytest.raises(TypeError, match="clip_x0"):
        diffusers_scheduler(sched, "ddim", clip_x0=["static"])  # type: ignore[arg-type]
    # a minidiff schedule is not a diffusers scheduler (it used to fail on "betas must lie ...")
    with pytest.raises(TypeError, match="scheduler must be a diffusers scheduler"):
        schedule_from_diffusers(sched)
    # t = 0 used to call diffusers at step -1 without a word
    model = DiffusersEpsModel(_diffusers_unet(SMALL))
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="t must hold timesteps in 1..T"):
        model(x, torch.tensor([0, 0]))
    with pytest.raises(TypeError, match="t must be"):
        model(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="t must hold timesteps in 1..T.*got 0"):
        model(x, 0)
    # the default variance is stated, and it is the one the scheduler uses
    doc = diffusers_scheduler.__doc__ or ""
    assert '``"beta_tilde"`` by default' in doc and "not* ``ddpm_sample``'s" in doc
    assert diffusers_scheduler(sched, "ddpm").config.variance_type == "fixed_small"


# ---------------------------------------------------------------- the README's table, row by row


def test_the_t_offset_and_the_betas() -> None:
    sched = linear_schedule(1000)
    theirs = diffusers_scheduler(sched, "ddpm")
    torch.testing.assert_close(theirs.betas, diffusers_betas(sched))
    # diffusers' index k is our t = k + 1
    torch.testing.assert_close(
        theirs.alphas_cumprod.double(), sched.alpha_bar[1:], rtol=1e-5, atol=1e-7
    )
    back = schedule_from_diffusers(theirs)
    torch.testing.assert_close(back.alpha_bar, sched.alpha_bar, rtol=1e-5, atol=1e-7)


def _diffusers_ddim(
    net: torch.nn.Module, scheduler: Any, x: torch.Tensor, steps: int, clipped: bool = False
) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for k in scheduler.timesteps:
            eps = net(x, k).sample
            x = scheduler.step(eps, k, x, use_clipped_model_output=clipped).prev_sample
    return x


@pytest.mark.parametrize("clip_x0", [None, "static", "dynamic"])
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_ddim_takes_the_same_steps_as_diffusers(steps: int, clip_x0: str | None) -> None:
    sched = linear_schedule(100)
    net = _diffusers_unet(SMALL)
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = ddim_sample(DiffusersEpsModel(net), sched, x_T=x_T, steps=steps, clip_x0=clip_x0)
    scheduler = diffusers_scheduler(sched, "ddim", clip_x0=clip_x0)
    theirs = _diffusers_ddim(net, scheduler, x_T, steps, clipped=clip_x0 is not None)
    assert isinstance(ours, torch.Tensor)
    assert _rel(ours, theirs) < 1e-4
    if clip_x0 is not None:  # the clipping acted: without it the samples differ
        plain = ddim_sample(DiffusersEpsModel(net), sched, x_T=x_T, steps=steps)
        assert isinstance(plain, torch.Tensor) and _rel(plain, theirs) > 1e-3


@pytest.mark.parametrize("setting", [{"timestep_spacing": "leading"}, {"set_alpha_to_one": False}])
def test_ddim_disagrees_without_the_tables_settings(setting: dict[str, Any]) -> None:
    # The two rows matter: diffusers' defaults give other samples (set_alpha_to_one=False
    # changes only the last step, from alpha_bar_1 to 1: a gap of 0.25 % here).
    sched = linear_schedule(100)
    net = _diffusers_unet(SMALL)
    x_T = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = ddim_sample(DiffusersEpsModel(net), sched, x_T=x_T, steps=5)
    config = {**diffusers_scheduler(sched, "ddim").config, **setting}
    theirs = _diffusers_ddim(net, diffusers.DDIMScheduler.from_config(config), x_T, 5)
    assert isinstance(ours, torch.Tensor)
    assert _rel(ours, theirs) > 1e-3  # against < 1e-4 with the settings of the table


@pytest.mark.parametrize("clip_x0", [None, "static", "dynamic"])
@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_takes_the_same_steps_as_diffusers(variance: str, clip_x0: str | None) -> None:
    # Both draw x_T and then one z per step from the same generator, in the same order.
    sched = linear_schedule(30)
    net = _diffusers_unet(SMALL)
    shape = (3, 1, 8, 8)
    ours = ddpm_sample(
        DiffusersEpsModel(net), sched, shape, variance=variance, clip_x0=clip_x0,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    scheduler = diffusers_scheduler(sched, "ddpm", variance=variance, clip_x0=clip_x0)
    scheduler.set_timesteps(sched.T)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g)
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(net(x, k).sample, k, x, generator=g).prev_sample
    assert isinstance(ours, torch.Tensor)
    assert _rel(ours, x) < 1e-4


def test_the_eps_adapter_checks_t_without_a_device_synchronisation_per_call() -> None:
    """In a sampling loop an int t is checked on the host (no tensor read), a t on the CPU is
    read there at every call (free), and a bad t is still refused, on any call."""
    from minidiff._validation import count_host_reads

    net = _diffusers_unet(SMALL)
    model = DiffusersEpsModel(net)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with count_host_reads() as reads:
            outs = [model(x, k) for k in (5, 4, 3)]
        assert reads[0] == 0
        for k, out in zip((5, 4, 3), outs, strict=True):
            assert torch.equal(out, net(x, torch.full((2,), k - 1), return_dict=False)[0])
        for _ in range(2):  # a CPU t is read at every call: a bad one is refused after good ones
            model(x, torch.tensor([3, 2]))
            with pytest.raises(ValueError, match="t must hold timesteps in 1..T.*got 0"):
                model(x, torch.tensor([3, 0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_eps_adapter_reads_t_back_on_its_first_call_only() -> None:
    """A t on the GPU is read back once (the first call refuses t = 0, then passes a good t);
    later calls with a t on the GPU, on the CPU or an int wait for no kernel."""
    model = DiffusersEpsModel(_diffusers_unet(SMALL)).cuda()
    x = torch.randn(2, 1, 8, 8, device="cuda")
    with torch.no_grad():
        with pytest.raises(ValueError, match="t must hold timesteps in 1..T.*got 0"):
            model(x, torch.tensor([0, 3], device="cuda"))
        model(x, torch.tensor([1, 3], device="cuda"))
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for t in (
                torch.tensor([4, 2], device="cuda"),
                torch.tensor(7),
                torch.tensor([2, 3]),
                9,
            ):
                model(x, t)
        finally:
            torch.cuda.set_sync_debug_mode("default")
