"""How well the label can be read off the latents: cross-validated k-NN and linear probes."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from latentdiag.metrics._validation import (
    check_labels,
    check_latents,
    check_not_constant,
    check_positive_int,
)

__all__ = ["chance_accuracy", "knn_accuracy", "linear_probe_accuracy"]


def chance_accuracy(labels: Any) -> float:
    """Accuracy of always guessing the most frequent label: the floor a probe must beat."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    return float(counts.max() / counts.sum())


def _prepare(
    X: Any, labels: Any, n_splits: int, max_samples: int | None, random_state: int, metric: str
) -> tuple[np.ndarray, np.ndarray, Any]:
    from latentdiag.metrics.silhouette import stratified_sample

    arr = check_latents(X, min_samples=4)
    enc = check_labels(labels, arr.shape[0], min_per_label=2, metric=metric)
    check_not_constant(arr)
    splits = check_positive_int(n_splits, "n_splits", minimum=2)
    codes = enc.codes
    if max_samples is not None and check_positive_int(max_samples, "max_samples") < len(codes):
        rows = stratified_sample(codes, max_samples, random_state=random_state)
        arr, codes = arr[rows], codes[rows]
    from sklearn.model_selection import StratifiedKFold

    # Stratified folds need each label in every fold: fewer folds for tiny labels.
    folds = min(splits, int(np.bincount(codes).min()))
    cv = StratifiedKFold(n_splits=max(2, folds), shuffle=True, random_state=random_state)
    return arr, codes, cv


def _cv_accuracy(model: Any, X: np.ndarray, y: np.ndarray, cv: Any) -> float:
    from sklearn.base import clone
    from threadpoolctl import threadpool_limits

    correct = 0
    # One BLAS/OpenMP thread: the problems are small, and on a busy machine the spinning
    # worker threads of OpenBLAS and OpenMP can slow a fit down by two orders of magnitude.
    with threadpool_limits(limits=1):
        for train, test in cv.split(X, y):
            fitted = clone(model).fit(X[train], y[train])
            correct += int((fitted.predict(X[test]) == y[test]).sum())
    return correct / y.shape[0]


def knn_accuracy(
    X: Any,
    labels: Any,
    *,
    n_neighbors: int = 5,
    n_splits: int = 5,
    max_samples: int | None = None,
    random_state: int = 0,
) -> float:
    """Stratified k-fold cross-validated accuracy of a k-nearest-neighbour classifier.

    Euclidean distances on the latents as they are (no rescaling): it measures whether the
    local geometry groups samples by label. Folds: ``min(n_splits, smallest label count)``.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; each label needs at least 2 samples.
        n_neighbors: k of the classifier.
        n_splits: Cross-validation folds.
        max_samples: Use a stratified random subset of at most this many rows (for speed).
        random_state: Seed of the folds and of the subset.

    Returns:
        Accuracy over all held-out predictions, in [0, 1]; higher is better; compare with
        :func:`chance_accuracy`.

    Raises:
        MetricInputError: Bad shapes or values, fewer than 2 labels, a label with one sample,
            or constant latents.

    References:
        T. Cover and P. Hart, "Nearest neighbor pattern classification", IEEE Trans. Inf.
        Theory 13(1), 1967.
    """
    arr, y, cv = _prepare(X, labels, n_splits, max_samples, random_state, "k-NN accuracy")
    from sklearn.neighbors import KNeighborsClassifier

    k = check_positive_int(n_neighbors, "n_neighbors")
    smallest_train = int(min(len(tr) for tr, _ in cv.split(arr, y)))
    model = KNeighborsClassifier(n_neighbors=min(k, smallest_train))
    return _cv_accuracy(model, arr, y, cv)


def linear_probe_accuracy(
    X: Any,
    labels: Any,
    *,
    n_splits: int = 5,
    C: float = 1.0,
    max_samples: int | None = None,
    random_state: int = 0,
) -> float:
    """Stratified k-fold cross-validated accuracy of a linear probe (logistic regression).

    Features are standardised inside each fold, then an L2-regularised multinomial logistic
    regression is fitted: it measures whether the labels are linearly separable in the latents.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; each label needs at least 2 samples.
        n_splits: Cross-validation folds.
        C: Inverse regularisation strength.
        max_samples: Use a stratified random subset of at most this many rows (for speed).
        random_state: Seed of the folds and of the subset.

    Returns:
        Accuracy over all held-out predictions, in [0, 1]; higher is better; compare with
        :func:`chance_accuracy`.

    Raises:
        MetricInputError: Bad shapes or values, fewer than 2 labels, a label with one sample,
            or constant latents.

    References:
        G. Alain and Y. Bengio, "Understanding intermediate layers using linear classifier
        probes", ICLR workshop 2017.
    """
    arr, y, cv = _prepare(X, labels, n_splits, max_samples, random_state, "the linear probe")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _cv_accuracy(model, arr.astype(np.float64), y, cv)
