"""Sampling in few steps (chapter 15): the measured bars, with the spread over training seeds.

1. **Solvers at 10 NFE, exact score.** On every toy of ``minidiff.data.mixture_toys`` (exact
   Gaussian-mixture score): k-NN precision and recall (divided by the data's own floor) of DDIM
   on its trailing grid (chapter 8), DDIM on the log-SNR grid, DPM-Solver++(2M) and Heun in
   log-SNR (5 steps, 9 NFE). Bar: DPM-Solver++(2M) within 1.2x the floor (ratios >= 1/1.2)
   on every toy where DDIM at 10 NFE is not.
2. **Learned variances.** ``L_hybrid`` on the 8 Gaussians; the bound (chapter 3) with sigma^2 =
   beta, beta_tilde and the learned Sigma on 1000 steps and on 50 and 10 strided steps (the
   variance learned on 1000 steps, reused through respacing), then with the variance learned on
   the 10-step chain itself. Bar: the learned variance improves the 10-step bound by more than
   the standard error of the (paired) difference.
3. **Distillation, over seeds.** For each seed: the v-prediction teacher (2D recipe), progressive
   distillation 256 -> 1 and consistency distillation, both from the exact teacher and from the
   trained one. Bars, per seed and as mean +- sd over seeds: the 4-step PD student and the 2-step
   CD model within 1.2x the floor of their teacher's quality (each ratio >= teacher's / 1.2), and
   better at 1 (PD) or 2 (CD) calls than the teacher with as many DDIM steps.
4. **Summary.** For NFE in {1, 2, 4, 8, 16, 32}: the best of DDIM, DPM-Solver++(2M), PD and CD
   with the trained teacher (first seed), its ratios, map error and extra training CPU time.

    python bench/few_step.py                 # full run (tens of CPU-minutes on one core)
    python bench/few_step.py --quick         # smoke run (well under a minute)
    python bench/few_step.py --parts 1 2     # only the solver and variance bars

Times are CPU seconds of this process (``time.process_time``), which a loaded machine inflates
less than wall time. Exit status 0 when every bar measured passes.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import vlb_terms  # noqa: E402
from minidiff.consistency import (  # noqa: E402
    ConsistencyDistillation,
    ConsistencyModel,
    consistency_grid,
    consistency_sample,
)
from minidiff.data.mixture_toys import MIXTURE_TOYS, mixture_toy  # noqa: E402
from minidiff.distillation import (  # noqa: E402
    prediction_to_eps,
    progressive_distillation,
    v_prediction_loss,
)
from minidiff.learned_variance import (  # noqa: E402
    HybridMLP,
    hybrid_loss,
    learned_vlb_terms,
    split_output,
)
from minidiff.losses import sample_timesteps  # noqa: E402
from minidiff.metrics import precision_recall_with_floor  # noqa: E402
from minidiff.samplers.ddim import (  # noqa: E402
    ddim_sample,
    ddim_timesteps,
    respace_eps_model,
    respace_schedule,
)
from minidiff.samplers.dpm_solver import dpm_solver_sample, heun_log_snr_sample  # noqa: E402
from minidiff.sde import VPSDE  # noqa: E402
from minidiff.training import train  # noqa: E402
from minidiff.training.recipes import TOY_2D_OPTIONS, TOY_2D_T_POWER, toy_model  # noqa: E402

BAR = 1 / 1.2
SCHEDULE = VPSDE().to_schedule(1000)
T = SCHEDULE.T
CD_TIMES = {1: [T], 2: [T, 100], 4: [T, 400, 150, 40], 8: [T, 600, 400, 250, 150, 80, 40, 15]}


def ratios(q: Any) -> tuple[float, float]:
    return q.precision_ratio, q.recall_ratio


def spread(q: Any) -> float:
    return max(q.precision.std / q.precision_floor.mean, q.recall.std / q.recall_floor.mean)


Sampler = Callable[[int, torch.Generator], torch.Tensor]


def ddim_fn(eps: Any, steps: int) -> Sampler:
    return lambda n, g: ddim_sample(eps, SCHEDULE, (n, 2), steps=steps, generator=g)


def solver_fn(eps: Any, steps: int, order: int = 2) -> Sampler:
    return lambda n, g: dpm_solver_sample(
        eps, SCHEDULE, (n, 2), steps=steps, order=order, generator=g
    )


def heun_fn(eps: Any, steps: int) -> Sampler:
    return lambda n, g: heun_log_snr_sample(eps, SCHEDULE, (n, 2), steps=steps, generator=g)


def consistency_fn(f: Any, times: list[int]) -> Sampler:
    return lambda n, g: consistency_sample(f, SCHEDULE, (n, 2), timesteps=times, generator=g)


class Config:
    def __init__(self, quick: bool, n: int | None, draws: int | None, seeds: int | None) -> None:
        self.quick = quick
        self.n = n or (300 if quick else 2000)
        self.draws = draws or (2 if quick else 5)
        self.seeds = seeds or (1 if quick else 3)
        self.toys = ["moons", "8gaussians"] if quick else list(MIXTURE_TOYS)
        self.teacher_steps = 60 if quick else 4000
        self.hybrid_steps = 60 if quick else 4000
        self.tune_steps = 30 if quick else 1000
        self.n_bound = 64 if quick else 1000
        self.pd_start = 8 if quick else 256
        # the notebook's default rounds: the first (the student leaves the trained network for the
        # 256-step sampler) and the late ones (two steps differ most from one) train longest
        self.pd_round = (
            (lambda N: 10) if quick else (lambda N: 1000 if N == 128 else 150 if N >= 16 else 600)
        )
        self.cd_steps = 30 if quick else 4000
        self.n_map = 200 if quick else 1000


def quality(cfg: Config, fn: Sampler, mix: Any, seed: int = 0) -> Any:
    return precision_recall_with_floor(
        fn,
        lambda k, g: mix.sample(k, g),
        n=cfg.n,
        draws=cfg.draws,
        generator=torch.Generator().manual_seed(seed),
    )


def pair(v: Any) -> str:
    return f"{v[0]:.3f}, {v[1]:.3f}"


# ----------------------------------------------------------------------------- 1. solvers


def part_solvers(cfg: Config, out: dict[str, Any]) -> bool:
    runs: dict[str, Callable[[Any], Sampler]] = {
        "DDIM (trailing)": lambda e: ddim_fn(e, 10),
        "DDIM (log-SNR grid)": lambda e: solver_fn(e, 10, order=1),
        "DPM-Solver++(2M)": lambda e: solver_fn(e, 10),
        "Heun in log-SNR (9 NFE)": lambda e: heun_fn(e, 5),
    }
    print(f"\n## 1. Ten network calls with the exact score (n = {cfg.n}, {cfg.draws} draws)\n")
    print("| toy | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name in cfg.toys:
        mix = mixture_toy(name)
        eps = mix.eps_model(SCHEDULE)
        table[name] = {}
        for label, make in runs.items():
            q = quality(cfg, make(eps), mix)
            table[name][label] = (*ratios(q), spread(q))
        cells = [
            f"{p:.3f}, {r:.3f} (±{s:.3f}){' ✓' if min(p, r) >= BAR else ''}"
            for p, r, s in table[name].values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    fails = [n for n, row in table.items() if min(row["DDIM (trailing)"][:2]) < BAR]
    ok = bool(fails) and all(min(table[n]["DPM-Solver++(2M)"][:2]) >= BAR for n in fails)
    print(f"\nEntries: P / floor, R / floor (± the larger sd over draws); ✓ = both >= {BAR:.3f}.")
    print(
        f"Bar 1: DDIM at 10 NFE short of 1.2x the floor on {fails or 'no toy'}; "
        f"DPM-Solver++(2M) within it on all of them: {'PASS' if ok else 'FAIL'}"
    )
    out["solvers"] = {"table": table, "ddim_fails": fails, "passes": ok}
    return ok


# ----------------------------------------------------------------------------- 2. variances


def _bounds(model: Any, x0: torch.Tensor, S: int) -> dict[str, torch.Tensor]:
    ts = torch.arange(T, 0, -1) if S == T else ddim_timesteps(SCHEDULE, S)
    sched, m = respace_schedule(SCHEDULE, ts), respace_eps_model(model, ts)

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_output(m(x, t))[0]

    def g() -> torch.Generator:
        return torch.Generator().manual_seed(5)  # the same draws for the three bounds

    return {
        "beta": vlb_terms(eps, x0, sched, variance="beta", generator=g()).total,
        "beta_tilde": vlb_terms(eps, x0, sched, variance="beta_tilde", generator=g()).total,
        "learned": learned_vlb_terms(m, x0, sched, generator=g()).total,
    }


def _gain(b: dict[str, torch.Tensor]) -> tuple[float, float, str]:
    best = min(("beta", "beta_tilde"), key=lambda k: float(b[k].mean()))
    d = b[best] - b["learned"]
    return float(d.mean()), float(d.std() / math.sqrt(len(d))), best


def part_variances(cfg: Config, out: dict[str, Any]) -> bool:
    toy = mixture_toy("8gaussians")

    def data(n: int, g: torch.Generator) -> torch.Tensor:
        return toy.sample(n, g)

    torch.manual_seed(0)
    start = time.process_time()
    net = HybridMLP(2, hidden=64, n_layers=3, x_frequencies=5)
    res = train(
        net,
        lambda m, b, g: hybrid_loss(m, b, SCHEDULE, generator=g),
        data,
        steps=cfg.hybrid_steps,
        progress=False,
        **TOY_2D_OPTIONS,
    )
    hybrid_cpu = time.process_time() - start
    x0 = toy.sample(cfg.n_bound, torch.Generator().manual_seed(4)).double()
    nll = float(-toy.log_prob(x0).mean())
    model = copy.deepcopy(res.ema.model).double().eval()
    rows: dict[str, dict[str, torch.Tensor]] = {str(S): _bounds(model, x0, S) for S in (T, 50, 10)}
    ts10 = ddim_timesteps(SCHEDULE, 10)
    sched10 = respace_schedule(SCHEDULE, ts10)
    tuned = train(
        copy.deepcopy(res.ema.model).requires_grad_(True).train(),
        lambda m, b, g: hybrid_loss(
            respace_eps_model(m, ts10), b, sched10, lambda_vlb=0.1, generator=g
        ),
        data,
        steps=cfg.tune_steps,
        progress=False,
        **{**TOY_2D_OPTIONS, "lr": 1e-3, "warmup_steps": 10},
    )
    rows["10, tuned"] = _bounds(copy.deepcopy(tuned.ema.model).double().eval(), x0, 10)
    print(
        f"\n## 2. Learned variances (8 Gaussians, {cfg.n_bound} points; true NLL {nll:.3f} "
        f"nats; L_hybrid {cfg.hybrid_steps} steps, {hybrid_cpu:.0f} CPU-s)\n"
    )
    print("| chain | beta | beta_tilde | learned | learned − better fixed (± SE) |")
    print("|---|---|---|---|---|")
    gains = {}
    for key, b in rows.items():
        gain = _gain(b)
        gains[key] = gain
        label = "10 steps, variance learned on them" if key == "10, tuned" else f"{key} steps"
        print(
            f"| {label} | {b['beta'].mean():.3f} | {b['beta_tilde'].mean():.3f} | "
            f"{b['learned'].mean():.3f} | {-gain[0]:+.4f} ± {gain[1]:.4f} (vs {gain[2]}) |"
        )
    g10 = gains["10, tuned"]
    ok = g10[0] > g10[1]
    print(
        f"\nBar 3: at 10 strided steps the learned variance improves the bound by {g10[0]:.3f} ± "
        f"{g10[1]:.3f} nats ({g10[0] / g10[1]:.1f} SE): {'PASS' if ok else 'FAIL'}"
    )
    out["variances"] = {"gains": gains, "true_nll": nll, "passes": ok}
    return ok


# ----------------------------------------------------------------------------- 3. distillation


def _teacher(cfg: Config, toy: Any, seed: int) -> tuple[torch.nn.Module, float]:
    """The 2D recipe's network and options, trained to predict v."""
    torch.manual_seed(seed)

    def loss(m: torch.nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        t = sample_timesteps(x0.shape[0], T, g, power=TOY_2D_T_POWER)
        return v_prediction_loss(m, x0, SCHEDULE, t=t, generator=g)

    start = time.process_time()
    options = {**TOY_2D_OPTIONS, "warmup_steps": min(100, cfg.teacher_steps)}
    res = train(
        toy_model(),
        loss,
        lambda n, g: toy.sample(n, g),
        steps=cfg.teacher_steps,
        seed=seed,
        progress=False,
        **options,
    )
    return res.ema.model.eval(), time.process_time() - start


def _cd(
    cfg: Config, toy: Any, teacher_net: torch.nn.Module, teacher_eps: Any, seed: int
) -> tuple[Any, float]:
    net = copy.deepcopy(teacher_net).requires_grad_(True).train()
    model = ConsistencyModel(net, SCHEDULE, prediction="v")
    grid = consistency_grid(SCHEDULE, 10)
    loss = ConsistencyDistillation(model, teacher_eps, SCHEDULE, grid, mu=0.95)
    start = time.process_time()
    options = {**TOY_2D_OPTIONS, "lr": 4e-3, "warmup_steps": min(50, cfg.cd_steps)}
    res = train(
        model,
        loss,
        lambda n, g: toy.sample(n, g),
        steps=cfg.cd_steps,
        seed=seed,
        progress=False,
        **options,
    )
    return res.ema.model.eval(), time.process_time() - start


def _meets(row: dict[str, Any], key: str, short: str) -> bool:
    """Within 1.2x the floor of the teacher's quality, and better than the short teacher."""
    tp, tr = row["teacher_256"]
    p, r = row[key][:2]
    return p >= tp / 1.2 and r >= tr / 1.2 and min(p, r) > min(row[short])


def part_distillation(cfg: Config, out: dict[str, Any]) -> bool:
    toy = mixture_toy("8gaussians")
    oracle = toy.eps_model(SCHEDULE)
    x_T = torch.randn(cfg.n_map, 2, generator=torch.Generator().manual_seed(100))
    flow_map = dpm_solver_sample(oracle, SCHEDULE, x_T=x_T.double(), steps=T).float()

    def map_error(x: torch.Tensor) -> float:
        return float((x.float() - flow_map).norm(dim=1).mean())

    rows: list[dict[str, Any]] = []
    summary: dict[int, Any] = {}
    pd_options = {**TOY_2D_OPTIONS, "lr": 1e-3, "warmup_steps": 10}
    for seed in range(cfg.seeds):
        teacher_net, teacher_cpu = _teacher(cfg, toy, seed)
        trained = prediction_to_eps(teacher_net, SCHEDULE, "v")
        for kind, teacher in (("exact", oracle), ("trained", trained)):
            row: dict[str, Any] = {"seed": seed, "teacher": kind, "teacher_cpu": teacher_cpu}
            for k in (256, 1, 2):
                row[f"teacher_{k}"] = ratios(quality(cfg, ddim_fn(teacher, k), toy))
            rounds = progressive_distillation(
                teacher_net,
                teacher,
                SCHEDULE,
                lambda n, g: toy.sample(n, g),
                teacher_steps=cfg.pd_start,
                train_steps=cfg.pd_round,
                seed=seed,
                progress=False,
                **pd_options,
            )
            for N in (4, 1):
                q = quality(cfg, ddim_fn(rounds[N].eps_model, N), toy)
                row[f"pd_{N}"] = (*ratios(q), spread(q))
            f, cd_cpu = _cd(cfg, toy, teacher_net, teacher, seed)
            q = quality(cfg, consistency_fn(f, CD_TIMES[2]), toy)
            row["cd_2"] = (*ratios(q), spread(q))
            row["pd_ok"] = _meets(row, "pd_4", "teacher_1") and _meets(row, "pd_1", "teacher_1")
            row["cd_ok"] = _meets(row, "cd_2", "teacher_2")
            rows.append(row)
            if seed == 0 and kind == "trained":
                summary = _summary(cfg, toy, trained, rounds, f, cd_cpu, map_error, x_T)
    print(
        f"\n## 3. Distillation on the 8 Gaussians ({cfg.seeds} seed(s); teacher "
        f"{cfg.teacher_steps} steps; PD from {cfg.pd_start} steps)\n"
    )
    print(
        "| seed | teacher | teacher 256 steps | PD 4 steps | PD 1 step | teacher 1 step | "
        "CD 2 calls | teacher 2 steps | bars |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = f"PD {'pass' if r['pd_ok'] else 'FAIL'}, CD {'pass' if r['cd_ok'] else 'FAIL'}"
        keys = ("teacher_256", "pd_4", "pd_1", "teacher_1", "cd_2", "teacher_2")
        cells = " | ".join(pair(r[k]) for k in keys)
        print(f"| {r['seed']} | {r['teacher']} | {cells} | {verdict} |")
    for kind in ("exact", "trained"):
        sel = [r for r in rows if r["teacher"] == kind]
        for key in ("pd_4", "pd_1", "cd_2"):
            p = torch.tensor([r[key][0] for r in sel], dtype=torch.float64)
            rr = torch.tensor([r[key][1] for r in sel], dtype=torch.float64)
            sd_p = float(p.std()) if len(sel) > 1 else math.nan
            sd_r = float(rr.std()) if len(sel) > 1 else math.nan
            print(
                f"- {kind} teacher, {key}: P {float(p.mean()):.3f} ± {sd_p:.3f}, "
                f"R {float(rr.mean()):.3f} ± {sd_r:.3f} (mean ± sd over seeds)"
            )
    ok = all(r["pd_ok"] and r["cd_ok"] for r in rows)
    print(
        "\nBar 2: for every seed, the PD student at 4 steps and the CD model at 2 calls are within "
        "1.2x the floor of their teacher and better than the teacher with 1 (PD) or 2 (CD) DDIM "
        f"steps: {'PASS' if ok else 'FAIL'}"
    )
    out["distillation"] = {"rows": rows, "passes": ok}
    print("\n## 4. Summary: the best method per NFE with the trained teacher (seed 0)\n")
    print("| NFE | best | P / floor | R / floor | map error | extra training CPU s | candidates |")
    print("|---|---|---|---|---|---|---|")
    for row in summary.values():
        print(row.pop("line"))
    out["summary"] = summary
    return ok


def _summary(
    cfg: Config,
    toy: Any,
    trained: Any,
    rounds: Any,
    f: Any,
    cd_cpu: float,
    map_error: Callable[[torch.Tensor], float],
    x_T: torch.Tensor,
) -> dict[int, Any]:
    table: dict[int, Any] = {}
    for k in (1, 2, 4, 8, 16, 32):
        cands: dict[str, tuple[Any, float | None, float]] = {
            "DDIM": (
                quality(cfg, ddim_fn(trained, k), toy),
                map_error(ddim_sample(trained, SCHEDULE, x_T=x_T, steps=k)),
                0.0,
            ),
            "DPM-Solver++(2M)": (
                quality(cfg, solver_fn(trained, k), toy),
                map_error(dpm_solver_sample(trained, SCHEDULE, x_T=x_T, steps=k)),
                0.0,
            ),
        }
        if k in rounds:
            e = rounds[k].eps_model
            cands["progressive distillation"] = (
                quality(cfg, ddim_fn(e, k), toy),
                map_error(ddim_sample(e, SCHEDULE, x_T=x_T, steps=k)),
                rounds[k].cpu_seconds,
            )
        if k in CD_TIMES:
            one = map_error(consistency_sample(f, SCHEDULE, x_T=x_T)) if k == 1 else None
            cands["consistency distillation"] = (
                quality(cfg, consistency_fn(f, CD_TIMES[k]), toy),
                one,
                cd_cpu,
            )
        score = {name: min(ratios(c[0])) for name, c in cands.items()}
        best = max(score, key=lambda name: score[name])
        q, m, cost = cands[best]
        p, r = ratios(q)
        others = ", ".join(f"{name} {v:.2f}" for name, v in score.items())
        m_text = "—" if m is None else f"{m:.3f}"
        table[k] = {"best": best, "ratios": (p, r), "map_error": m, "cpu": cost, "scores": score}
        table[k]["line"] = (
            f"| {k} | {best} | {p:.3f} | {r:.3f} | {m_text} | {cost:.0f} | {others} |"
        )
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one seed, two toys")
    p.add_argument(
        "--parts", type=int, nargs="+", default=[1, 2, 3], help="which parts to run (1, 2, 3)"
    )
    p.add_argument("--n", type=int, default=None, help="samples per draw (default 2000; quick 300)")
    p.add_argument(
        "--draws", type=int, default=None, help="draws per measurement (default 5; quick 2)"
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="training seeds of part 3 (default 3; quick 1)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config(args.quick, args.n, args.draws, args.seeds)
    mode = ", quick" if cfg.quick else ""
    print(
        f"# Few-step sampling — torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} CPUs visible, load average {os.getloadavg()[0]:.1f}{mode}"
    )
    out: dict[str, Any] = {}
    ok = True
    start = time.process_time()
    parts = {1: part_solvers, 2: part_variances, 3: part_distillation}
    for k in args.parts:
        part_start = time.process_time()
        ok = parts[k](cfg, out) and ok
        print(f"\n(part {k}: {time.process_time() - part_start:.0f} CPU-s)")
    verdict = "All bars pass." if ok else "Some bar FAILED."
    print(f"\nTotal: {time.process_time() - start:.0f} CPU-s. {verdict}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
