"""Two-dimensional projections of latents for scatter plots: PCA, t-SNE and UMAP.

Projections run on a stratified sample (every label keeps its share, and even a rare label keeps
a few points), because t-SNE and UMAP cost far more than linear time. PCA is fitted on every row
through the d × d covariance, then applied to the sample. Up to 5,000 points t-SNE runs its
exact gradient in numba (scikit-learn's affinities and schedule); above, scikit-learn's
Barnes-Hut t-SNE. UMAP is umap-learn's algorithm on the exact neighbour graph, its fuzzy graph
and layout in numba: umap-learn itself took longer to import than to lay out 2,000 points.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from latentdiag.errors import ReportError

__all__ = [
    "METHODS",
    "Projection",
    "project",
    "stratified_sample",
]

METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
# The fewest points a neighbour-graph projection is attempted on.
_MIN_POINTS = 10
# Every label present keeps at least this many points in a sample (or all it has).
_MIN_PER_LABEL = 20


@dataclass
class Projection:
    """A 2-D embedding of the sample rows.

    Attributes:
        method: ``"pca"``, ``"umap"`` or ``"tsne"``.
        coords: ``(m, 2)`` positions of the sampled rows.
        xlabel: Axis label of the first coordinate.
        ylabel: Axis label of the second coordinate.
        note: One sentence on how it was made, for the caption.
    """

    method: str
    coords: np.ndarray
    xlabel: str
    ylabel: str
    note: str


def stratified_sample(
    n_samples: int,
    size: int,
    *,
    labels: np.ndarray | None = None,
    random_state: int = 0,
) -> np.ndarray:
    """Sorted row indices of a sample of about ``size`` rows that keeps label proportions.

    Labels get shares proportional to their counts (largest remainders break ties), but every
    label present keeps at least ``min(count, 20)`` rows, so a rare label still shows.

    Args:
        n_samples: Number of rows to draw from.
        size: Wanted sample size; all rows are returned when ``n_samples <= size``.
        labels: ``(n_samples,)`` integer labels, or ``None`` for a plain random sample.
        random_state: Seed of the draw.

    Returns:
        Sorted ``int64`` indices into the rows.

    Raises:
        ReportError: ``size`` is smaller than 1.
    """
    if size < 1:
        raise ReportError(f"the sample size must be at least 1; got {size}.")
    if n_samples <= size:
        return np.arange(n_samples, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    if labels is None:
        return np.sort(rng.choice(n_samples, size=size, replace=False)).astype(np.int64)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * (size / n_samples)
    take = np.floor(exact).astype(np.int64)
    remainder = size - int(take.sum())
    if remainder > 0:
        take[np.argsort(-(exact - take), kind="stable")[:remainder]] += 1
    take = np.minimum(np.maximum(take, np.minimum(counts, _MIN_PER_LABEL)), counts)
    picked = []
    for k in range(len(values)):
        rows = np.flatnonzero(inverse == k)
        picked.append(rng.choice(rows, size=int(take[k]), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def project(
    method: str,
    mu: np.ndarray,
    rows: np.ndarray,
    *,
    random_state: int = 0,
) -> Projection:
    """Embed the sampled rows of ``mu`` in two dimensions.

    Args:
        method: ``"pca"``, ``"umap"`` or ``"tsne"``.
        mu: ``(n, d)`` latents; PCA is fitted on all of them.
        rows: Indices of the rows to embed (from :func:`stratified_sample`).
        random_state: Seed of t-SNE and UMAP.

    Returns:
        The :class:`Projection` of ``mu[rows]``.

    Raises:
        ReportError: An unknown method, or too few rows for t-SNE or UMAP.
    """
    if method not in METHODS:
        raise ReportError(f"unknown projection {method!r}; expected one of {', '.join(METHODS)}.")
    x = np.asarray(mu[rows], dtype=np.float64)  # (m, d)
    if method == "pca":
        return _pca(mu, x)
    if x.shape[0] < _MIN_POINTS:
        title = {"tsne": "t-SNE", "umap": "UMAP"}[method]
        raise ReportError(
            f"{title} needs at least {_MIN_POINTS} samples; this file has {x.shape[0]}."
        )
    if method == "tsne":
        return _tsne(x, random_state)
    return _umap(x, random_state)


class BackgroundProjection:
    """A projection computed on a daemon thread while the caller does other work.

    The report starts each file's t-SNE first, then measures the files and draws the other
    figures: the exact gradient (a serial numba kernel) and scikit-learn's Barnes-Hut one run
    without the GIL, so on two or more cores t-SNE costs little wall time of its own. A daemon
    thread, so that an interrupted report does not wait for it. :meth:`result` returns the
    projection or raises what :func:`project` raised.
    """

    def __init__(self, method: str, x: np.ndarray, random_state: int) -> None:

        self.method = method
        self._value: Projection | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(np.asarray(x), random_state),
            name=f"latentdiag-{method}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, x: np.ndarray, random_state: int) -> None:
        try:
            self._value = project(self.method, x, np.arange(x.shape[0]), random_state=random_state)
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> Projection:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _pca(mu: np.ndarray, x: np.ndarray) -> Projection:
    n, d = mu.shape
    # The covariance is accumulated in row blocks: a float64 copy of a large mu is not needed.
    mean = np.zeros(d)
    for start in range(0, n, 65536):
        mean += np.asarray(mu[start : start + 65536], dtype=np.float64).sum(axis=0)
    mean /= max(n, 1)
    cov = np.zeros((d, d))
    for start in range(0, n, 65536):
        block = np.asarray(mu[start : start + 65536], dtype=np.float64) - mean  # (b, d)
        cov += block.T @ block
    cov /= max(n - 1, 1)
    evals, evecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    # Fix each component's sign (largest loading positive) so figures repeat run to run.
    signs = np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(d)])
    evecs = evecs * np.where(signs == 0, 1.0, signs)
    total = float(evals.sum())
    share = evals / total if total > 0 else np.zeros_like(evals)
    coords = (x - mean) @ evecs[:, : min(2, d)]  # (m, 1 or 2)
    if d == 1:
        # One latent dimension: spread the points vertically so overlapping ones show.
        jitter = np.random.default_rng(0).uniform(-0.5, 0.5, size=(x.shape[0], 1))
        return Projection(
            "pca",
            np.hstack([coords, jitter]),
            "z (the only latent dimension)",
            "random jitter (no meaning)",
            "The file has one latent dimension; it is plotted against random jitter.",
        )
    return Projection(
        "pca",
        coords,
        f"PC1 ({share[0]:.0%} of variance)",
        f"PC2 ({share[1]:.0%} of variance)",
        f"PCA fitted on all {n:,} rows; the two axes explain {share[0] + share[1]:.0%} of the "
        "variance. Distances along the axes are in latent units.",
    )


_TSNE_ITERATIONS = 750
_TSNE_EXPLORATION = 250
_TSNE_EXAGGERATION = 12.0
# Up to this many points the exact gradient (numba) is faster than scikit-learn's Barnes-Hut
# tree; the report draws 2,000 by default.
_TSNE_EXACT_MAX = 5000


def _tsne(x: np.ndarray, random_state: int) -> Projection:
    m = x.shape[0]
    perplexity = float(min(30.0, (m - 1) / 3.0))
    if m <= _TSNE_EXACT_MAX:
        coords = _tsne_exact(x, perplexity, random_state)
        how = "exact gradient"
    else:
        coords = _tsne_sklearn(x, perplexity, random_state)
        how = "Barnes-Hut"
    return Projection(
        "tsne",
        np.asarray(coords),
        "t-SNE 1",
        "t-SNE 2",
        f"t-SNE (perplexity {perplexity:g}, {_TSNE_ITERATIONS} iterations, {how}) keeps "
        "neighbours together; cluster sizes and the distances between clusters carry no "
        "meaning.",
    )


def _joint_affinities(x: np.ndarray, perplexity: float) -> tuple[np.ndarray, ...]:
    """scikit-learn's sparse t-SNE affinities: P = (P + Pᵀ) / sum over the 3·perplexity
    nearest neighbours of each point, as CSR arrays (indptr, indices, values)."""
    from latentdiag.report._tsne_numba import conditional_affinities

    m = x.shape[0]
    k = min(m - 1, int(3.0 * perplexity + 1))
    sq_norm = np.einsum("ij,ij->i", x, x)
    sq = sq_norm[:, None] + sq_norm[None, :] - 2.0 * (x @ x.T)  # (m, m): m is a few thousand
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, np.inf)
    nearest = np.argpartition(sq, k - 1, axis=1)[:, :k]
    near_sq = np.take_along_axis(sq, nearest, axis=1)
    del sq
    cond = conditional_affinities(near_sq, perplexity)
    rows = np.repeat(np.arange(m, dtype=np.int64), k)
    cols = nearest.reshape(-1).astype(np.int64)
    # P + Pᵀ: each (i, j) entry and its mirror, summed where both exist.
    keys = np.concatenate([rows * m + cols, cols * m + rows])
    vals = np.concatenate([cond.reshape(-1), cond.reshape(-1)])
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    keys, vals = keys[starts], np.add.reduceat(vals, starts)
    vals /= max(float(vals.sum()), np.finfo(np.float64).eps)
    i, j = keys // m, keys % m
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(i, minlength=m), out=indptr[1:])
    return indptr, j.astype(np.int64), vals


def _first_components(x: np.ndarray) -> np.ndarray:
    """The rows' coordinates on their first two principal components (x has 2+ columns), each
    component's sign fixed (largest loading positive) so that figures repeat: where t-SNE and
    UMAP start (their ``init="pca"``)."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    signs = np.where(comps[np.arange(2), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)
    return np.asarray(centred @ (comps * signs[:, None]).T)


def _tsne_exact(x: np.ndarray, perplexity: float, random_state: int) -> np.ndarray:
    """t-SNE with scikit-learn's affinities, initialisation and schedule, exact gradient."""
    from latentdiag.report._tsne_numba import optimise

    m, d = x.shape
    indptr, indices, vals = _joint_affinities(x, perplexity)
    if d >= 2:
        y = _first_components(x)
        spread = float(np.std(y[:, 0]))
        y = y / (spread if spread > 0 else 1.0) * 1e-4
    else:
        y = 1e-4 * np.random.default_rng(random_state).standard_normal((m, 2))
    y = np.ascontiguousarray(y, dtype=np.float64)
    rate = max(m / _TSNE_EXAGGERATION / 4.0, 50.0)
    optimise(
        y, indptr, indices, vals, _TSNE_ITERATIONS, _TSNE_EXPLORATION, _TSNE_EXAGGERATION, rate
    )
    return y


def _tsne_sklearn(x: np.ndarray, perplexity: float, random_state: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    d = x.shape[1]
    model = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca" if d >= 2 else "random",
        random_state=random_state,
        # openTSNE's schedule: 250 early-exaggeration iterations, then 500 (scikit-learn's
        # default runs 1,000). Measured on 2,000 rows × 16: 8.0 s instead of 10.6 s, the same
        # trustworthiness (0.974, 10 neighbours).
        max_iter=_TSNE_ITERATIONS,
    )
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: on a busy machine scikit-learn's threaded t-SNE gradient slows down
    # several-fold from oversubscription, and on a few thousand points one thread takes seconds.
    with threadpool_limits(limits=1, user_api="openmp"):
        return np.asarray(model.fit_transform(x))


# umap-learn's a and b for min_dist 0.1, spread 1 (its defaults): ``find_ab_params(1, 0.1)``.
_UMAP_A = 1.5769434602697652
_UMAP_B = 0.8950608778515733
_UMAP_EPOCHS = 200
_UMAP_NEGATIVE_RATE = 5


def _umap(x: np.ndarray, random_state: int) -> Projection:
    """umap-learn's ``UMAP(n_neighbors=15, init="pca", n_epochs=200)``, without umap-learn.

    The fuzzy graph of the exact 15-neighbour graph comes from the kernels the kBET metric
    uses (umap-learn's, step for step); the layout from :mod:`latentdiag.report._umap_numba`.
    200 epochs: umap-learn's own choice above 10,000 rows; below, its 500 took 2.5× as long
    for a trustworthiness 0.004 higher (0.941 against 0.937 on 2,000 × 16).
    """
    from latentdiag.metrics._scib_kbet import connectivities
    from latentdiag.metrics.knn_graph import exact_knn_graph
    from latentdiag.report._umap_numba import optimise_layout

    m = x.shape[0]
    n_neighbors = int(min(15, m - 1))
    graph = connectivities(exact_knn_graph(x, n_neighbors - 1)).tocoo()
    weights = np.asarray(graph.data, dtype=np.float64)
    keep = weights >= weights.max() / _UMAP_EPOCHS  # edges too weak to be sampled once
    head = np.ascontiguousarray(graph.row[keep], dtype=np.int64)
    tail = np.ascontiguousarray(graph.col[keep], dtype=np.int64)
    weights = weights[keep]
    epochs_per_sample = weights.max() / weights  # n_epochs / (n_epochs · w / max w)
    rng = np.random.RandomState(random_state)
    # init="pca": the first two components, scaled to at most 10, a little noise, then every
    # axis rescaled to [0, 10], as umap-learn.
    if x.shape[1] >= 2:
        start = _first_components(x)
    else:
        start = np.hstack([x - x.mean(axis=0), rng.normal(size=(m, 1))])
    start = (start * (10.0 / max(float(np.abs(start).max()), 1e-12))).astype(np.float32)
    start += rng.normal(scale=0.0001, size=start.shape).astype(np.float32)
    rng_state = rng.randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max, 3).astype(np.int64)
    low, high = start.min(axis=0), start.max(axis=0)
    layout = np.ascontiguousarray(
        10.0 * (start - low) / np.maximum(high - low, 1e-12), dtype=np.float32
    )
    optimise_layout(
        layout,
        head,
        tail,
        epochs_per_sample,
        _UMAP_EPOCHS,
        _UMAP_A,
        _UMAP_B,
        rng_state,
        _UMAP_NEGATIVE_RATE,
    )
    return Projection(
        "umap",
        np.asarray(layout, dtype=np.float64),
        "UMAP 1",
        "UMAP 2",
        f"UMAP ({n_neighbors} exact neighbours) keeps local structure; distances between "
        "far-apart clusters carry little meaning.",
    )
