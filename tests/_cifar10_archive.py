"""A small CIFAR-10 archive in the official python format, for the offline tests of the loader
(``datasets/test_cifar10.py``) and of a GPU run's data (``test_hardware.py``)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from minidiff.data.cifar10 import CIFAR10_FOLDER

N_PER_BATCH = 4


def _batch(seed: int, n: int = N_PER_BATCH) -> dict[bytes, Any]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def make_archive(path: Path) -> dict[str, dict[bytes, Any]]:
    """Write a tar.gz laid out like the official one; return the batches it holds."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {name: _batch(i) for i, name in enumerate(names)}
    meta = {b"label_names": [b"airplane"], b"num_cases_per_batch": N_PER_BATCH}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in [*batches.items(), ("batches.meta", meta)]:
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches
