"""Benchmark: DDPM (L_simple + ancestral sampling) on the 2D toys, scored against the data floor.

For each toy data set: train a ``TimeMLP`` with ``L_simple`` on a linear schedule with T = 1000
for a fixed number of optimizer steps (calibrated to take about 60 s on an idle 2-core CPU) and
at most ``--seconds`` of wall time, whichever comes first; draw ``--n`` samples from the EMA
model with T ancestral steps, ``--repeats`` times; compare each draw with a fresh data sample of
the same size (sliced Wasserstein SW2, unbiased MMD²) and with the data floor (two independent
data samples). A last row samples 8gaussians with the *exact* mixture denoiser instead of a
network: it measures the sampler alone and should sit at the floor.

    .venv/bin/python bench/ddpm_toys.py          # full run (~30 min on an idle 2-core machine)
    .venv/bin/python bench/ddpm_toys.py --quick  # smoke run (a few minutes)

Prints a Markdown table; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import (  # noqa: E402
    GaussianMixture,
    ddpm_sample,
    linear_schedule,
    simple_loss,
    toy_dataset,
)
from minidiff.metrics import mmd, sliced_wasserstein  # noqa: E402
from minidiff.nn import TimeMLP  # noqa: E402
from minidiff.train import train  # noqa: E402

DATASETS = ("moons", "swiss_roll", "8gaussians", "checkerboard", "two_spirals")

# The training recipe (one for every data set). STEPS is the budget: about 60 s on an idle 2-core
# CPU.
MODEL: dict[str, int] = {"hidden": 128, "n_layers": 3, "time_dim": 64}
STEPS = 4500
BATCH = 512
LR = 2e-3
WARMUP = 200
EMA_DECAY = 0.995
CHUNK = 250  # steps between time-budget checks (train() resumes exactly from its checkpoint)


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1)."""
    m = sum(values) / len(values)
    s = (
        math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
        if len(values) > 1
        else float("nan")
    )
    return m, s


def rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def train_model(
    name: str, steps: int, seconds: float, seed: int
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train until ``steps`` optimizer steps or ``seconds`` of wall time; return the EMA model and
    timings."""
    schedule = linear_schedule(1000)
    torch.manual_seed(seed)
    model = TimeMLP(2, MODEL["hidden"], MODEL["n_layers"], MODEL["time_dim"])

    def loss_fn(m: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return simple_loss(m, x0, schedule, generator=g)

    def data(n: int, g: torch.Generator) -> torch.Tensor:
        return toy_dataset(name, n, g)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt.pt"
        chunk_s = 0.0
        while done < steps:
            target = min(steps, done + CHUNK)
            chunk0 = time.perf_counter()
            result = train(
                model,
                loss_fn,
                data,
                steps=target,
                batch_size=BATCH,
                lr=LR,
                ema_decay=EMA_DECAY,
                grad_clip=1.0,
                warmup_steps=min(WARMUP, steps // 5),
                seed=seed,
                checkpoint_path=ckpt,
                progress=False,
            )
            done = result.steps_done
            chunk_s = time.perf_counter() - chunk0
            # stop before a chunk that would overrun the budget, so training never exceeds it
            if time.perf_counter() - wall0 + chunk_s > seconds:
                break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    tail = result.losses[-200:]
    return result.ema.model, {
        "steps": done,
        "train_s": wall,
        "train_cpu_s": cpu,
        "ms_per_step": 1e3 * wall / done,
        "final_loss": sum(tail) / len(tail),
    }


def evaluate(
    samples: list[torch.Tensor], name: str, n: int, gen: torch.Generator
) -> dict[str, list[float]]:
    """SW2 and MMD² of each draw against a fresh data sample, and the floor (two fresh data
    samples)."""
    out: dict[str, list[float]] = {"sw": [], "mmd": [], "sw_floor": [], "mmd_floor": []}
    for x in samples:
        y = toy_dataset(name, n, gen)
        out["sw"].append(sliced_wasserstein(x, y, generator=gen))
        out["mmd"].append(mmd(x, y))
        a, b = toy_dataset(name, n, gen), toy_dataset(name, n, gen)
        out["sw_floor"].append(sliced_wasserstein(a, b, generator=gen))
        out["mmd_floor"].append(mmd(a, b))
    return out


def draw(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    n: int,
    repeats: int,
    gen: torch.Generator,
) -> list[torch.Tensor]:
    """``repeats`` independent samples of size ``n`` (one batched run of the sampler)."""
    schedule = linear_schedule(1000)
    with torch.no_grad():
        x = ddpm_sample(eps_model, schedule, (n * repeats, 2), generator=gen)
    assert isinstance(x, torch.Tensor)
    return list(x.split(n))


def row(
    label: str, timing: dict[str, float] | None, ev: dict[str, list[float]]
) -> dict[str, object]:
    sw, sw_s = spread(ev["sw"])
    swf, swf_s = spread(ev["sw_floor"])
    mm, mm_s = spread(ev["mmd"])
    mmf, mmf_s = spread(ev["mmd_floor"])
    return {
        "dataset": label,
        **(timing or {}),
        "sw": sw,
        "sw_std": sw_s,
        "sw_floor": swf,
        "sw_floor_std": swf_s,
        "sw_ratio": sw / swf,
        "mmd": mm,
        "mmd_std": mm_s,
        "mmd_floor": mmf,
        "mmd_floor_std": mmf_s,
        "mmd_floor_rms": rms(ev["mmd_floor"]),
        "mmd_ratio": mm / rms(ev["mmd_floor"]),
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| dataset | train s (2 cores) | steps | SW (mean±std) | SW floor | ratio | MMD² "
        "(mean±std) | MMD² floor | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        train_s = f"{r['train_s']:.1f}" if "train_s" in r else "—"
        steps = f"{r['steps']}" if "steps" in r else "—"
        lines.append(
            f"| {r['dataset']} | {train_s} | {steps} | {r['sw']:.4f} ± {r['sw_std']:.4f} | "
            f"{r['sw_floor']:.4f} ± {r['sw_floor_std']:.4f} | {r['sw_ratio']:.2f} | "
            f"{r['mmd']:.1e} ± {r['mmd_std']:.0e} | {r['mmd_floor']:.0e} ± "
            f"{r['mmd_floor_std']:.0e} | "
            f"{r['mmd_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 150 steps, 1000 points, 2 draws"
    )
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument(
        "--steps", type=int, default=None, help=f"optimizer steps per data set (default {STEPS})"
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="wall-time cap on training per data set (default 60)",
    )
    p.add_argument("--n", type=int, default=None, help="points per sample (default 10000)")
    p.add_argument("--repeats", type=int, default=None, help="independent draws (default 3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-exact", action="store_true", help="skip the exact-mixture row")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    a = p.parse_args(argv)
    steps = a.steps or (150 if a.quick else STEPS)
    seconds = a.seconds or (20.0 if a.quick else 60.0)
    n = a.n or (1000 if a.quick else 10_000)
    repeats = a.repeats or (2 if a.quick else 3)
    torch.set_num_threads(a.threads)

    print(f"# DDPM on 2D toys ({'quick' if a.quick else 'full'} run)\n")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {a.threads} "
        f"threads, "
        f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"TimeMLP({MODEL}), batch {BATCH}, AdamW lr {LR} (warm-up {WARMUP}), EMA {EMA_DECAY}, T "
        f"= 1000 linear; "
        f"budget {steps} steps or {seconds:.0f} s; {n} samples x {repeats} draws, 1000 ancestral "
        f"steps\n",
        flush=True,
    )
    rows: list[dict[str, object]] = []
    for i, name in enumerate(a.datasets):
        model, timing = train_model(name, steps, seconds, a.seed + i)
        gen = torch.Generator().manual_seed(1000 + a.seed + i)
        t0 = time.perf_counter()
        samples = draw(model, n, repeats, gen)
        sample_s = time.perf_counter() - t0
        rows.append(row(name, timing, evaluate(samples, name, n, gen)))
        print(
            f"{name}: {timing['steps']} steps in {timing['train_s']:.1f} s wall / "
            f"{timing['train_cpu_s']:.1f} s CPU "
            f"({timing['ms_per_step']:.1f} ms/step), final loss {timing['final_loss']:.3f}; "
            f"sampling {sample_s:.1f} s; SW ratio {rows[-1]['sw_ratio']:.2f}",
            flush=True,
        )
    if not a.no_exact:
        gen = torch.Generator().manual_seed(2000 + a.seed)
        exact = GaussianMixture.eight_gaussians().eps_model(linear_schedule(1000))
        rows.append(
            row(
                "8gaussians, exact denoiser",
                None,
                evaluate(draw(exact, n, repeats, gen), "8gaussians", n, gen),
            )
        )
    print()
    print(table(rows))
    print(
        "\nSW: sliced Wasserstein-2 (256 directions). MMD²: unbiased, sum of RBF kernels (median "
        "heuristic). "
        "Floors: the same metric between two independent data samples of the same size. MMD² is "
        "unbiased, "
        "so its floor averages 0; its ratio divides by the floor's root mean square over the draws."
    )
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
