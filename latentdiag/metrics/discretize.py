"""Discretisation and discrete information measures shared by the disentanglement metrics."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from latentdiag.metrics._validation import check_latents, check_positive_int

__all__ = [
    "classes_by_construction",
    "discrete_entropy",
    "discrete_mutual_info",
    "discretize_factors",
    "histogram_discretize",
]

# A factor with at most this many distinct values is taken as discrete as it is.
MAX_FACTOR_LEVELS = 32


@contextmanager
def classes_by_construction() -> Iterator[None]:
    """Fit classifiers on binned factors without scikit-learn's "looks like regression" guess.

    Binned factors are classes by construction; on few rows scikit-learn sees many classes per
    sample and warns once per fitted tree.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
        yield


def histogram_discretize(X: Any, *, n_bins: int = 20) -> np.ndarray:
    """Bin each column into ``n_bins`` equal-width bins over its own range.

    The discretisation of disentanglement_lib: ``np.digitize(x, np.histogram(x, n_bins)[1][:-1])``,
    so bin indices run from 1 to ``n_bins``. A constant column falls into one bin.

    Args:
        X: Values, shape (n_samples, n_features).
        n_bins: Bins per column.

    Returns:
        (n_samples, n_features) int64 bin indices in 1..n_bins.

    Raises:
        MetricInputError: Bad shape or non-finite values, or ``n_bins`` < 1.
    """
    arr = check_latents(X)
    bins = check_positive_int(n_bins, "n_bins")
    out = np.empty(arr.shape, dtype=np.int64)
    for j in range(arr.shape[1]):
        edges = np.histogram(arr[:, j], bins)[1]
        out[:, j] = np.digitize(arr[:, j], edges[:-1])
    return out


def discretize_factors(
    factors: np.ndarray, *, n_bins: int = 20, max_levels: int = MAX_FACTOR_LEVELS
) -> np.ndarray:
    """Factors as integer classes: kept when a column has few distinct values, else binned.

    Args:
        factors: (n_samples, n_factors) finite values.
        n_bins: Equal-width bins for a continuous factor.
        max_levels: A column with at most this many distinct values is used as it is.

    Returns:
        (n_samples, n_factors) int64 codes 0..(levels - 1) per column.
    """
    out = np.empty(factors.shape, dtype=np.int64)
    for j in range(factors.shape[1]):
        col = factors[:, j]
        values, codes = np.unique(col, return_inverse=True)
        if values.shape[0] <= max_levels:
            out[:, j] = codes.reshape(-1)
        else:
            binned = histogram_discretize(col.reshape(-1, 1), n_bins=n_bins)[:, 0]
            out[:, j] = np.unique(binned, return_inverse=True)[1].reshape(-1)
    return out


def discrete_entropy(ys: np.ndarray) -> np.ndarray:
    """Entropy of each column of discrete codes (n_samples, n_factors), in nats."""
    out = np.empty(ys.shape[1])
    for j in range(ys.shape[1]):
        p = np.unique(ys[:, j], return_counts=True)[1] / ys.shape[0]
        out[j] = -(p * np.log(p)).sum()
    return out


def _encode(column: np.ndarray) -> tuple[np.ndarray, int]:
    values, inverse = np.unique(column, return_inverse=True)
    return inverse.reshape(-1), int(values.shape[0])


def _mi_table(ia: np.ndarray, ka: int, ib: np.ndarray, kb: int) -> float:
    """I(a; b) in nats from two encoded discrete columns, via their contingency table."""
    if ka == 1 or kb == 1:
        return 0.0  # a constant carries no information (and rounding must not say otherwise)
    table = np.bincount(ia * kb + ib, minlength=ka * kb).reshape(ka, kb)
    p = table / ia.shape[0]
    pa = p.sum(axis=1, keepdims=True)
    pb = p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(max(0.0, (p[nz] * np.log(p[nz] / (pa @ pb)[nz])).sum()))


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(n_codes, n_factors) mutual information between discrete codes and factors, in nats.

    Equal to ``sklearn.metrics.mutual_info_score`` for each pair.
    """
    enc_codes = [_encode(codes[:, i]) for i in range(codes.shape[1])]
    enc_factors = [_encode(factors[:, j]) for j in range(factors.shape[1])]
    m = np.empty((codes.shape[1], factors.shape[1]))
    for i, (ia, ka) in enumerate(enc_codes):
        for j, (ib, kb) in enumerate(enc_factors):
            m[i, j] = _mi_table(ia, ka, ib, kb)
    return m
