"""Vector data: one feature vector per sample (tables, single-cell counts, multi-omics).

A :class:`VectorDataset` holds an (N, F) matrix — a numpy array, a memory map, an
``h5py.Dataset`` or a scipy CSR matrix — and yields items whose ``image`` slot (the model input
of every dataset) is a (F,) float32 vector. Unlike images, vectors are never resized and never
rescaled to [0, 1]: the values reach the model as they are stored, or standardized per feature
when asked (:func:`feature_stats` computes the statistics in one streaming pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latentdiag.columns import Column
from latentdiag.data.base import UNLABELED, ImageDataset

__all__ = ["VectorDataset", "feature_stats", "is_sparse"]

# Rows read at a time when a pass over the whole matrix is needed (statistics, a check).
_PASS_ROWS = 8192


def is_sparse(matrix: Any) -> bool:
    """Whether ``matrix`` is a scipy sparse matrix or array (without importing scipy)."""
    return hasattr(matrix, "tocsr") and hasattr(matrix, "nnz")


def _dense(block: Any) -> np.ndarray:
    if is_sparse(block):
        return np.asarray(block.toarray())
    return np.asarray(block)


def feature_stats(matrix: Any, *, block_rows: int = _PASS_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (float64) in one pass over row blocks.

    Dense blocks are merged with Chan et al.'s pairwise update (no cancellation for features
    with a large mean); sparse blocks are summed without densifying them.
    Constant features get a standard deviation of 1, so standardizing leaves them at 0.
    """
    n = int(matrix.shape[0])
    f = int(matrix.shape[1])
    mean = np.zeros(f, dtype=np.float64)
    m2 = np.zeros(f, dtype=np.float64)  # sum of squared deviations from the running mean
    seen = 0
    for start in range(0, n, block_rows):
        raw = matrix[start : min(start + block_rows, n)]
        rows = int(raw.shape[0])
        if is_sparse(raw):
            block = raw.astype(np.float64)
            b_mean = np.asarray(block.sum(axis=0)).ravel() / rows
            b_m2 = np.asarray(block.multiply(block).sum(axis=0)).ravel() - rows * b_mean**2
            b_m2 = np.maximum(b_m2, 0.0)
        else:
            dense = np.asarray(raw, dtype=np.float64)
            b_mean = dense.mean(axis=0)
            b_m2 = np.square(dense - b_mean).sum(axis=0)
        total = seen + rows
        delta = b_mean - mean
        mean += delta * (rows / total)
        m2 += b_m2 + delta**2 * (seen * rows / total)
        seen = total
    std = np.sqrt(m2 / max(n, 1))
    std[~(std > 1e-12 * np.maximum(np.abs(mean), 1.0))] = 1.0
    return mean, std


class VectorDataset(ImageDataset):
    """Feature vectors in memory, memory-mapped, in HDF5 or sparse.

    Args:
        vectors: (N, F) numbers: an ndarray, memmap, ``h5py.Dataset`` or scipy sparse matrix
            (CSR is read row by row efficiently; other sparse formats are converted to CSR).
        labels: (N,) ints in 0..k-1, or None.
        label_names: Names of labels 0..k-1 (required with labels).
        factors: (N, f) floats, or None.
        factor_names: Names of the factors (default f0, f1, ...).
        sample_ids: (N,) strings, or None for ``"{source}[{i}]"``.
        source: Description for provenance.
        columns: Per-row metadata columns by name, each of N values, or None.
        label_key: The column of ``columns`` the labels come from, or None.
        feature_names: Names of the F features (table column names, gene names), or None.
        standardize: ``(mean, std)`` per feature to apply, ``x → (x − mean) / std``, or None
            to feed the values as stored.

    Attributes:
        kind: ``"vectors"``.
        n_features: F.
    """

    kind = "vectors"

    def __init__(
        self,
        vectors: Any,
        *,
        labels: np.ndarray | None = None,
        label_names: Sequence[str] | None = None,
        factors: np.ndarray | None = None,
        factor_names: Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
        source: str = "vectors",
        columns: Mapping[str, Column] | None = None,
        label_key: str | None = None,
        feature_names: Sequence[str] | None = None,
        standardize: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if is_sparse(vectors) and not hasattr(vectors, "indptr"):
            vectors = vectors.tocsr()
        shape = tuple(int(s) for s in vectors.shape)
        if len(shape) != 2:
            raise ValueError(f"vectors must be (N, F); got shape {shape}")
        n, f = shape
        self.vectors = vectors
        self.n_features = f
        self.feature_names = None if feature_names is None else [str(x) for x in feature_names]
        if self.feature_names is not None and len(self.feature_names) != f:
            raise ValueError(f"{len(self.feature_names)} feature names for {f} features")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None:
            if label_names is None:
                label_names = [str(i) for i in range(int(self.labels.max(initial=-1)) + 1)]
            self.label_names = [str(x) for x in label_names]
        self.factors = None if factors is None else np.asarray(factors, dtype=np.float32)
        if self.factors is not None:
            names = factor_names or [f"f{i}" for i in range(self.factors.shape[1])]
            self.factor_names = [str(x) for x in names]
        self.sample_ids = sample_ids
        if columns is not None:
            wrong = [c.name for c in columns.values() if len(c) != n]
            if wrong:
                raise ValueError(f"columns {wrong} do not have one value per row")
            self.columns = dict(columns)
        if label_key is not None and (self.columns is None or label_key not in self.columns):
            raise ValueError(f"label_key {label_key!r} is not one of the columns")
        self.label_key = label_key
        self.standardize = None
        if standardize is not None:
            mean, std = (np.asarray(a, dtype=np.float64).reshape(f) for a in standardize)
            self.standardize = (mean, 1.0 / std)
        self.channels = 0
        self.size = 0
        self.source = source
        self._no_factors = np.zeros(0, dtype=np.float32)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return (self.n_features,)

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype of the vectors."""
        return np.dtype(self.vectors.dtype)

    def rows(self, index: np.ndarray | slice) -> np.ndarray:
        """Rows as a dense (len, F) float32 array, standardized when asked.

        Args:
            index: Row positions (any order) or a slice.
        """
        if (
            isinstance(index, slice)
            or is_sparse(self.vectors)
            or isinstance(self.vectors, np.ndarray)
        ):
            block = self.vectors[index]
        else:  # h5py wants increasing indices: read sorted, then restore the order
            idx = np.asarray(index, dtype=np.int64)
            order = np.argsort(idx, kind="stable")
            sorted_idx = idx[order]
            unique, inverse = np.unique(sorted_idx, return_inverse=True)
            read = np.asarray(self.vectors[unique])[inverse]
            block = np.empty_like(read)
            block[order] = read
        if self.standardize is None:
            return np.ascontiguousarray(_dense(block), dtype=np.float32)
        # Centre in float64 first: a feature of 1e4 ± 3 keeps its digits.
        mean, inv_std = self.standardize
        x = (_dense(block).astype(np.float64) - mean) * inv_std
        return np.ascontiguousarray(x, dtype=np.float32)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        return {
            "image": self.rows(np.array([i]))[0],
            "label": UNLABELED if self.labels is None else int(self.labels[i]),
            "factors": self._no_factors if self.factors is None else self.factors[i],
            "sample_id": f"{self.source}[{i}]" if self.sample_ids is None else self.sample_ids[i],
            "index": i,
        }
