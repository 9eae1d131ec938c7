"""The command line of image runs: ``python -m minidiff.training {train,sample} ...``.

    python -m minidiff.training train --out runs/digits --model digits --data digits
    python -m minidiff.training train --out runs/digits --steps 4000      # continue, extended
    python -m minidiff.training sample --out runs/digits --n-samples 100  # a grid from the EMA
    torchrun --nproc_per_node 2 -m minidiff.training train --out runs/c ... # several processes

``train`` starts a run in ``--out`` or continues the one there (it says which); a run may be
continued with other ``--steps``, sampling options or ``--time-budget``, nothing else. ``sample``
loads the EMA weights of a run's checkpoint and writes a grid, sampled with the noise schedule the
run was trained with (``train`` continues a run with it too). A mistake (a bad option, a run of
another configuration, other images, a missing data set, a damaged file) ends with one line on
stderr and exit status 2, naming the flag to change; an interruption (Ctrl-C) with status 130,
resumable from the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._config import default_device
from .._validation import OneOf, check_device, check_positive_int
from .checkpoint import check_model_fingerprint, load_checkpoint
from .images import (
    CLIP_CHOICES,
    FREE,
    ImageRunConfig,
    load_images,
    run,
    sample_grid,
    schedule_from_record,
)
from .run_folder import RunFolder

__all__ = ["main", "build_parser"]

PROG = "python -m minidiff.training"


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


_float_or_none.__name__ = "number or 'none'"  # what argparse says of a value it cannot read


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        plain_flag = action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction)
        if "default" in text or action.required or action.default is None or plain_flag:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``train`` and ``sample`` (every option with its help and default)."""
    parser = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{train,sample}", parser_class=_Parser
    )
    fmt = _Help
    train = sub.add_parser(
        "train", help="train a U-Net (or continue the run in --out)", formatter_class=fmt,
        description="Train a DDPM U-Net on images, or continue the run in --out.",
    )  # fmt: skip
    train.add_argument("--out", required=True, help="run folder (checkpoint, log, PNG grids)")
    for f in dataclasses.fields(ImageRunConfig):
        if f.name != "overrides":
            _add_option(train, f)
    train.add_argument("--dropout", type=float, default=None,
                       help="dropout of the U-Net's ResBlocks (default: the preset's)")  # fmt: skip
    train.add_argument("--data-root", default=None,
                       help="CIFAR-10 folder (default: the MINIDIFF_DATA cache)")  # fmt: skip
    train.add_argument("--download", action="store_true", help="download CIFAR-10 if not cached")
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar or start line (the closing summary stays)",
    )
    _add_common(train)

    sample = sub.add_parser(
        "sample", help="write a grid of samples from a run's EMA weights", formatter_class=fmt,
        description="Write a grid of DDIM samples from the EMA weights of a run's checkpoint.",
    )  # fmt: skip
    sample.add_argument("--out", required=True, help="run folder holding checkpoint.pt")
    sample.add_argument("--grid", type=Path, default=None,
                        help="PNG to write (default: OUT/ema_step<step>.png)")  # fmt: skip
    sample.add_argument("--n-samples", type=int, default=64, help="images in the grid")
    sample.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    sample.add_argument("--seed", type=int, default=0, help="seed of the starting noise")
    sample.add_argument("--clip-x0", default="static", choices=CLIP_CHOICES,
                        help="clipping of the predicted clean image at each step")  # fmt: skip
    _add_common(sample)
    return parser


def _add_option(parser: argparse.ArgumentParser, f: dataclasses.Field[Any]) -> None:
    flag = "--" + f.name.replace("_", "-")
    kw: dict[str, Any] = {"default": f.default, "help": f.metadata["help"]}
    if isinstance(f.metadata["check"], OneOf):
        kw["choices"] = f.metadata["check"].choices
    if isinstance(f.default, bool):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    elif f.name in ("grad_clip", "time_budget"):
        parser.add_argument(flag, type=_float_or_none, metavar="X|none", **kw)
    else:
        parser.add_argument(flag, type=type(f.default), **kw)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)"
    )


# The library's messages name Python arguments; the command line says the flag that sets each.
_FLAGS = {
    **{  # overrides has no flag of its own: the command line sets only --dropout in it
        f.name: "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(ImageRunConfig)
        if f.name != "overrides"
    },
    **{name: "--" + name.replace("_", "-") for name in ("dropout", "device", "download")},
    "root": "--data-root",
    "out_dir": "--out",
}
_PHRASES = (
    ("overrides.dropout=", "--dropout="),
    ("with the root argument", "with --data-root"),
    ("(download=False)", "(without --download)"),
    ("use another out_dir", "use another --out"),
    ("images (load_images(", "the images of --data (load_images("),
    ("but model ", "but --model "),
    ("pass the same images (run(config, out_dir, images=...))", "pass the same --data"),
    (
        "pass the same schedule (run(..., schedule=...))",
        "keep the run's --T (the command line continues a run with the schedule it was "
        "trained with)",
    ),
)


def _as_typed(message: str) -> str:
    """``message`` with the argument it starts with, the entries it names as ``name=value``
    (``data.name=value`` in a checkpoint's record, not inside a Python call the message quotes)
    and the phrases of ``_PHRASES`` said as the flags of the command line:
    ``batch_size must be >= 1`` -> ``--batch-size must be >= 1``,
    ``(batch_size=8 there vs 16 now)`` -> ``(--batch-size=8 there vs 16 now)``."""
    first = re.match(r"\w+", message)
    if first and first.group() in _FLAGS and message[first.end() : first.end() + 1] in " :=":
        message = _FLAGS[first.group()] + message[first.end() :]

    def flag(entry: re.Match[str]) -> str:
        name = entry.group(2)
        return _FLAGS[name] + "=" if name in _FLAGS else entry.group()

    for python, typed in _PHRASES:
        message = message.replace(python, typed)
    # a Python call the message quotes (load_images('cifar10', root='data')) stays as it is
    parts = re.split(r"(\b\w+\([^()]*\))", message)
    return "".join(
        part if i % 2 else re.sub(r"(?<![\w.-])(data\.)?(\w+)=", flag, part)
        for i, part in enumerate(parts)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 2 for a mistake, 130 if interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _train(args) if args.command == "train" else _sample(args)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        message = _as_typed(" ".join(str(exc).split()) or type(exc).__name__)
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; run the same command again to continue "
              "from the last checkpoint", file=sys.stderr)  # fmt: skip
        return 130


def _train(args: argparse.Namespace) -> int:
    names = [f.name for f in dataclasses.fields(ImageRunConfig) if f.name != "overrides"]
    overrides = {} if args.dropout is None else {"dropout": args.dropout}
    config = ImageRunConfig(**{n: getattr(args, n) for n in names}, overrides=overrides)
    images = None  # run() loads config.data itself (and records that it did)
    source = None
    if config.data != "cifar10" and (args.data_root is not None or args.download):
        flag = "--data-root" if args.data_root is not None else "--download"
        raise ValueError(
            f"{flag} is for --data cifar10, but --data is {config.data!r} (its images ship with "
            f"the package); add --data cifar10, or leave out {flag}"
        )
    if args.data_root is not None or args.download:
        images = load_images(config.data, root=args.data_root, download=args.download)
        root = "" if args.data_root is None else f", root={args.data_root!r}"
        source = f"load_images({config.data!r}{root})"  # what config.json says of them
    old = _run_record(RunFolder(args.out))  # a run continues with the schedule it was trained with
    same_T = old is not None and "schedule" in old and old.get("T") == config.T
    schedule = schedule_from_record(old) if old is not None and same_T else None
    result = run(
        config, args.out, images=images, device=args.device, progress=not args.no_progress,
        schedule=schedule, images_from=source,
    )  # fmt: skip
    if result.rank == 0 and result.log:
        last = result.log[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f}, {last['images_per_s']:.1f} images/s")
    if result.rank == 0 and result.steps_done < config.steps:
        print(f"time budget reached at step {result.steps_done} of {config.steps}; run the same "
              "command again to continue")  # fmt: skip
    return 0


def _run_record(folder: RunFolder) -> dict[str, Any] | None:
    """The record of the run in ``folder``: its ``config.json``, or, where that is missing or
    cannot be read, the record its checkpoint holds (``None`` for a new run). A damaged
    ``config.json`` is not warned of here: ``run()`` reads it next and says so, once."""
    old = folder.read_config(warn=False)
    if old is not None or not folder.checkpoint.is_file():
        return old
    record = load_checkpoint(folder.checkpoint).get("config", {}).get("data")
    return record if isinstance(record, dict) and "schedule" in record else None


def _sample(args: argparse.Namespace) -> int:
    check_positive_int(args.seed, "seed", minimum=0)
    if args.grid is not None:
        grid_path = args.grid = Path(args.grid).expanduser()
        if grid_path.is_dir() or grid_path.suffix.lower() != ".png":
            raise ValueError(f"--grid must be the path of a .png file, got {str(grid_path)!r}")
        if not grid_path.parent.is_dir():
            raise ValueError(f"--grid {str(grid_path)!r}: its folder does not exist")
    folder = RunFolder(args.out)
    ckpt = load_checkpoint(folder.checkpoint)
    record = ckpt.get("config", {}).get("data")
    if not isinstance(record, dict) or "unet" not in record:
        raise ValueError(f"{str(folder.checkpoint)!r} is not the checkpoint of an image run")
    names = {f.name for f in dataclasses.fields(ImageRunConfig)} - set(FREE)
    config = ImageRunConfig(
        **{k: v for k, v in record.items() if k in names},
        n_samples=args.n_samples, sample_steps=args.sample_steps, clip_x0=args.clip_x0,
    )  # fmt: skip
    from ..nn.unet import UNet

    model = UNet(config.unet_config())
    check_model_fingerprint(model, ckpt["model_fingerprint"], where=str(folder.checkpoint))
    model.load_state_dict(ckpt["ema"]["model"])
    device = check_device(args.device) or default_device()
    schedule = schedule_from_record(record)  # the schedule the run was trained with
    grid = sample_grid(model.to(device).eval(), config, device, seed=args.seed, schedule=schedule)
    path = args.grid or folder.out / f"ema_step{ckpt['step']:07d}.png"
    folder.save_grid(grid, Path(path))
    clip = "" if config.clip_x0 == "none" else f", x0 clipping {config.clip_x0}"
    print(
        f"{config.n_samples} samples of the EMA model at step {ckpt['step']} "
        f"({config.grid_steps} DDIM steps{clip}) written to {path}"
    )
    return 0
