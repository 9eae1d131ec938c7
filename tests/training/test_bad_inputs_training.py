"""Bad input to training (``minidiff.training``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _bad_inputs import (
    CKPT,
    INF,
    NAN,
    SCHED,
    Fn,
    Lin,
    T,
    X,
    bad_callable,
    bad_choice,
    bad_device,
    bad_flag,
    bad_generator,
    bad_int,
    bad_number,
    eps_model,
    loss_fn,
    table_tests,
    with_value,
)

import minidiff as md
from minidiff.nn.unet import UNet
from minidiff.training import learning_rate
from minidiff.training.distributed import shard_size
from minidiff.training.images import ImageRunConfig, load_images, run, sample_grid

IMAGE_RUN = ImageRunConfig(
    model="tiny", steps=1, batch_size=4, warmup_steps=0, T=T, sample_every=1, n_samples=2,
    sample_steps=2,
)  # fmt: skip
IMAGES = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _image_run(**kw: object) -> object:
    """run() in a new folder below the table's temporary one (each call starts a run)."""
    out = Path(tempfile.mkdtemp(dir=Path(CKPT).parent))
    return run(**{"config": IMAGE_RUN, "out_dir": out, "progress": False, **kw})  # type: ignore[arg-type]


FNS: list[Fn] = [
    Fn(
        "train",
        lambda **kw: md.train(Lin(), loss_fn, X, progress=False, **kw),
        {
            "steps": 1,
            "batch_size": 2,
            "lr": 1e-3,
            "weight_decay": 0.0,
            "ema_decay": 0.9,
            "grad_clip": 1.0,
            "warmup_steps": 0,
            "generator": None,
            "seed": 0,
            "device": "cpu",
            "checkpoint_every": None,
        },
        {
            "steps": bad_int(),
            "batch_size": bad_int(),
            "lr": bad_number(),
            "weight_decay": bad_number(),
            "ema_decay": bad_number() + [("one", 1.0)],
            "grad_clip": bad_number(optional=True),
            "warmup_steps": bad_int(minimum=0),
            "generator": bad_generator(),
            "seed": bad_int(minimum=0),
            "device": bad_device(),
            "checkpoint_every": bad_int(optional=True),
            "checkpoint_path": [
                ("int", 3),
                ("empty", ""),
                ("bytes", b"x.pt"),
                ("directory", "."),
                ("below-a-file", __file__ + "/ckpt.pt"),
            ],
        },
    ),
    Fn(
        "train(model, loss_fn, data)",
        lambda **kw: md.train(**{"steps": 1, "batch_size": 2, "progress": False, **kw}),
        {"model": Lin(), "loss_fn": loss_fn, "data": X},
        {
            "model": [("None", None), ("function", eps_model)],
            "loss_fn": bad_callable(),
            "data": [
                ("None", None),
                ("str", "moons"),
                ("nan", with_value(X, NAN)),
                ("inf", with_value(X, INF)),
                ("empty", torch.zeros(0, 2)),
            ],
        },
    ),
    Fn(
        "train_toy",
        lambda **kw: md.train_toy(**{"steps": 1, "batch_size": 4, "progress": False, **kw}),
        {"data": X},
        {
            "data": [
                ("None", None),
                ("int", 3),
                ("list", X.tolist()),
                ("int-dtype", X.round().long()),
                ("shape(4,)", X[:, 0]),
                ("shape(4, 2, 1)", X[:, :, None]),
                ("typo", "moon"),
                ("function", lambda n: X),  # takes no generator
            ],
            "schedule": [("str", "linear"), ("int", 1000), ("betas", SCHED.betas)],
        },
    ),
    Fn(
        "EMA",
        md.EMA,
        {"model": Lin(), "decay": 0.9},
        {
            "model": [("None", None), ("str", "model")],
            "decay": bad_number() + [("one", 1.0)],
            "warmup": bad_flag(),
        },
        names={"decay": "decay"},
    ),
    Fn(
        "learning_rate",
        learning_rate,
        {"step": 5, "steps": 10, "lr": 1e-3, "warmup_steps": 2, "schedule": "cosine"},
        {
            "step": bad_int() + [("past-the-end", 11)],
            "steps": bad_int(),
            "lr": bad_number(),
            "warmup_steps": bad_int(minimum=0),
            "schedule": bad_choice(),
        },
    ),
    Fn(
        "save_checkpoint",
        lambda path: md.save_checkpoint(path, step=1),
        {"path": CKPT},
        {
            "path": [
                ("int", 3),
                ("None", None),
                ("directory", str(Path(CKPT).parent)),
                ("below-a-file", __file__ + "/ckpt.pt"),
            ]
        },
    ),
    Fn(
        "run",
        _image_run,
        {"images": IMAGES, "device": "cpu", "schedule": SCHED},
        {
            "config": [("None", None), ("str", "tiny")],
            "out_dir": [("int", 3), ("None", None), ("file", __file__)],
            "images": [
                ("str", "digits"),
                ("int-dtype", (IMAGES * 100).to(torch.uint8)),
                ("nan", with_value(IMAGES, NAN)),
                ("pixels", IMAGES * 127.5 + 127.5),
                ("shape(4, 3, 8, 8)", IMAGES.expand(4, 3, 8, 8)),
            ],
            "device": bad_device(),
            "schedule": [("str", "linear"), ("int", T), ("other-T", md.linear_schedule(2 * T))],
            "images_from": [("int", 3)],
        },
    ),
    Fn(
        "sample_grid",
        sample_grid,
        {
            "model": UNet("tiny").eval(),
            "config": IMAGE_RUN,
            "device": "cpu",
            "seed": 3,
            "schedule": SCHED,
        },
        {
            "model": bad_callable(),
            "config": [("None", None), ("str", "tiny")],
            "seed": bad_int(minimum=0) + [("2**64", 2**64), ("2**63", 2**63)],
            "device": bad_device(),
            "schedule": [("str", "linear"), ("other-T", md.linear_schedule(2 * T))],
        },
    ),
    Fn(
        "load_images",
        load_images,
        {"name": "digits"},
        {"name": bad_choice() + [("mnist", "mnist")]},
    ),
    Fn(
        "load_checkpoint",
        md.load_checkpoint,
        {"path": CKPT},
        {"path": [("int", 3), ("None", None), ("directory", str(Path(CKPT).parent))]},
    ),
    Fn(
        "shard_size",
        shard_size,
        {"global_batch": 8, "world_size": 2},
        {"global_batch": bad_int(), "world_size": bad_int()},
        names={"global_batch": "batch_size"},
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)
