"""Mutual information gap (MIG): how much better the best code explains each factor."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import check_codes_and_factors
from latentdiag.metrics.discretize import (
    discrete_entropy,
    discrete_mutual_info,
    discretize_factors,
    histogram_discretize,
)

__all__ = ["mig", "mig_from_mi"]


def mig_from_mi(mi: np.ndarray, entropy: np.ndarray) -> float:
    """MIG from a (codes × factors) MI matrix and the factors' entropies.

    Factors with zero entropy are skipped; with a single code the runner-up MI is 0.
    """
    keep = entropy > 0
    ordered = np.sort(mi, axis=0)[::-1]
    second = ordered[1] if mi.shape[0] > 1 else np.zeros(mi.shape[1])
    gap = (ordered[0] - second)[keep] / entropy[keep]
    return float(gap.mean())


def mig(X: Any, factors: Any, *, n_bins: int = 20) -> float:
    """Mutual information gap between latent codes and ground-truth factors.

    For each factor v_k, the gap between the largest and second-largest I(z_j; v_k) over codes,
    divided by H(v_k); averaged over factors. Codes are discretised into ``n_bins`` equal-width
    bins (disentanglement_lib's histogram discretiser); factors with more than 32 distinct
    values are binned the same way. Works for any number of codes and factors.

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors) (1-D: one factor).
        n_bins: Histogram bins per code.

    Returns:
        MIG in [0, 1]; higher is better (each factor captured by one code alone).

    Raises:
        MetricInputError: Bad shapes or values, or every factor constant.

    References:
        R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of Disentanglement in
        Variational Autoencoders", NeurIPS 2018. F. Locatello et al., "Challenging Common
        Assumptions in the Unsupervised Learning of Disentangled Representations", ICML 2019.
    """
    arr, fac = check_codes_and_factors(X, factors, metric="MIG")
    codes = histogram_discretize(arr, n_bins=n_bins)
    ys = discretize_factors(fac, n_bins=n_bins)
    return mig_from_mi(discrete_mutual_info(codes, ys), discrete_entropy(ys))
