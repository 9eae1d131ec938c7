"""Benchmark: chapter 11's U-Net on the 8x8 digits, as an ε-model (DDPM) and as a velocity model
(flow matching), at equal training CPU-seconds (chapter 16).

1. Split the 1797 digits (``load_digits(size=8)``, pixels in [-1, 1]) into halves A (train) and
   B (held out) by a fixed permutation.
2. Train ``UNet(--model)`` from the same initial weights twice through the course loop: with
   ``L_simple`` (linear schedule, T = 1000) and with ``flow_matching_loss`` (rectified-flow path,
   uniform t; ``ScaledTime`` feeds the network ``1000 t``), each for as many steps as fit
   ``--cpu-seconds`` of this process's CPU time (a short throwaway run measures a step first).
   Batch 64, AdamW 2e-3 with warm-up and cosine decay, EMA 0.995, clipping at 1.
3. Sample ``--n`` images from each EMA model with ``--nfe`` network calls (DDIM η = 0 for the
   ε-model, Euler on the flow ODE for the velocity model) and score them with k-NN precision and
   recall (k = 3) in the 64-d pixel space against B, next to the floor (A's first ``n`` images
   against B), as ``bench/unet_digits.py`` does.

    .venv/bin/python bench/flow_digits.py                       # 2 x 120 CPU-s, tiny U-Net
    .venv/bin/python bench/flow_digits.py --model digits --cpu-seconds 300
    .venv/bin/python bench/flow_digits.py --quick               # smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import ddim_sample, linear_schedule, simple_loss  # noqa: E402
from minidiff.data import load_digits  # noqa: E402
from minidiff.flow_matching import ScaledTime, flow_matching_loss  # noqa: E402
from minidiff.metrics import knn_precision_recall  # noqa: E402
from minidiff.nn import UNet  # noqa: E402
from minidiff.samplers.flow import flow_sample  # noqa: E402
from minidiff.training import train  # noqa: E402

SCHEDULE = linear_schedule(1000)


def run(kind: str, net: torch.nn.Module, data: torch.Tensor, steps: int) -> torch.nn.Module:
    def loss(m: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if kind == "eps":
            return simple_loss(m, x0, SCHEDULE, generator=g)
        return flow_matching_loss(m, x0, generator=g)

    model = net if kind == "eps" else ScaledTime(net)
    r = train(
        model, loss, data, steps=steps, batch_size=64, lr=2e-3, lr_schedule="cosine",
        warmup_steps=min(100, steps // 4), ema_decay=0.995, grad_clip=1.0, progress=False,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    return r.ema.model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="tiny", choices=("tiny", "digits"))
    p.add_argument("--cpu-seconds", type=float, default=120.0, help="budget per model (120)")
    p.add_argument("--steps", type=int, default=None, help="fixed steps instead of a budget")
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--quick", action="store_true", help="smoke run: 5 steps, 64 images")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.n, a.nfe = a.steps or 5, 64, [2]
    torch.set_num_threads(1)
    digits, _ = load_digits(size=8)
    perm = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    A, B = digits[perm[: len(digits) // 2]], digits[perm[len(digits) // 2 :]]
    n = min(a.n, len(B))
    floor = knn_precision_recall(A[:n].flatten(1), B[:n].flatten(1))
    print(
        f"# U-Net({a.model}) on digits: eps vs flow matching, load average "
        f"{os.getloadavg()[0]:.1f}\n\nfloor (A vs B, {n} images): precision {floor.precision:.3f}, "
        f"recall {floor.recall:.3f}\n",
        flush=True,
    )
    torch.manual_seed(0)
    net0 = UNet(a.model)
    rows = []
    for kind in ("eps", "flow"):
        steps = a.steps
        if steps is None:  # a throwaway run first: the first calls in a process are slow
            run(kind, copy.deepcopy(net0), A, 3)
            c0 = time.process_time()
            run(kind, copy.deepcopy(net0), A, 20)
            steps = max(1, int(0.92 * a.cpu_seconds * 20 / (time.process_time() - c0)))
        c0 = time.process_time()
        model = run(kind, copy.deepcopy(net0), A, steps)
        cpu = time.process_time() - c0
        for nfe in a.nfe:
            g = torch.Generator().manual_seed(11)
            with torch.no_grad():
                if kind == "eps":
                    x = ddim_sample(model, SCHEDULE, (n, 1, 8, 8), steps=nfe, generator=g)
                else:
                    x = flow_sample(model, shape=(n, 1, 8, 8), steps=nfe, generator=g)
            pr = knn_precision_recall(x.clamp(-1, 1).flatten(1), B[:n].flatten(1))  # type: ignore[union-attr]
            rows.append(
                {"model": kind, "steps": steps, "cpu_s": cpu, "nfe": nfe,
                 "precision": pr.precision, "recall": pr.recall,
                 "precision_ratio": pr.precision / floor.precision,
                 "recall_ratio": pr.recall / floor.recall}
            )  # fmt: skip
    print("| model | steps | CPU s | NFE | precision / floor | recall / floor |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['steps']} | {r['cpu_s']:.0f} | {r['nfe']} | "
            f"{r['precision_ratio']:.2f} | {r['recall_ratio']:.2f} |"
        )
    if a.json is not None:
        a.json.write_text(json.dumps({"floor": floor._asdict(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
