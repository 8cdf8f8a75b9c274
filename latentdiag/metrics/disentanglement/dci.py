"""DCI (Eastwood & Williams 2018): disentanglement, completeness and informativeness."""

from __future__ import annotations

import functools
import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
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

__all__ = ["MODELS", "DCIResult", "dci", "dci_from_importance", "dci_scores"]


@dataclass(frozen=True)
class DCIResult:
    """DCI scores and the importance matrix they come from.

    Attributes:
        disentanglement: Does each code capture at most one factor? In [0, 1], higher better.
        completeness: Is each factor captured by one code? Importance-weighted over factors, as
            disentanglement_lib computes it (the number papers report). In [0, 1].
        completeness_unweighted: The same, an unweighted mean over factors, as Eastwood &
            Williams' notebook computes it.
        informativeness: Mean held-out accuracy predicting the factors from all codes.
        informativeness_train: The same on the training rows.
        importance: (n_codes, n_factors) relative importance of each code for each factor.
        model: The estimator that gave the importances (``gbt``, ``sklearn-gbt``, ``forest``).
    """

    disentanglement: float
    completeness: float
    informativeness: float
    informativeness_train: float
    importance: np.ndarray
    completeness_unweighted: float = float("nan")
    model: str = "gbt"

    def to_dict(self) -> dict[str, Any]:
        return {
            "disentanglement": self.disentanglement,
            "completeness": self.completeness,
            "completeness_unweighted": self.completeness_unweighted,
            "informativeness": self.informativeness,
            "informativeness_train": self.informativeness_train,
            "importance": self.importance.tolist(),
            "model": self.model,
        }


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy of each slice along ``axis`` (normalised to sum 1), in log base ``base``."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return np.asarray(-terms.sum(axis=axis) / np.log(base))


def dci_scores(importance: Any) -> tuple[float, float, float]:
    """Disentanglement and both completeness conventions from an importance matrix R.

    With ``R`` (codes × factors) and a small ε = 1e-11 against log 0, as disentanglement_lib:

    * disentanglement: Σ_i ρ_i (1 − H_K(P_i·)), P_ij = (R_ij + ε) / Σ_k (R_ik + ε), entropies
      in base K = n_factors, code weights ρ_i = Σ_j R_ij / Σ R;
    * completeness (disentanglement_lib): Σ_j φ_j (1 − H_D(P̃_·j)), P̃_ij = (R_ij + ε) /
      Σ_k (R_kj + ε) in base D = n_codes, factor weights φ_j = Σ_i R_ij / Σ R;
    * completeness, unweighted (Eastwood & Williams' notebook): mean_j (1 − H_D(P̃_·j)).

    An all-zero R weighs every code and factor equally (both scores are then 0); a single
    factor (or code) makes that entropy base 1, and the score is 1.

    Args:
        importance: (n_codes, n_factors) non-negative importances.

    Returns:
        ``(disentanglement, completeness, completeness_unweighted)``, each in [0, 1].

    Raises:
        MetricInputError: ``importance`` is not a non-negative finite 2-D array.
    """
    R = np.asarray(importance, dtype=np.float64)
    if R.ndim != 2 or R.size == 0 or not np.isfinite(R).all() or (R < 0).any():
        raise MetricInputError(
            "importance must be a non-empty 2-D array (n_codes, n_factors) of finite "
            f"non-negative values; got shape {R.shape}."
        )
    n_codes, n_factors = R.shape
    P = R + 1e-11
    per_code = 1.0 - _entropy(P, n_factors, axis=1) if n_factors > 1 else np.ones(n_codes)
    per_factor = 1.0 - _entropy(P, n_codes, axis=0) if n_codes > 1 else np.ones(n_factors)
    W = R if R.sum() > 0 else np.ones_like(R)
    code_weight = W.sum(axis=1) / W.sum()
    factor_weight = W.sum(axis=0) / W.sum()
    return (
        float((per_code * code_weight).sum()),
        float((per_factor * factor_weight).sum()),
        float(per_factor.mean()),
    )


def dci_from_importance(importance: Any) -> tuple[float, float]:
    """Disentanglement and (importance-weighted) completeness from an importance matrix.

    The conventions of disentanglement_lib; :func:`dci_scores` also gives the unweighted
    completeness.

    Raises:
        MetricInputError: ``importance`` is not a non-negative finite 2-D array.
    """
    d, c, _ = dci_scores(importance)
    return d, c


MODELS = ("gbt", "sklearn-gbt", "forest")


def _model(kind: str, random_state: int) -> Any:
    if kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        # Bagged CART trees that see every feature at each split: fast, but their importances
        # are sharper than boosting's (DCI comes out lower than disentanglement_lib's).
        return RandomForestClassifier(
            n_estimators=30, max_features=None, min_samples_leaf=5, random_state=random_state
        )
    if kind == "sklearn-gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(random_state=random_state)
    raise MetricInputError(f"model must be one of {', '.join(MODELS)}; got {kind!r}.")


def _fit_gbt(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's default gradient boosting, in numba (see ``_gbt_numba``)."""
    from latentdiag.metrics.disentanglement._gbt_numba import fit_gbt

    classes, codes = np.unique(y_train, return_inverse=True)
    imp, p_train, p_test = fit_gbt(
        np.ascontiguousarray(x_train, dtype=np.float32),
        codes.astype(np.int64),
        np.ascontiguousarray(x_test, dtype=np.float32),
        int(classes.size),
        100,
        0.1,
        seed,
    )
    return imp, classes[p_train], classes[p_test]


class _FitPool:
    """Worker threads for boosting fits that take the costliest queued fit first.

    The numba fit releases the GIL, so each worker fills a core. Longest first, over every
    DCI of the process at once (the suite's spaces run together), leaves only short fits for
    the end, so the cores finish together.
    """

    def __init__(self, workers: int) -> None:
        self._queue: list[tuple[float, int, Future[Any], Callable[[], Any]]] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        for i in range(workers):
            threading.Thread(target=self._work, name=f"latentdiag-dci_{i}", daemon=True).start()

    def submit(self, cost: float, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._ready:
            heapq.heappush(self._queue, (-cost, next(self._order), future, fn))
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                _, _, future, fn = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)


_POOL: _FitPool | None = None
_POOL_LOCK = threading.Lock()


def _fit_pool() -> _FitPool:
    """The process's pool for boosting fits: one worker per numba thread."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            import numba

            _POOL = _FitPool(max(1, int(numba.get_num_threads())))
        return _POOL


def dci(
    X: Any,
    factors: Any,
    *,
    max_train: int = 10000,
    max_test: int = 5000,
    model: str = "gbt",
    random_state: int | np.random.Generator | None = 0,
) -> DCIResult:
    """Disentanglement, completeness and informativeness of latent codes.

    disentanglement_lib's estimator: for each factor (discrete, or binned into 20 classes when
    it has more than 32 values) scikit-learn's ``GradientBoostingClassifier()`` with its
    defaults predicts it from all codes; its feature importances form column j of the
    importance matrix R, and :func:`dci_scores` turns R into D and C (importance-weighted, as
    disentanglement_lib; the unweighted completeness of Eastwood & Williams' notebook is
    ``completeness_unweighted``). Informativeness is the mean held-out accuracy. Rows are split
    at random: half for training (at most ``max_train``, disentanglement_lib's 10,000), the
    rest for testing (at most ``max_test``, its 5,000).

    ``model="gbt"`` (default) runs that boosting, step for step, in numba, one factor per
    thread of a pool shared by every call (the same importances within float rounding;
    10-25× faster); ``"sklearn-gbt"`` runs scikit-learn's own; ``"forest"`` fits 30 bagged
    trees that consider every feature per split (faster still, but its sharper importances
    give lower D and C than the literature).

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        max_train: Most training rows.
        max_test: Most test rows.
        model: ``"gbt"``, ``"sklearn-gbt"`` or ``"forest"``.
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
    if model not in MODELS:
        raise MetricInputError(f"model must be one of {', '.join(MODELS)}; got {model!r}.")
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    ys = discretize_factors(fac)
    n = arr.shape[0]
    perm = rng.permutation(n)
    half = n // 2
    train = perm[: min(half, check_positive_int(max_train, "max_train"))]
    test = perm[half : half + min(n - half, check_positive_int(max_test, "max_test"))]
    x_train, x_test = arr[train], arr[test]

    def one(j: int) -> tuple[np.ndarray, float, float]:
        y_tr, y_te = ys[train, j], ys[test, j]
        if np.unique(y_tr).shape[0] < 2:
            # A factor constant on the training rows: nothing to learn, trivially predicted.
            return np.zeros(arr.shape[1]), 1.0, float((y_te == y_tr[0]).mean())
        if model == "gbt":
            imp, p_tr, p_te = _fit_gbt(x_train, y_tr, x_test, seed + j)
        else:
            with classes_by_construction():
                fitted = _model(model, seed).fit(x_train, y_tr)
            imp, p_tr, p_te = fitted.feature_importances_, fitted.predict(x_train), None
            p_te = fitted.predict(x_test)
        return np.abs(imp), float((p_tr == y_tr).mean()), float((p_te == y_te).mean())

    factors_idx = range(ys.shape[1])
    if model == "gbt" and ys.shape[1] > 1:
        # The factors' fits go to one pool shared by every DCI of the process, costliest
        # (most trees × codes × rows) first.
        pool = _fit_pool()
        futures = []
        for j in factors_idx:
            classes = np.unique(ys[train, j]).shape[0]
            trees = 1 if classes <= 2 else classes  # per stage
            cost = float(trees * arr.shape[1] * train.shape[0])
            futures.append(pool.submit(cost, functools.partial(one, j)))
        fits = [future.result() for future in futures]
    else:
        fits = [one(j) for j in factors_idx]
    R = np.stack([f[0] for f in fits], axis=1)
    d, c, c_unweighted = dci_scores(R)
    return DCIResult(
        disentanglement=d,
        completeness=c,
        completeness_unweighted=c_unweighted,
        informativeness=float(np.mean([f[2] for f in fits])),
        informativeness_train=float(np.mean([f[1] for f in fits])),
        importance=R,
        model=model,
    )
