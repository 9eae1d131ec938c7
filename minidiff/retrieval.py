"""Retrieval-augmented conditioning, small: a model conditioned on its k nearest neighbours.

Retrieval-augmented diffusion (Blattmann et al. 2022, "Semi-parametric neural image synthesis")
keeps a database of training images as embeddings (CLIP's there) and conditions the denoiser on
the embeddings of the ``k`` nearest neighbours of a query, read by cross-attention:

    train    x_i with context = emb(k nearest neighbours of x_i in the database, x_i excluded)
    sample   a query q -> context = emb(k nearest neighbours of q) -> eps_theta(x_t, t, context)

Here the embedding is a fixed linear one, the first ``dim`` principal components of the
training images' pixels (:meth:`NeighbourRetriever.fit`), and the search is exact Euclidean k-NN.
The context ``(B, k, dim)`` goes to a U-Net built with ``context_dim = dim``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import check_positive_int, check_tensor, index_tensor, value_checks_enabled
from .tensors import pairwise_sq_dists

__all__ = ["NeighbourRetriever"]


class NeighbourRetriever:
    """Exact k-NN over a database of embeddings ``(N, dim)``; embeddings by a fixed PCA.

    Build it with :meth:`fit` from images ``(N, C, H, W)``; :meth:`embed` maps images to
    ``(B, dim)``, :meth:`neighbours` returns indices ``(B, k)``, :meth:`context` the neighbours'
    embeddings ``(B, k, dim)`` (nearest first).
    """

    def __init__(self, mean: Tensor, components: Tensor, database: Tensor, k: int) -> None:
        self.mean, self.components = mean, components  # (P,), (P, dim)
        self.database = database  # (N, dim)
        self.k = check_positive_int(k, "k")
        if k >= database.shape[0]:
            raise ValueError(f"k must be smaller than the database ({database.shape[0]}), got {k}")

    @classmethod
    def fit(cls, images: Tensor, dim: int = 16, k: int = 4) -> NeighbourRetriever:
        """PCA of the flattened ``images (N, C, H, W)`` to ``dim`` components; database = them.

        Every argument is checked before the SVD (``k`` too: ``1 <= k < N``).
        """
        x = check_tensor(images, "images", min_dim=2, finite=True).flatten(1).double()
        check_positive_int(dim, "dim")
        check_positive_int(k, "k")
        if dim > min(x.shape):
            raise ValueError(f"dim must be <= min(N, pixels) = {min(x.shape)}, got {dim}")
        if k >= x.shape[0]:
            raise ValueError(f"k must be smaller than the database ({x.shape[0]}), got {k}")
        mean = x.mean(0)
        # right singular vectors = principal directions, largest variance first
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        components = vh[:dim].T.contiguous()
        database = ((x - mean) @ components).float()
        return cls(mean.float(), components.float(), database, k)

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def embed(self, images: Tensor) -> Tensor:
        """``images (B, C, H, W)`` -> ``(B, dim)`` principal-component coordinates (finite
        ``images``; NaN or inf is a ``ValueError``)."""
        x = check_tensor(images, "images", min_dim=2, finite=True).flatten(1)
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"images have {x.shape[1]} pixels each but the database was fitted on "
                f"{self.mean.shape[0]}"
            )
        return (x.float() - self.mean) @ self.components

    def neighbours(self, queries: Tensor, exclude: Tensor | None = None) -> Tensor:
        """Indices ``(B, k)`` of the nearest database entries to ``queries (B, dim)``.

        ``queries`` must be finite. ``exclude``: an integer tensor ``(B,)``, a database index in
        ``0..N-1`` per query to leave out (the query itself, in training); anything else (a
        float, an int, a negative index) is a ``TypeError``/``ValueError`` naming ``exclude``.
        """
        q = check_tensor(queries, "queries", dim=2, finite=True)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (B, {self.dim}), got {tuple(q.shape)}")
        if exclude is not None:
            exclude = self._exclude(exclude, q.shape[0])
        d = pairwise_sq_dists(q.float(), self.database)
        if exclude is not None:
            d[torch.arange(q.shape[0]), exclude.to(d.device)] = float("inf")
        return d.topk(self.k, dim=1, largest=False).indices

    def _exclude(self, exclude: object, batch: int) -> Tensor:
        """``exclude`` checked: an integer tensor ``(batch,)`` of database indices ``0..N-1``."""
        n = self.database.shape[0]
        what = f"database indices in 0..{n - 1}"
        ex = index_tensor(exclude, "exclude", batch, what, allow_int=False)
        if ex.numel() and value_checks_enabled():
            lo, hi = torch.stack(torch.aminmax(ex)).tolist()
            if lo < 0 or hi >= n:
                raise ValueError(f"exclude must hold {what}, got values in {lo}..{hi}")
        return ex

    def context(self, queries: Tensor, exclude: Tensor | None = None) -> Tensor:
        """The neighbours' embeddings ``(B, k, dim)``, nearest first: the U-Net's context."""
        return self.database[self.neighbours(queries, exclude)]
