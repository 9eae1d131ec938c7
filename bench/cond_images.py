"""Diffusion conditioned on images (chapter 14): super-resolution, a cascade, inpainting.

The notebook's experiments, over several seeds (training and sampling), on the course's 16x16
digits (held-out digits for evaluation; the low-resolution image is the 2x2 average, 8x8):

* super-resolution 8 -> 16: bicubic, the posterior mean (a small U-Net regressor,
  ``regression_loss``) and SR3 (``image_conditional_loss``; ``ResidualSR``, and the plain
  ε-U-Net without the image-space skip, ``sr_eps``): PSNR against the original and the
  high-band spectrum distance to the data (``highband_spectrum_distance``, rings >= 0.25
  cycles/pixel, dB);
* a cascade (``--part cascade``): the base model on 8x8 digits (trained longer than the SR
  models: 3000 steps at the full size, so that its samples are nearly right), then the SR model
  trained without and with noise-conditioning augmentation of the 8x8 condition
  (``s ~ U{0..20}``, sampled at ``s = 10``), each fed real 8x8 digits and the base model's
  samples: the high-band distance and the k-NN precision (k = 3, against the training digits,
  beside held-out real digits' own precision) of the 16x16 outputs, and the augmented model at
  ``s = 0, 5, 10, 15`` on the base samples (the trade-off between detail and fidelity), and
  CDM's truncated variant at ``s = 10`` (``cascade_sample(truncate=True)``: the base sampler
  stops at ``x_s`` and hands that state over);
* inpainting the bottom half of 8x8 digits with the base model: replacement against RePaint and
  against DPS guidance (``dps_sample``, ``zeta = 0.3``), and a model trained on masks (random
  halves; ``masked_condition``); the seam error (mean |x - x_true| on the generated row next to
  the known half), the error on the known pixels (0 for all but DPS) and a held-out
  logistic-regression classifier's agreement with the true digit.

and on the course's photo patches (held out by position: 16x16 training crops from the left half
of each photograph, 32x32 test patches from the right half; the models run at 32x32 with the
weights learnt on the crops, ``at_image_size``):

* super-resolution 16 -> 32: bicubic, the posterior mean, SR3 and SR3 with the back-projection
  of x0 onto the low-resolution image (``low_resolution_projection``): PSNR, high-band distance;
* colorization (chroma given luma, ``train_colorizer``): the gray image replicated, the posterior
  mean and the diffusion sample: chroma error against the original and colourfulness
  (Hasler & Suesstrunk), whose gap to the data's is the bar.

A bar is met when the mean margin exceeds the larger of the two seeds' spreads (standard
deviation) and every seed's margin is positive. ``--size fast`` is the notebook's fast mode,
``--size full`` its default mode.

    python bench/cond_images.py --size fast --seeds 5 --json bench/cond_images_fast.json
    python bench/cond_images.py --size full --seeds 3   # about 10 CPU-minutes
    python bench/cond_images.py --quick                 # smoke run
    python bench/cond_images.py --part photos --size full --seeds 3   # photo patches only
    python bench/cond_images.py --part cascade --seeds 5 --json bench/cond_images_cascade.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minidiff  # noqa: E402
from minidiff.back_projection import low_resolution_projection  # noqa: E402
from minidiff.colorization import (  # noqa: E402
    colorize,
    train_colorizer,
    train_colour_regressor,
    ycbcr_to_rgb,
)
from minidiff.data.images import image_patches, load_digits  # noqa: E402
from minidiff.image_conditioning import (  # noqa: E402
    condition_on,
    downsample,
    masked_condition,
    to_grayscale,
    upsample,
)
from minidiff.metrics.color import chroma_error, colourfulness  # noqa: E402
from minidiff.metrics.precision_recall import knn_precision_recall  # noqa: E402
from minidiff.metrics.restoration import highband_spectrum_distance, psnr  # noqa: E402
from minidiff.samplers import ddim_sample, ddpm_sample, inpaint_sample, paste_known  # noqa: E402
from minidiff.samplers.dps import dps_sample  # noqa: E402
from minidiff.superres import (  # noqa: E402
    at_image_size,
    cascade_sample,
    conditional_sample,
    sr_sample,
    train_base,
    train_conditional,
    train_regressor,
    train_sr,
)

SIZES = {  # training steps, evaluation batch, sampling steps, RePaint (jump, resamplings)
    "quick": {"steps": 8, "n": 8, "ddim": 4, "jump": 5, "r": 2, "aug": 20, "s": 10},
    "fast": {"steps": 120, "n": 48, "ddim": 15, "jump": 5, "r": 3, "aug": 20, "s": 10},
    "full": {"steps": 600, "n": 128, "ddim": 25, "jump": 5, "r": 5, "aug": 20, "s": 10},
}


DPS_ZETA = 0.3  # DPS's step size: larger ones pull the known pixels harder and break the digits


def seam_error(x: torch.Tensor, truth: torch.Tensor, row: int) -> float:
    """Mean |x - truth| on the first generated row (``row``), next to the known part."""
    return float((x[..., row, :] - truth[..., row, :]).abs().mean())


def run_chapter14(size: str, seed: int = 0) -> dict:  # type: ignore[type-arg]
    c = SIZES[size]
    sched = minidiff.cosine_schedule(100)
    g = torch.Generator().manual_seed(seed)
    out: dict = {}  # type: ignore[type-arg]
    # --- data: the course's 16x16 digits and their 8x8 averages (held-out digits for evaluation)
    digits, labels = load_digits(16)
    perm = torch.randperm(digits.shape[0], generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400 : 1400 + c["n"]]
    train_hi, test_hi = digits[tr], digits[te]
    test_lo = downsample(test_hi, 2)
    ref_hi = digits[perm[1400 + c["n"] :]]  # the other held-out digits: the data's spectrum
    # --- super-resolution: bicubic, regression (posterior mean), SR3
    sr = train_sr(train_hi, sched, steps=c["steps"], seed=seed)
    sr_eps = train_sr(train_hi, sched, steps=c["steps"], residual=False, seed=seed)
    reg = train_regressor(train_hi, steps=c["steps"], seed=seed)
    bic = upsample(test_lo, 16)
    with torch.no_grad():
        mean = reg(bic).clamp(-1, 1)
    samp = sr_sample(sr, test_lo, sched, steps=c["ddim"], generator=g)
    samp_eps = sr_sample(sr_eps, test_lo, sched, steps=c["ddim"], generator=g)
    for name, x in (("bicubic", bic), ("regression", mean), ("sr", samp), ("sr_eps", samp_eps)):
        out[f"psnr_{name}"] = float(psnr(x, test_hi).mean())
        out[f"hb_{name}"] = highband_spectrum_distance(x, ref_hi)
    out["hb_data_floor"] = highband_spectrum_distance(test_hi, ref_hi)
    # --- inpainting on 8x8 digits, bottom half hidden, with the cascade's base model
    d8 = downsample(digits, 2)
    model = train_base(d8[tr], sched, steps=CASCADE_SIZES[size]["base_steps"], seed=seed)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 4:, :] = 0
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000).fit(d8[tr].flatten(1).numpy(), labels[tr].numpy())
    inpainted = {}
    for method in ("replace", "repaint"):
        x = inpaint_sample(
            model,
            sched,
            d8[te],
            mask,
            method=method,
            jump_length=c["jump"],
            resamplings=c["r"],
            clip_x0="static",
            generator=g,
        )
        assert torch.equal(x[..., :4, :], d8[te][..., :4, :])
        inpainted[method] = x
    inpainted["dps"] = dps_sample(
        model, sched, d8[te], mask, zeta=DPS_ZETA, clip_x0="static", generator=g
    ).clamp(-1, 1)
    # the model that sees the mask: trained on every digit with each of its four halves hidden
    halves = torch.ones(4, 1, 8, 8)
    halves[0, :, 4:, :], halves[1, :, :4, :], halves[2, :, :, 4:], halves[3, :, :, :4] = 0, 0, 0, 0
    x4 = d8[tr].repeat_interleave(4, dim=0)
    m4 = halves.repeat(len(tr), 1, 1, 1)
    mask_model = train_conditional(x4, masked_condition(x4, m4), sched, steps=c["steps"], seed=seed)
    cond = masked_condition(d8[te], mask.expand(len(te), 1, 8, 8))
    eps_masked = condition_on(mask_model, cond)
    x = ddpm_sample(eps_masked, sched, tuple(d8[te].shape), generator=g, clip_x0="static")
    inpainted["mask"] = paste_known(x, d8[te], mask)
    for method, x in inpainted.items():
        out[f"seam_{method}"] = seam_error(x, d8[te], 4)
        out[f"known_{method}"] = float((x - d8[te])[..., :4, :].abs().mean())
        pred = torch.as_tensor(clf.predict(x.flatten(1).numpy()))
        out[f"agree_{method}"] = float((pred == labels[te]).float().mean())
    return out


CASCADE_SIZES = {  # SR and base training steps, samples, sampling steps, augmentation levels
    "quick": {"steps": 8, "base_steps": 8, "n": 8, "ddim": 4, "aug": 20, "s": 10},
    "fast": {"steps": 120, "base_steps": 120, "n": 48, "ddim": 15, "aug": 20, "s": 10},
    "full": {"steps": 600, "base_steps": 3000, "n": 128, "ddim": 25, "aug": 20, "s": 10},
}
SWEEP = (0, 5, 7, 10, 15)  # the augmented model's sampling levels on the base samples


def run_cascade(size: str, seed: int = 0, sr_steps: int | None = None) -> dict:  # type: ignore[type-arg]
    """A cascade on the digits: base 8x8 samples, then SR 8 -> 16 without and with augmentation
    (``sr_steps``: the SR models' training steps instead of the size's)."""
    c = dict(CASCADE_SIZES[size])
    if sr_steps is not None:
        c["steps"] = sr_steps
    sched = minidiff.cosine_schedule(100)
    digits, _ = load_digits(16)
    perm = torch.randperm(digits.shape[0], generator=torch.Generator().manual_seed(0))
    train_hi, test_hi = digits[perm[:1400]], digits[perm[1400 : 1400 + c["n"]]]
    ref_hi = digits[perm[1400 + c["n"] :]]  # the other held-out digits: the data's spectrum
    t0 = time.process_time()
    sr = train_sr(train_hi, sched, steps=c["steps"], seed=seed)
    sr_aug = train_sr(train_hi, sched, steps=c["steps"], max_aug_level=c["aug"], seed=seed)
    base = train_base(downsample(train_hi, 2), sched, steps=c["base_steps"], seed=seed)
    out: dict = {"cpu_train_cascade": time.process_time() - t0}  # type: ignore[type-arg]
    g = torch.Generator().manual_seed(2000 + seed)
    low = ddim_sample(
        base, sched, (c["n"], 1, 8, 8), steps=c["ddim"], eta=1.0, generator=g, clip_x0="static"
    )
    data = train_hi.flatten(1)

    def measure(name: str, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        out[f"hb_{name}"] = highband_spectrum_distance(x, ref_hi)
        out[f"prec_{name}"] = knn_precision_recall(x.flatten(1), data).precision
        if y is not None:  # how far the output's 2x2 averages moved from the 8x8 condition
            out[f"lowres_gap_{name}"] = float((downsample(x, 2) - y).abs().mean())

    measure("real_floor", test_hi)
    kw = {"steps": c["ddim"], "generator": g}
    for cond, y in (("real", downsample(test_hi, 2)), ("cascade", low)):
        measure(f"{cond}_plain", sr_sample(sr, y, sched, **kw), y)
        measure(f"{cond}_aug", sr_sample(sr_aug, y, sched, aug_level=c["s"], **kw), y)
    for s in SWEEP:  # the level of the comparison above is that comparison's row
        if s == c["s"]:
            out[f"hb_cascade_aug_s{s}"] = out["hb_cascade_aug"]
            out[f"prec_cascade_aug_s{s}"] = out["prec_cascade_aug"]
        else:
            measure(f"cascade_aug_s{s}", sr_sample(sr_aug, low, sched, aug_level=s, **kw))
    # CDM's truncated conditioning augmentation: the base stops at x_s and hands that state over
    _, trunc = cascade_sample(base, sr_aug, sched, c["n"], aug_level=c["s"], truncate=True, **kw)
    measure("cascade_trunc", trunc)
    return out


PHOTO_SIZES = {  # training steps (SR3, colorizer; regressors), batch, test patches, DDIM steps
    "quick": {"steps": 4, "reg_steps": 4, "batch": 8, "n": 4, "ddim": 3},
    "fast": {"steps": 60, "reg_steps": 40, "batch": 16, "n": 24, "ddim": 10},
    "full": {"steps": 600, "reg_steps": 300, "batch": 32, "n": 64, "ddim": 25},
}


def photo_data(n_test: int) -> dict:  # type: ignore[type-arg]
    """Held-out photo patches: 16x16 training crops from the left half of each
    photograph, 32x32 test and reference patches from the right half."""
    g = torch.Generator().manual_seed(0)
    return {
        "train": image_patches(16, 3000, columns=(0.0, 0.5), generator=g),
        "test": image_patches(32, n_test, columns=(0.5, 1.0), generator=g),
        "ref": image_patches(32, 256, columns=(0.5, 1.0), generator=g),
    }


def run_photos(size: str, seed: int = 0) -> dict:  # type: ignore[type-arg]
    """Super-resolution 16 -> 32 and colorization on photo patches (trained on 16x16 crops)."""
    c = PHOTO_SIZES[size]
    sched = minidiff.cosine_schedule(100)
    d = photo_data(c["n"])
    train_x, test, ref = d["train"], d["test"], d["ref"]
    opts = {"batch_size": c["batch"], "seed": seed}
    g = torch.Generator().manual_seed(1000 + seed)
    out: dict = {}  # type: ignore[type-arg]
    # --- super-resolution 16 -> 32: bicubic, posterior mean, SR3, SR3 with back-projection
    t0 = time.process_time()
    sr = at_image_size(train_sr(train_x, sched, steps=c["steps"], **opts), 32)
    reg = at_image_size(train_regressor(train_x, steps=c["reg_steps"], **opts), 32)
    out["cpu_train_sr"] = time.process_time() - t0
    low = downsample(test, 2)
    bic = upsample(low, 32)
    with torch.no_grad():
        mean = reg(bic).clamp(-1, 1)
    kw = {"steps": c["ddim"], "generator": g}
    plain = conditional_sample(sr, bic, sched, **kw).clamp(-1, 1)
    proj = conditional_sample(sr, bic, sched, clip_x0=low_resolution_projection(low), **kw)
    proj = proj.clamp(-1, 1)
    for name, x in (("bicubic", bic), ("regression", mean), ("sr", plain), ("sr_proj", proj)):
        out[f"photo_psnr_{name}"] = float(psnr(x, test).mean())
        out[f"photo_hb_{name}"] = highband_spectrum_distance(x, ref)
    out["photo_hb_floor"] = highband_spectrum_distance(test, ref)
    out["photo_lowres_err_sr_proj"] = float((downsample(proj, 2) - low).abs().mean())
    # --- colorization: gray replicated, posterior mean, diffusion sample
    t0 = time.process_time()
    col = at_image_size(train_colorizer(train_x, sched, steps=c["steps"], **opts), 32)
    creg = at_image_size(train_colour_regressor(train_x, steps=c["reg_steps"], **opts), 32)
    out["cpu_train_colour"] = time.process_time() - t0
    gray = to_grayscale(test)
    with torch.no_grad():
        cmean = ycbcr_to_rgb(gray, creg(gray).clamp(-1, 1))
    samp = colorize(col, gray, sched, **kw)
    target = float(colourfulness(ref).mean())
    out["colour_data"] = target
    for name, x in (("gray", gray.expand(-1, 3, -1, -1)), ("regression", cmean), ("sample", samp)):
        out[f"chroma_err_{name}"] = float(chroma_error(x, test).mean())
        out[f"colourful_{name}"] = float(colourfulness(x).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run at toy size")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--part", choices=("all", "digits", "cascade", "photos"), default="all")
    p.add_argument("--json", type=str, default=None, help="write the rows here")
    p.add_argument("--cascade-sr-steps", type=int, default=None, help="the cascade's SR training")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    size = "quick" if args.quick else args.size
    rows = []
    for seed in range(args.seeds):
        t0 = time.process_time()
        r = run_chapter14(size, seed=seed) if args.part in ("all", "digits") else {}
        if args.part in ("all", "cascade"):
            r.update(run_cascade(size, seed=seed, sr_steps=args.cascade_sr_steps))
        if args.part in ("all", "photos"):
            r.update(run_photos(size, seed=seed))
        r["cpu_s"] = time.process_time() - t0
        rows.append(r)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
    for r in rows:  # derived keys of the photo bars
        if "photo_psnr_sr" in r:
            # paired by seed: the same SR3 model and inputs, sampled with and without the projection
            r["photo_psnr_gain_proj"] = r["photo_psnr_sr_proj"] - r["photo_psnr_sr"]
            r["photo_no_gain"] = 0.0
            for name in ("regression", "sample"):
                r[f"colour_gap_{name}"] = abs(r[f"colourful_{name}"] - r["colour_data"])
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    summary = {}
    for k in keys:
        vals = [r[k] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        summary[k] = (statistics.mean(vals), sd)
        print(f"{k:32s} {statistics.mean(vals):9.4f} ± {sd:.4f}")
    bars = {  # (worse, better): lower is better, so the margin is worse - better
        "SR beats bicubic (high band, dB)": ("hb_bicubic", "hb_sr"),
        "the skip beats the plain eps-U-Net (high band, dB)": ("hb_sr_eps", "hb_sr"),
        "cascade: aug beats no aug (high band, dB)": ("hb_cascade_plain", "hb_cascade_aug"),
        "the mismatch: plain SR is worse on base samples than on real (high band, dB)": (
            "hb_cascade_plain",
            "hb_real_plain",
        ),
        "RePaint beats replacement (seam error)": ("seam_replace", "seam_repaint"),
        "photos: back-projection raises SR3's PSNR (paired, dB)": (
            "photo_psnr_gain_proj",
            "photo_no_gain",
        ),
        "photos: SR3 + projection beats bicubic (high band)": (
            "photo_hb_bicubic",
            "photo_hb_sr_proj",
        ),
        "photos: sample's colourfulness nearer the data's": (
            "colour_gap_regression",
            "colour_gap_sample",
        ),
    }
    bars = {k: v for k, v in bars.items() if v[0] in summary}
    # reported with the same margin/spread rule, but not required of the chapter
    comparisons = {
        "cascade: aug keeps the plain cascade's k-NN precision": (
            "prec_cascade_aug",
            "prec_cascade_plain",
        ),
        "mask model agrees with the classifier more than replacement": (
            "agree_mask",
            "agree_replace",
        ),
        "mask model beats replacement (seam error)": ("seam_replace", "seam_mask"),
        "DPS beats replacement (seam error)": ("seam_replace", "seam_dps"),
        "DPS agrees with the classifier more than replacement": ("agree_dps", "agree_replace"),
        "RePaint agrees with the classifier more than replacement": (
            "agree_repaint",
            "agree_replace",
        ),
    }
    comparisons = {k: v for k, v in comparisons.items() if v[0] in summary}
    ok, results = True, {}
    for name, (worse, better) in {**bars, **comparisons}.items():
        margins = [r[worse] - r[better] for r in rows]
        m, sd = statistics.mean(margins), statistics.stdev(margins) if len(margins) > 1 else 0.0
        spread = max(summary[worse][1], summary[better][1])
        met = min(margins) > 0 and m > spread
        ok &= met or name in comparisons
        results[name] = {
            "worse": worse,
            "better": better,
            "margin": m,
            "margin_sd": sd,
            "margin_min": min(margins),
            "spread": spread,
            "met": met,
        }
        print(
            f"{name:45s} margin {m:.4f} (min {min(margins):.4f}), spread {spread:.4f}: "
            f"{'met' if met else 'NOT met'}"
        )
    if args.json:
        record = {
            "command": "python bench/cond_images.py " + " ".join(argv or sys.argv[1:]),
            "size": size,
            "config": {
                **SIZES[size],
                "cascade": {**CASCADE_SIZES[size], "steps": args.cascade_sr_steps}
                if args.cascade_sr_steps
                else CASCADE_SIZES[size],
            },
            "summary": {k: {"mean": m, "sd": sd} for k, (m, sd) in summary.items()},
            "bars": results,
            "rows": rows,
            "ok": ok,
            "version": minidiff.__version__,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
