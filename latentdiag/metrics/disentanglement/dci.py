"""DCI (Eastwood & Williams 2018): disentanglement, completeness and informativeness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import (
    check_codes_and_factors,
    check_positive_int,
    check_random_state,
)
from latentdiag.metrics.discretize import classes_by_construction, discretize_factors

__all__ = ["DCIResult", "dci", "dci_from_importance"]


@dataclass(frozen=True)
class DCIResult:
    """DCI scores and the importance matrix they come from.

    Attributes:
        disentanglement: Does each code capture at most one factor? In [0, 1], higher better.
        completeness: Is each factor captured by one code? In [0, 1], higher better.
        informativeness: Mean held-out accuracy predicting the factors from all codes.
        informativeness_train: The same on the training rows.
        importance: (n_codes, n_factors) relative importance of each code for each factor.
    """

    disentanglement: float
    completeness: float
    informativeness: float
    informativeness_train: float
    importance: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "disentanglement": self.disentanglement,
            "completeness": self.completeness,
            "informativeness": self.informativeness,
            "informativeness_train": self.informativeness_train,
            "importance": self.importance.tolist(),
        }


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy of each slice along ``axis`` (normalised to sum 1), in log base ``base``."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return np.asarray(-terms.sum(axis=axis) / np.log(base))


def dci_from_importance(importance: Any) -> tuple[float, float]:
    """Disentanglement and completeness from a (codes × factors) importance matrix R.

    Disentanglement: Σ_i ρ_i (1 − H_K(P_i·)), with P_ij = R_ij / Σ_k R_ik, ρ_i = Σ_j R_ij / Σ R
    and entropies in base K = n_factors. Completeness: mean_j (1 − H_D(P̃_·j)) with
    P̃_ij = R_ij / Σ_k R_kj in base D = n_codes. An all-zero R gives 0 and 0; a single factor
    (or code) makes that entropy base 1, and the score is then 1.

    Args:
        importance: (n_codes, n_factors) non-negative importances.

    Returns:
        ``(disentanglement, completeness)``, each in [0, 1].

    Raises:
        MetricInputError: ``importance`` is not a non-negative finite 2-D array.
    """
    R = np.asarray(importance, dtype=np.float64)
    if R.ndim != 2 or R.size == 0 or not np.isfinite(R).all() or (R < 0).any():
        raise MetricInputError(
            "importance must be a non-empty 2-D array (n_codes, n_factors) of finite "
            f"non-negative values; got shape {R.shape}."
        )
    if R.sum() == 0:
        R = np.ones_like(R)  # no information anywhere: uniform, so both scores are 0
    R = R + 1e-11
    n_codes, n_factors = R.shape
    if n_factors > 1:
        per_code = 1.0 - _entropy(R, n_factors, axis=1)
    else:
        per_code = np.ones(n_codes)
    weight = R.sum(axis=1) / R.sum()
    disentanglement = float((per_code * weight).sum())
    if n_codes > 1:
        per_factor = 1.0 - _entropy(R, n_codes, axis=0)
    else:
        per_factor = np.ones(n_factors)
    return disentanglement, float(per_factor.mean())


def _model(kind: str, random_state: int) -> Any:
    if kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        # Bagged CART trees that see every feature at each split: the importances are as
        # sharp as gradient boosting's and the fit is 10-100x faster.
        return RandomForestClassifier(
            n_estimators=30, max_features=None, min_samples_leaf=5, random_state=random_state
        )
    if kind == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=random_state)
    raise MetricInputError(f"model must be 'forest' or 'gbt'; got {kind!r}.")


def dci(
    X: Any,
    factors: Any,
    *,
    max_train: int = 10000,
    max_test: int = 5000,
    model: str = "forest",
    random_state: int | np.random.Generator | None = 0,
) -> DCIResult:
    """Disentanglement, completeness and informativeness of latent codes.

    For each factor (discrete, or binned into 20 classes when it has more than 32 values) a
    tree ensemble predicts it from all codes; its feature importances form column j of the
    importance matrix R, and :func:`dci_from_importance` turns R into D and C. Informativeness
    is the mean held-out accuracy. Rows are split at random: half for training (at most
    ``max_train``), the rest for testing (at most ``max_test``).

    ``model="forest"`` (default) uses 30 bagged trees that consider every feature per split;
    ``"gbt"`` uses scikit-learn's gradient boosting as disentanglement_lib does (much slower).

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        max_train: Most training rows.
        max_test: Most test rows.
        model: ``"forest"`` or ``"gbt"``.
        random_state: Seed of the split and the models.

    Returns:
        A :class:`DCIResult`; all three scores in [0, 1], higher is better.

    Raises:
        MetricInputError: Bad shapes or values, fewer than 4 rows, or every factor constant.

    References:
        C. Eastwood and C. K. I. Williams, "A Framework for the Quantitative Evaluation of
        Disentangled Representations", ICLR 2018.
    """
    arr, fac = check_codes_and_factors(X, factors, metric="DCI", min_samples=4)
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    ys = discretize_factors(fac)
    n = arr.shape[0]
    perm = rng.permutation(n)
    half = n // 2
    train = perm[: min(half, check_positive_int(max_train, "max_train"))]
    test = perm[half : half + min(n - half, check_positive_int(max_test, "max_test"))]
    R = np.zeros((arr.shape[1], ys.shape[1]))
    acc_train, acc_test = [], []
    for j in range(ys.shape[1]):
        y_tr, y_te = ys[train, j], ys[test, j]
        if np.unique(y_tr).shape[0] < 2:
            # A factor constant on the training rows: nothing to learn, trivially predicted.
            acc_train.append(1.0)
            acc_test.append(float((y_te == y_tr[0]).mean()))
            continue
        with classes_by_construction():
            fitted = _model(model, seed).fit(arr[train], y_tr)
        R[:, j] = np.abs(fitted.feature_importances_)
        acc_train.append(float((fitted.predict(arr[train]) == y_tr).mean()))
        acc_test.append(float((fitted.predict(arr[test]) == y_te).mean()))
    d, c = dci_from_importance(R)
    return DCIResult(
        disentanglement=d,
        completeness=c,
        informativeness=float(np.mean(acc_test)),
        informativeness_train=float(np.mean(acc_train)),
        importance=R,
    )
