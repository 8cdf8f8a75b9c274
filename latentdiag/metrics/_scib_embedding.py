"""The scIB metrics on the latents themselves: batch ASW, BRAS, isolated labels, PCR, NMI/ARI.

Public through :mod:`latentdiag.metrics.scib`, which documents the conventions.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._scib_checks import check_groups as _groups
from latentdiag.metrics._validation import check_labels, check_latents, check_not_constant

Metric = Literal["euclidean", "cosine"]
Between = Literal["nearest", "mean_other", "furthest"]


def _distance_sums(X: np.ndarray, codes: np.ndarray, k: int, metric: Metric) -> np.ndarray:
    """(n, k) sums of distances from each row to the rows of each group."""
    if metric == "euclidean":
        from latentdiag.metrics._silhouette_sums import label_bounds, label_sums_numba

        order = np.argsort(codes, kind="stable")
        bounds = label_bounds(codes[order], k)
        sums = np.empty((X.shape[0], k))
        sums[order] = label_sums_numba(X[order], None, bounds, bounds, k, None)
        return sums
    # Cosine distance 1 - u_i·u_j of unit rows: Σ_{j in c} = n_c - u_i · Σ_{j in c} u_j.
    U = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    onehot = np.zeros((X.shape[0], k))
    onehot[np.arange(X.shape[0]), codes] = 1.0
    S = onehot.T @ U  # (k, d) sums of the unit rows of each group
    return np.maximum(onehot.sum(axis=0)[None, :] - U @ S.T, 0.0)


def _silhouette_general(
    X: np.ndarray, codes: np.ndarray, metric: Metric, between: Between
) -> np.ndarray:
    """Per-row silhouette with scib-metrics' choices of distance and of the other-group term."""
    k = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    sums = _distance_sums(X, codes, k, metric)
    rows = np.arange(codes.shape[0])
    own = counts[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[rows, codes] / (own - 1)
        if between == "mean_other":
            b = (sums.sum(axis=1) - sums[rows, codes]) / (codes.shape[0] - own)
        else:
            means = sums / counts[None, :]
            means[rows, codes] = np.inf if between == "nearest" else -np.inf
            b = means.min(axis=1) if between == "nearest" else means.max(axis=1)
        s = (b - a) / np.maximum(a, b)
    return np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)


def _batch_asw(
    X: Any, labels: Any, batch: Any, metric_name: str, score: Any, rescale: bool
) -> float:
    """Per label: 1 - |silhouette by batch| (or |s| unscaled), mean per label, mean of those."""
    arr = check_latents(X, min_samples=3)
    check_not_constant(arr)
    # One label is allowed (all cells one type): the batches are compared within it.
    y = check_labels(labels, arr.shape[0], name="labels", min_labels=1, metric=metric_name)
    b = _groups(batch, arr.shape[0], name="batch", metric=metric_name)
    means = []
    for c in range(y.n_labels):
        mask = y.codes == c
        sub_b = np.unique(b.codes[mask], return_inverse=True)[1].reshape(-1)
        n_b = int(sub_b.max()) + 1
        if n_b == 1 or n_b == sub_b.shape[0]:
            continue  # one batch, or every cell its own batch: no silhouette (skipped)
        s = np.abs(score(arr[mask], sub_b))
        means.append(float(np.mean(1.0 - s if rescale else s)))
    if not means:
        raise MetricInputError(
            f"{metric_name} needs a label whose cells come from at least 2 batches (and not "
            "each from its own); no label has."
        )
    return float(np.mean(means))


def silhouette_batch(X: Any, labels: Any, batch: Any, *, rescale: bool = True) -> float:
    """Batch ASW: within each label, how little the batches separate (scib-metrics').

    Per label, the Euclidean silhouette of its cells with their batches as clusters; per cell
    1 − |s| (``rescale``) or |s|; the mean per label, then the mean over labels. Labels from
    a single batch are skipped (scib-metrics' ``silhouette_batch``).

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per cell.
        batch: One batch per cell.
        rescale: 1 − |s| (1 best) as scib; ``False`` gives the mean |s| (0 best).

    Returns:
        Batch ASW in [0, 1]; with ``rescale``, 1 best (batches indistinguishable within each
        label), 0 worst.

    Raises:
        MetricInputError: Bad or constant latents, a single batch, wrong lengths, or no
            label with cells from two batches. A single label is allowed.

    References:
        Luecken et al., Nature Methods 19, 2022; P. J. Rousseeuw, 1987.
    """
    from latentdiag.metrics.silhouette import silhouette_samples

    def score(Xl: np.ndarray, bl: np.ndarray) -> np.ndarray:
        if bool(np.all(Xl[0] == Xl)):  # all distances 0: scib-metrics' 0/0 becomes s = 0
            return np.zeros(Xl.shape[0])
        return silhouette_samples(Xl, bl)

    return _batch_asw(X, labels, batch, "the batch ASW", score, rescale)


def bras(
    X: Any,
    labels: Any,
    batch: Any,
    *,
    metric: Metric = "cosine",
    between_cluster_distances: Literal["mean_other", "furthest"] = "mean_other",
) -> float:
    """BRAS, the batch removal adapted silhouette (Rautenstrauch & Ohler 2025).

    The batch ASW of :func:`silhouette_batch` (rescaled, 1 − |s|), but with scib-metrics'
    BRAS defaults: cosine distance, and the other-batch term b(i) the mean distance to all
    cells of the label's other batches (``mean_other``) rather than to the nearest batch, so
    that a batch nested inside others is not scored as mixed. ``furthest`` takes the furthest
    batch instead.

    Args:
        X: Latents, shape (n_samples, n_features); no zero rows with ``cosine``.
        labels: One label per cell.
        batch: One batch per cell.
        metric: ``cosine`` (scib-metrics' default for BRAS) or ``euclidean``.
        between_cluster_distances: ``mean_other`` (default) or ``furthest``.

    Returns:
        BRAS in [0, 1]; 1 best (batches mixed within every label), 0 worst.

    Raises:
        MetricInputError: As :func:`silhouette_batch`, an unknown option, or a zero row
            under the cosine distance.

    References:
        P. Rautenstrauch and U. Ohler, 'Shortcomings of silhouette in single-cell
        integration benchmarking', Nature Biotechnology, 2025; Luecken et al. 2022.
    """
    if metric not in ("euclidean", "cosine"):
        raise MetricInputError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}.")
    if between_cluster_distances not in ("mean_other", "furthest"):
        raise MetricInputError(
            "between_cluster_distances must be 'mean_other' or 'furthest'; got "
            f"{between_cluster_distances!r}."
        )
    arr = check_latents(X, min_samples=3)
    if metric == "cosine" and not np.linalg.norm(arr, axis=1).all():
        zero = int(np.count_nonzero(np.linalg.norm(arr, axis=1) == 0))
        raise MetricInputError(
            f"X has {zero:,} zero rows; the cosine distance is undefined for them. Use "
            "metric='euclidean' or drop those rows."
        )

    def score(Xl: np.ndarray, bl: np.ndarray) -> np.ndarray:
        return _silhouette_general(Xl, bl, metric, between_cluster_distances)

    return _batch_asw(arr, labels, batch, "BRAS", score, True)


def isolated_labels(X: Any, labels: Any, batch: Any, *, rescale: bool = True) -> float:
    """Isolated label score: how well the labels present in the fewest batches separate.

    The isolated labels are those found in no more batches than the label found in the
    fewest; the score is the mean over them of the mean (s + 1) / 2 of their cells, s the
    silhouette of all cells by label (scib-metrics' ``isolated_labels``, ASW variant,
    ``iso_threshold=None``).

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per cell.
        batch: One batch per cell.
        rescale: (s + 1) / 2 into [0, 1] as scib; ``False`` keeps s in [-1, 1].

    Returns:
        Isolated label ASW in [0, 1]; 1 best (isolated labels well separated).

    Raises:
        MetricInputError: Bad latents, a single label or batch, or wrong lengths.

    References:
        Luecken et al., Nature Methods 19, 2022.
    """
    from latentdiag.metrics.silhouette import silhouette_samples

    arr = check_latents(X, min_samples=3)
    y = _groups(labels, arr.shape[0], name="labels", metric="the isolated label score")
    b = _groups(batch, arr.shape[0], name="batch", metric="the isolated label score")
    pairs = np.unique(np.stack([y.codes, b.codes], axis=1), axis=0)
    batches_per_label = np.bincount(pairs[:, 0], minlength=y.n_labels)
    isolated = np.flatnonzero(batches_per_label <= batches_per_label.min())
    s = silhouette_samples(arr, y.codes)
    if rescale:
        s = (s + 1.0) / 2.0
    return float(np.mean([s[y.codes == c].mean() for c in isolated]))


# -- PCR and clustering ---------------------------------------------------------------------


def _pcr(X: np.ndarray, codes: np.ndarray) -> float:
    """Variance-weighted R² of all principal components regressed on the batch (one-hot).

    With all components kept, Σ_p R²_p · var_p / Σ_p var_p is the between-batch share of the
    total sum of squares: the components are a rotation of the centred data, and each R²_p
    is its between-group share. So no SVD is needed; the value equals scib-metrics'
    ``principal_component_regression(X, batch, categorical=True)``.
    """
    Xc = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    k = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    group_sums = np.zeros((k, X.shape[1]))
    np.add.at(group_sums, codes, Xc)
    between = float(np.sum(group_sums**2 / counts[:, None]))
    total = float(np.sum(Xc**2))
    return between / total if total > 0 else 0.0


def pcr_comparison(X_pre: Any, X_post: Any, batch: Any, *, scale: bool = True) -> float:
    """How much of the variance the batch explains before integration that it no longer does.

    PCR(X) is the variance-weighted R² of X's principal components regressed on the batch
    (one-hot); the score is (PCR(X_pre) − PCR(X_post)) / PCR(X_pre), clipped at 0
    (scib-metrics' ``pcr_comparison`` with ``categorical=True``, as its ``Benchmarker``
    calls it; ``X_pre`` there is the PCA of the unintegrated data).

    Args:
        X_pre: Unintegrated representation, shape (n_samples, n_features_pre).
        X_post: Latents, shape (n_samples, n_features_post).
        batch: One batch per cell.
        scale: The clipped relative reduction (1 best); ``False`` gives PCR(X_post) −
            PCR(X_pre) unclipped (negative is better).

    Returns:
        PCR comparison in [0, 1]; 1 best (no batch variance left), 0 worst (none removed).

    Raises:
        MetricInputError: Bad arrays, different row counts, a single batch, or a batch that
            explains none of the variance of ``X_pre``.

    References:
        Büttner et al., Nature Methods 16, 2019; Luecken et al., Nature Methods 19, 2022.
    """
    pre = check_latents(X_pre, name="X_pre", min_samples=2)
    post = check_latents(X_post, name="X_post", min_samples=2)
    if pre.shape[0] != post.shape[0]:
        raise MetricInputError(
            f"X_pre has {pre.shape[0]:,} rows and X_post {post.shape[0]:,}; expected the same "
            "cells in both."
        )
    b = _groups(batch, pre.shape[0], name="batch", metric="the PCR comparison")
    pcr_pre, pcr_post = _pcr(pre, b.codes), _pcr(post, b.codes)
    if not scale:
        return pcr_post - pcr_pre
    if pcr_pre <= 0:
        raise MetricInputError(
            "the batch explains none of the variance of X_pre (PCR = 0), so there is no "
            "reduction to measure."
        )
    return max(0.0, (pcr_pre - pcr_post) / pcr_pre)


def nmi_ari_kmeans(
    X: Any, labels: Any, *, random_state: int | None = 0, n_init: int = 1
) -> dict[str, float]:
    """NMI and ARI between the labels and a k-means clustering with one cluster per label.

    scib-metrics' ``nmi_ari_cluster_labels_kmeans``: k-means (k-means++, one start) with k
    the number of labels, then scikit-learn's NMI (arithmetic mean) and ARI. scib-metrics runs
    its own k-means in jax; this uses scikit-learn's, so on data where k-means has several
    local optima the two can land on different ones.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per cell.
        random_state: Seed of k-means.
        n_init: k-means starts, the best kept (scib-metrics: 1).

    Returns:
        ``{"nmi": ..., "ari": ...}``; NMI in [0, 1], ARI in [-0.5, 1]; 1 best (clusters are
        the labels).

    Raises:
        MetricInputError: Bad latents, a single label, or labels of the wrong length.

    References:
        Luecken et al., Nature Methods 19, 2022; L. Hubert and P. Arabie, 'Comparing
        partitions', J. Classification 2, 1985.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    arr = check_latents(X, min_samples=2)
    check_not_constant(arr)
    y = _groups(labels, arr.shape[0], name="labels", metric="NMI/ARI")
    pred = KMeans(n_clusters=y.n_labels, n_init=n_init, random_state=random_state).fit_predict(arr)
    nmi = normalized_mutual_info_score(y.codes, pred, average_method="arithmetic")
    ari = adjusted_rand_score(y.codes, pred)
    return {"nmi": float(nmi), "ari": float(ari)}
