"""Nearest-neighbour mutual information between 1-D features and a discrete label, in numba.

The estimator is Ross (2014), exactly as ``sklearn.feature_selection.mutual_info_classif``
computes it for continuous features, but in one dimension a k-d tree is not needed: within a
label the k-th neighbour of a sorted point is found by merging its left and right neighbours,
and the neighbours within a radius over all points are counted by binary search. Both use the
same floating-point comparisons as scikit-learn's trees (squared differences against the
squared radius), so the counts agree. Imported lazily by :mod:`latentdiag.metrics.information`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)


@njit(cache=True, nogil=True)
def _kth_distance(xs, p, s, e, k):  # type: ignore[no-untyped-def]
    """Distance from xs[p] to its k-th nearest other point among xs[s:e] (xs sorted)."""
    left = p - 1
    right = p + 1
    r = 0.0
    for _ in range(k):
        dl = np.inf
        dr = np.inf
        if left >= s:
            dl = xs[p] - xs[left]
        if right < e:
            dr = xs[right] - xs[p]
        if dl <= dr:
            r = dl
            left -= 1
        else:
            r = dr
            right += 1
    return r


@njit(cache=True, nogil=True)
def _count_within(xs, q, r2):  # type: ignore[no-untyped-def]
    """#{j : (xs[j] - xs[q])^2 <= r2} over all of xs (sorted).

    The predicate holds on one run of indices around q; each end is found by galloping out
    from q and then bisecting, so the cost is O(log m) for m neighbours, with local memory.
    """
    x = xs[q]
    n = xs.shape[0]
    # Right end: the last j >= q where the predicate holds.
    good = q
    bad = n
    step = 1
    while q + step < n:
        d = xs[q + step] - x
        if d * d <= r2:
            good = q + step
            step *= 2
        else:
            bad = q + step
            break
    while bad - good > 1:
        mid = (good + bad) // 2
        d = xs[mid] - x
        if d * d <= r2:
            good = mid
        else:
            bad = mid
    right = good
    # Left end: the first j <= q where it holds.
    good = q
    bad = -1
    step = 1
    while q - step >= 0:
        d = xs[q - step] - x
        if d * d <= r2:
            good = q - step
            step *= 2
        else:
            bad = q - step
            break
    while good - bad > 1:
        mid = (good + bad) // 2
        d = xs[mid] - x
        if d * d <= r2:
            good = mid
        else:
            bad = mid
    return right - good + 1


@njit(cache=True, nogil=True)
def _mi_column(x, codes, counts, n_neighbors, psi):  # type: ignore[no-untyped-def]
    """Ross (2014) MI between one continuous column and discrete codes, in nats (>= 0).

    ``psi[m]`` is digamma(m) for the integers 1..n.
    """
    n = x.shape[0]
    n_labels = counts.shape[0]
    value_order = np.argsort(x, kind="mergesort")
    # Points whose label occurs once are ignored (as in scikit-learn); the rest, by value.
    m = 0
    for i in range(n):
        if counts[codes[i]] > 1:
            m += 1
    xs_all = np.empty(m)
    cs_all = np.empty(m, dtype=np.int64)
    q = 0
    for i in range(n):
        p = value_order[i]
        if counts[codes[p]] > 1:
            xs_all[q] = x[p]
            cs_all[q] = codes[p]
            q += 1
    # Stable counting sort by label: each label's points become one sorted segment.
    start_of = np.zeros(n_labels + 1, dtype=np.int64)
    for q in range(m):
        start_of[cs_all[q] + 1] += 1
    for c in range(n_labels):
        start_of[c + 1] += start_of[c]
    fill = start_of[:n_labels].copy()
    xs_lab = np.empty(m)
    where = np.empty(m, dtype=np.int64)  # where the q-th point by value sits in xs_lab
    for q in range(m):
        c = cs_all[q]
        xs_lab[fill[c]] = xs_all[q]
        where[q] = fill[c]
        fill[c] += 1
    radius2 = np.empty(m)
    total = 0.0
    for c in range(n_labels):
        s = start_of[c]
        e = start_of[c + 1]
        count = e - s
        if count < 2:
            continue
        k = min(n_neighbors, count - 1)
        total += count * (psi[k] - psi[count])
        for p in range(s, e):
            # Strictly inside the k-th neighbour distance, compared as scikit-learn's trees
            # do: squared difference against the squared radius.
            r = np.nextafter(_kth_distance(xs_lab, p, s, e, k), 0.0)
            radius2[p] = r * r
    for q in range(m):
        total -= psi[_count_within(xs_all, q, radius2[where[q]])]
    mi = psi[m] + total / m
    return max(0.0, mi)


@njit(parallel=True, cache=True, nogil=True)
def mi_columns(X, codes, counts, n_neighbors):  # type: ignore[no-untyped-def]
    """MI of every column of X (n, d) with the codes 0..k-1, in parallel over columns."""
    n, d = X.shape
    # digamma(m) = -γ + Σ_{i<m} 1/i for integers m >= 1: one table serves every count.
    psi = np.empty(n + 1)
    psi[0] = np.nan
    psi[1] = -0.5772156649015329
    for i in range(1, n):
        psi[i + 1] = psi[i] + 1.0 / i
    out = np.empty(d)
    for j in prange(d):
        out[j] = _mi_column(np.ascontiguousarray(X[:, j]), codes, counts, n_neighbors, psi)
    return out
