"""Separated attribute predictability (SAP, Kumar et al. 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import (
    check_codes_and_factors,
    check_positive_int,
    check_random_state,
)
from latentdiag.metrics.discretize import classes_by_construction, discretize_factors

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
    """Held-out balanced accuracy of a threshold classifier on each single code."""
    from sklearn.tree import DecisionTreeClassifier

    n = X.shape[0]
    perm = rng.permutation(n)
    half = n // 2
    train = perm[: min(half, max_samples)]
    test = perm[half : half + min(n - half, max_samples)]
    scores = np.zeros((X.shape[1], ys.shape[1]))
    for i in range(X.shape[1]):
        x_tr, x_te = X[train, i : i + 1], X[test, i : i + 1]
        if np.all(x_tr == x_tr[0]):
            continue  # a constant code predicts nothing; its score stays 0
        for j in range(ys.shape[1]):
            y_tr, y_te = ys[train, j], ys[test, j]
            n_classes = np.unique(y_tr).shape[0]
            if n_classes < 2:
                continue
            # A few thresholds on one code: enough leaves for every class to get an interval.
            with classes_by_construction():
                model = DecisionTreeClassifier(
                    max_leaf_nodes=2 * n_classes, class_weight="balanced", random_state=0
                ).fit(x_tr, y_tr)
            scores[i, j] = _balanced_accuracy(y_te, model.predict(x_te))
    return scores


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))


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
    threshold classifier (a decision tree with 2 leaves per class, balanced class weights) on
    z_j alone, trained on half the rows. SAP is the mean over factors of the difference
    between the top two scores. Constant factors are left out.

    disentanglement_lib uses a one-vs-rest linear SVM for the discrete scores; on a single
    code it cannot carve out a class lying between two others, so even a perfect code scores
    low there. Any classifier is allowed by the definition; thresholds are the natural one.

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        continuous_factors: Regression (True) or classification (False) scores.
        max_samples: Rows used for training and for testing each SVM (discrete variant).
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
