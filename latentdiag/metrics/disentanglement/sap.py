"""Separated attribute predictability (SAP, Kumar et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import (
    check_codes_and_factors,
    check_positive_int,
    check_random_state,
)
from latentdiag.metrics.discretize import discretize_factors

__all__ = ["sap_from_scores", "sap_score"]


def sap_from_scores(scores: np.ndarray) -> float:
    """Mean over factors of the gap between the two most predictive codes.

    Args:
        scores: (n_codes, n_factors) predictability of each factor from each single code.
    """
    ordered = np.sort(scores, axis=0)[::-1]
    second = ordered[1] if scores.shape[0] > 1 else np.zeros(scores.shape[1])
    return float((ordered[0] - second).mean())


def _continuous_scores(X: np.ndarray, fac: np.ndarray) -> np.ndarray:
    """R² of a linear regression of each factor on each single code."""
    Xc = X - X.mean(axis=0)
    Fc = fac - fac.mean(axis=0)
    n = X.shape[0]
    cov = Xc.T @ Fc / (n - 1)  # (codes, factors)
    var_x = (Xc * Xc).sum(axis=0) / (n - 1)
    var_f = (Fc * Fc).sum(axis=0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = cov**2 / (var_x[:, None] * var_f[None, :])
    r2[var_x <= 1e-12, :] = 0.0
    return np.asarray(np.nan_to_num(r2, nan=0.0))


def _discrete_scores(
    X: np.ndarray, ys: np.ndarray, max_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """Held-out balanced accuracy of a threshold classifier on each single code.

    The classifier is ``DecisionTreeClassifier(max_leaf_nodes=2 * n_classes,
    class_weight="balanced")`` of scikit-learn, grown by ``_sap_tree_numba`` (the same
    predictions, without importing scikit-learn).
    """
    from latentdiag.metrics.disentanglement._sap_tree_numba import fit_predict, presort

    n = X.shape[0]
    perm = rng.permutation(n)
    half = n // 2
    train = perm[: min(half, max_samples)]
    test = perm[half : half + min(n - half, max_samples)]
    # Each factor's training classes, as indices into its sorted class values.
    targets = []
    for j in range(ys.shape[1]):
        classes, codes = np.unique(ys[train, j], return_inverse=True)
        if classes.shape[0] >= 2:
            targets.append((j, classes, codes.astype(np.int64), ys[test, j]))
    scores = np.zeros((X.shape[1], ys.shape[1]))
    for i in range(X.shape[1]):
        x_tr, x_te = X[train, i], X[test, i]
        if np.all(x_tr == x_tr[0]):
            continue  # a constant code predicts nothing; its score stays 0
        # Trees split the code as float32; its sorted order is shared by every factor.
        x_tr32 = np.ascontiguousarray(x_tr, dtype=np.float32)
        x_te32 = np.ascontiguousarray(x_te, dtype=np.float32)
        order, sorted_x = presort(x_tr32)
        for j, classes, codes, y_te in targets:
            # A few thresholds on one code: enough leaves for every class to get an interval.
            k = classes.shape[0]
            pred = fit_predict(x_tr32, order, sorted_x, codes, x_te32, k, 2 * k)
            scores[i, j] = _balanced_accuracy(y_te, classes[pred])
    return scores


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (non-negative codes)."""
    counts = np.bincount(y_true)
    hits = np.bincount(y_true[y_pred == y_true], minlength=counts.shape[0])
    present = counts > 0
    return float(np.mean(hits[present] / counts[present]))


def sap_score(
    X: Any,
    factors: Any,
    *,
    continuous_factors: bool = True,
    max_samples: int = 5000,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """SAP: for each factor, how much better the best single code predicts it than the next.

    Continuous factors: the score of code j for factor k is the R² of a linear regression of
    v_k on z_j (0 for a constant code). Discrete factors (``continuous_factors=False``;
    factors with more than 32 values are binned into 20): held-out balanced accuracy of a
    threshold classifier (a decision tree with 2 leaves per class, balanced class weights: the
    same tree scikit-learn's ``DecisionTreeClassifier`` grows, in numba) on z_j alone, trained
    on half the rows. SAP is the mean over factors of the difference between the top two
    scores. Constant factors are left out.

    disentanglement_lib uses a one-vs-rest linear SVM for the discrete scores; on a single
    code it cannot carve out a class lying between two others, so even a perfect code scores
    low there. Any classifier is allowed by the definition; thresholds are the natural one.

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        continuous_factors: Regression (True) or classification (False) scores.
        max_samples: Rows used for training and for testing each tree (discrete variant).
        random_state: Seed of the train/test split (discrete variant).

    Returns:
        SAP in [0, 1]; higher is better.

    Raises:
        MetricInputError: Bad shapes or values, fewer than 4 rows, or every factor constant.

    References:
        A. Kumar, P. Sattigeri, A. Balakrishnan, "Variational Inference of Disentangled Latent
        Concepts from Unlabeled Observations", ICLR 2018.
    """
    arr, fac = check_codes_and_factors(X, factors, metric="SAP", min_samples=4)
    fac = fac[:, ~np.all(fac == fac[:1], axis=0)].astype(np.float64)
    if continuous_factors:
        scores = _continuous_scores(arr, fac)
    else:
        rng = check_random_state(random_state)
        ys = discretize_factors(fac)
        scores = _discrete_scores(arr, ys, check_positive_int(max_samples, "max_samples"), rng)
    return sap_from_scores(scores)
