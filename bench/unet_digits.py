"""Benchmark: the CPU quality bar of chapters 11-12 — a U-Net DDPM on scikit-learn's 8x8 digits.

1. Split the 1797 digits (``minidiff.data.load_digits(size=8)``, pixels in [-1, 1]) into two halves
   by a fixed permutation: A (train the diffusion model and the classifier) and B (held out).
2. Train ``UNet("digits")`` with ``L_simple`` (linear betas, T = 1000) through
   ``minidiff.training.images.run`` (the course's one loop: AdamW, warm-up, clipping, EMA) on A for
   a
   budget of **CPU time** (``--cpu-seconds``, default 300, counted with ``resource.getrusage`` over
   all threads; the step count is calibrated from the first 20 steps).
3. Draw ``--n`` samples from the EMA model with DDIM (``--sample-steps``, eta = 0).
4. Score them:
   - two scikit-learn classifiers on the 64 pixels, fitted on A (``LogisticRegression``, fairly
     cautious, and ``MLPClassifier(256)``, sharper), label every sample; *confident* = the largest
     class probability >= 0.9. Bar, for both: the confident rate of the samples >= 80% of the
     confident rate of the held-out real digits B;
   - class histogram: total-variation distance to uniform (0 = all ten classes equally often), next
     to the same for B;
   - k-NN precision/recall (k = 3, Kynkäänniemi et al. 2019) in the **64-d pixel space** (pixels in
     [-1, 1], no learned features: the digits are small enough for distances between pixels to
     mean something) against B, next to the floor: A's first ``len(B)`` images against B.

    .venv/bin/python bench/unet_digits.py                 # ~5 CPU-minutes of training
    .venv/bin/python bench/unet_digits.py --cpu-seconds 30 --n 200   # smoke run

Prints a Markdown table; ``--out DIR`` keeps the run (checkpoint, loss curve, sample grids) and
writes ``results.json`` there.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import ddim_sample, linear_schedule, simple_loss  # noqa: E402
from minidiff.data import load_digits  # noqa: E402
from minidiff.metrics import knn_precision_recall  # noqa: E402
from minidiff.nn import UNet  # noqa: E402
from minidiff.training.images import ImageRunConfig, run  # noqa: E402
from minidiff.viz import save_image_grid  # noqa: E402

CONFIDENT = 0.9


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def split_digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels = load_digits(size=8)
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    return images[a], labels[a], images[b], labels[b]


def classifiers(images: torch.Tensor, labels: torch.Tensor) -> dict[str, object]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x, y = images.flatten(1).numpy(), labels.numpy()
    return {
        "logistic": LogisticRegression(max_iter=3000).fit(x, y),
        "mlp": MLPClassifier((256,), max_iter=500, random_state=0).fit(x, y),
    }


def class_scores(clf, images: torch.Tensor) -> dict[str, float]:  # noqa: ANN001
    proba = clf.predict_proba(images.flatten(1).clamp(-1, 1).numpy())
    hist = np.bincount(proba.argmax(1), minlength=10) / len(proba)
    return {
        "confident": float((proba.max(1) >= CONFIDENT).mean()),
        "tv_uniform": float(0.5 * np.abs(hist - 0.1).sum()),
        "hist": [round(float(h), 3) for h in hist],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-seconds", type=float, default=300.0)
    ap.add_argument("--n", type=int, default=1000, help="samples to score")
    ap.add_argument("--sample-steps", type=int, default=100, help="DDIM steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="unet_digits_"))
    train_a, labels_a, real_b, labels_b = split_digits()

    def config(steps: int) -> ImageRunConfig:
        return ImageRunConfig(
            model="digits", data="digits", steps=steps, batch_size=args.batch_size, lr=1e-3,
            warmup_steps=100, ema_decay=0.999, T=1000, sample_every=steps,
            n_samples=64, sample_steps=20,
        )  # fmt: skip

    # Calibrate the step count: 5 + 20 training steps of the same model and batch (the run also
    # draws two 64-image grids, which count against the budget: hence the 0.9).
    model = UNet("digits")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sched = linear_schedule(1000)
    for i in range(25):
        if i == 5:
            c0 = cpu_seconds()
        loss = simple_loss(model, train_a[: args.batch_size], sched)
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_step = (cpu_seconds() - c0) / 20
    steps = max(20, int(0.9 * args.cpu_seconds / per_step))

    c0, w0 = cpu_seconds(), time.perf_counter()
    result = run(config(steps), out / "run", images=train_a, device="cpu")
    train_cpu, train_wall = cpu_seconds() - c0, time.perf_counter() - w0

    c0 = cpu_seconds()
    model = result.ema_model.eval()
    g = torch.Generator().manual_seed(1)
    chunks = []
    with torch.no_grad():
        for n in [min(500, args.n - i) for i in range(0, args.n, 500)]:
            x = ddim_sample(model, linear_schedule(1000), (n, 1, 8, 8), steps=args.sample_steps,
                            generator=g)  # fmt: skip
            assert isinstance(x, torch.Tensor)
            chunks.append(x)
    samples = torch.cat(chunks).clamp(-1, 1)
    sample_cpu = cpu_seconds() - c0
    save_image_grid(samples[:100], out / "samples_scored.png", nrow=10, scale=4)

    pr = knn_precision_recall(samples.flatten(1), real_b.flatten(1), k=3)
    floor = knn_precision_recall(train_a[: len(real_b)].flatten(1), real_b.flatten(1), k=3)
    scores = {}
    for name, clf in classifiers(train_a, labels_a).items():
        real, fake = class_scores(clf, real_b), class_scores(clf, samples)
        ratio = fake["confident"] / real["confident"]
        scores[name] = {"real": real, "samples": fake, "ratio": ratio}
    res = {
        "torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
        "steps": steps, "batch_size": args.batch_size, "train_cpu_s": train_cpu,
        "train_wall_s": train_wall, "sample_cpu_s": sample_cpu, "n": args.n,
        "sample_steps": args.sample_steps, "classifiers": scores,
        "precision": pr.precision, "recall": pr.recall,
        "floor_precision": floor.precision, "floor_recall": floor.recall, "out": str(out),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"torch {torch.__version__}, {args.threads} thread(s); run in {out}")
    print(f"training: {steps} steps x batch {args.batch_size}, {train_cpu:.0f} s CPU "
          f"({train_wall:.0f} s wall); sampling {args.n} x DDIM-{args.sample_steps}: "
          f"{sample_cpu:.0f} s CPU\n")  # fmt: skip
    print("| measure | samples | real digits (held out) | bar |")
    print("|---|---|---|---|")
    for name, sc in scores.items():
        fake, real, ratio = sc["samples"], sc["real"], sc["ratio"]
        verdict = "PASS" if ratio >= 0.8 else "FAIL"
        print(f"| {name}: P(class) >= {CONFIDENT} | {fake['confident']:.3f} | "
              f"{real['confident']:.3f} | ratio {ratio:.2f} >= 0.80: {verdict} |")  # fmt: skip
        print(f"| {name}: TV(class histogram, uniform) | {fake['tv_uniform']:.3f} | "
              f"{real['tv_uniform']:.3f} | close to uniform |")  # fmt: skip
    print(f"| k-NN precision (pixels, k=3) | {pr.precision:.3f} | floor {floor.precision:.3f} | |")
    print(f"| k-NN recall (pixels, k=3) | {pr.recall:.3f} | floor {floor.recall:.3f} | |")
    for name, sc in scores.items():
        print(f"class histogram of the samples ({name}): {sc['samples']['hist']}")


if __name__ == "__main__":
    main()
