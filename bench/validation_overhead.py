"""Benchmark: what the argument checks cost (host reads per sampler step, and time per call).

A finiteness or range check reads a tensor back to the host: on a GPU that is a device
synchronisation, which stalls the queue of kernels. The checks therefore run once per public
call, and the samplers' loops call unchecked steps. This script counts host reads (``bool``,
``int``, ``float``, ``.item()``, ``.tolist()`` of a tensor) per sampler step, which is the same
number on any device, and times checked public functions against their unchecked cores
(``fn.unchecked``), interleaved in one run (wall and CPU time; both are inflated on a shared
machine, the ratios less).

    .venv/bin/python bench/validation_overhead.py
    .venv/bin/python bench/validation_overhead.py --repo /path/to/another/checkout
    .venv/bin/python bench/validation_overhead.py --against /path/to/main   # before/after ratios

``--against DIR`` imports a second checkout side by side (as the package ``minidiff_against``)
and interleaves the same checked calls of both in one process, so the ratio "this / against" of
CPU time per call is measured under the same load.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--repo", default=str(Path(__file__).resolve().parents[1]), help="checkout to import"
)
parser.add_argument("--against", default=None, help="a second checkout to compare with")
parser.add_argument("--reps", type=int, default=2000, help="calls per timing")
args = parser.parse_args()
sys.path.insert(0, args.repo)

import torch  # noqa: E402
from _checkout import load_checkout  # noqa: E402  (bench/ is on sys.path when run as a script)

import minidiff as md  # noqa: E402
from minidiff._validation import count_host_reads  # noqa: E402

torch.set_num_threads(1)


def sampler_reads(md: ModuleType) -> list[tuple[str, int, int, float]]:
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


def _core(fn: Any, module: ModuleType, twin: str) -> Callable[..., Any] | None:
    """The unchecked body: ``fn.unchecked``, or the private twin of an older checkout."""
    return getattr(fn, "unchecked", None) or getattr(module, twin, None)


def calls(md: ModuleType) -> list[tuple[str, Callable[[], Any], Callable[[], Any] | None]]:
    """Checked public calls and their unchecked cores, on the same inputs."""
    diffusion = sys.modules[md.__name__ + ".diffusion"]
    losses = sys.modules[md.__name__ + ".losses"]
    ddpm = sys.modules[md.__name__ + ".samplers.ddpm"]
    sched = md.linear_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    noise = torch.randn(512, 2, generator=g)
    t = torch.randint(1, 1001, (512,), generator=g)
    v = torch.ones(512, 1)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.1 * x

    q_core = _core(md.q_sample, diffusion, "_q_sample")
    post_core = _core(md.q_posterior_mean_var, diffusion, "_q_posterior_mean_var")
    pmv_core = _core(md.p_mean_var, diffusion, "_p_mean_var")
    step_core = _core(md.ddpm_step, ddpm, "_ddpm_step")
    kl_core = _core(md.gaussian_kl, losses, "_gaussian_kl")
    return [
        (
            "q_sample (512x2, t tensor)",
            lambda: md.q_sample(x, t, sched, noise=noise),
            q_core and (lambda: q_core(x, t, sched, noise)),
        ),
        (
            "q_posterior_mean_var (512x2)",
            lambda: md.q_posterior_mean_var(x, noise, t, sched),
            post_core and (lambda: post_core(x, noise, t, sched)),
        ),
        (
            "p_mean_var (512x2)",
            lambda: md.p_mean_var(model, x, t, sched),
            pmv_core and (lambda: pmv_core(model, x, t, sched, "beta")),
        ),
        (
            "ddpm_step (512x2)",
            lambda: md.ddpm_step(x, t, noise, sched, noise=noise),
            step_core
            and (
                lambda: (
                    step_core(x, t, noise, sched, variance="beta", noise=noise)
                    if hasattr(md.ddpm_step, "unchecked")
                    else step_core(x, t, noise, sched, "beta", noise)
                )
            ),
        ),
        (
            "gaussian_kl (512x2)",
            lambda: md.gaussian_kl(x, v, noise, v),
            kl_core and (lambda: kl_core(x, v, noise, v)),
        ),
        ("simple_loss (512x2)", lambda: md.simple_loss(model, x, sched, t=t, noise=noise), None),
    ]


def cpu_us(fns: list[Callable[[], Any]], reps: int) -> list[float]:
    """CPU µs per call of each function, interleaved so that all see the same load, in an order
    that reverses every rep (in a fixed order the first function of each rep was timed a few
    percent slower: ``--against`` a copy of the same checkout read 1.02 to 1.04)."""
    for fn in fns:
        fn()  # warm-up
    acc = [0.0] * len(fns)
    order = list(enumerate(fns))
    for rep in range(reps):
        for i, fn in order if rep % 2 == 0 else reversed(order):
            c0 = time.process_time()
            fn()
            acc[i] += time.process_time() - c0
    return [1e6 * a / reps for a in acc]


def main() -> None:
    print(f"minidiff from {args.repo}; torch {torch.__version__}, 1 thread\n")
    other = load_checkout(args.against, "minidiff_against") if args.against else None
    reads = sampler_reads(md)
    if other is None:
        print("| sampler | steps | host reads per call | per step |")
        print("|---|---:|---:|---:|")
        for name, n, r, per in reads:
            print(f"| {name} | {n} | {r} | {per:.2f} |")
    else:
        before = {name: (r, per) for name, _, r, per in sampler_reads(other)}
        print(f"Host reads per sampler step: this checkout vs {args.against}\n")
        print("| sampler | steps | reads per step | against | change |")
        print("|---|---:|---:|---:|---:|")
        for name, n, _, per in reads:
            b = before.get(name, (0, float("nan")))[1]
            print(f"| {name} | {n} | {per:.2f} | {b:.2f} | {per - b:+.2f} |")

    mine = calls(md)
    if other is None:
        print(f"\n| call ({args.reps} reps, interleaved) | checked CPU µs | core CPU µs | ratio |")
        print("|---|---:|---:|---:|")
        for name, checked, core in mine:
            c, u = cpu_us([checked, core] if core else [checked], args.reps) + [float("nan")]
            print(f"| {name} | {c:.1f} | {u:.1f} | {c / u:.2f} |")
        return
    theirs = {name: (checked, core) for name, checked, core in calls(other)}
    print(
        f"\nCPU µs per call, {args.reps} reps, the four calls interleaved; 'against' = "
        f"{args.against}\n"
    )
    print(
        "| call | checked | core | checked, against | core, against | checked / checked against |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for name, checked, core in mine:
        a_checked, a_core = theirs[name]
        fns = [checked, a_checked] + [f for f in (core, a_core) if f is not None]
        us = cpu_us(fns, args.reps)
        c, ac = us[0], us[1]
        u = us[2] if core is not None else float("nan")
        au = us[-1] if a_core is not None else float("nan")
        ratios.append(c / ac)
        print(f"| {name} | {c:.1f} | {u:.1f} | {ac:.1f} | {au:.1f} | {c / ac:.2f} |")
    geo = float(torch.tensor(ratios).log().mean().exp())
    print(f"| **geometric mean** | | | | | **{geo:.2f}** |")


if __name__ == "__main__":
    main()
