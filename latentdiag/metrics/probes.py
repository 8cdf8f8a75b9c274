"""How well the label can be read off the latents: cross-validated k-NN and linear probes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import (
    check_labels,
    check_latents,
    check_not_constant,
    check_positive_int,
)

__all__ = [
    "LogisticModel",
    "chance_accuracy",
    "fit_logistic",
    "knn_accuracy",
    "linear_probe_accuracy",
    "stratified_folds",
]


def chance_accuracy(labels: Any) -> float:
    """Accuracy of always guessing the most frequent label: the floor a probe must beat."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    return float(counts.max() / counts.sum())


def stratified_folds(codes: np.ndarray, n_splits: int, random_state: int) -> np.ndarray:
    """The test fold of each row, as ``StratifiedKFold(n_splits, shuffle=True, random_state)``.

    scikit-learn's own assignment, step for step (so the folds, and the probes' accuracies,
    are the same): classes numbered by first appearance; each class's rows get fold numbers
    in blocks sized by a round robin over the sorted labels, then shuffled by a
    ``RandomState(random_state)``, class after class.

    Args:
        codes: (n,) integer labels; every label needs at least ``n_splits`` rows.
        n_splits: Folds, >= 2.
        random_state: Seed of the shuffle.

    Returns:
        (n,) int64 fold index of each row, 0..n_splits-1.
    """
    y = np.asarray(codes)
    _, first, inverse = np.unique(y, return_index=True, return_inverse=True)
    _, by_appearance = np.unique(first, return_inverse=True)
    encoded = by_appearance[inverse.reshape(-1)]
    n_classes = first.shape[0]
    ordered = np.sort(encoded)
    allocation = np.asarray(
        [np.bincount(ordered[i::n_splits], minlength=n_classes) for i in range(n_splits)]
    )
    rng = np.random.RandomState(random_state)
    folds = np.empty(y.shape[0], dtype=np.int64)
    for k in range(n_classes):
        of_class = np.arange(n_splits).repeat(allocation[:, k])
        rng.shuffle(of_class)
        folds[encoded == k] = of_class
    return folds


def _prepare(
    X: Any, labels: Any, n_splits: int, max_samples: int | None, random_state: int, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from latentdiag.metrics.silhouette import stratified_sample

    arr = check_latents(X, min_samples=4)
    enc = check_labels(labels, arr.shape[0], min_per_label=2, metric=metric)
    check_not_constant(arr)
    splits = check_positive_int(n_splits, "n_splits", minimum=2)
    codes = enc.codes
    if max_samples is not None and check_positive_int(max_samples, "max_samples") < len(codes):
        rows = stratified_sample(codes, max_samples, random_state=random_state)
        arr, codes = arr[rows], codes[rows]
    # Stratified folds need each label in every fold: fewer folds for tiny labels.
    folds = min(splits, int(np.bincount(codes).min()))
    return arr, codes.astype(np.int64), stratified_folds(codes, max(2, folds), random_state)


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
    from latentdiag.metrics.knn_graph import _knn_numba

    arr, y, folds = _prepare(X, labels, n_splits, max_samples, random_state, "k-NN accuracy")
    k = check_positive_int(n_neighbors, "n_neighbors")
    smallest_train = int(y.shape[0] - np.bincount(folds).max())
    k = min(k, smallest_train)
    # One pass for every fold: each row's k nearest rows outside its own (test) fold are its
    # neighbours among that fold's training rows.
    idx, _ = _knn_numba(np.asarray(arr, dtype=np.float64), k, group=folds)
    n_labels = int(y.max()) + 1
    votes = np.zeros((y.shape[0], n_labels), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(y.shape[0]), k), y[idx].reshape(-1)), 1)
    predicted = votes.argmax(axis=1)  # a tied vote goes to the smallest label
    return float((predicted == y).mean())


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
    The folds and the model are scikit-learn's (``StratifiedKFold(shuffle=True)``,
    ``StandardScaler`` then ``LogisticRegression(C=C)``), fitted here by Newton's method to
    the exact optimum (:func:`fit_logistic`), without importing scikit-learn.

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
    arr, y, folds = _prepare(X, labels, n_splits, max_samples, random_state, "the linear probe")
    C = float(C)
    if not np.isfinite(C) or C <= 0:
        raise MetricInputError(f"C must be a positive number; got {C!r}.")
    X64 = np.asarray(arr, dtype=np.float64)
    n_labels = int(y.max()) + 1
    theta: np.ndarray | None = None
    correct = 0
    for fold in range(int(folds.max()) + 1):
        test = folds == fold
        train = ~test
        x_tr, y_tr = X64[train], y[train]
        classes, y_idx = np.unique(y_tr, return_inverse=True)
        mean = x_tr.mean(axis=0)
        var = x_tr.var(axis=0)
        # scikit-learn's test for a constant feature (its variance within rounding of 0).
        eps = np.finfo(np.float64).eps
        m = x_tr.shape[0]
        scale = np.sqrt(var)
        scale[var <= m * eps * var + (m * mean * eps) ** 2] = 1.0
        if classes.shape[0] != n_labels:
            theta = None  # another set of classes: nothing to start from
        model, theta = fit_logistic((x_tr - mean) / scale, y_idx, classes.shape[0], C, start=theta)
        predicted = classes[model.predict((X64[test] - mean) / scale)]
        correct += int((predicted == y[test]).sum())
    return correct / y.shape[0]


@dataclass(frozen=True)
class LogisticModel:
    """A fitted L2-regularised logistic regression: ``coef`` (K, d) and ``intercept`` (K,),
    or (1, d) and (1,) for two classes (the logit of class 1, as scikit-learn's)."""

    coef: np.ndarray
    intercept: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices 0..K-1; a tie goes to the smaller index."""
        scores = X @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            return (scores[:, 0] > 0).astype(np.int64)
        return np.asarray(scores.argmax(axis=1), dtype=np.int64)


def fit_logistic(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    C: float = 1.0,
    *,
    tol: float = 1e-10,
    start: np.ndarray | None = None,
) -> tuple[LogisticModel, np.ndarray]:
    """scikit-learn's ``LogisticRegression(C=C)`` model, fitted to its exact optimum.

    Minimises ``C · Σ_i CE_i + ½ ||W||²`` (intercepts not penalised): a binary logistic loss
    on one weight vector for two classes, the multinomial loss on K vectors for more, as
    scikit-learn does. The objective is strictly convex in W, so its minimiser is unique;
    scikit-learn's L-BFGS stops near it (gradient tolerance 1e-4), this Newton-CG iterates
    until the gradient of the mean loss is below ``tol``, typically in 8-15 steps, each a few
    conjugate-gradient solves with exact Hessian-vector products.

    Args:
        X: (n, d) float64 features.
        y: (n,) int64 class indices 0..n_classes-1.
        n_classes: K >= 2.
        C: Inverse regularisation strength.
        tol: Stop when the largest gradient entry of the mean objective is below this.
        start: (K, d + 1) weights and intercepts to start from (the second value returned
            by an earlier fit: nearby problems, such as cross-validation folds, then take
            fewer steps); zeros by default.

    Returns:
        The model, and its (K, d + 1) weights and intercepts for ``start``.
    """
    n, d = X.shape
    K = 1 if n_classes == 2 else n_classes
    Y = (y[:, None] == (np.arange(K) + (1 if K == 1 else 0))[None, :]).astype(np.float64)
    lam = 1.0 / (C * n)  # the penalty of the mean loss
    Xa = np.empty((n, d + 1))  # the features and a column of ones (the intercept's)
    Xa[:, :d] = X
    Xa[:, d] = 1.0
    Xa2 = Xa * Xa
    penalty = np.full(d + 1, lam)
    penalty[d] = 0.0  # the intercept is not penalised
    theta = np.zeros((K, d + 1)) if start is None else start.copy()

    def probabilities(t: np.ndarray) -> tuple[np.ndarray, float]:
        Z = Xa @ t.T
        if K == 1:
            z = Z[:, 0]
            # log(1 + e^z) - y z, stably
            loss = float(np.sum(np.logaddexp(0.0, z)) - np.dot(Y[:, 0], z))
            P = 0.5 * (1.0 + np.tanh(0.5 * Z))
        else:
            top = Z.max(axis=1, keepdims=True)
            E = np.exp(Z - top)
            S = E.sum(axis=1, keepdims=True)
            loss = float(np.sum(np.log(S[:, 0]) + top[:, 0]) - np.vdot(Z, Y))
            P = E / S
        return P, loss / n + 0.5 * lam * float(np.vdot(t[:, :d], t[:, :d]))

    def gradient(t: np.ndarray, P: np.ndarray) -> np.ndarray:
        return np.asarray(((P - Y).T @ Xa) / n + penalty * t)

    def hess_vec(P: np.ndarray, v: np.ndarray) -> np.ndarray:
        dZ = Xa @ v.T
        if K == 1:
            M = P * (1.0 - P) * dZ
        else:
            M = P * (dZ - np.einsum("ik,ik->i", P, dZ)[:, None])
        return np.asarray((M.T @ Xa) / n + penalty * v)

    P, value = probabilities(theta)
    for _ in range(100):
        g = gradient(theta, P)
        g_max = float(np.abs(g).max())
        if g_max < tol:
            break
        # Truncated conjugate gradients on H p = -g, preconditioned by H's diagonal (H is
        # positive semi-definite; g lies in its range, as the intercepts' gradients of the
        # multinomial loss sum to 0).
        diag = ((P * (1.0 - P)).T @ Xa2) / n + penalty
        inv_diag = 1.0 / np.maximum(diag, 1e-12)
        step = np.zeros_like(theta)
        r = -g
        z = inv_diag * r
        q = z.copy()
        rz = float(np.vdot(r, z))
        stop = min(0.5, np.sqrt(np.sqrt(float(np.vdot(r, r))))) * np.sqrt(float(np.vdot(r, r)))
        for _cg in range(max(50, 2 * theta.size)):
            Hq = hess_vec(P, q)
            curv = float(np.vdot(q, Hq))
            if curv <= 1e-300:
                break
            alpha = rz / curv
            step += alpha * q
            r -= alpha * Hq
            if np.sqrt(float(np.vdot(r, r))) <= stop:
                break
            z = inv_diag * r
            rz_new = float(np.vdot(r, z))
            q = z + (rz_new / rz) * q
            rz = rz_new
        if not np.any(step):
            step = -g
        slope = float(np.sum(g * step))
        if -slope <= 1e-13 * abs(value):
            break  # the decrease left is below the loss's float precision: the optimum
        size = 1.0
        for _ls in range(60):
            P_new, value_new = probabilities(theta + size * step)
            if value_new <= value + 1e-4 * size * slope:
                break
            if g_max < 1e-6:
                # So near the optimum Newton's full step is exact to rounding: a rejected one
                # means the loss's rounding noise exceeds what is left to gain.
                size = 0.0
                break
            size *= 0.5
        else:
            size = 0.0
        if size == 0.0:
            break
        theta = theta + size * step
        P, value = P_new, value_new
    return LogisticModel(coef=theta[:, :d].copy(), intercept=theta[:, d].copy()), theta
