"""Benchmark: what the argument checks cost (host reads per sampler step, and time per call).

A finiteness or range check reads a tensor back to the host: on a GPU that is a device
synchronisation, which stalls the queue of kernels. The checks therefore run once per public
call, and the samplers' loops call unchecked steps. This script counts host reads (``bool``,
``int``, ``float``, ``.item()``, ``.tolist()`` of a tensor) per sampler step, which is the same
number on any device, and times checked public functions against their unchecked cores,
interleaved in one run (wall and CPU time; both are inflated on a shared machine, the ratios less).

    .venv/bin/python bench/validation_overhead.py
    .venv/bin/python bench/validation_overhead.py --repo /path/to/another/checkout   # compare

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--repo", default=str(Path(__file__).resolve().parents[1]), help="checkout to import"
)
parser.add_argument("--reps", type=int, default=2000, help="calls per timing")
args = parser.parse_args()
sys.path.insert(0, args.repo)

import torch  # noqa: E402

import minidiff as md  # noqa: E402
from minidiff._validation import count_host_reads  # noqa: E402

torch.set_num_threads(1)


def sampler_reads() -> list[tuple[str, int, int, float]]:
    T, steps = 50, 50
    sched = md.linear_schedule(T, 1e-3, 0.2)
    sde = md.VPSDE()
    gmm = md.GaussianMixture.eight_gaussians()
    eps = gmm.eps_model(sched)
    score = md.score_fn_from_mixture(gmm, sde)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=g)
    runs: list[tuple[str, int, Callable[[], Any]]] = [
        (
            "ddpm_sample (exact GMM eps)",
            T,
            lambda: md.ddpm_sample(eps, sched, (64, 2), generator=g),
        ),
        (
            "ddpm_sample (eps = 0.1 x)",
            T,
            lambda: md.ddpm_sample(lambda x, t: 0.1 * x, sched, (64, 2), generator=g),
        ),
        (
            "ddim_sample eta=0.5",
            25,
            lambda: md.ddim_sample(
                lambda x, t: 0.1 * x, sched, (64, 2), steps=25, eta=0.5, generator=g
            ),
        ),
        ("ddim_invert", 25, lambda: md.ddim_invert(lambda x, t: 0.1 * x, sched, x0, steps=25)),
        (
            "langevin_sample",
            steps,
            lambda: md.langevin_sample(
                lambda x: -x, (64, 2), steps=steps, step_size=0.01, generator=g
            ),
        ),
        (
            "annealed_langevin_sample",
            2 * 25,
            lambda: md.annealed_langevin_sample(
                lambda x, s: -x, [1.0, 0.5], (64, 2), steps_per_level=25, step_lr=0.01, generator=g
            ),
        ),
        (
            "euler_maruyama_sample (exact score)",
            steps,
            lambda: md.euler_maruyama_sample(score, sde, (64, 2), steps=steps, generator=g),
        ),
        (
            "pf_ode_sample euler (exact score)",
            steps,
            lambda: md.pf_ode_sample(score, sde, (64, 2), steps=steps, method="euler", generator=g),
        ),
        (
            "predictor_corrector_sample (exact score)",
            25,
            lambda: md.predictor_corrector_sample(score, sde, (64, 2), steps=25, generator=g),
        ),
        (
            "euler_maruyama_sample (score = -x)",
            steps,
            lambda: md.euler_maruyama_sample(
                lambda x, t: -x, sde, (64, 2), steps=steps, generator=g
            ),
        ),
        (
            "pf_ode_sample heun (score = -x)",
            steps,
            lambda: md.pf_ode_sample(lambda x, t: -x, sde, (64, 2), steps=steps, generator=g),
        ),
        (
            "predictor_corrector_sample (score = -x)",
            25,
            lambda: md.predictor_corrector_sample(
                lambda x, t: -x, sde, (64, 2), steps=25, generator=g
            ),
        ),
    ]
    out = []
    for name, n_steps, fn in runs:
        fn()  # warm-up
        with count_host_reads() as c:
            fn()
        out.append((name, n_steps, c[0], c[0] / n_steps))
    return out


def timings(reps: int) -> list[tuple[str, float, float, float, float]]:
    from minidiff import diffusion, losses
    from minidiff.samplers import ddpm

    sched = md.linear_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    noise = torch.randn(512, 2, generator=g)
    t = torch.randint(1, 1001, (512,), generator=g)
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = []
    if hasattr(diffusion, "_q_sample"):
        pairs.append(
            (
                "q_sample vs _q_sample (512x2)",
                lambda: md.q_sample(x, t, sched, noise=noise),
                lambda: diffusion._q_sample(x, t, sched, noise),
            )
        )
    if hasattr(ddpm, "_step"):  # the step the sampler's loop takes (value checks skipped there)
        from minidiff._validation import skip_value_checks

        def loop_step() -> torch.Tensor:
            with skip_value_checks():
                return ddpm._step(lambda a, b: noise, x, t, sched, "beta", noise)

        pairs.append(
            (
                "ddpm_step vs the loop's step (512x2)",
                lambda: md.ddpm_step(x, t, noise, sched, noise=noise),
                loop_step,
            )
        )
    if hasattr(losses, "_gaussian_kl"):
        v = torch.ones(512, 1)
        pairs.append(
            (
                "gaussian_kl vs _gaussian_kl (512x2)",
                lambda: md.gaussian_kl(x, v, noise, v),
                lambda: losses._gaussian_kl(x, v, noise, v),
            )
        )
    out = []
    for name, checked, core in pairs:
        acc = {"c_wall": 0.0, "c_cpu": 0.0, "u_wall": 0.0, "u_cpu": 0.0}
        for _ in range(reps):  # interleaved, so both see the same load
            for key, fn in (("c", checked), ("u", core)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                acc[f"{key}_wall"] += time.perf_counter() - w0
                acc[f"{key}_cpu"] += time.process_time() - c0
        out.append(
            (
                name,
                1e6 * acc["c_wall"] / reps,
                1e6 * acc["u_wall"] / reps,
                1e6 * acc["c_cpu"] / reps,
                1e6 * acc["u_cpu"] / reps,
            )
        )
    return out


def main() -> None:
    print(f"minidiff from {args.repo}; torch {torch.__version__}, 1 thread\n")
    print("| sampler | steps | host reads per call | per step |")
    print("|---|---:|---:|---:|")
    for name, n, reads, per in sampler_reads():
        print(f"| {name} | {n} | {reads} | {per:.2f} |")
    rows = timings(args.reps)
    if rows:
        print(
            f"\n| call ({args.reps} reps, interleaved) | checked wall µs | core wall µs | "
            "checked CPU µs | "
            "core CPU µs | wall ratio |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for name, cw, uw, cc, uc in rows:
            print(f"| {name} | {cw:.1f} | {uw:.1f} | {cc:.1f} | {uc:.1f} | {cw / uw:.2f} |")


if __name__ == "__main__":
    main()
