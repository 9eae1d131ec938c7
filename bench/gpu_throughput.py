"""Benchmark: training and sampling throughput of the DDPM CIFAR-10 U-Net on a GPU vs diffusers.

For ``minidiff.nn.UNet("ddpm_cifar10")`` (35.7 M parameters) and, as the peer, diffusers'
``UNet2DModel`` of the same size (the configuration of google/ddpm-cifar10-32, ``PEER_CONFIG``;
35,746,307 parameters each), each with and without ``torch.compile``:

- training images/second at batch 128 (AdamW step, L_simple, bf16 autocast, channels_last), timed
  over ``--steps`` steps after ``--warmup`` steps (which include compilation);
- MFU = images/s x (training FLOPs per image) / (the GPU's dense bf16 peak). FLOPs per image are
  counted by ``torch.utils.flop_counter`` on one forward pass with attention on the math backend
  (x3 for forward + backward; 12.44 GFLOP per forward for both models); the peak comes from a
  table of known GPUs or ``--peak-tflops``. A compiled row that fails records its error and the
  benchmark goes on.

Then sampling images/second of the (compiled, if it compiled) minidiff model in bf16: 1000-step
ancestral DDPM and 50-step DDIM on a batch of ``--sample-batch``, after an untimed warm-up.

Targets (issue 12): >= 1.2x the peer's training throughput and MFU >= 35%.

    python bench/gpu_throughput.py                                  # on a GPU
    python bench/gpu_throughput.py --tiny --device cpu --cpu-bf16   # smoke test of the script

diffusers is imported only when the peer is measured (``--no-peer`` skips it); where it cannot be
imported the benchmark runs without the peer and says why (stderr, and ``"peer"`` in the JSON).
Prints a Markdown table; ``--json PATH`` writes the numbers. The one command for a GPU session,
with how to carry diffusers to a machine without network: ``bench/gpu_session.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import ddim_sample, ddpm_sample, linear_schedule, simple_loss  # noqa: E402
from minidiff._validation import skip_value_checks  # noqa: E402
from minidiff.hardware import forward_flops, peak_tflops  # noqa: E402
from minidiff.interop import DDPM_CIFAR10_UNET2D_CONFIG  # noqa: E402
from minidiff.nn import UNet, count_parameters  # noqa: E402


def peak_flops(device: torch.device, override: float | None) -> float | None:
    """The dense bf16 peak in FLOP/s: ``override`` (TFLOP/s), else the card's from
    ``minidiff.hardware.DENSE_PEAK_TFLOPS``; ``None`` for a CPU or an unknown card."""
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    peak = peak_tflops(torch.cuda.get_device_name(device), "bf16")
    return peak * 1e12 if peak is not None else None


PEER_CONFIG: dict[str, Any] = dict(DDPM_CIFAR10_UNET2D_CONFIG)
"""Keyword arguments of diffusers' ``UNet2DModel`` for the full-size peer."""

TINY_PEER_CONFIG: dict[str, Any] = {
    "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": (16, 32),
    "layers_per_block": 1, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 4,
}  # fmt: skip
"""A small ``UNet2DModel`` for the CPU smoke test (8x8 grey images, like ``UNet("tiny")``)."""

PEER_INSTALL_HINT = (
    "install it (`pip install diffusers`); on a machine without network, carry its wheel: "
    "`python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers` where PyPI is "
    "reachable, then `python3 -m pip install --no-index --no-deps --target DIR .whl/*.whl` and "
    "put DIR on PYTHONPATH (bench/gpu_session.sh does this); diffusers also needs "
    "huggingface_hub, safetensors, regex, filelock, requests and Pillow"
)


def peer_unavailable() -> str | None:
    """Why diffusers' ``UNet2DModel`` cannot be imported, or ``None`` if it can."""
    try:
        from diffusers import UNet2DModel  # noqa: F401
    except Exception as err:  # ImportError, or a broken dependency of diffusers
        return f"{type(err).__name__}: {err}"
    return None


class DiffusersPeer(nn.Module):
    """diffusers' UNet2DModel with DDPM's CIFAR-10 configuration, called as ``model(x, t)``."""

    def __init__(self, tiny: bool = False) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        config = TINY_PEER_CONFIG if tiny else PEER_CONFIG
        self.net = cast(nn.Module, UNet2DModel(**config))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return cast(Tensor, self.net(x, t, return_dict=False)[0])


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) < 500 else text[:500] + " ..."


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_throughput(
    model: nn.Module, shape: tuple[int, ...], batch: int, steps: int, warmup: int,
    device: torch.device, compile_model: bool, amp: bool = True,
) -> tuple[float, float]:  # fmt: skip
    """Training images/second (AdamW, L_simple, bf16 autocast, channels_last) and the seconds of
    the untimed warm-up steps, which include compilation."""
    model = model.to(device).to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]
    fwd: Callable[..., Tensor] = torch.compile(model) if compile_model else model
    # the loop of minidiff.train: fused AdamW on a GPU, no value checks that read back to the host
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, fused=device.type == "cuda")
    sched = linear_schedule(1000)
    g = torch.Generator(device=device).manual_seed(0)
    x0 = torch.rand(batch, *shape, device=device, generator=g) * 2 - 1
    x0 = x0.contiguous(memory_format=torch.channels_last)
    t0 = start = time.perf_counter()
    with skip_value_checks():
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                start = time.perf_counter()
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                loss = simple_loss(fwd, x0, sched, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start), start - t0


def sample_throughput(
    model: Callable[..., Tensor], shape: tuple[int, ...], batch: int, steps: int,
    device: torch.device, sampler: str, amp: bool = True,
) -> float:  # fmt: skip
    """Images/second of a whole sampling run (``steps`` network calls per image), after an
    untimed 2-step run of the same shape (a compiled model compiles there, not in the timing)."""
    if isinstance(model, nn.Module):
        model.eval()
    sched = linear_schedule(steps if sampler == "ddpm" else 1000)  # DDPM: T = steps
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
        ddim_sample(
            model, linear_schedule(1000), (batch, *shape), steps=2, generator=g, device=device
        )
        _sync(device)
        start = time.perf_counter()
        if sampler == "ddpm":
            ddpm_sample(model, sched, (batch, *shape), generator=g, device=device)
        else:
            ddim_sample(model, sched, (batch, *shape), steps=steps, generator=g, device=device)
        _sync(device)
    return batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps (compilation)")
    ap.add_argument("--sample-batch", type=int, default=256)
    ap.add_argument("--ddpm-steps", type=int, default=1000)
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    ap.add_argument("--no-peer", action="store_true", help="skip diffusers' UNet2DModel")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--tiny", action="store_true", help="tiny models and sizes (CPU smoke test)")
    ap.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU too (test)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    amp = device.type == "cuda" or args.cpu_bf16
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: run on a GPU, or pass --device cpu --tiny for a smoke test"
        )
    if args.tiny:
        args.batch, args.steps, args.warmup = min(args.batch, 8), min(args.steps, 2), 1
        args.sample_batch, args.ddpm_steps = 4, 10
    make_ours = (lambda: UNet("tiny")) if args.tiny else (lambda: UNet("ddpm_cifar10"))
    shape = (1, 8, 8) if args.tiny else (3, 32, 32)
    peak = peak_flops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    variants = [False] if args.no_compile else [False, True]
    models: dict[str, Callable[[], nn.Module]] = {"minidiff UNet": make_ours}
    peer_note = "not measured (--no-peer)"
    if not args.no_peer:
        why = peer_unavailable()
        if why is None:
            models["diffusers UNet2DModel"] = lambda: DiffusersPeer(tiny=args.tiny)
            peer_note = "measured"
        else:
            peer_note = f"not measured: diffusers cannot be imported ({why})"
            print(f"WARNING: the peer is {peer_note}; continuing as with --no-peer. To measure "
                  f"it, {PEER_INSTALL_HINT}.", file=sys.stderr, flush=True)  # fmt: skip
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown"
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch}, "
          f"bf16 {amp}, dense bf16 peak {peak_text}; peer {peer_note}",
          flush=True)  # fmt: skip
    rows: list[dict[str, Any]] = []
    for label, make in models.items():
        torch.manual_seed(0)
        model = make()
        params = count_parameters(model)
        flops = 3 * forward_flops(model.to(device), shape, device)
        del model
        for comp in variants:
            torch.manual_seed(0)
            row: dict[str, Any] = {"model": label, "params": params, "compile": comp,
                                   "train_gflops_per_image": flops / 1e9}  # fmt: skip
            try:
                ips, warmup_s = train_throughput(
                    make(), shape, args.batch, args.steps, args.warmup, device, comp, amp
                )
            except Exception as err:  # a failed compile must not cost the rest of a GPU session
                if not comp:
                    raise
                row |= {"train_images_per_s": None, "mfu": None, "warmup_s": None,
                        "error": _error_text(err)}  # fmt: skip
                print(f"WARNING: {label} with torch.compile failed: {row['error']}",
                      file=sys.stderr, flush=True)  # fmt: skip
            else:
                mfu = ips * flops / peak if peak else None
                row |= {"train_images_per_s": ips, "mfu": mfu, "warmup_s": warmup_s}
                print(f"  {label}, compile {comp}: {ips:.1f} images/s "
                      f"(warm-up {warmup_s:.1f} s)", flush=True)  # fmt: skip
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    torch.manual_seed(0)
    ours = make_ours().to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    compiled_ok = any(
        r["compile"] and r["model"] == "minidiff UNet" and r["train_images_per_s"] for r in rows
    )
    sampling: dict[str, float] = {}
    sampling_compiled: dict[str, bool] = {}
    for sampler, steps in (("ddpm", args.ddpm_steps), ("ddim", 50)):
        key = f"{sampler}_{steps}"
        if compiled_ok:
            try:
                sampling[key] = sample_throughput(
                    torch.compile(ours), shape, args.sample_batch, steps, device, sampler, amp
                )
                sampling_compiled[key] = True
                continue
            except Exception as err:
                print(f"WARNING: compiled {key} sampling failed ({_error_text(err)}); "
                      "timing it without torch.compile", file=sys.stderr, flush=True)  # fmt: skip
        sampling[key] = sample_throughput(
            ours, shape, args.sample_batch, steps, device, sampler, amp
        )
        sampling_compiled[key] = False
    measured = [r for r in rows if r["train_images_per_s"]]
    peer_rows = {r["compile"]: r for r in measured if r["model"] != "minidiff UNet"}
    for r in rows:
        peer = peer_rows.get(r["compile"])
        ok = peer is not None and r["train_images_per_s"]
        r["vs_peer"] = r["train_images_per_s"] / peer["train_images_per_s"] if peer and ok else None
    result = {
        "device": name, "torch": torch.__version__, "batch": args.batch,
        "bf16": amp, "peak_flops": peak, "peer": peer_note, "train": rows,
        "sampling_images_per_s": sampling, "sampling_compiled": sampling_compiled,
    }  # fmt: skip
    print("\n| model | params | compile | train images/s | GFLOP/image | MFU | vs peer |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        ips_text = f"{r['train_images_per_s']:.1f}" if r["train_images_per_s"] else "failed"
        mfu_text = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        ratio = f"{r['vs_peer']:.2f}x" if r["vs_peer"] else "-"
        print(f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['compile']} | {ips_text} | "
              f"{r['train_gflops_per_image']:.2f} | {mfu_text} | {ratio} |")  # fmt: skip
    print("\n| sampler | compile | images/s |\n|---|---|---:|")
    for k, v in sampling.items():
        print(f"| {k} | {sampling_compiled[k]} | {v:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
