"""Benchmark: the CPU quality bar of chapters 11-12 — a U-Net DDPM on scikit-learn's 8x8 digits.

1. Split the 1797 digits (``minidiff.data.load_digits(size=8)``, pixels in [-1, 1]) into two halves
   by a fixed permutation: A (train the diffusion model and the classifiers) and B (held out).
2. Train ``UNet("digits")`` with ``L_simple`` (linear betas, T = 1000) through
   ``minidiff.training.images.run`` (the course's one loop: AdamW, warm-up, clipping, EMA) on A for
   a
   budget of **CPU time** (``--cpu-seconds``, default 300, counted with ``resource.getrusage`` over
   all threads; the step count is calibrated from the first 20 steps).
3. Draw ``--n`` samples from the EMA model with DDIM (``--sample-steps``, eta = 0), from the same
   ``x_T``, once without and once with x̂₀ clipping (``clip_x0="static"``): the fraction of pixels
   outside [-1, 1] by more than one 8-bit grey level (2/255) before the picture clamps them.
4. Score both sets (clamped to [-1, 1]):
   - four classifiers fitted on A in seconds (``LogisticRegression``; ``MLPClassifier(256)``; an
     RBF ``SVC`` with calibrated probabilities; the small CNN of ``minidiff.metrics.digits``),
     each with its accuracy on B and its confident rate on B and on four kinds of non-digits
     (noise, a blank page, blurred digits, two digits averaged); *confident* = the largest class
     probability >= 0.9. The quality figure is the confident rate of the samples over that of
     the held-out real digits B, read by the *judge*: the classifier with the largest gap
     between its confident rate on B and on the worst non-digit (the most accurate classifier,
     the SVC, is confident about noise and blur, so it flatters samples). Bar: >= 0.8;
   - class histogram: total-variation distance to uniform (0 = all ten classes equally often), next
     to the same for B;
   - the FID stand-in (``minidiff.metrics.digits.digit_fid``: Fréchet distance in the CNN's 64
     features) against B, next to its floor (A's first ``len(B)`` images against B);
   - k-NN precision/recall (k = 3, Kynkäänniemi et al. 2019) in the **64-d pixel space** against B,
     next to the floor.

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
from minidiff.metrics.digits import (  # noqa: E402
    confident_rate,
    digit_fid,
    out_of_range_fraction,
    train_digit_cnn,
)
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
    """The four classifiers, fitted on ``images (N, 1, 8, 8)``, ``labels (N,)``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    x, y = images.flatten(1).numpy(), labels.numpy()
    return {
        "logistic": LogisticRegression(max_iter=3000).fit(x, y),
        "mlp": MLPClassifier((256,), max_iter=500, random_state=0).fit(x, y),
        "svc": CalibratedClassifierCV(SVC(C=10.0, gamma="scale"), ensemble=False).fit(x, y),
        "cnn": train_digit_cnn(images, labels, generator=torch.Generator().manual_seed(0)),
    }


def non_digits(real: torch.Tensor) -> dict[str, torch.Tensor]:
    """Images that are not digits, of the kinds a poor sampler makes: noise, a blank page, blur,
    two digits laid over each other. A judge of samples must not be confident about them."""
    g = torch.Generator().manual_seed(2)
    n = len(real) // 2
    return {
        "uniform noise": torch.rand(300, 1, 8, 8, generator=g) * 2 - 1,
        "blank": -torch.ones(50, 1, 8, 8),
        "blurred digits": torch.nn.functional.avg_pool2d(real, 3, 1, 1),
        "two digits averaged": (real[:n] + real[n : 2 * n]) / 2,
    }


def _proba(clf: object, images: torch.Tensor) -> np.ndarray:
    if isinstance(clf, torch.nn.Module):
        with torch.no_grad():
            return clf(images).softmax(1).numpy()
    return clf.predict_proba(images.flatten(1).clamp(-1, 1).numpy())  # type: ignore[attr-defined]


def class_scores(clf: object, images: torch.Tensor) -> dict[str, object]:
    proba = _proba(clf, images)
    hist = np.bincount(proba.argmax(1), minlength=10) / len(proba)
    return {
        "confident": confident_rate(clf, images, CONFIDENT),
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
    raw: dict[str, torch.Tensor] = {}
    for clip in ("none", "static"):
        g = torch.Generator().manual_seed(1)  # the same x_T for both
        chunks = []
        with torch.no_grad():
            for n in [min(500, args.n - i) for i in range(0, args.n, 500)]:
                x = ddim_sample(model, linear_schedule(1000), (n, 1, 8, 8), steps=args.sample_steps,
                                generator=g, clip_x0=None if clip == "none" else clip)  # fmt: skip
                assert isinstance(x, torch.Tensor)
                chunks.append(x)
        raw[clip] = torch.cat(chunks)
    sample_cpu = cpu_seconds() - c0
    for clip, x in raw.items():
        save_image_grid(x[:100].clamp(-1, 1), out / f"samples_{clip}.png", nrow=10, scale=4)

    fitted = classifiers(train_a, labels_a)
    accuracy = {
        name: float((_proba(clf, real_b).argmax(1) == labels_b.numpy()).mean())
        for name, clf in fitted.items()
    }
    most_accurate = max(accuracy, key=lambda k: accuracy[k])
    fakes = non_digits(real_b)
    false_conf = {
        name: {k: confident_rate(clf, v, CONFIDENT) for k, v in fakes.items()}
        for name, clf in fitted.items()
    }
    real_conf = {name: confident_rate(clf, real_b, CONFIDENT) for name, clf in fitted.items()}
    # the judge: the classifier that best tells digits from non-digits
    separation = {n: real_conf[n] - max(false_conf[n].values()) for n in fitted}
    best = max(separation, key=lambda k: separation[k])
    floor = knn_precision_recall(train_a[: len(real_b)].flatten(1), real_b.flatten(1), k=3)
    cnn = fitted["cnn"]
    assert isinstance(cnn, torch.nn.Module)
    fid_floor = digit_fid(cnn, train_a[: len(real_b)], real_b)  # type: ignore[arg-type]
    real = {name: class_scores(clf, real_b) for name, clf in fitted.items()}
    per_clip: dict[str, dict[str, object]] = {}
    for clip, x in raw.items():
        samples = x.clamp(-1, 1)
        pr = knn_precision_recall(samples.flatten(1), real_b.flatten(1), k=3)
        scores = {}
        for name, clf in fitted.items():
            fake = class_scores(clf, samples)
            ratio = float(fake["confident"]) / float(real[name]["confident"])  # type: ignore[arg-type]
            scores[name] = {"samples": fake, "ratio": ratio}
        per_clip[clip] = {
            "out_of_range": out_of_range_fraction(x, limit=1 + 2 / 255),  # by > one 8-bit level
            "classifiers": scores,
            "fid_standin": digit_fid(cnn, samples[: len(real_b)], real_b),  # type: ignore[arg-type]
            "precision": pr.precision,
            "recall": pr.recall,
        }
    res = {
        "torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
        "steps": steps, "batch_size": args.batch_size, "train_cpu_s": train_cpu,
        "train_wall_s": train_wall, "sample_cpu_s": sample_cpu, "n": args.n,
        "sample_steps": args.sample_steps, "heldout_accuracy": accuracy, "best": best,
        "most_accurate": most_accurate, "confident_on_non_digits": false_conf,
        "separation": separation,
        "real": real, "clip": per_clip, "fid_standin_floor": fid_floor,
        "floor_precision": floor.precision, "floor_recall": floor.recall, "out": str(out),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"torch {torch.__version__}, {args.threads} thread(s); run in {out}")
    print(f"training: {steps} steps x batch {args.batch_size}, {train_cpu:.0f} s CPU "
          f"({train_wall:.0f} s wall); sampling 2 x {args.n} x DDIM-{args.sample_steps}: "
          f"{sample_cpu:.0f} s CPU\n")  # fmt: skip
    print("The classifiers (fitted on A). A judge of samples must read real digits and refuse")
    print(f"non-digits: the judge is the one with the largest gap (P(class) >= {CONFIDENT}).\n")
    print("| classifier | accuracy on B | confident on B | " + " | ".join(fakes) + " | gap |")
    print("|---|---|---|" + "---|" * len(fakes) + "---|")
    for name in fitted:
        row = " | ".join(f"{false_conf[name][k]:.3f}" for k in fakes)
        print(f"| {name} | {accuracy[name]:.3f} | {real_conf[name]:.3f} | {row} | "
              f"{separation[name]:+.3f} |")  # fmt: skip
    print(f"\nmost accurate: {most_accurate}; judge (largest gap): {best}\n")
    print("| measure | no clipping | x̂₀ clipped | real digits (held out) | bar |")
    print("|---|---|---|---|---|")
    print(f"| pixels outside [-1, 1] before clamping | {per_clip['none']['out_of_range']:.1%} | "
          f"{per_clip['static']['out_of_range']:.1%} | 0 | |")  # fmt: skip
    for name in fitted:
        r = [per_clip[c]["classifiers"][name]["ratio"] for c in ("none", "static")]  # type: ignore[index]
        f = [per_clip[c]["classifiers"][name]["samples"]["confident"] for c in ("none", "static")]  # type: ignore[index]
        star = " (judge)" if name == best else ""
        print(f"| {name}{star}: P(class) >= {CONFIDENT} | {f[0]:.3f} (ratio {r[0]:.2f}) | "
              f"{f[1]:.3f} (ratio {r[1]:.2f}) | {real[name]['confident']:.3f} | "
              f"ratio >= 0.80: {'PASS' if r[1] >= 0.8 else 'FAIL'} (clipped) |")  # fmt: skip
    tv = [per_clip[c]["classifiers"][best]["samples"]["tv_uniform"] for c in ("none", "static")]  # type: ignore[index]
    print(f"| {best}: TV(class histogram, uniform) | {tv[0]:.3f} | {tv[1]:.3f} | "
          f"{real[best]['tv_uniform']:.3f} | close to uniform |")  # fmt: skip
    fids = [per_clip[c]["fid_standin"] for c in ("none", "static")]
    print(f"| FID stand-in (CNN features, {len(real_b)} vs {len(real_b)}) | {fids[0]:.2f} | "
          f"{fids[1]:.2f} | floor {fid_floor:.2f} | |")  # fmt: skip
    for key in ("precision", "recall"):
        v = [per_clip[c][key] for c in ("none", "static")]
        fl = floor.precision if key == "precision" else floor.recall
        print(f"| k-NN {key} (pixels, k=3) | {v[0]:.3f} | {v[1]:.3f} | floor {fl:.3f} | |")


if __name__ == "__main__":
    main()
