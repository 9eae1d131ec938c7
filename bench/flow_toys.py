"""Benchmark: flow matching against DDPM + DDIM on the 2D toys, at equal training CPU-seconds
(chapter 16).

Part A, for each toy (``--toys``): three models with the same ``TimeMLP`` (hidden 64, 3 blocks,
NeRF input encoding) and the same recipe as chapter 4 and ``bench/ddpm_toys.py`` (batch 256, AdamW
3e-3 with a 100-step warm-up and cosine decay, EMA 0.99, clipping at 1), each trained for as many
steps as fit in ``--cpu-seconds`` of this process's CPU time (a short throwaway run measures the
cost of a step first):

- **DDPM**: ``L_simple`` on the linear schedule, T = 1000, ``t = floor(T u²) + 1`` (chapter 4);
  sampled with DDIM (η = 0) on ``NFE`` strided steps;
- **FM uniform**: conditional flow matching on the rectified-flow path, ``t ~ U(0, 1)``;
- **FM logit-normal**: the same with ``t = sigmoid(N(0, 1))`` (Stable Diffusion 3);
- **FM u²**: the same with ``t = u²`` (small ``t`` drawn more often: the emphasis chapter 4's DDPM
  recipe puts on small ``t``, so this is the like-for-like comparison and the bar's model);

the flow models sampled with ``NFE`` Euler steps of the flow ODE from ``t = 1`` to 0. Quality:
k-NN precision and recall (k = 3) of ``--draws`` × ``--n`` samples against fresh data, divided by
the data's own floor (``precision_recall_with_floor``). "NFE needed" = the fewest NFE of the grid
at which precision and recall both reach ``--bar`` (0.9) × the floor.

Part B, on 8gaussians (a Gaussian mixture: the exact marginal velocity is known): quality at
1–4 Euler steps and the straightness ``S = ∫ E||dx/dt - (x_1 - x_0)||² dt`` (on a 100-step
Euler path) of

- the **exact** marginal velocity of the rectified-flow path (no model error: what is left is
  the discretisation error of few steps on curved paths);
- the **FM uniform** model of part A;
- **FM + minibatch OT**: trained for the same budget with ``coupling="ot"`` (pairs re-matched in
  every batch by an exact assignment);
- **reflow** (Liu et al. 2023): the FM model's own pairs ``(x_0 = Φ(eps), eps)`` from a 2 × 50-step
  Heun solve, then the FM model fine-tuned on them for ``--cpu-seconds``.

``transport err`` is the mean distance from a model's k-step sample to its own 100-step-Heun
sample from the same noise (discretisation error), ``model err`` the mean distance of the model's
100-step-Heun sample to the exact velocity's (model error; for OT and reflow the distance to a
different, straighter map).

    .venv/bin/python bench/flow_toys.py            # a few CPU-minutes
    .venv/bin/python bench/flow_toys.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import GaussianMixture, ddim_sample, linear_schedule, simple_loss, toy_dataset  # noqa: E402
from minidiff.flow_matching import flow_matching_loss  # noqa: E402
from minidiff.losses import sample_timesteps  # noqa: E402
from minidiff.metrics import precision_recall_with_floor  # noqa: E402
from minidiff.nn import TimeMLP  # noqa: E402
from minidiff.paths import RectifiedFlowPath, mixture_predictor  # noqa: E402
from minidiff.samplers import trajectory  # noqa: E402
from minidiff.samplers.flow import flow_sample, flow_time_grid, straightness  # noqa: E402
from minidiff.training import train  # noqa: E402

TOYS = ("moons", "8gaussians", "swiss_roll", "checkerboard", "two_spirals")
KINDS = ("DDPM", "FM uniform", "FM logit-normal", "FM u²")
RECIPE = dict(
    batch_size=256, lr=3e-3, lr_schedule="cosine", ema_decay=0.99, grad_clip=1.0, warmup_steps=100
)
SCHEDULE = linear_schedule(1000)
Loss = Callable[[torch.nn.Module, object, torch.Generator], torch.Tensor]


def make_model(continuous: bool) -> TimeMLP:
    """Chapter 4's network; flow models see ``t ∈ [0, 1]``, scaled by 1000 for the embedding."""
    return TimeMLP(2, 64, 3, 64, x_frequencies=5, time_scale=1000.0 if continuous else 1.0)


def losses() -> dict[str, Loss]:
    def ddpm(m: torch.nn.Module, x0: object, g: torch.Generator) -> torch.Tensor:
        t = sample_timesteps(x0.shape[0], SCHEDULE.T, g, power=2.0)  # type: ignore[attr-defined]
        return simple_loss(m, x0, SCHEDULE, t=t, generator=g)  # type: ignore[arg-type]

    def fm(sampling: str, coupling: str = "independent") -> Loss:
        def loss(m: torch.nn.Module, batch: object, g: torch.Generator) -> torch.Tensor:
            if isinstance(batch, torch.Tensor) and batch.dim() == 3:  # reflow: (x0, eps) pairs
                return flow_matching_loss(m, batch[:, 0], noise=batch[:, 1], generator=g)
            return flow_matching_loss(
                m,
                batch,
                generator=g,
                time_sampling=sampling,
                coupling=coupling,  # type: ignore[arg-type]
            )

        return loss

    return {
        "DDPM": ddpm,
        "FM uniform": fm("uniform"),
        "FM logit-normal": fm("logit_normal"),
        "FM u²": fm("power"),
        "FM + OT": fm("uniform", "ot"),
        "reflow": fm("uniform"),
    }


def fit(model: torch.nn.Module, loss: Loss, data: object, steps: int, seed: int) -> torch.nn.Module:
    result = train(model, loss, data, steps=steps, seed=seed, progress=False, **RECIPE)  # type: ignore[arg-type]
    return result.ema.model


def budgeted(
    make: Callable[[], torch.nn.Module],
    loss: Loss,
    data: object,
    seconds: float,
    seed: int,
    steps: int | None,
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train for ``steps`` steps, or for the steps that fit ``seconds`` of CPU time (a throwaway
    run measures the cost of a step; 92 % of the budget's worth keeps the run inside it)."""
    if steps is None:
        fit(make(), loss, data, 20, seed + 20_000)
        c0 = time.process_time()
        fit(make(), loss, data, 100, seed + 10_000)
        steps = max(1, int(0.92 * seconds * 100 / (time.process_time() - c0)))
    torch.manual_seed(seed)
    c0 = time.process_time()
    model = fit(make(), loss, data, steps, seed)
    return model, {"steps": steps, "cpu_s": time.process_time() - c0}


def sampler(kind: str, model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``draw(n, nfe, generator)`` with DDIM (ε-models) or Euler on the flow ODE (velocities)."""

    def draw(n: int, nfe: int, g: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            if kind == "DDPM":
                return ddim_sample(model, SCHEDULE, (n, 2), steps=nfe, generator=g)  # type: ignore[return-value]
            return flow_sample(model, shape=(n, 2), steps=nfe, generator=g)  # type: ignore[return-value]

    return draw


def quality(
    x: torch.Tensor, toy: str, n: int, draws: int, g: torch.Generator
) -> tuple[float, float]:
    pr = precision_recall_with_floor(
        x, lambda m, gg: toy_dataset(toy, m, gg), n, draws, generator=g
    )
    return pr.precision_ratio, pr.recall_ratio


def part_a(
    a: argparse.Namespace, nfes: list[int]
) -> tuple[list[dict[str, object]], dict[str, tuple[torch.nn.Module, dict[str, float]]]]:
    rows, keep = [], {}
    loss = losses()
    for i, toy in enumerate(a.toys):
        data = lambda m, g, toy=toy: toy_dataset(toy, m, g)  # noqa: E731
        for kind in KINDS:
            model, timing = budgeted(
                lambda kind=kind: make_model(kind != "DDPM"),
                loss[kind],
                data,
                a.cpu_seconds,
                a.seed + 10 * i,
                a.steps,
            )
            model.eval()
            draw = sampler(kind, model)
            g = torch.Generator().manual_seed(a.seed + 1000 + i)
            ratios = {
                nfe: quality(draw(a.n * a.draws, nfe, g), toy, a.n, a.draws, g) for nfe in nfes
            }
            ok = [nfe for nfe, (p, r) in ratios.items() if p >= a.bar and r >= a.bar]
            rows.append(
                {
                    "toy": toy,
                    "model": kind,
                    **timing,
                    "ratios": ratios,
                    "nfe_needed": min(ok) if ok else None,
                }
            )
            if toy == "8gaussians" and kind == "FM uniform":
                keep["FM uniform"] = (model, timing)  # part B reuses it, with its training cost
            print(
                f"{toy:12s} {kind:16s} {timing['steps']:5d} steps {timing['cpu_s']:5.1f} CPU-s; "
                f"NFE needed: {rows[-1]['nfe_needed']}",
                flush=True,
            )
    return rows, keep


def part_b(
    a: argparse.Namespace, fm: tuple[torch.nn.Module, dict[str, float]] | None
) -> list[dict[str, object]]:
    toy, gmm, path = "8gaussians", GaussianMixture.eight_gaussians(), RectifiedFlowPath()
    data = lambda m, g: toy_dataset(toy, m, g)  # noqa: E731
    loss = losses()
    models: dict[str, Callable[..., torch.Tensor]] = {
        "exact velocity": mixture_predictor(gmm, path)
    }
    cost: dict[str, dict[str, float]] = {"exact velocity": {}}
    if fm is None:
        fm = budgeted(
            lambda: make_model(True), loss["FM uniform"], data, a.cpu_seconds, a.seed, a.steps
        )
    fm_model, cost["FM uniform"] = fm
    models["FM uniform"] = fm_model.eval()
    ot, cost["FM + OT"] = budgeted(
        lambda: make_model(True), loss["FM + OT"], data, a.cpu_seconds, a.seed + 1, a.steps
    )
    models["FM + OT"] = ot.eval()
    # reflow: pairs from the FM model's own ODE, then fine-tune a copy of it on them
    c0 = time.process_time()
    eps = torch.randn(a.reflow_pairs, 2, generator=torch.Generator().manual_seed(a.seed + 7))
    x0 = flow_sample(fm_model, x_T=eps, steps=50, method="heun")
    pairs = torch.stack([x0, eps], dim=1)  # (N, 2, 2): train draws rows, the loss splits them
    gen_s = time.process_time() - c0
    base = copy.deepcopy(fm_model)
    refl, cost["reflow"] = budgeted(
        lambda: copy.deepcopy(base).requires_grad_(True).train(),
        loss["reflow"],
        pairs,
        a.cpu_seconds,
        a.seed + 2,
        a.steps,
    )
    cost["reflow"]["pairs_cpu_s"] = gen_s
    models["reflow"] = refl.eval()

    rows = []
    g_noise = torch.Generator().manual_seed(a.seed + 99)
    noise = torch.randn(a.n * a.draws, 2, generator=g_noise)
    fine = flow_time_grid(100)
    exact_ref = flow_sample(
        models["exact velocity"], x_T=noise.double(), steps=100, method="heun"
    ).float()
    for name, model in models.items():
        ref = flow_sample(model, x_T=noise, steps=100, method="heun")
        traj = trajectory(flow_sample, model, x_T=noise, ts=fine)
        row: dict[str, object] = {
            "model": name,
            **cost.get(name, {}),
            "straightness": float(straightness(traj, fine).mean()),
            "model_err": float((ref - exact_ref).norm(dim=1).mean()),
        }
        for k in (1, 2, 3, 4):
            x = flow_sample(model, x_T=noise, steps=k)
            g = torch.Generator().manual_seed(a.seed + 500 + k)
            row[f"pr{k}"] = quality(x, toy, a.n, a.draws, g)
            row[f"transport{k}"] = float((x - ref).norm(dim=1).mean())
        rows.append(row)
        print(f"{name:15s} straightness {row['straightness']:.3f}", flush=True)
    return rows


def report(
    rows_a: list[dict[str, object]], rows_b: list[dict[str, object]], nfes: list[int], bar: float
) -> str:
    out = [
        "| toy | model | steps | CPU s | "
        + " | ".join(f"NFE {k}: P / R" for k in nfes)
        + f" | NFE needed (≥ {bar}) |",
        "|---|---|---|---|" + "---|" * (len(nfes) + 1),
    ]
    for r in rows_a:
        cells = " | ".join(f"{p:.2f} / {q:.2f}" for p, q in r["ratios"].values())  # type: ignore[attr-defined]
        out.append(
            f"| {r['toy']} | {r['model']} | {r['steps']} | {r['cpu_s']:.1f} | {cells} | "
            f"{r['nfe_needed'] or '> ' + str(nfes[-1])} |"
        )
    out += [
        "",
        "| 8gaussians | training CPU s | straightness S | model err | "
        + " | ".join(f"{k} Euler: P / R, transport err" for k in (1, 2, 3, 4))
        + " |",
        "|---|---|---|---|" + "---|" * 4,
    ]
    for r in rows_b:
        cpu = r.get("cpu_s")
        cpu_s = (
            "—"
            if cpu is None
            else f"{cpu:.1f}" + (f" + {r['pairs_cpu_s']:.1f} pairs" if "pairs_cpu_s" in r else "")
        )
        cells = " | ".join(
            f"{r[f'pr{k}'][0]:.2f} / {r[f'pr{k}'][1]:.2f}, {r[f'transport{k}']:.3f}"
            for k in (1, 2, 3, 4)
        )  # type: ignore[index]
        out.append(
            f"| {r['model']} | {cpu_s} | {r['straightness']:.3f} | {r['model_err']:.3f} | {cells} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 toy, 60 steps, 200 points")
    p.add_argument("--toys", nargs="+", default=["moons", "8gaussians", "swiss_roll"], choices=TOYS)
    p.add_argument("--cpu-seconds", type=float, default=10.0, help="training budget per model (10)")
    p.add_argument(
        "--steps", type=int, default=None, help="fixed optimizer steps instead of a budget"
    )
    p.add_argument("--nfes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--n", type=int, default=None, help="points per draw (1000; quick: 200)")
    p.add_argument("--draws", type=int, default=None, help="independent draws (3; quick: 2)")
    p.add_argument("--bar", type=float, default=0.9)
    p.add_argument("--reflow-pairs", type=int, default=None, help="(20000; quick: 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-b", action="store_true", help="only part A")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.toys, a.steps, a.nfes = a.toys[:1], a.steps or 60, [1, 4]
    a.n = a.n or (200 if a.quick else 1000)
    a.draws = a.draws or (2 if a.quick else 3)
    a.reflow_pairs = a.reflow_pairs or (500 if a.quick else 20_000)
    torch.set_num_threads(1)
    print(f"# Flow matching vs DDPM + DDIM on 2D toys ({'quick' if a.quick else 'full'} run)\n")
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, "
        f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}; "
        f"budget {a.steps or a.cpu_seconds} {'steps' if a.steps else 'CPU-s'} per model; "
        f"{a.draws} x {a.n} samples\n",
        flush=True,
    )
    rows_a, keep = part_a(a, sorted(a.nfes))
    rows_b = [] if a.skip_b else part_b(a, keep.get("FM uniform"))
    print()
    print(report(rows_a, rows_b, sorted(a.nfes), a.bar))
    wins = {}
    for kind in KINDS[1:]:
        wins[kind] = all(fm_beats(rows_a, toy, kind) for toy in a.toys)
        print(
            f"{kind}: reaches {a.bar} x the floor at <= the NFE DDPM + DDIM needs on every toy: "
            f"{wins[kind]}"
        )
    if a.json is not None:
        a.json.write_text(
            json.dumps({"a": rows_a, "b": rows_b, "wins": wins}, indent=1, default=str)
        )
    return 0 if wins["FM u²"] else 1


def fm_beats(rows: list[dict[str, object]], toy: str, kind: str) -> bool:
    """Whether flow model ``kind`` reaches the bar at no more NFE than DDPM + DDIM on ``toy``."""
    need = {r["model"]: r["nfe_needed"] for r in rows if r["toy"] == toy}
    fm, dd = need[kind], need["DDPM"]
    return fm is not None and (dd is None or fm <= dd)  # type: ignore[operator]


if __name__ == "__main__":
    sys.exit(main())
