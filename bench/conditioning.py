"""Benchmark: chapter 13's bars — conditioning, latent diffusion, cross-attention, retrieval.

All on scikit-learn's digits, split once into halves A (train the models and the judge) and B
(held out), on the CPU, with CPU seconds counted by ``resource.getrusage`` (all threads):

1. **CFG on digits.** ``UNet("digits", num_classes=10)`` trained with label dropout
   (``conditional_eps_loss``) on 8x8 A; DDIM samples for w in {0, 1, 3, 7}: the judge's
   confident-and-correct rate (``minidiff.metrics.digits``) against real B's, per class, and two
   diversity measures per class (k-NN recall against B's digits of the class; within-class
   spread relative to B's). Bar: rate(w = 3) >= 90 % of real digits' in <= 600 s of training.
2. **Latent vs pixel diffusion** on 32x32 digits at equal training CPU seconds: a KL autoencoder
   (f = 4, 4 latent channels) plus a U-Net on its scaled 4x8x8 latents, against a U-Net on the
   pixels trained for as long as both latent stages together. Quality at w = 3 (judge rate;
   k-NN precision/recall in a 16-d PCA feature space against B, with A's own as the floor) and
   CPU seconds per sample (decoding included). Bars: latent >= pixel in rate, cost <= 1/3.
   The autoencoder's error per frequency band (chapter 10's radial spectra) is printed too.
3. **Cross-attention vs pooled tokens** on "a left of b" two-digit images: the same U-Net and
   token encoder, once with the 4 token states and once with their mean (one token). Bar:
   >= 80 % prompt-faithful samples (both halves judged as asked) with cross-attention, clearly
   fewer pooled.
4. **Retrieval-augmented conditioning**: a U-Net cross-attending to the PCA embeddings of the
   k = 4 nearest neighbours in A (the image itself left out in training); samples for held-out
   queries of B: judge rate for the query's class, precision/recall, and memorisation as
   nearest-training-image distances against B's own.

    .venv/bin/python bench/conditioning.py                # full run: longer than the notebook
    .venv/bin/python bench/conditioning.py --quick        # smoke run (about 20 CPU-seconds)
    .venv/bin/python bench/conditioning.py --parts cfg latent --out /tmp/ch13

Prints Markdown tables; ``--out DIR`` writes ``results.json``. Exit status 0 when every bar of the
parts run passes.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minidiff import classifier_free_guidance, ddim_sample, linear_schedule  # noqa: E402
from minidiff.data import load_digits  # noqa: E402
from minidiff.data.digit_pairs import compose_pairs, split_pair  # noqa: E402
from minidiff.frequency import radial_psd  # noqa: E402
from minidiff.latent import LatentSpace  # noqa: E402
from minidiff.losses import conditional_eps_loss  # noqa: E402
from minidiff.metrics import knn_precision_recall  # noqa: E402
from minidiff.metrics.digits import DigitJudge, within_class_spread  # noqa: E402
from minidiff.nn import (  # noqa: E402
    AutoencoderKL,
    PromptUNet,
    TokenEncoder,
    UNet,
    count_parameters,
    kl_autoencoder_loss,
    prompt_eps_loss,
    prompt_guidance,
)
from minidiff.retrieval import NeighbourRetriever  # noqa: E402
from minidiff.tensors import pairwise_sq_dists  # noqa: E402
from minidiff.training import train  # noqa: E402

WEIGHTS = (0.0, 1.0, 3.0, 7.0)
PARTS = ("cfg", "latent", "prompts", "retrieval")


@dataclass(frozen=True)
class Config:
    cfg_steps: int = 600
    cfg_base: int = 32
    per_class: int = 100
    sample_steps: int = 50
    ae_steps: int = 300
    ldm_steps: int = 800
    latent_per_class: int = 50
    prompt_steps: int = 800
    prompts: int = 400
    rdm_steps: int = 600
    queries: int = 400
    batch_size: int = 128


QUICK = Config(
    cfg_steps=4, cfg_base=16, per_class=4, sample_steps=3, ae_steps=3, ldm_steps=3,
    latent_per_class=2, prompt_steps=3, prompts=12, rdm_steps=3, queries=12, batch_size=16,
)  # fmt: skip


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def split(
    size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits at ``size`` split into halves A and B by a fixed permutation."""
    x, y = load_digits(size)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    a, b = perm[: len(perm) // 2], perm[len(perm) // 2 :]
    return x[a], y[a], x[b], y[b]


def timed_train(
    model: torch.nn.Module, loss_fn: Any, data: Any, steps: int, **kw: Any
) -> tuple[torch.nn.Module, float]:
    """Train with the course's loop; return the EMA model and the CPU seconds it took."""
    c0 = cpu_seconds()
    res = train(model, loss_fn, data, steps=steps, progress=False, **kw)
    return res.ema.model.eval(), cpu_seconds() - c0


def label_loss(sched: Any) -> Any:
    return lambda m, b, g: conditional_eps_loss(m, b[0], b[1], sched, p_uncond=0.2, generator=g)


@torch.no_grad()
def guided_samples(
    model: Any, labels: torch.Tensor, w: float, shape: tuple[int, ...], steps: int, seed: int = 1
) -> torch.Tensor:
    """CFG + DDIM; pixels (one channel) get x0 clipping to [-1, 1], latents (4 channels) none."""
    eps = classifier_free_guidance(model, labels, w, num_classes=10)
    return ddim_sample(
        eps,
        SCHED,
        (labels.shape[0], *shape),
        steps=steps,
        clip_x0="static" if shape[0] == 1 else None,
        generator=torch.Generator().manual_seed(seed),
    )


SCHED = linear_schedule(1000)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def part_cfg(c: Config) -> dict[str, Any]:
    xa, ya, xb, yb = split(8)
    judge = DigitJudge(xa, ya)
    torch.manual_seed(0)
    model = UNet("digits", base_channels=c.cfg_base, channel_mult=(1, 2), num_classes=10)
    ema, cpu = timed_train(model, label_loss(SCHED), (xa, ya), c.cfg_steps, batch_size=c.batch_size,
                           lr=2e-3, warmup_steps=min(50, c.cfg_steps), ema_decay=0.995)  # fmt: skip
    real = judge.rate(xb, yb)
    spread_real = within_class_spread(xb, yb)
    labels = torch.arange(10).repeat_interleave(c.per_class)
    rows = []
    for w in WEIGHTS:
        x = guided_samples(ema, labels, w, (1, 8, 8), c.sample_steps).clamp(-1, 1)
        recall = [
            knn_precision_recall(x[labels == k].flatten(1), xb[yb == k].flatten(1)).recall
            for k in range(10)
        ]
        per = judge.per_class(x, labels)
        rows.append({
            "w": w, "rate": judge.rate(x, labels), "ratio": judge.rate(x, labels) / real,
            "worst_class_rate": float(per.min()), "per_class_rate": per.tolist(),
            "recall": sum(recall) / 10, "per_class_recall": recall,
            "spread_ratio": float((within_class_spread(x, labels) / spread_real).mean()),
        })  # fmt: skip
    r3 = next(r for r in rows if r["w"] == 3.0)
    return {
        "params": count_parameters(model), "steps": c.cfg_steps, "train_cpu_s": cpu,
        "real_rate": real, "rows": rows,
        "bar": r3["ratio"] >= 0.9 and cpu <= 600.0,
    }  # fmt: skip


def _pca_features(xa: torch.Tensor) -> NeighbourRetriever:
    return NeighbourRetriever.fit(xa, dim=16, k=3)


def part_latent(c: Config) -> dict[str, Any]:
    xa, ya, xb, yb = split(32)
    judge = DigitJudge(xa, ya, pool=4)
    torch.manual_seed(0)
    ae = AutoencoderKL(1, 4, (16, 32, 32), groups=8, image_size=32)
    ae_loss = lambda m, b, g: kl_autoencoder_loss(m, b, kl_weight=1e-5, generator=g)  # noqa: E731
    ae, cpu_ae = timed_train(ae, ae_loss, xa, c.ae_steps, batch_size=32, lr=2e-3,
                             warmup_steps=min(20, c.ae_steps),
                             ema_decay=0.99)  # fmt: skip
    space = LatentSpace.fit(ae, xa, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rec = ae.decode(space.posterior(xb).mean)
    band_error = (radial_psd(rec - xb).mean(0) / radial_psd(xb).mean(0)).tolist()
    torch.manual_seed(0)
    lat = UNet("digits", in_channels=4, base_channels=32, channel_mult=(1, 2), num_classes=10)
    lat, cpu_ldm = timed_train(lat, label_loss(SCHED), space.batches(xa, ya), c.ldm_steps,
                               batch_size=c.batch_size, lr=2e-3, warmup_steps=min(50, c.ldm_steps),
                               ema_decay=0.995)  # fmt: skip
    budget = cpu_ae + cpu_ldm

    def pixel_net() -> UNet:
        torch.manual_seed(0)
        return UNet("digits", image_size=32, base_channels=16, channel_mult=(1, 2, 2),
                    attn_resolutions=(8,), num_classes=10)  # fmt: skip

    # cost of one pixel step from a throwaway run (2 untimed, 3 timed steps), then the budget
    probe = train(
        pixel_net(), label_loss(SCHED), (xa, ya), steps=2, batch_size=c.batch_size, progress=False
    )
    c0 = cpu_seconds()
    train(
        probe.model, label_loss(SCHED), (xa, ya), steps=3, batch_size=c.batch_size, progress=False
    )
    pixel_steps = max(1, int(budget / ((cpu_seconds() - c0) / 3)))
    pix, cpu_pix = timed_train(pixel_net(), label_loss(SCHED), (xa, ya), pixel_steps,
                               batch_size=c.batch_size, lr=2e-3,
                               warmup_steps=min(50, pixel_steps), ema_decay=0.995)  # fmt: skip

    labels = torch.arange(10).repeat_interleave(c.latent_per_class)
    feats = _pca_features(xa)
    floor = knn_precision_recall(feats.embed(xa[: len(xb)]), feats.embed(xb))
    out: dict[str, Any] = {}
    for name, make in (
        ("latent", lambda: space.decode(
            guided_samples(lat, labels, 3.0, space.latent_shape, c.sample_steps))),
        ("pixel", lambda: guided_samples(pix, labels, 3.0, (1, 32, 32), c.sample_steps)),
    ):  # fmt: skip
        c0 = cpu_seconds()
        x = make().clamp(-1, 1)
        per_sample = (cpu_seconds() - c0) / labels.shape[0]
        pr = knn_precision_recall(feats.embed(x), feats.embed(xb))
        out[name] = {"rate": judge.rate(x, labels), "precision": pr.precision,
                     "recall": pr.recall, "cpu_per_sample_s": per_sample}  # fmt: skip
    out.update({
        "scale": space.scale, "latent_std": 1 / space.scale, "band_error": band_error,
        "real_rate": judge.rate(xb, yb), "floor_precision": floor.precision,
        "floor_recall": floor.recall, "ae_cpu_s": cpu_ae, "ldm_cpu_s": cpu_ldm,
        "pixel_cpu_s": cpu_pix, "pixel_steps": pixel_steps,
        "params": {"ae": count_parameters(ae), "latent_unet": count_parameters(lat),
                   "pixel_unet": count_parameters(pix)},
        "cost_ratio": out["latent"]["cpu_per_sample_s"] / out["pixel"]["cpu_per_sample_s"],
    })  # fmt: skip
    out["bar"] = (
        out["latent"]["rate"] >= out["pixel"]["rate"]
        and out["cost_ratio"] <= 1 / 3
        and cpu_pix >= 0.9 * budget
    )
    return out


def prompt_model(pool: bool) -> PromptUNet:
    torch.manual_seed(0)
    unet = UNet("digits", image_size=16, base_channels=16, channel_mult=(1, 2),
                attn_resolutions=(8,), context_dim=32, heads=2)  # fmt: skip
    return PromptUNet(TokenEncoder(14, 32, 4, pool=pool), unet)


def faithful(
    judge: DigitJudge, canvas: torch.Tensor, left: torch.Tensor, right: torch.Tensor
) -> float:
    a, b = split_pair(canvas)
    return float(((judge.predict(a) == left) & (judge.predict(b) == right)).double().mean())


def part_prompts(c: Config) -> dict[str, Any]:
    xa, ya, xb, yb = split(8)
    judge = DigitJudge(xa, ya)
    real, ids, left, right = compose_pairs(xb, yb, c.prompts, torch.Generator().manual_seed(5),
                                           relations=("left",))  # fmt: skip
    out: dict[str, Any] = {"real": faithful(judge, real, left, right)}
    for name, pool in (("cross", False), ("pooled", True)):
        model = prompt_model(pool)
        ema, cpu = timed_train(
            model,
            lambda m, b, g: prompt_eps_loss(m, b[0], b[1], SCHED, p_uncond=0.1, generator=g),
            lambda n, g: compose_pairs(xa, ya, n, g, relations=("left",))[:2],
            c.prompt_steps, batch_size=min(64, c.batch_size), lr=3e-3,
            warmup_steps=min(50, c.prompt_steps), ema_decay=0.995,
        )  # fmt: skip
        row: dict[str, Any] = {"train_cpu_s": cpu, "params": count_parameters(model)}
        for w in (0.0, 3.0):
            with torch.no_grad():
                x = ddim_sample(prompt_guidance(ema, ids, w), SCHED, (ids.shape[0], 1, 16, 16),
                                steps=c.sample_steps, clip_x0="static",
                                generator=seeded(1))  # fmt: skip
            row[f"faithful_w{w:g}"] = faithful(judge, x, left, right)
        out[name] = row
    out["bar"] = (
        out["cross"]["faithful_w3"] >= 0.8
        and out["pooled"]["faithful_w3"] <= out["cross"]["faithful_w3"] - 0.3
    )
    return out


def nn_distances(x: torch.Tensor, train_set: torch.Tensor) -> torch.Tensor:
    return pairwise_sq_dists(x.flatten(1), train_set.flatten(1)).min(1).values.sqrt()


def part_retrieval(c: Config) -> dict[str, Any]:
    xa, ya, xb, yb = split(8)
    judge = DigitJudge(xa, ya)
    ret = NeighbourRetriever.fit(xa, dim=16, k=4)
    own = ret.neighbours(ret.database, exclude=torch.arange(xa.shape[0]))  # (N, k), self left out
    torch.manual_seed(0)
    model = UNet("digits", base_channels=32, channel_mult=(1, 2), context_dim=16, heads=2)

    def draw(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, xa.shape[0], (n,), generator=g)
        return xa[i], ret.database[own[i]]

    def loss(m: Any, b: Any, g: torch.Generator) -> torch.Tensor:
        from minidiff import simple_loss

        return simple_loss(lambda x, t: m(x, t, context=b[1]), b[0], SCHED, generator=g)

    ema, cpu = timed_train(model, loss, draw, c.rdm_steps, batch_size=c.batch_size, lr=2e-3,
                           warmup_steps=min(50, c.rdm_steps), ema_decay=0.995)  # fmt: skip
    q = torch.randperm(xb.shape[0], generator=torch.Generator().manual_seed(7))[: c.queries]
    ctx = ret.context(ret.embed(xb[q]))
    with torch.no_grad():
        x = ddim_sample(lambda z, t: ema(z, t, context=ctx), SCHED, (len(q), 1, 8, 8),
                        steps=c.sample_steps, clip_x0="static",
                        generator=seeded(1)).clamp(-1, 1)  # fmt: skip
    d_samples, d_real = nn_distances(x, xa), nn_distances(xb[q], xa)
    pr = knn_precision_recall(x.flatten(1), xb.flatten(1))
    return {
        "train_cpu_s": cpu, "rate_query_class": judge.rate(x, yb[q]),
        "real_rate": judge.rate(xb[q], yb[q]), "precision": pr.precision, "recall": pr.recall,
        "nn_median_samples": float(d_samples.median()), "nn_median_heldout": float(d_real.median()),
        "bar": True,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run at toy size")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else Config()
    results: dict[str, Any] = {
        "torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
        "config": asdict(config),
    }  # fmt: skip
    runners = {"cfg": part_cfg, "latent": part_latent, "prompts": part_prompts,
               "retrieval": part_retrieval}  # fmt: skip
    for part in args.parts:
        results[part] = runners[part](config)
        report(part, results[part])
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
    return 0 if all(results[p]["bar"] for p in args.parts) else 1


def report(part: str, r: dict[str, Any]) -> None:
    verdict = "PASS" if r["bar"] else "FAIL"
    if part == "cfg":
        print(
            f"\n### 1. CFG on 8x8 digits: {r['steps']} steps, {r['train_cpu_s']:.0f} CPU-s of "
            f"training, {r['params']:,} parameters; real digits' rate {r['real_rate']:.3f}\n"
        )
        print("| w | confident & correct | / real | worst class | recall | spread / real |")
        print("|---|---|---|---|---|---|")
        for row in r["rows"]:
            print(
                f"| {row['w']:g} | {row['rate']:.3f} | {row['ratio']:.2f} "
                f"| {row['worst_class_rate']:.2f} "
                f"| {row['recall']:.3f} | {row['spread_ratio']:.2f} |"
            )
        print(f"\nbar (w = 3: ratio >= 0.90 within 600 CPU-s): {verdict}")
    elif part == "latent":
        print(
            f"\n### 2. Latent vs pixel diffusion on 32x32 digits (scale 1/std = {r['scale']:.4f})\n"
        )
        print(
            f"training CPU-s: autoencoder {r['ae_cpu_s']:.0f} + latent U-Net {r['ldm_cpu_s']:.0f} "
            f"vs pixel U-Net {r['pixel_cpu_s']:.0f} ({r['pixel_steps']} steps)\n"
        )
        print("| model | confident & correct (w=3) | precision | recall | CPU-s per sample |")
        print("|---|---|---|---|---|")
        for name in ("latent", "pixel"):
            m = r[name]
            print(
                f"| {name} | {m['rate']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{m['cpu_per_sample_s']:.4f} |"
            )
        print(
            f"| real (floor) | {r['real_rate']:.3f} | {r['floor_precision']:.3f} "
            f"| {r['floor_recall']:.3f} | |"
        )
        print(
            f"\ncost ratio latent / pixel {r['cost_ratio']:.3f}; "
            "autoencoder error / signal power per band: "
            + ", ".join(f"{e:.3f}" for e in r["band_error"])
        )
        print(f"bar (latent >= pixel at equal CPU-s, cost <= 1/3): {verdict}")
    elif part == "prompts":
        print('\n### 3. Prompt-faithful two-digit samples ("a left of b")\n')
        print("| model | w = 0 | w = 3 | training CPU-s |")
        print("|---|---|---|---|")
        for name in ("cross", "pooled"):
            m = r[name]
            print(
                f"| {name} | {m['faithful_w0']:.3f} | {m['faithful_w3']:.3f} "
                f"| {m['train_cpu_s']:.0f} |"
            )
        print(f"| real pairs | {r['real']:.3f} | | |")
        print(f"\nbar (cross >= 0.80, pooled at least 0.30 lower): {verdict}")
    else:
        print("\n### 4. Retrieval-augmented conditioning (k = 4 neighbours, 16-d PCA)\n")
        print(
            f"query's class: {r['rate_query_class']:.3f} (real {r['real_rate']:.3f}); precision "
            f"{r['precision']:.3f}, recall {r['recall']:.3f}; median distance to the nearest "
            f"training digit: samples {r['nn_median_samples']:.3f}, "
            f"held-out real {r['nn_median_heldout']:.3f}; "
            f"{r['train_cpu_s']:.0f} CPU-s of training"
        )


if __name__ == "__main__":
    sys.exit(main())
