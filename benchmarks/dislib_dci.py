"""DCI as disentanglement_lib computes it: the peer latentdiag's DCI must reproduce.

A restatement of disentanglement_lib's ``evaluation/metrics/dci.py`` (Apache 2.0, Google
Research): one ``sklearn.ensemble.GradientBoostingClassifier()`` with default settings per
factor, trained on the training codes and scored on the test codes; its absolute
``feature_importances_`` are column j of the importance matrix R (codes × factors), and

* disentanglement = Σ_i (1 − H_K(R_i· + 1e-11)) · Σ_j R_ij / Σ R,
* completeness    = Σ_j (1 − H_D(R_·j + 1e-11)) · Σ_i R_ij / Σ R,

with H the entropy of the normalised vector (``scipy.stats.entropy``), base K = factors and
D = codes (R all zero: the weights are uniform). Used by ``benchmarks/bench_dci.py`` and by the
tests, which compare latentdiag's default DCI with it.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn import ensemble


def importance_gbt(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed=None
) -> tuple[np.ndarray, float, float]:
    """R (codes × factors) and mean train / test accuracy; rows are samples here."""
    n_codes, n_factors = x_train.shape[1], y_train.shape[1]
    R = np.zeros((n_codes, n_factors))
    acc_train, acc_test = [], []
    for j in range(n_factors):
        model = ensemble.GradientBoostingClassifier(random_state=seed)
        model.fit(x_train, y_train[:, j])
        R[:, j] = np.abs(model.feature_importances_)
        acc_train.append(np.mean(model.predict(x_train) == y_train[:, j]))
        acc_test.append(np.mean(model.predict(x_test) == y_test[:, j]))
    return R, float(np.mean(acc_train)), float(np.mean(acc_test))


def disentanglement(R: np.ndarray) -> float:
    per_code = 1.0 - scipy.stats.entropy(R.T + 1e-11, base=R.shape[1])
    W = R if R.sum() != 0 else np.ones_like(R)
    return float(np.sum(per_code * W.sum(axis=1) / W.sum()))


def completeness(R: np.ndarray) -> float:
    per_factor = 1.0 - scipy.stats.entropy(R + 1e-11, base=R.shape[0])
    W = R if R.sum() != 0 else np.ones_like(R)
    return float(np.sum(per_factor * W.sum(axis=0) / W.sum()))


def dci(x_train, y_train, x_test, y_test, seed=None) -> dict[str, float]:
    """disentanglement_lib's scores for codes and discrete factors (rows are samples)."""
    R, train, test = importance_gbt(x_train, y_train, x_test, y_test, seed)
    return {
        "disentanglement": disentanglement(R),
        "completeness": completeness(R),
        "informativeness_train": train,
        "informativeness_test": test,
    }


def messy_codes(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """7 codes that mix 5 discrete factors (3 to 16 values) sparsely, with noise: the kind of
    entangled representation DCI is meant to grade (neither perfect nor random)."""
    rng = np.random.default_rng(seed)
    sizes = [3, 6, 10, 16, 16]
    factors = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    mixing = rng.normal(size=(5, 7)) * (rng.random((5, 7)) < 0.6)
    codes = (factors / np.array(sizes)) @ mixing + 0.25 * rng.normal(size=(n, 7))
    return codes.astype(np.float32), factors
