"""Distances between label centroids, raw and relative to the spread within labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.metrics._validation import check_labels, check_latents, check_not_constant

__all__ = ["CentroidDistances", "centroid_distances", "label_centroids"]


@dataclass(frozen=True)
class CentroidDistances:
    """Pairwise Euclidean distances between the centroids of the labels.

    Attributes:
        labels: Label names, in matrix order.
        matrix: (k, k) distances, zero diagonal.
        mean: Mean over the k(k-1)/2 pairs.
        min: Smallest pairwise distance (the two closest labels).
        rms_radius: Pooled within-label RMS radius, sqrt(mean_i |x_i - c_label(i)|²).
        normalized_mean: ``mean / rms_radius`` (inf when every label is a single point).
        normalized_min: ``min / rms_radius``.
    """

    labels: list[str]
    matrix: np.ndarray
    mean: float
    min: float
    rms_radius: float
    normalized_mean: float
    normalized_min: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the keys of ``separation.centroid_distance``."""
        return {
            "labels": list(self.labels),
            "matrix": self.matrix.tolist(),
            "mean": self.mean,
            "min": self.min,
            "normalized_mean": self.normalized_mean,
            "normalized_min": self.normalized_min,
            "rms_radius": self.rms_radius,
        }


def label_centroids(X: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """(k, d) float64 mean of the rows of each label code 0..k-1 (all labels present)."""
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, X.astype(np.float64, copy=False))
    return sums / np.bincount(codes, minlength=k)[:, None]


def _pairwise(C: np.ndarray) -> np.ndarray:
    diff = C[:, None, :] - C[None, :, :]  # (k, k, d): from differences, exact
    return np.asarray(np.sqrt((diff * diff).sum(axis=2)))


def centroid_distances(
    X: Any, labels: Any, *, label_names: Sequence[str] | None = None
) -> CentroidDistances:
    """Distances between label centroids, and the same divided by the within-label radius.

    Raw distances scale with the latent space: a model can "separate" labels by inflating its
    scale. The normalized figures divide by the pooled within-label RMS radius
    r = sqrt((1/n) Σ_i |x_i − c_{y_i}|²), so they are unchanged when the latents are scaled.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; at least 2 distinct values.
        label_names: Names for integer labels 0..k-1 (else ``str(label)``).

    Returns:
        A :class:`CentroidDistances`. Range [0, ∞); higher separates better. As a rule of
        thumb a normalized mean above ~2 means labels sit further apart than they spread.

    Raises:
        MetricInputError: Bad shapes or values, fewer than 2 labels, or constant latents.

    References:
        The between/within-dispersion idea of T. Caliński and J. Harabasz, "A dendrite method
        for cluster analysis", Commun. Stat. 3(1), 1974.
    """
    arr = check_latents(X, min_samples=2)
    enc = check_labels(labels, arr.shape[0], metric="centroid distances")
    check_not_constant(arr)
    k = enc.n_labels
    C = label_centroids(arr, enc.codes, k)
    M = _pairwise(C)
    upper = M[np.triu_indices(k, 1)]
    resid = arr.astype(np.float64) - C[enc.codes]
    radius = float(np.sqrt((resid * resid).sum(axis=1).mean()))
    mean, low = float(upper.mean()), float(upper.min())
    with np.errstate(divide="ignore", invalid="ignore"):
        norm_mean = mean / radius if radius > 0 else float("inf")
        norm_min = low / radius if radius > 0 else float("inf")
    return CentroidDistances(
        labels=enc.names(label_names),
        matrix=M,
        mean=mean,
        min=low,
        rms_radius=radius,
        normalized_mean=float(norm_mean),
        normalized_min=float(norm_min),
    )
