"""Benchmark: the cost of ``minidiff.train`` per step against a bare PyTorch loop.

Both loops train the same ``TimeMLP`` on the same toy data with the same loss (``L_simple``),
batch and optimizer (AdamW with the implementation ``train`` picks, fused on CPU). The bare loop
is what one would write by hand, with nothing else:

    x0 = data(batch, g); loss = simple_loss(model, x0, schedule, generator=g)
    opt.zero_grad(); loss.backward(); opt.step()

``train`` adds gradient clipping, the learning-rate warm-up, the EMA, the non-finite guard and
the loss history. The two are timed in one process, interleaved (bare, train, train, bare, ...),
so that the load of the machine falls on both alike; the ratio of medians is the overhead. A
third column times the bare loop with ``torch.optim.AdamW``'s default implementation, for
reference.

    .venv/bin/python bench/train_overhead.py                 # ~1 min
    .venv/bin/python bench/train_overhead.py --rounds 10 --steps 300
    .venv/bin/python bench/train_overhead.py --against ../older-checkout   # old vs new train()
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _checkout import load_checkout  # noqa: E402  (bench/ is on sys.path when run as a script)

from minidiff import linear_schedule, simple_loss, toy_dataset  # noqa: E402
from minidiff.nn import TimeMLP  # noqa: E402
from minidiff.training import ClippedAdamW, train  # noqa: E402

Timing = tuple[float, float]  # (wall s, CPU s)


def make_model(args: argparse.Namespace) -> TimeMLP:
    torch.manual_seed(0)
    return TimeMLP(2, args.hidden, args.layers, 64, x_frequencies=args.x_frequencies)


def bare_loop(args: argparse.Namespace, optimizer_kind: str) -> Timing:
    schedule = linear_schedule(1000)
    model = make_model(args).train()
    params = list(model.parameters())
    if optimizer_kind == "same":
        opt = ClippedAdamW(params, args.lr, 0.0, None, torch.device("cpu")).optimizer
    else:
        opt = torch.optim.AdamW(params, lr=args.lr)
    g = torch.Generator().manual_seed(0)
    w0, c0 = time.perf_counter(), time.process_time()
    # the loss keeps its value checks (host reads) on every step, as train() does on the CPU (it
    # skips them after the first step only on an accelerator, where each read is a device sync), so
    # that the two loops differ only by what the loop itself does
    for _ in range(args.steps):
        x0 = toy_dataset(args.dataset, args.batch, g)
        loss = simple_loss(model, x0, schedule, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())  # one sync at the end, as train() does
    return time.perf_counter() - w0, time.process_time() - c0


def train_loop(args: argparse.Namespace, train_fn: Callable[..., object] = train) -> Timing:
    schedule = linear_schedule(1000)
    model = make_model(args)

    def loss_fn(m: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return simple_loss(m, x0, schedule, generator=g)

    def data(n: int, g: torch.Generator) -> torch.Tensor:
        return toy_dataset(args.dataset, n, g)

    w0, c0 = time.perf_counter(), time.process_time()
    train_fn(
        model,
        loss_fn,
        data,
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr,
        ema_decay=0.99,
        grad_clip=1.0,
        warmup_steps=min(100, args.steps),
        progress=args.progress,
    )
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--steps", type=int, default=200, help="steps per timed run (default 200)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--x-frequencies", type=int, default=5)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dataset", default="moons")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--progress", action="store_true", help="train() with its progress bar")
    p.add_argument(
        "--against",
        default=None,
        help="another checkout whose train() is timed beside this one's (e.g. an older main)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    runs: dict[str, Callable[[], Timing]] = {
        "bare": lambda: bare_loop(args, "same"),
        "train": lambda: train_loop(args),
        "bare_default_adamw": lambda: bare_loop(args, "default"),
    }
    if args.against:
        other = load_checkout(args.against, "minidiff_against")
        runs["train_against"] = lambda: train_loop(args, other.train)
    for fn in runs.values():  # warm-up: allocator, kernels, imports
        fn()
    results: dict[str, list[Timing]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else reversed(order):
            results[name].append(runs[name]())

    def ms(name: str, which: int) -> float:
        return 1e3 * statistics.median(t[which] for t in results[name]) / args.steps

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, {os.cpu_count()} CPUs visible, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"TimeMLP(2, {args.hidden}, {args.layers}, 64, x_frequencies={args.x_frequencies}), "
        f"batch {args.batch}, {args.dataset}; "
        f"{args.rounds} interleaved rounds of {args.steps} steps; medians\n"
    )
    print("| loop | ms/step (wall) | ms/step (CPU) | ratio to bare (wall) | ratio (CPU) |")
    print("|---|---|---|---|---|")
    for name in order:
        print(
            f"| {name} | {ms(name, 0):.3f} | {ms(name, 1):.3f} | "
            f"{ms(name, 0) / ms('bare', 0):.3f} | {ms(name, 1) / ms('bare', 1):.3f} |"
        )
    # paired ratios: each train run against the bare run of the same round
    print()
    pairs = [("train", "bare")] + [("train", "train_against")] * bool(args.against)
    for top, bottom in pairs:
        for which, label in ((1, "CPU"), (0, "wall")):
            paired = [
                t[which] / b[which] for t, b in zip(results[top], results[bottom], strict=True)
            ]
            print(
                f"{top}/{bottom} per round ({label}): median {statistics.median(paired):.3f}, "
                f"min {min(paired):.3f}, max {max(paired):.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
