"""Sample quality against the number of network evaluations (NFE), per sampler (chapter 8).

Samplers (all registered in ``minidiff.samplers``):

    ddpm                 ancestral DDPM, sigma² = beta_tilde, on NFE strided timesteps. This is DDIM
                         with eta = 1 on the strided set, which equals DDPM on the respaced schedule
                         (``respace_schedule``; tested in tests/samplers/test_ddim.py), so
                         "DDPM at 20 NFE" is well defined.
    ddim                 DDIM, eta = 0
    pf_ode_euler         probability-flow ODE, Euler (1 call per step)
    pf_ode_heun          probability-flow ODE, Heun (2 calls per step -> NFE/2 steps)
    euler_maruyama       reverse SDE, Euler–Maruyama (1 call per step)
    predictor_corrector  EM predictor + 1 Langevin corrector (2 calls per step -> NFE/2 steps)

NFE is counted honestly: a sampler that needs 2 calls per step gets ``NFE // 2`` steps (so NFE 5 is
really 4 for Heun and PC; the table footnote says so). Each sampler runs with

* the exact score of ``GaussianMixture.default_2d()`` — continuous time through
  ``score_fn_from_mixture(gmm, VPSDE())``, discrete time through
  ``gmm.eps_model(VPSDE().to_schedule(T))`` (alpha_bar_i = alpha(i/T)², so both share marginals);
* a trained continuous-time eps network (``TimeMLP(time_scale=1000)`` and
  ``minidiff.losses.vp_eps_loss``), bridged with ``score_fn_from_eps_model`` /
  ``eps_model_from_score_fn``.

Quality is the sliced Wasserstein distance (SW_2, 256 directions) between ``n`` samples and one
large data sample, divided by the data floor (the same distance for ``n`` fresh data points), mean
± standard deviation over ``repeats`` independent draws. Targets (exact score): Heun at <= 50 NFE
and DDIM at <= 100 NFE within 1.2x the floor.

    python bench/quality_vs_nfe.py            # full run (several minutes on 2 idle cores)
    python bench/quality_vs_nfe.py --quick    # smoke run (well under a minute)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidiff  # noqa: E402
from minidiff.metrics import sliced_wasserstein  # noqa: E402
from minidiff.samplers import ddim as _ddim  # noqa: E402,F401  (registers "ddim")
from minidiff.samplers import get_sampler  # noqa: E402
from minidiff.sde import (  # noqa: E402
    VPSDE,
    eps_model_from_score_fn,
    score_fn_from_eps_model,
    score_fn_from_mixture,
)

SAMPLERS = ["ddpm", "ddim", "pf_ode_euler", "pf_ode_heun", "euler_maruyama", "predictor_corrector"]
CALLS_PER_STEP = {"pf_ode_heun": 2, "predictor_corrector": 2}
Sampler = Callable[[int, int, torch.Generator], torch.Tensor]


def make_runner(
    name: str, score_fn: Callable, eps_model: Callable, sde: VPSDE, schedule
) -> Sampler:  # type: ignore[type-arg,no-untyped-def]
    """``run(n, nfe, generator) -> (n, 2)`` for one sampler, one model."""

    def run(n: int, nfe: int, g: torch.Generator) -> torch.Tensor:
        steps = max(1, nfe // CALLS_PER_STEP.get(name, 1))
        if name in ("ddpm", "ddim"):
            eta = 1.0 if name == "ddpm" else 0.0
            return get_sampler("ddim")(
                eps_model, schedule, (n, 2), steps=min(steps, schedule.T), eta=eta, generator=g
            )
        kwargs = {"corrector_steps": 1} if name == "predictor_corrector" else {}
        return get_sampler(name)(score_fn, sde, (n, 2), steps=steps, generator=g, **kwargs)

    return run


def actual_nfe(name: str, nfe: int) -> int:
    k = CALLS_PER_STEP.get(name, 1)
    return max(1, nfe // k) * k


def train_model(
    sde: VPSDE, gmm: minidiff.GaussianMixture, steps: int, seed: int
) -> torch.nn.Module:
    """A continuous-time eps network trained with the VP eps loss (minidiff.losses.vp_eps_loss)."""
    from minidiff.losses import vp_eps_loss
    from minidiff.nn import TimeMLP
    from minidiff.training import train

    data = gmm.sample(100_000, torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)  # the initial weights: the same table from run to run
    model = TimeMLP(data_dim=2, hidden=128, n_layers=3, time_scale=1000.0)

    def loss_fn(m: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return vp_eps_loss(m, x0, sde, g)

    res = train(
        model,
        loss_fn,
        data,
        steps=steps,
        batch_size=512,
        lr=2e-3,
        warmup_steps=100,
        seed=seed,
        ema_decay=0.995,
        progress=False,
    )
    print(
        f"trained TimeMLP for {steps} steps in {res.seconds:.0f} s, "
        f"final loss {sum(res.losses[-50:]) / 50:.4f}"
    )
    return res.ema.model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke run: few samples, NFE 5/20/100, short training"
    )
    p.add_argument("--n", type=int, default=None, help="samples per draw (default 3000; quick 800)")
    p.add_argument(
        "--repeats", type=int, default=None, help="independent draws per cell (default 3; quick 1)"
    )
    p.add_argument(
        "--train-steps", type=int, default=None, help="training steps (default 6000; quick 300)"
    )
    p.add_argument("--no-trained", action="store_true", help="skip the trained model")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="folder for the figure",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    n = args.n or (800 if args.quick else 3000)
    repeats = args.repeats or (1 if args.quick else 3)
    nfes = [5, 20, 100] if args.quick else [5, 10, 20, 50, 100, 1000]
    train_steps = args.train_steps or (300 if args.quick else 6000)
    T = 1000

    gmm = minidiff.GaussianMixture.default_2d()
    sde = VPSDE()
    schedule = sde.to_schedule(T)
    g = torch.Generator().manual_seed(0)
    data_ref = gmm.sample(20_000, g)

    def sw(x: torch.Tensor) -> float:
        return sliced_wasserstein(x, data_ref, generator=g)

    floors = torch.tensor([sw(gmm.sample(n, g)) for _ in range(max(10, 3 * repeats))])
    floor = floors.mean().item()
    print(
        f"# Quality vs NFE — n = {n}, repeats = {repeats}, T = {T}, "
        f"data floor SW = {floor:.4f} ± {floors.std():.4f}\n"
    )

    models: dict[str, tuple[Callable, Callable]] = {  # type: ignore[type-arg]
        "exact GMM score": (score_fn_from_mixture(gmm, sde), gmm.eps_model(schedule)),
    }
    if not args.no_trained:
        net = train_model(sde, gmm, train_steps, seed=1)
        score_fn = score_fn_from_eps_model(lambda x, t: net(x, t), sde)
        models[f"trained TimeMLP ({train_steps} steps)"] = (
            score_fn,
            eps_model_from_score_fn(score_fn, sde, T),
        )

    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for model_name, (score_fn, eps_model) in models.items():
        results[model_name] = {}
        t0 = time.time()
        for name in SAMPLERS:
            run = make_runner(name, score_fn, eps_model, sde, schedule)
            row = []
            for nfe in nfes:
                vals = torch.tensor([sw(run(n, nfe, g)) / floor for _ in range(repeats)])
                row.append((vals.mean().item(), vals.std().item() if repeats > 1 else math.nan))
            results[model_name][name] = row
        print(f"\n## {model_name}  ({time.time() - t0:.0f} s)\n")
        print("| sampler | " + " | ".join(f"NFE {k}" for k in nfes) + " |")
        print("|---|" + "---|" * len(nfes))
        for name, row in results[model_name].items():
            cells = [f"{m:.2f}" + ("" if math.isnan(s) else f" ± {s:.2f}") for m, s in row]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(
            "\nEntries: SW / data floor (mean ± sd over draws). "
            "Heun and predictor–corrector use NFE // 2 steps "
            f"(actual NFE at 5: {actual_nfe('pf_ode_heun', 5)})."
        )

    exact = results["exact GMM score"]
    print("\n## Targets (exact score)\n")
    for name, limit in (("pf_ode_heun", 50), ("ddim", 100)):
        ok = [k for k, (m, _) in zip(nfes, exact[name], strict=True) if k <= limit and m <= 1.2]
        verdict = f"met at NFE {ok[0]}" if ok else "NOT met"
        print(f"- {name} within 1.2x floor at <= {limit} NFE: {verdict}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
        for ax, (model_name, rows) in zip(axes[0], results.items(), strict=True):
            for name, row in rows.items():
                ax.errorbar(
                    nfes,
                    [m for m, _ in row],
                    yerr=[0 if math.isnan(s) else s for _, s in row],
                    fmt="o-",
                    capsize=2,
                    label=name,
                )
            ax.axhline(1.0, color="k", lw=1)
            ax.axhline(1.2, color="k", lw=1, ls=":")
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="network evaluations (NFE)",
                ylabel="sliced Wasserstein / data floor",
                title=model_name,
            )
            ax.legend(fontsize="small")
        fig.suptitle(f"Sample quality vs NFE (n = {n}, {repeats} draws)")
        fig.tight_layout()
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / ("quality_vs_nfe_quick.png" if args.quick else "quality_vs_nfe.png")
        fig.savefig(path, dpi=100)
        print(f"\nfigure: {path}")
    except ImportError:  # pragma: no cover
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
