"""Two-dimensional projections of latents for scatter plots: PCA, t-SNE and UMAP.

Projections run on a stratified sample (every label keeps its share, and even a rare label keeps
a few points), because t-SNE and UMAP cost far more than linear time. PCA is fitted on every row
through the d × d covariance, then applied to the sample. scikit-learn and umap-learn are imported
only inside the function that uses them: umap-learn takes seconds to import. Its kernels are
compiled once per machine and cached (see :func:`_import_umap`), and it is handed the exact
neighbour graph, so no approximate search runs.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass
from typing import Any

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
    figures: scikit-learn's Barnes-Hut gradient runs in compiled code without the GIL, so on
    two or more cores it costs no wall time of its own. A daemon thread, so that an
    interrupted report does not wait for it. :meth:`result` returns the projection or raises
    what :func:`project` raised.
    """

    def __init__(self, method: str, x: np.ndarray, random_state: int) -> None:
        import threading

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


def _tsne_exact(x: np.ndarray, perplexity: float, random_state: int) -> np.ndarray:
    """t-SNE with scikit-learn's affinities, initialisation and schedule, exact gradient."""
    from latentdiag.report._tsne_numba import optimise

    m, d = x.shape
    indptr, indices, vals = _joint_affinities(x, perplexity)
    centred = x - x.mean(axis=0)
    if d >= 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        comps = vt[:2]
        # The sign of each component fixed (largest loading positive): figures repeat.
        comps *= np.where(comps[np.arange(2), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
        y = centred @ comps.T
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


def _import_umap() -> Any:
    """umap-learn, with its numba functions compiled once per machine instead of per process.

    umap-learn and pynndescent declare their kernels without ``cache=True``, so every fresh
    process compiled them again: about 30 s of a 2,000-point UMAP on two cores. Turning on
    numba's file cache for them (``Dispatcher.enable_caching``, the same switch ``cache=True``
    sets) keeps the compiled code beside their sources, or in numba's user cache where those
    are read-only; functions that cannot be cached are simply compiled as before.
    """
    global _UMAP
    with _UMAP_LOCK:
        if _UMAP is None:
            _UMAP = _load_umap()
        return _UMAP


def _load_umap() -> Any:
    import sys

    import numba
    from numba.core.registry import CPUDispatcher

    def caching(decorator: Any) -> Any:
        def decorate(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)

        return decorate

    plain = numba.njit, numba.jit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Functions declared with a signature compile as their module is imported (about
        # 1 s of umap-learn's and pynndescent's import): numba's decorators, for the time of
        # the import, ask for the file cache unless told otherwise.
        numba.njit, numba.jit = caching(numba.njit), caching(numba.jit)
        try:
            import umap
        finally:
            numba.njit, numba.jit = plain

        for name, module in list(sys.modules.items()):
            if module is None or not name.startswith(("umap", "pynndescent")):
                continue
            for obj in list(vars(module).values()):
                cache = getattr(obj, "_cache", None)
                if isinstance(obj, CPUDispatcher) and type(cache).__name__ == "NullCache":
                    try:
                        obj.enable_caching()
                    except Exception:
                        continue
    return umap


_UMAP: Any = None
_UMAP_LOCK = threading.Lock()


def prefetch_umap() -> None:
    """Import umap-learn (and scikit-learn, which it imports) on a daemon thread, now.

    The imports take 1-2 s of Python; the report starts them first, so they overlap the
    metrics (whose kernels run without the GIL) instead of waiting for them. UMAP itself runs
    later on the calling thread: its numba kernels are parallel, and numba's workqueue layer
    launches one parallel kernel at a time. A failed import is raised again by that call.
    """

    def load() -> None:
        # A failure is raised again where _import_umap is called next.
        with contextlib.suppress(BaseException):
            _import_umap()

    threading.Thread(target=load, name="latentdiag-import-umap", daemon=True).start()


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest neighbours of every row (itself first), Euclidean: (indices, dists).

    The metrics' exact k-NN kernel (ties broken by the smaller index), with each row put first
    as its own neighbour at distance 0, as ``NearestNeighbors().kneighbors(x)`` returns them.
    """
    from latentdiag.metrics.knn_graph import _knn_numba

    m = x.shape[0]
    idx = np.empty((m, k), dtype=np.int64)
    dists = np.zeros((m, k), dtype=np.float32)
    idx[:, 0] = np.arange(m)
    if k > 1:
        others, sq = _knn_numba(np.asarray(x, dtype=np.float64), k - 1)
        idx[:, 1:] = others
        dists[:, 1:] = np.sqrt(sq)
    return idx, dists


def _umap(x: np.ndarray, random_state: int) -> Projection:
    umap = _import_umap()
    n_neighbors = int(min(15, x.shape[0] - 1))
    # The exact neighbour graph, handed over: no approximate search (and no pynndescent
    # compile), and the same neighbours as every other exact metric here.
    idx, dists = exact_knn(x, n_neighbors)
    with warnings.catch_warnings():
        # umap-learn warns that a fixed random_state disables its parallelism (wanted), and
        # that a precomputed graph cannot transform new points (not needed).
        warnings.simplefilter("ignore")
        model = umap.UMAP(
            n_components=2,
            n_neighbors=n_neighbors,
            random_state=random_state,
            precomputed_knn=(idx, dists, None),
            # umap-learn's own choice above 10,000 rows; below, its 500 epochs took 2.5× as
            # long for a trustworthiness 0.004 higher (0.941 against 0.937 on 2,000 × 16).
            n_epochs=200,
        )
        coords = model.fit_transform(x)
    return Projection(
        "umap",
        np.asarray(coords),
        "UMAP 1",
        "UMAP 2",
        f"UMAP ({n_neighbors} exact neighbours) keeps local structure; distances between "
        "far-apart clusters carry little meaning.",
    )
