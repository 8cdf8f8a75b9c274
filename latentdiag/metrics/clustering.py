"""Davies–Bouldin and Calinski–Harabasz indices, equal to scikit-learn's."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import check_labels, check_latents, check_not_constant
from latentdiag.metrics.centroids import _pairwise, label_centroids

__all__ = ["calinski_harabasz_score", "davies_bouldin_score"]


def _check(X: Any, labels: Any, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
    arr = check_latents(X, min_samples=3)
    enc = check_labels(labels, arr.shape[0], max_labels=arr.shape[0] - 1, metric=metric)
    check_not_constant(arr)
    return arr.astype(np.float64), enc.codes, enc.n_labels


def davies_bouldin_score(X: Any, labels: Any) -> float:
    """Davies–Bouldin index: mean over labels of the worst (s_i + s_j) / d(c_i, c_j).

    s_i is the mean distance of label i's points to their centroid c_i. Equal to
    ``sklearn.metrics.davies_bouldin_score`` (including its conventions: 0 when every spread
    or every centroid distance is 0, coinciding centroids ignored).

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; 2 to n_samples - 1 distinct values.

    Returns:
        A value in [0, ∞); lower is better (0: points sit on their centroids).

    Raises:
        MetricInputError: Bad shapes or values, wrong label count, or constant latents.

    References:
        D. L. Davies and D. W. Bouldin, "A Cluster Separation Measure", IEEE TPAMI 1(2), 1979.
    """
    arr, codes, k = _check(X, labels, "the Davies–Bouldin index")
    C = label_centroids(arr, codes, k)
    resid = arr - C[codes]
    dist = np.sqrt((resid * resid).sum(axis=1))
    spread = np.bincount(codes, weights=dist, minlength=k) / np.bincount(codes, minlength=k)
    M = _pairwise(C)
    if np.allclose(spread, 0.0) or np.allclose(M, 0.0):
        return 0.0
    M[M == 0] = np.inf
    scores = ((spread[:, None] + spread[None, :]) / M).max(axis=1)
    return float(scores.mean())


def calinski_harabasz_score(X: Any, labels: Any) -> float:
    """Calinski–Harabasz index (variance ratio): between- over within-label dispersion.

    CH = [Σ_k n_k |c_k − c|² / (k − 1)] / [Σ_i |x_i − c_{y_i}|² / (n − k)]. Equal to
    ``sklearn.metrics.calinski_harabasz_score`` (1.0 when the within dispersion is 0).

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; 2 to n_samples - 1 distinct values.

    Returns:
        A value in [0, ∞); higher is better.

    Raises:
        MetricInputError: Bad shapes or values, wrong label count, or constant latents.

    References:
        T. Caliński and J. Harabasz, "A dendrite method for cluster analysis", Commun. Stat.
        3(1), 1974.
    """
    arr, codes, k = _check(X, labels, "the Calinski–Harabasz index")
    n = arr.shape[0]
    C = label_centroids(arr, codes, k)
    counts = np.bincount(codes, minlength=k)
    between = C - arr.mean(axis=0)
    extra = float((counts * (between * between).sum(axis=1)).sum())
    resid = arr - C[codes]
    intra = float((resid * resid).sum())
    if intra == 0.0:
        return 1.0
    return float(extra * (n - k) / (intra * (k - 1.0)))
