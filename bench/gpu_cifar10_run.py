"""One GPU session: the throughput benchmark, then DDPM on CIFAR-10 for the rest of a time budget.

The command for a GPU machine (from the repository's root; ``python3`` with a CUDA PyTorch):

    bash bench/gpu_session.sh results 7      # 7-minute budget; killed at 8.5 min in any case

It runs this script with ``--out /tmp/minidiff_gpu_session/out --minutes 7`` and copies the small
files (``log.txt``, ``throughput.json``, ``summary.json``, ``fid.json``, ``loss.png``,
``run.jsonl``, ``samples.png``) into ``results/``. A machine without network needs diffusers (the
benchmark's peer) carried as a wheel in ``.whl/``, fetched beforehand where PyPI is reachable:

    python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1

(diffusers also needs huggingface_hub >= 1.32, safetensors, regex, filelock, requests, Pillow).
Without it the benchmark runs without the peer and says so (``"peer"`` in ``throughput.json``).

What this script does:

1. ``bench/gpu_throughput.py`` (minidiff vs diffusers, with and without ``torch.compile``) writes
   ``throughput.json``; a compile that fails is recorded and the session goes on without it;
2. ``minidiff.training.images.run`` trains ``UNet("ddpm_cifar10")`` (bf16, channels_last,
   compiled if that was faster, batch 128) for as many steps as the measured throughput allows
   in the time left, writing ``run/loss.png``, ``run/samples*.png`` (DDIM-50 grids of the EMA
   model) and ``run/run.jsonl`` (loss and images/s per interval);
3. if Inception weights are found (``--inception-weights``, ``MINIDIFF_INCEPTION_WEIGHTS`` or
   ``~/.cache/minidiff/``, see ``minidiff.metrics.fid.find_inception_weights``) and
   torch-fidelity is installed: FID and KID of ``--fid-samples`` DDIM samples against the training
   images, written to ``fid.json``; otherwise ``fid.json`` says why there is none.

CIFAR-10 comes from ``--data-root`` / the ``MINIDIFF_DATA`` cache; with ``--download`` it is
fetched (checksum-verified) if missing. Where it is neither there nor downloadable (the archive,
170 MB, is too large to carry to some machines), step 2 trains the same model on 32x32 patches of
scikit-learn's sample photographs and ``summary.json``'s ``"data"`` says so.

    python bench/gpu_cifar10_run.py --out runs/gpu --minutes 7
    python bench/gpu_cifar10_run.py --out /tmp/smoke --tiny --device cpu   # CPU test of the script
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import gpu_throughput  # noqa: E402

from minidiff import ddim_sample, linear_schedule  # noqa: E402
from minidiff.data import load_cifar10_or_fallback  # noqa: E402
from minidiff.hardware import choose_bf16  # noqa: E402
from minidiff.metrics.fid import (  # noqa: E402
    fid_from_features,
    find_inception_weights,
    inception_features,
    kid_from_features,
)
from minidiff.training.images import ImageRunConfig, load_images, run  # noqa: E402


def training_data(
    tiny: bool, root: str | None, download: bool
) -> tuple[torch.Tensor, str, str, int, str]:
    """``(images, model, data, batch, note)`` for the run: CIFAR-10 with the DDPM configuration,
    or, where CIFAR-10 is neither cached nor downloadable (a machine without network; the archive
    is 170 MB), scikit-learn's 32x32 photo patches at the same model size, saying so in ``note``."""
    if tiny:
        images = load_images("digits")
        return images, "tiny", "digits", 8, f"scikit-learn's {len(images)} 8x8 digits (tiny run)"
    images, why_not = load_cifar10_or_fallback(
        lambda: load_images("patches"), root, download=download
    )
    if why_not is None:
        return (
            images,
            "ddpm_cifar10",
            "cifar10",
            128,
            f"CIFAR-10 training set, {len(images)} images",
        )
    note = (
        f"NOT CIFAR-10 ({why_not}); trained on {len(images)} 32x32 patches of scikit-learn's "
        "sample photographs instead"
    )
    print(f"WARNING: {note}", file=sys.stderr, flush=True)
    return images, "ddpm_cifar10", "patches", 128, note


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=12.0, help="total budget of this script")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--download", action="store_true")
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--fid-samples", type=int, default=10_000)
    ap.add_argument("--no-peer", action="store_true", help="skip diffusers in the benchmark")
    ap.add_argument("--no-compile", action="store_true", help="never use torch.compile")
    ap.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU too (test)")
    ap.add_argument("--tiny", action="store_true", help="tiny model on 8x8 digits (CPU test)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    deadline = t_start + 60 * args.minutes
    args.out.mkdir(parents=True, exist_ok=True)

    # The data first: a missing data set is reported before minutes go into the benchmark.
    images, model, data, batch, data_note = training_data(args.tiny, args.data_root, args.download)

    bench_args = ["--device", args.device, "--json", str(args.out / "throughput.json")]
    bench_args += ["--tiny"] * args.tiny + ["--no-peer"] * args.no_peer
    bench_args += ["--no-compile"] * args.no_compile + ["--cpu-bf16"] * args.cpu_bf16
    throughput = gpu_throughput.main(bench_args)
    ours = [
        r for r in throughput["train"] if r["model"] == "minidiff UNet" and r["train_images_per_s"]
    ]
    best = max(ours, key=lambda r: r["train_images_per_s"])
    # Leave a fifth of the remaining time (at least 60 s) for sampling, grids and FID.
    # (the run compiles again if it compiles: about the benchmark's warm-up time)
    left = deadline - time.perf_counter() - (best["warmup_s"] if best["compile"] else 0.0)
    reserve = max(60.0, 0.2 * left) if not args.tiny else 0.0
    steps = max(2, int((left - reserve) * best["train_images_per_s"] / batch))
    if args.tiny:
        steps = 4
    config = ImageRunConfig(
        model=model, data=data, steps=steps, batch_size=batch, lr=2e-4,
        warmup_steps=min(1000, steps // 10), ema_decay=0.9995 if steps > 5000 else 0.999,
        bf16=choose_bf16(args.device).bf16 or args.cpu_bf16, channels_last=True,
        compile=best["compile"],
        sample_every=max(1, steps // 4), n_samples=64, sample_steps=50,
    )  # fmt: skip
    result = run(config, args.out / "run", images=images, device=args.device)
    summary: dict[str, object] = {
        "device": throughput["device"], "data": data_note, "steps": steps, "batch": batch,
        "compile": best["compile"],
        "train_images_per_s": result.images_per_second,
        "final_loss": result.log[-1]["loss"] if result.log else None,
        "throughput": throughput,
    }  # fmt: skip

    fid: dict[str, object]
    try:
        weights = find_inception_weights(args.inception_weights)
    except FileNotFoundError as err:
        weights, fid = None, {"fid": None, "why": str(err)}
    if args.tiny or weights is None:
        fid = {"fid": None, "why": "tiny run" if args.tiny else "no Inception weights found"}
    else:
        try:
            n = args.fid_samples
            dev = torch.device(args.device)
            g = torch.Generator(device=dev).manual_seed(0)
            chunks = []
            with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16):
                for i in range(0, n, 500):
                    shape = (min(500, n - i), 3, 32, 32)
                    sched = linear_schedule(config.T)
                    x = ddim_sample(
                        result.ema_model,
                        sched,
                        shape,
                        steps=50,
                        generator=g,
                        device=dev,
                        clip_x0="static",
                    )
                    assert isinstance(x, torch.Tensor)
                    chunks.append(x.float().cpu())
            samples = torch.cat(chunks)
            fs = inception_features(samples, weights, device=dev)
            fr = inception_features(images[:n], weights, device=dev)
            kid = kid_from_features(fs, fr, subsets=50, subset_size=1000)
            fid = {"fid": fid_from_features(fs, fr), "kid": kid.mean, "kid_std": kid.std, "n": n,
                   "sampler": "DDIM-50, EMA, x0 clipped"}  # fmt: skip
        except (ImportError, FileNotFoundError) as err:
            fid = {"fid": None, "why": str(err)}
    fid["reference_images"] = data_note
    (args.out / "fid.json").write_text(json.dumps(fid, indent=1))
    summary["fid"] = fid
    summary["seconds"] = time.perf_counter() - t_start
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(
        json.dumps({k: v for k, v in summary.items() if k != "throughput"}, indent=1, default=str)
    )
    return summary


if __name__ == "__main__":
    main()
