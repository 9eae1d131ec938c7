"""The fidelity/diversity trade-off of guidance, measured (chapter 9).

For the guidance weights w in {0, 0.5, 1, 2, 4, 8}, both forms and exact and trained models on
``LabelledGaussianMixture.default_2d()`` (three classes, six components):

    CFG exact    classifier-free guidance, the mixture's exact eps(x_t, t, y) and eps(x_t, t, ∅)
    CFG trained  classifier-free guidance, ConditionalTimeMLP trained with label dropout (p 0.2)
    CG exact     classifier guidance, exact unconditional eps and exact classifier p_t(y | x_t)
    CG trained   classifier guidance, the trained network with ∅ and a trained NoisyClassifier

For every class y: ``--n`` samples with ancestral DDPM on ``--sample-steps`` strided steps of the
linear T = 1000 schedule, compared with ``--n`` fresh data points of class y:

* precision / recall: k-NN (k = 3, Kynkäänniemi et al. 2019; ``knn_precision_recall``), with the
  data floor (fresh data vs fresh data of the class);
* coverage: fraction of the class's components that get at least a quarter of their share
  (``minidiff.metrics.mode_coverage``);
* accuracy: the class predicted by a held-out classifier (scikit-learn k-NN, k = 15, fitted on 6000
  fresh labelled points that no model saw); its accuracy on fresh data is the ceiling.

Values are averaged over the classes. Note the conventions: at the same w, classifier guidance
equals classifier-free guidance at w - 1 for exact models, so CG at w = 0 is unconditional.

    python bench/guidance.py            # full run (several minutes on 2 idle cores)
    python bench/guidance.py --quick    # smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidiff  # noqa: E402
from minidiff.data import LabelledGaussianMixture  # noqa: E402
from minidiff.guidance import classifier_free_guidance, classifier_guidance  # noqa: E402
from minidiff.losses import conditional_eps_loss, noisy_classifier_loss  # noqa: E402
from minidiff.metrics import knn_precision_recall, mode_coverage  # noqa: E402
from minidiff.nn import ConditionalTimeMLP, NoisyClassifier  # noqa: E402

WEIGHTS = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
MEASURES = ("precision", "recall", "coverage", "accuracy")


def train_models(
    mix: LabelledGaussianMixture, schedule: minidiff.NoiseSchedule, steps: int
) -> dict:  # type: ignore[type-arg]
    C = mix.num_classes
    out = {}
    torch.manual_seed(0)
    for name, model, loss, n_steps in (
        (
            "cond",
            ConditionalTimeMLP(num_classes=C, hidden=128, n_layers=3),
            lambda m, b, g: conditional_eps_loss(
                m, b[0], b[1], schedule, p_uncond=0.2, generator=g
            ),
            steps,
        ),
        (
            "clf",
            NoisyClassifier(num_classes=C, hidden=64, n_layers=2),
            lambda m, b, g: noisy_classifier_loss(m, b[0], b[1], schedule, generator=g),
            max(steps * 2 // 3, 1),
        ),
    ):
        w0, c0 = time.perf_counter(), time.process_time()
        res = minidiff.train(
            model,
            loss,
            lambda n, g: mix.sample(n, g),
            steps=n_steps,
            batch_size=256,
            lr=2e-3,
            ema_decay=0.995,
            seed=1,
            progress=False,
        )
        out[name] = res.ema.model.eval()
        out[f"{name}_time"] = (n_steps, time.perf_counter() - w0, time.process_time() - c0)
        out[f"{name}_loss"] = sum(res.losses[-100:]) / min(100, len(res.losses))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: short training, fewer points")
    ap.add_argument(
        "--steps", type=int, default=None, help="training steps of the conditional network"
    )
    ap.add_argument("--n", type=int, default=None, help="samples per class and weight")
    ap.add_argument("--sample-steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    steps = args.steps or (800 if args.quick else 6000)
    n = args.n or (600 if args.quick else 3000)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average "
        f"{os.getloadavg()[0]:.1f}, training steps {steps}, n {n}, "
        f"sampling steps {args.sample_steps}"
    )

    mix = LabelledGaussianMixture.default_2d()
    C = mix.num_classes
    schedule = minidiff.linear_schedule(1000)
    m = train_models(mix, schedule, steps)
    for name in ("cond", "clf"):
        k, wall, cpu = m[f"{name}_time"]
        print(
            f"trained {name}: {k} steps, {wall:.1f} s wall, {cpu:.1f} s CPU, "
            f"final loss {m[f'{name}_loss']:.3f}"
        )

    eps_cond, clf_exact = mix.cond_eps_model(schedule), mix.classifier(schedule)
    eps_uncond = mix.mixture.eps_model(schedule)
    net, clf = m["cond"], m["clf"]

    def uncond_net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(x, t, torch.full_like(t, C))

    configs: dict[str, Callable[[int, float], Callable]] = {  # type: ignore[type-arg]
        "CFG exact": lambda y, w: classifier_free_guidance(eps_cond, y, w, num_classes=C),
        "CFG trained": lambda y, w: classifier_free_guidance(net, y, w, num_classes=C),
        "CG exact": lambda y, w: classifier_guidance(
            eps_uncond, clf_exact, y, w, schedule, num_classes=C
        ),
        "CG trained": lambda y, w: classifier_guidance(
            uncond_net, clf, y, w, schedule, num_classes=C
        ),
    }
    g = torch.Generator().manual_seed(0)
    x_fit, y_fit = mix.sample(6000, torch.Generator().manual_seed(8))
    judge = KNeighborsClassifier(n_neighbors=15).fit(x_fit.numpy(), y_fit.numpy())
    x_h, y_h = mix.sample(6000, torch.Generator().manual_seed(9))
    ceiling = float((torch.as_tensor(judge.predict(x_h.numpy())) == y_h).double().mean())
    floors = [
        knn_precision_recall(mix.sample(n, g, y=y)[0], mix.sample(n, g, y=y)[0]) for y in range(C)
    ]
    p_floor = sum(f.precision for f in floors) / C
    r_floor = sum(f.recall for f in floors) / C

    table: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    with torch.no_grad():
        for name, make in configs.items():
            table[name] = {k: [] for k in MEASURES}
            t0 = time.perf_counter()
            for w in WEIGHTS:
                acc = {k: 0.0 for k in MEASURES}
                for y in range(C):
                    x = minidiff.ddim_sample(
                        make(y, w), schedule, (n, 2), steps=args.sample_steps, eta=1.0, generator=g
                    ).float()
                    pr = knn_precision_recall(x, mix.sample(n, g, y=y)[0])
                    acc["precision"] += pr.precision / C
                    acc["recall"] += pr.recall / C
                    acc["coverage"] += mode_coverage(x, mix.class_mixtures[y]).fraction / C
                    acc["accuracy"] += (
                        float((torch.as_tensor(judge.predict(x.numpy())) == y).double().mean()) / C
                    )
                for k in MEASURES:
                    table[name][k].append(acc[k])
            seconds[name] = time.perf_counter() - t0

    print()
    print(
        f"data floor: precision {p_floor:.3f}, recall {r_floor:.3f}, coverage 1; "
        f"held-out classifier on data {ceiling:.3f}"
    )
    print()
    print("| configuration | measure | " + " | ".join(f"w = {w:g}" for w in WEIGHTS) + " |")
    print("|---|---|" + "---|" * len(WEIGHTS))
    for name, res in table.items():
        for k in MEASURES:
            print(f"| {name} | {k} | " + " | ".join(f"{v:.3f}" for v in res[k]) + " |")
    print()
    print(
        "sampling wall seconds per configuration: "
        + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "weights": WEIGHTS,
                    "table": table,
                    "precision_floor": p_floor,
                    "recall_floor": r_floor,
                    "judge_ceiling": ceiling,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
