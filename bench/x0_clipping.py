"""Benchmark: what x̂₀ clipping does to the samples of a briefly trained image model.

1. Train ``UNet("digits")`` with ``L_simple`` (linear betas, T = 1000) on half of scikit-learn's
   8x8 digits (pixels in [-1, 1]) for ``--steps`` steps with :func:`minidiff.train`; an
   undertrained model is the case in point (chapter 12's CPU mode, a student's first run).
2. Sample the EMA model with DDIM (eta = 0, ``--ddim-steps``) and ancestral DDPM, each with
   ``clip_x0=None`` (the maths of chapters 2-8), ``"static"`` and ``"dynamic"``, from the same
   starting noise.
3. Report the share of pixels outside [-1, 1] (beyond 1.01: saturated once displayed), the largest
   |pixel|, and k-NN precision/recall (k = 3, pixel space, samples clamped to [-1, 1] as a viewer
   would) against the held-out half, next to the data's own floor.
4. The 2D counterpoint: the exact 8-gaussians denoiser sampled with and without static clipping.
   Its modes sit at radius 2, so clipping folds them into the square: it is for images only.

    .venv/bin/python bench/x0_clipping.py                       # ~400 steps, a few CPU-minutes
    .venv/bin/python bench/x0_clipping.py --steps 100 --n 200   # smoke run

Prints Markdown tables. Times are CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidiff as md  # noqa: E402
from minidiff.data import load_digits  # noqa: E402
from minidiff.metrics import knn_precision_recall  # noqa: E402
from minidiff.nn import UNet  # noqa: E402

CLIPS = (None, "static", "dynamic")


def out_of_range(x: torch.Tensor) -> tuple[float, float, float]:
    """(share of pixels with |x| > 1.01, share of samples with any such pixel, max |x|)."""
    far = x.abs() > 1.01
    return (
        float(far.float().mean()),
        float(far.flatten(1).any(1).float().mean()),
        float(x.abs().max()),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400, help="training steps")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n", type=int, default=300, help="samples per DDIM row")
    ap.add_argument("--ddpm-n", type=int, default=100, help="samples per DDPM row (1000 steps)")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    images, _ = load_digits(size=8)
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    train_x, held_out = images[perm[: len(perm) // 2]], images[perm[len(perm) // 2 :]]
    sched = md.linear_schedule(1000)
    torch.manual_seed(0)
    c0 = time.process_time()
    result = md.train(
        UNet("digits"),
        lambda m, b, g: md.simple_loss(m, b, sched, generator=g),
        train_x,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=1e-3,
        warmup_steps=min(100, args.steps // 4),
        ema_decay=0.99,
        progress=False,
    )
    train_cpu = time.process_time() - c0
    model = result.ema.model.eval()
    floor = knn_precision_recall(train_x[: len(held_out)].flatten(1), held_out.flatten(1), k=3)
    print(f"torch {torch.__version__}, {args.threads} thread(s); UNet('digits') trained "
          f"{args.steps} steps x batch {args.batch_size} in {train_cpu:.0f} CPU s; "
          f"{args.n} samples per DDIM row, {args.ddpm_n} per DDPM row\n")  # fmt: skip
    print("| sampler | clip_x0 | pixels outside [-1, 1] | samples with one | max abs | "
          "precision | recall |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    x_T = torch.randn(args.n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for name in ("ddim", "ddpm"):
        for clip in CLIPS:
            kw = dict(steps=args.ddim_steps) if name == "ddim" else {}
            with torch.no_grad():
                if name == "ddim":
                    x = md.ddim_sample(model, sched, x_T=x_T, clip_x0=clip, **kw)
                else:
                    x = md.ddpm_sample(model, sched, (args.ddpm_n, 1, 8, 8), clip_x0=clip,
                                       generator=torch.Generator().manual_seed(1))  # fmt: skip
            assert isinstance(x, torch.Tensor)
            px, anyx, mx = out_of_range(x)
            pr = knn_precision_recall(x.clamp(-1, 1).flatten(1), held_out.flatten(1), k=3)
            # DDPM rows have fewer samples: their precision/recall are noisier
            label = f"DDIM eta=0, {args.ddim_steps} steps" if name == "ddim" else "DDPM, 1000 steps"
            print(f"| {label} | {clip} | {100 * px:.1f} % | {100 * anyx:.1f} % | {mx:.2f} | "
                  f"{pr.precision:.3f} | {pr.recall:.3f} |")  # fmt: skip
    print(f"| held-out digits (floor) | | 0.0 % | 0.0 % | 1.00 | {floor.precision:.3f} | "
          f"{floor.recall:.3f} |\n")  # fmt: skip

    gmm = md.GaussianMixture.eight_gaussians()
    sched2 = md.linear_schedule(200)
    eps = gmm.eps_model(sched2)
    data = gmm.sample(2000, generator=torch.Generator().manual_seed(2))
    print("| 2D 8-gaussians, exact denoiser, DDIM eta=0, 50 steps | clip_x0 | max abs | "
          "precision | recall |")  # fmt: skip
    print("|---|---|---|---|---|")
    for clip in (None, "static"):
        x = md.ddim_sample(eps, sched2, (2000, 2), steps=50, clip_x0=clip,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
        assert isinstance(x, torch.Tensor)
        pr = knn_precision_recall(x, data, k=3)
        print(f"| | {clip} | {float(x.abs().max()):.2f} | {pr.precision:.3f} | {pr.recall:.3f} |")


if __name__ == "__main__":
    main()
