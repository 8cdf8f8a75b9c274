"""The LISI kernel: perplexity-calibrated neighbour weights and Simpson's index, per cell.

Imported only by :mod:`latentdiag.metrics.scib` when a LISI is computed. One cell per loop
iteration, parallel over cells, in float64; the steps, the starting point (beta = 1), the
tolerance and the 50-step cap are those of scib-metrics' ``compute_simpson_index``
(``utils/_lisi.py``), so the same graph gives the same weights (scib-metrics computes in
float32: agreement to ~1e-6 on the index).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)


@njit(cache=True, nogil=True)
def _entropy(dist, beta, P):  # type: ignore[no-untyped-def]
    """Entropy H of the weights exp(-beta · d) normalised into ``P``; 0 when they all vanish."""
    m = dist.shape[0]
    total = 0.0
    weighted = 0.0
    for j in range(m):
        p = math.exp(-dist[j] * beta)
        P[j] = p
        total += p
        weighted += dist[j] * p
    if total == 0.0:
        for j in range(m):
            P[j] = 0.0
        return 0.0
    for j in range(m):
        P[j] /= total
    return math.log(total) + beta * weighted / total


@njit(parallel=True, cache=True, nogil=True)
def simpson_index(dist, labels, n_labels, perplexity, tol, out):  # type: ignore[no-untyped-def]
    """Simpson's index sum_c (sum of the weights of neighbours labelled c)^2 of every cell.

    Args:
        dist: (n, m) float64 distances to each cell's m neighbours (the cell excluded).
        labels: (n, m) int64 label codes of those neighbours, in 0..n_labels-1.
        n_labels: Number of distinct labels.
        perplexity: Effective neighbourhood size the weights are calibrated to.
        tol: Tolerance on the entropy, |H - log(perplexity)| < tol.
        out: (n,) float64, filled with the index; -1 where the weights all vanish (H = 0),
            as scib-metrics does.
    """
    n, m = dist.shape
    target = math.log(perplexity)
    for i in prange(n):
        P = np.empty(m)
        sums = np.zeros(n_labels)
        row = dist[i]
        beta = 1.0
        beta_min = -np.inf
        beta_max = np.inf
        H = _entropy(row, beta, P)
        diff = H - target
        tries = 0
        while abs(diff) >= tol and tries < 50:
            if diff > 0:
                beta_min = beta
                beta = beta * 2.0 if beta_max == np.inf else (beta + beta_max) / 2.0
            else:
                beta_max = beta
                beta = beta / 2.0 if beta_min == -np.inf else (beta + beta_min) / 2.0
            H = _entropy(row, beta, P)
            diff = H - target
            tries += 1
        if H == 0.0:
            out[i] = -1.0
            continue
        for j in range(m):
            sums[labels[i, j]] += P[j]
        s = 0.0
        for c in range(n_labels):
            s += sums[c] * sums[c]
        out[i] = s


# -- UMAP's fuzzy connectivities (umap-learn 0.5, umap_.py), compiled once and cached --------
# umap-learn compiles these at every process start (~5 s); the copies below keep its float32
# arithmetic (the same ``locals``), so they give the same weights, and numba caches them.

_SMOOTH_K_TOLERANCE = 1e-5
_MIN_K_DIST_SCALE = 1e-3
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@njit(
    locals={
        "psum": numba.types.float32,
        "lo": numba.types.float32,
        "mid": numba.types.float32,
        "hi": numba.types.float32,
    },
    parallel=True,
    cache=True,
    nogil=True,
)
def smooth_knn_dist(distances, k):  # type: ignore[no-untyped-def]
    """umap-learn's ``smooth_knn_dist`` (local_connectivity 1, bandwidth 1, 64 steps).

    Args:
        distances: (n, m) float32 neighbour distances, the cell itself first (distance 0).
        k: The neighbourhood size m, as a float.

    Returns:
        sigmas and rhos, (n,) float32 each.
    """
    target = np.log2(k)
    rho = np.zeros(distances.shape[0], dtype=np.float32)
    result = np.zeros(distances.shape[0], dtype=np.float32)
    mean_distances = np.mean(distances)
    for i in prange(distances.shape[0]):
        lo = 0.0
        hi = _FLOAT32_MAX
        mid = 1.0
        ith_distances = distances[i]
        non_zero_dists = ith_distances[ith_distances > 0.0]
        if non_zero_dists.shape[0] >= 1:
            rho[i] = non_zero_dists[0]
        for _ in range(64):
            psum = 0.0
            for j in range(1, distances.shape[1]):
                d = distances[i, j] - rho[i]
                if d > 0:
                    psum += np.exp(-(d / mid))
                else:
                    psum += 1.0
            if np.fabs(psum - target) < _SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                if hi >= _FLOAT32_MAX:
                    mid *= 2
                else:
                    mid = (lo + hi) / 2.0
        result[i] = mid
        if rho[i] > 0.0:
            mean_ith_distances = np.mean(ith_distances)
            if result[i] < _MIN_K_DIST_SCALE * mean_ith_distances:
                result[i] = _MIN_K_DIST_SCALE * mean_ith_distances
        else:
            if result[i] < _MIN_K_DIST_SCALE * mean_distances:
                result[i] = _MIN_K_DIST_SCALE * mean_distances
    return result, rho


@njit(
    locals={
        "knn_dists": numba.types.float32[:, ::1],
        "sigmas": numba.types.float32[::1],
        "rhos": numba.types.float32[::1],
        "val": numba.types.float32,
    },
    parallel=True,
    cache=True,
    nogil=True,
)
def membership_strengths(knn_indices, knn_dists, sigmas, rhos):  # type: ignore[no-untyped-def]
    """umap-learn's ``compute_membership_strengths``: COO rows, cols, float32 weights."""
    n_samples = knn_indices.shape[0]
    n_neighbors = knn_indices.shape[1]
    rows = np.zeros(knn_indices.size, dtype=np.int32)
    cols = np.zeros(knn_indices.size, dtype=np.int32)
    vals = np.zeros(knn_indices.size, dtype=np.float32)
    for i in range(n_samples):
        for j in range(n_neighbors):
            if knn_indices[i, j] == i:
                val = 0.0
            elif knn_dists[i, j] - rhos[i] <= 0.0 or sigmas[i] == 0.0:
                val = 1.0
            else:
                val = np.exp(-((knn_dists[i, j] - rhos[i]) / (sigmas[i])))
            rows[i * n_neighbors + j] = i
            cols[i * n_neighbors + j] = knn_indices[i, j]
            vals[i * n_neighbors + j] = val
    return rows, cols, vals
