"""Benchmark: does the 2D training recipe cost likelihood? ODE log-likelihood of a DDPM ε-model.

For each input encoding asked for (``--octaves``, the ``x_frequencies`` of ``TimeMLP``), train the
2D recipe (``minidiff.training.recipes``, as ``bench/ddpm_toys.py`` does) on ``8gaussians``
(hidden 64 x 3, batch 256, lr 3e-3 cosine, EMA 0.99, ``t = floor(T u^2) + 1``, linear schedule
T = 1000) for ``--steps`` steps, then:

1. turn the discrete ε-model into a continuous score for ``VPSDE()`` with
   :func:`minidiff.sde.score_fn_from_discrete_eps_model` (time map: equal noise levels);
2. compute the ODE log-likelihood (exact divergence, Heun, ``--ode-steps``) of ``--n`` held-out
   points and compare it with the exact mixture density (bar: within 0.05 nats);
3. split the difference along the ODE paths into the prior term and the divergence integral over
   ``[t_min, 0.01]``, ``[0.01, 0.1]`` and ``[0.1, 1]`` (model minus exact score, both integrated
   from the same data points);
4. score samples of the PF-ODE and of ancestral DDPM (k-NN precision / recall, k = 3, against
   fresh data): the ODE likelihood judges the ODE's density, the course samples with DDPM.

``--ipe`` adds, for each octave count, the same network whose encoding is damped by the noise
level, ``sin(w x) exp(-w² σ_t² / 2)`` (the expected encoding under the noise of ``x_t``, mip-NeRF's
integrated positional encoding; Barron et al. 2021), a prototype of a fix.

    .venv/bin/python bench/likelihood_recipe.py                       # K = 0, 3, 5 at 2870 steps
    .venv/bin/python bench/likelihood_recipe.py --octaves 5 --ipe --steps 11480

Prints a Markdown table; CPU seconds of this process, one thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidiff as md  # noqa: E402
from minidiff.likelihood import divergence  # noqa: E402
from minidiff.metrics import knn_precision_recall  # noqa: E402
from minidiff.nn import TimeMLP  # noqa: E402
from minidiff.samplers.sde_solvers import ode_solve, time_grid  # noqa: E402
from minidiff.sde import (  # noqa: E402
    VPSDE,
    ReverseSDE,
    score_fn_from_discrete_eps_model,
    score_fn_from_mixture,
)
from minidiff.training.recipes import TOY_2D_NETWORK, TOY_2D_OPTIONS, toy_loss  # noqa: E402


class NoiseDampedTimeMLP(TimeMLP):
    """``TimeMLP`` whose input encoding of octave ``w`` is scaled by ``exp(-w² σ_t² / 2)``."""

    def __init__(self, schedule: md.NoiseSchedule, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.register_buffer("sigmas", schedule.sqrt_one_minus_alpha_bar.float(), persistent=False)
        self._sigma = torch.zeros(1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tab = self.get_buffer("sigmas").to(torch.float64)
        tf = t.to(torch.float64).clamp(0, tab.numel() - 1)
        lo = tf.floor().long().clamp(max=tab.numel() - 2)
        self._sigma = (tab[lo] + (tf - lo) * (tab[lo + 1] - tab[lo])).to(
            x.dtype
        )  # σ at fractional t
        return super().forward(x, t)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.x_frequencies == 0:
            return x
        w = self.get_buffer("x_freqs").to(x.dtype)
        angles = x[:, :, None] * w
        damp = torch.exp(-0.5 * (w * self._sigma[:, None, None]) ** 2)
        sin, cos = (angles.sin() * damp).flatten(1), (angles.cos() * damp).flatten(1)
        return torch.cat([x, sin, cos], dim=1)


def ode_terms(score, sde: VPSDE, x0: torch.Tensor, steps: int):  # type: ignore[no-untyped-def]
    """Per point: the prior term, and the divergence integral up to each grid time."""
    rsde = sde.reverse(score, probability_flow=True)
    B, D = x0.shape

    def augmented(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xs = state[:, :D].detach().requires_grad_(True)
            fx = ReverseSDE.drift.unchecked(rsde, xs, t)
            div = divergence(fx, xs)
        return torch.cat([fx.detach(), div.detach()[:, None]], dim=1)

    cum: dict[float, torch.Tensor] = {}
    start = torch.cat([x0, torch.zeros(B, 1, dtype=x0.dtype)], dim=1)
    sol = ode_solve(
        augmented, start, time_grid(steps, sde.t_min, 1.0), on_step=lambda s: cum.update({s.t: s.x})
    )
    prior = sde.prior_logp(sol.x[:, :D])

    def integral(lo: float, hi: float) -> torch.Tensor:
        near = lambda v: min(cum, key=lambda u: abs(u - v))  # noqa: E731
        return cum[near(hi)][:, D] - cum[near(lo)][:, D]

    bands = [integral(sde.t_min, 0.01), integral(0.01, 0.1), integral(0.1, 1.0)]
    return prior, bands


def fit(net: torch.nn.Module, sched: md.NoiseSchedule, steps: int, seed: int) -> torch.nn.Module:
    """The 2D recipe (``train_toy``'s options and loss) on fresh ``8gaussians`` points, for a given
    network; returns its EMA copy."""
    opts = {**TOY_2D_OPTIONS, "warmup_steps": min(TOY_2D_OPTIONS["warmup_steps"], steps)}
    data = lambda n, g: md.toy_dataset("8gaussians", n, g)  # noqa: E731
    res = md.train(net, toy_loss(sched), data, steps=steps, seed=seed, progress=False, **opts)
    return res.ema.model


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--octaves", default="0,3,5", help="x_frequencies to try, comma-separated")
    ap.add_argument("--steps", type=int, default=2870, help="training steps (2870: the recipe)")
    ap.add_argument("--ipe", action="store_true", help="also the noise-damped encoding")
    ap.add_argument("--n", type=int, default=500, help="held-out points")
    ap.add_argument("--ode-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=2000, help="samples scored per sampler")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    gmm, sde, sched = md.GaussianMixture.eight_gaussians(), VPSDE(), md.linear_schedule(1000)
    x0 = gmm.sample(args.n, torch.Generator().manual_seed(10_000)).double()
    true = gmm.log_prob(x0)
    ref_prior, ref_bands = ode_terms(score_fn_from_mixture(gmm, sde), sde, x0, args.ode_steps)
    data = gmm.sample(args.samples, torch.Generator().manual_seed(5)).double()
    print(f"torch {torch.__version__}, 1 thread; 8gaussians, {args.n} held-out points, "
          f"exact mean log p = {float(true.mean()):.4f}; Heun {args.ode_steps} steps, "
          "exact divergence\n")  # fmt: skip
    print("| encoding | train steps (CPU s) | ODE log-lik. − exact | prior | div [t_min, .01] | "
          "div [.01, .1] | div [.1, 1] | PF-ODE P / R | DDPM P / R |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    variants = [(k, False) for k in map(int, args.octaves.split(","))]
    if args.ipe:
        variants += [(k, True) for k in map(int, args.octaves.split(",")) if k > 0]
    for k, damped in variants:
        arch = {**TOY_2D_NETWORK, "x_frequencies": k}
        torch.manual_seed(args.seed)
        made = NoiseDampedTimeMLP(sched, data_dim=2, **arch) if damped else TimeMLP(2, **arch)
        c0 = time.process_time()
        net = fit(made, sched, args.steps, args.seed)
        cpu = time.process_time() - c0
        net = net.double().eval()
        score = score_fn_from_discrete_eps_model(net, sched, sde)
        prior, bands = ode_terms(score, sde, x0, args.ode_steps)
        ll = prior + sum(bands)
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            xo = md.pf_ode_sample(
                score, sde, (args.samples, 2), steps=100, generator=g, dtype=torch.float64
            )
            xd = md.ddpm_sample(net, sched, (args.samples, 2), generator=g, dtype=torch.float64)
        po, pd = knn_precision_recall(xo, data, k=3), knn_precision_recall(xd, data, k=3)
        d = [float((b - r).mean()) for b, r in zip(bands, ref_bands, strict=True)]
        name = f"{'noise-damped ' if damped else ''}x_frequencies={k}"
        print(f"| {name} | {args.steps} ({cpu:.0f}) | {float((ll - true).mean()):+.3f} | "
              f"{float((prior - ref_prior).mean()):+.3f} | {d[0]:+.3f} | {d[1]:+.3f} | "
              f"{d[2]:+.3f} | "
              f"{po.precision:.3f} / {po.recall:.3f} | {pd.precision:.3f} / {pd.recall:.3f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
