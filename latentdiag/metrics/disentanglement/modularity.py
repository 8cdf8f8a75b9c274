"""Modularity (Ridgeway & Mozer 2018): does each code depend on one factor only?"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import check_codes_and_factors
from latentdiag.metrics.discretize import (
    discrete_mutual_info,
    discretize_factors,
    histogram_discretize,
)

__all__ = ["modularity", "modularity_from_mi"]


def modularity_from_mi(mi: np.ndarray) -> float:
    """Modularity from a (codes × factors) mutual information matrix.

    Per code: 1 − Σ_{k ≠ best} I_k² / ((K − 1) · I_best²), 0 for a code with no information;
    averaged over codes. With a single factor every informative code scores 1.

    Args:
        mi: (n_codes, n_factors) non-negative mutual information.

    Returns:
        Modularity in [0, 1]; higher is better.
    """
    sq = np.asarray(mi, dtype=np.float64) ** 2
    top = sq.max(axis=1)
    K = sq.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (sq.sum(axis=1) - top) / (top * (K - 1)) if K > 1 else np.zeros_like(top)
    score = 1.0 - delta
    score[top <= 1e-20] = 0.0  # an uninformative code (MI 0 up to rounding)
    return float(score.mean())


def modularity(X: Any, factors: Any, *, n_bins: int = 20) -> float:
    """Modularity of latent codes with respect to ground-truth factors.

    Mutual information between each histogram-discretised code (``n_bins`` bins) and each
    factor, then :func:`modularity_from_mi`. Works for any number of codes and factors.

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        n_bins: Histogram bins per code.

    Returns:
        Modularity in [0, 1]; higher is better (1: every code informs about one factor).

    Raises:
        MetricInputError: Bad shapes or values, or every factor constant.

    References:
        K. Ridgeway and M. C. Mozer, "Learning Deep Disentangled Embeddings with the
        F-Statistic Loss", NeurIPS 2018.
    """
    arr, fac = check_codes_and_factors(X, factors, metric="modularity")
    codes = histogram_discretize(arr, n_bins=n_bins)
    ys = discretize_factors(fac, n_bins=n_bins)
    return modularity_from_mi(discrete_mutual_info(codes, ys))
