"""The images of an image run: the data sets, and the order in which a run visits them.

``load_images`` reads a data set as one tensor ``(N, C, H, W)`` in ``[-1, 1]``; ``EpochSampler``
draws the batches of :func:`minidiff.training.images.run` from it: every image once per epoch, in
an order fixed by the seed and the epoch, each process its shard of the global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import check_choice, check_positive_int
from .distributed import DistInfo, rank_seed, shard_size

__all__ = ["DATASETS", "EpochSampler", "load_images"]

DATASETS = ("digits", "patches", "cifar10")


class EpochSampler:
    """The data source of an image run: ``(x0, t, noise)`` for this process.

    Global batch ``k`` (0-based) holds the images at positions ``k B .. (k + 1) B - 1`` of the
    sequence ``perm_0, perm_1, ...`` where ``perm_e`` is a permutation of the data set fixed by
    ``(seed, e)``; ``t ~ U{1..T}`` and ``eps ~ N(0, I)`` are drawn for the whole global batch from
    the loop's generator. Process ``r`` of ``R`` keeps rows ``r B/R .. (r+1) B/R - 1``, so the R
    shards together are exactly the single-process batch. ``position`` (in images) is the data
    position that a resume restores: ``state_dict()`` / ``load_state_dict()`` hold it, so that
    :func:`minidiff.train` saves it in its checkpoints and a resumed run draws the same batches.
    Each call also seeds the global RNG, which draws the
    dropout masks, with :func:`~minidiff.training.distributed.rank_seed` of the step and rank.
    """

    def __init__(
        self,
        images: Tensor,
        T: int,
        global_batch: int,
        info: DistInfo | None = None,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.images, self.T, self.global_batch, self.seed = images, T, global_batch, seed
        info = info if info is not None else DistInfo()
        self.local = shard_size(global_batch, info.world_size)
        self.rank = info.rank
        self.channels_last = channels_last
        self.position = 0
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def state_dict(self) -> dict[str, int]:
        """The sampler's position in the data (the rest is fixed by its arguments)."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from the position of :meth:`state_dict`."""
        if not isinstance(state, dict) or not isinstance(state.get("position"), int):
            raise ValueError(f"state must be a dict from EpochSampler.state_dict(), got {state!r}")
        self.position = state["position"]

    def _perm_of(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            # mod 2**64, what manual_seed takes: any seed, and the same value where it fitted
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
            self._perm, self._epoch = torch.randperm(self.images.shape[0], generator=g), epoch
        return self._perm

    def indices(self, start: int, count: int) -> Tensor:
        """Data-set indices at sequence positions ``start .. start + count - 1``."""
        n = self.images.shape[0]
        out = []
        while count > 0:
            epoch, offset = divmod(start, n)
            take = min(count, n - offset)
            out.append(self._perm_of(epoch)[offset : offset + take])
            start, count = start + take, count - take
        return torch.cat(out)

    def __call__(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        if batch_size != self.global_batch:
            raise ValueError(f"batch_size must be the global batch {self.global_batch}")
        b = self.global_batch
        torch.manual_seed(rank_seed(self.seed, self.position // b, self.rank))  # dropout masks
        idx = self.indices(self.position, b)
        t = torch.randint(1, self.T + 1, (b,), generator=generator)
        noise = torch.randn((b, *self.images.shape[1:]), generator=generator)
        self.position += b
        rows = slice(self.rank * self.local, (self.rank + 1) * self.local)
        x0, eps = self.images[idx[rows]], noise[rows]
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
            eps = eps.contiguous(memory_format=torch.channels_last)
        return x0, t[rows], eps


def load_images(
    name: str, root: str | None = None, download: bool = False, n_patches: int = 20_000
) -> Tensor:
    """The training images ``(N, C, H, W)`` in ``[-1, 1]`` of data set ``name``:
    ``digits`` (scikit-learn, 8x8 grey), ``patches`` (32x32 crops of scikit-learn's sample
    photographs) or ``cifar10`` (``root`` or the cache; downloaded only if ``download``)."""
    from .. import data

    check_choice(name, "name", DATASETS)
    check_positive_int(n_patches, "n_patches")
    if name == "digits":
        return data.load_digits(size=8)[0]
    if name == "patches":
        return data.image_patches(size=32, n=n_patches, generator=torch.Generator().manual_seed(0))
    return data.load_cifar10(root=root, train=True, download=download)[0]
