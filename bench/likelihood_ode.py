"""Log-likelihood through the probability-flow ODE vs the true density of a Gaussian mixture.

    python bench/likelihood_ode.py [--n-test 2000] [--train-steps 2500] [--seed 0]

Data: ``GaussianMixture.default_2d()``; VP-SDE (beta 0.1 … 20). For each row the mean ODE
log-likelihood (exact divergence, Heun or RK4, PF-ODE from ``t = sde.t_min`` to 1) over the test
points is compared with the true mean log-density ``mean log p(x)`` of the same points.

Targets (Issue 3): the exact score within 0.02 nats; a continuous-time eps network
(``TimeMLP(time_scale=1000)`` trained with ``minidiff.losses.vp_eps_loss``) trained for at most
2 minutes of CPU within 0.15 nats. The step budget is chosen for an idle 2-core machine.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

from minidiff import GaussianMixture
from minidiff.likelihood import ode_log_likelihood
from minidiff.losses import vp_eps_loss
from minidiff.nn import TimeMLP
from minidiff.samplers.sde_solvers import ODE_METHODS
from minidiff.sde import VPSDE, score_fn_from_eps_model, score_fn_from_mixture
from minidiff.training import train


def _row(
    name: str, score_fn, sde: VPSDE, x: torch.Tensor, true_mean: float, steps: int, method: str
) -> str:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    ll = ode_log_likelihood(score_fn, sde, x, steps=steps, method=method)
    sec = time.perf_counter() - t0
    nfe = steps * ODE_METHODS[method][1]
    m = float(ll.mean())
    diff = abs(m - true_mean)
    cols = [name, f"{method} {steps}", str(nfe)]
    cols += [f"{m:.4f}", f"{true_mean:.4f}", f"{diff:.4f}", f"{sec:.1f}"]
    return "| " + " | ".join(cols) + " |"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--train-steps", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    gmm, sde = GaussianMixture.default_2d(), VPSDE()
    x = gmm.sample(args.n_test, torch.Generator().manual_seed(10_000 + args.seed)).double()
    true_mean = float(gmm.log_prob(x).mean())
    rows = []

    exact = score_fn_from_mixture(gmm, sde)
    for method, steps in (("heun", 25), ("heun", 50), ("rk4", 25)):
        rows.append(_row("exact GMM score", exact, sde, x, true_mean, steps, method))

    model = TimeMLP(data_dim=2, hidden=128, n_layers=3, time_scale=1000.0)
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(
        model,
        lambda m, batch, g: vp_eps_loss(m, batch, sde, g),
        lambda n, g: gmm.sample(n, g),
        steps=args.train_steps,
        batch_size=512,
        lr=2e-3,
        ema_decay=0.999,
        warmup_steps=200,
        seed=args.seed,
        progress=False,
    )
    train_sec, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    net = result.ema.model
    score = score_fn_from_eps_model(net, sde)
    name = f"TimeMLP eps ({args.train_steps} steps; {train_sec:.0f} s wall, {train_cpu:.0f} s CPU)"
    for method, steps in (("heun", 50),):
        rows.append(_row(name, score, sde, x, true_mean, steps, method))

    print(
        f"PF-ODE log-likelihood, GaussianMixture.default_2d(), {args.n_test} test points, VP-SDE\n"
    )
    print(
        "| method | solver, steps | NFE | mean ll (nats) | true mean log p | abs diff (nats) "
        "| seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nfinal training loss (mean of last 200 steps): {sum(result.losses[-200:]) / 200:.4f}")


if __name__ == "__main__":
    main()
