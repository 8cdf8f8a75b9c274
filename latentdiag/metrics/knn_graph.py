"""Exact Euclidean k-nearest-neighbour graphs, built once and shared by the graph metrics.

:func:`exact_knn_graph` finds, for every point, its k nearest *other* points by Euclidean
distance, exactly (no approximate index), with ties broken by the smaller index, so a graph is
a deterministic function of the data. On the CPU a fused numba kernel computes distances block
by block and keeps a bounded heap per row (see :mod:`latentdiag.metrics._knn_numba`); no
n × n matrix is ever held. The cost is O(n² · d) time and O(n · k) memory.

One graph serves several neighbourhood sizes: :meth:`KNNGraph.subset` keeps the first k'
neighbours of each row, which are exactly the k' nearest, so a graph at k = 89 also gives
the graphs at 14 and 49 (the scIB metrics' 15, 50 and 90 neighbours, which count the cell
itself; see :mod:`latentdiag.metrics.scib`).

A graph is worth keeping: :meth:`KNNGraph.save` writes it to an ``.npz`` with a digest of the
points it was built on, and :meth:`KNNGraph.load` reads it back, refusing a file written for
other points when they are given.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import check_latents, check_positive_int

__all__ = ["KNNGraph", "exact_knn_graph", "points_digest"]


@dataclass(frozen=True)
class KNNGraph:
    """The k nearest neighbours of every point, the point itself excluded.

    Attributes:
        indices: (n_samples, k) int64 neighbour indices, nearest first; ties by index.
        distances: (n_samples, k) float32 or float64 Euclidean distances, ascending per row.
        k: Neighbours per point.
        source: Digest of the points the graph was built on (:func:`points_digest`), or
            ``""`` when unknown; :meth:`load` compares it with the points it is given.
    """

    indices: np.ndarray
    distances: np.ndarray
    k: int
    source: str = ""

    def __post_init__(self) -> None:
        if self.indices.shape != self.distances.shape or self.indices.ndim != 2:
            raise MetricInputError(
                f"a KNNGraph needs indices and distances of one shape (n_samples, k); found "
                f"{self.indices.shape} and {self.distances.shape}."
            )
        if self.indices.shape[1] != self.k:
            raise MetricInputError(
                f"a KNNGraph with k={self.k} needs {self.k} columns; found {self.indices.shape[1]}."
            )

    @property
    def n_samples(self) -> int:
        return int(self.indices.shape[0])

    def subset(self, k: int) -> KNNGraph:
        """The graph of the first ``k`` neighbours of each point (the k nearest).

        Args:
            k: Neighbours to keep, 1 <= k <= self.k.

        Returns:
            A :class:`KNNGraph` sharing this graph's memory (views, not copies).

        Raises:
            MetricInputError: ``k`` is not an integer in 1..self.k.
        """
        k = check_positive_int(k, "k")
        if k > self.k:
            raise MetricInputError(
                f"this graph holds {self.k} neighbours per point; k={k} cannot be taken from "
                f"it. Build the graph with k >= {k}."
            )
        return KNNGraph(
            indices=self.indices[:, :k], distances=self.distances[:, :k], k=k, source=self.source
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph to ``path`` (an ``.npz``), atomically: a reader never sees half a file.

        Returns:
            The path written.
        """
        from latentdiag.atomic import atomic_path

        out = Path(path)
        with atomic_path(out) as tmp, open(tmp, "xb") as fh:
            np.savez(
                fh,
                format=np.array(_GRAPH_FORMAT),
                indices=self.indices,
                distances=self.distances,
                k=np.array(self.k),
                source=np.array(self.source),
            )
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], X: Any = None) -> KNNGraph:
        """Read a graph written by :meth:`save`.

        Args:
            path: The ``.npz`` file.
            X: The points the graph is to serve. When given, a graph built on other points
                (another digest, another row count) is refused rather than silently reused.

        Raises:
            MetricInputError: The file is missing, not a saved graph, or was built on other
                points than ``X``.
        """
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != _GRAPH_FORMAT:
                    raise MetricInputError(
                        f"{p} is not a k-NN graph written by KNNGraph.save (no "
                        f"'{_GRAPH_FORMAT}' marker); build one with exact_knn_graph(X, k).save()."
                    )
                graph = cls(
                    indices=z["indices"].astype(np.int64, copy=False),
                    distances=z["distances"],
                    k=int(z["k"]),
                    source=str(z["source"]),
                )
        except FileNotFoundError:
            raise MetricInputError(f"no k-NN graph file at {p}.") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            if isinstance(exc, MetricInputError):
                raise
            raise MetricInputError(
                f"{p} cannot be read as a saved k-NN graph ({exc}); it may be truncated. "
                "Build it again with exact_knn_graph(X, k).save()."
            ) from None
        if X is not None:
            arr = check_latents(X, min_samples=2)
            if arr.shape[0] != graph.n_samples:
                raise MetricInputError(
                    f"{p} holds a graph of {graph.n_samples:,} points; X has {arr.shape[0]:,} "
                    "rows. Build the graph for these points."
                )
            digest = points_digest(arr)
            if graph.source and graph.source != digest:
                raise MetricInputError(
                    f"{p} was built on other points than X (digest {graph.source[:12]} there, "
                    f"{digest[:12]} here); reusing it would give wrong neighbours. Build the "
                    "graph for these points."
                )
        return graph


_GRAPH_FORMAT = "latentdiag-knn-graph-1"


def points_digest(X: np.ndarray) -> str:
    """A BLAKE2b digest of the points' shape, dtype and values: what a saved graph was built on."""
    arr = np.ascontiguousarray(X)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _knn_numba(
    X: np.ndarray, k: int, group: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k-NN by the numba kernel; ``group``: neighbours only from other groups (default:
    each point its own group, so every other point is a candidate)."""
    from latentdiag.metrics._knn_numba import knn_sq

    n, d = X.shape
    groups = np.arange(n, dtype=np.int64) if group is None else group.astype(np.int64)
    d8 = -(-d // 8) * 8
    XT = np.zeros((d8, n), dtype=np.float64)  # zero padding adds exactly 0 to every distance
    XT[:d] = X.T
    idx = np.empty((n, k), dtype=np.int64)
    sq = np.empty((n, k), dtype=np.float64)
    knn_sq(XT, groups, k, idx, sq)
    return idx, sq


def _knn_torch(X: np.ndarray, k: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Blocked torch: full rows of squared distances (from differences), stable sort."""
    import torch

    dev = torch.device(device if device.startswith("cuda") else "cpu")
    A = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float64), device=dev)
    n = A.shape[0]
    block = max(1, min(n, (1 << 26) // max(1, n)))  # (block, n) float64 rows: <= 512 MiB
    idx = np.empty((n, k), dtype=np.int64)
    sq = np.empty((n, k), dtype=np.float64)
    with torch.no_grad():
        for r0 in range(0, n, block):
            a = A[r0 : r0 + block]  # (b, d)
            dist = torch.cdist(a, A, compute_mode="donot_use_mm_for_euclid_dist")  # (b, n)
            rows = torch.arange(a.shape[0], device=dev)
            dist[rows, rows + r0] = torch.inf  # the point itself is no neighbour
            # A stable sort of each row puts ties in index order.
            vals, order = torch.sort(dist, dim=1, stable=True)
            idx[r0 : r0 + a.shape[0]] = order[:, :k].cpu().numpy()
            sq[r0 : r0 + a.shape[0]] = (vals[:, :k] ** 2).cpu().numpy()
    return idx, sq


def exact_knn_graph(X: Any, k: int, *, device: str = "cpu") -> KNNGraph:
    """The exact Euclidean k-nearest-neighbour graph of the rows of ``X``.

    Equal to ``sklearn.neighbors.NearestNeighbors(n_neighbors=k, algorithm="brute")`` queried
    without the points themselves (``kneighbors()`` with no argument): the same neighbours,
    distances to ~1e-12 relative. Where scikit-learn orders tied neighbours arbitrarily, this
    breaks every tie (duplicate rows included) by the smaller index.

    Args:
        X: Points, shape (n_samples, n_features).
        k: Neighbours per point, 1 <= k <= n_samples - 1.
        device: ``cpu`` (the numba kernel), ``cuda`` (blocked torch), or ``auto``.

    Returns:
        A :class:`KNNGraph`; distances in X's float dtype (float32 stays float32), computed
        in float64.

    Raises:
        MetricInputError: ``X`` is not a finite 2-D array, or ``k`` is not an integer in
            1..n_samples - 1.
    """
    from latentdiag.metrics.silhouette import resolve_device

    arr = check_latents(X, min_samples=2)
    n = arr.shape[0]
    k = check_positive_int(k, "k")
    if k >= n:
        raise MetricInputError(
            f"k={k} neighbours were asked for, but X has {n:,} rows: each point has only "
            f"{n - 1:,} others. Use k <= {n - 1:,}."
        )
    dev = resolve_device(device)
    if dev == "cpu":
        idx, sq = _knn_numba(arr, k)
    else:
        idx, sq = _knn_torch(arr, k, dev)
    dist = np.sqrt(sq).astype(arr.dtype, copy=False)
    return KNNGraph(indices=idx, distances=dist, k=k, source=points_digest(arr))
