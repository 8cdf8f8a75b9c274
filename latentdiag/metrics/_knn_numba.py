"""The fused exact k-nearest-neighbour kernel: blocked distances and a bounded heap per row.

Imported only by :mod:`latentdiag.metrics.knn_graph` when a graph is built, so that
``import latentdiag.metrics`` stays cheap.

Design:

* Row blocks run in parallel; inside one, a block of columns (features × BLOCK_COLS, in L1/L2)
  is reused by every row of the block, and each row keeps a max-heap of its k best
  candidates. Memory is O(n · k) for the result and O(threads · BLOCK_ROWS · k) for the
  heaps; the n × n distance matrix never exists.
* Squared distances come from differences, ``sum_f (x_if - x_jf)^2``, in float64, never from
  ``|x|^2 + |y|^2 - 2 x·y``: duplicate rows then get exactly 0 (not rounding noise of either
  sign), so ties are real ties and are broken by index, deterministically.
* Columns are visited in increasing index, so a candidate tied with the heap's worst entry
  always has the larger index and is rejected: the k kept are the k smallest by
  (distance, index). The heap itself orders by (distance, index), so the entry it evicts
  among tied ones is the one with the largest index.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

BLOCK_ROWS = 64
BLOCK_COLS = 512
_FASTMATH = {"reassoc", "contract"}


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _row_sq_dists(XT, xi, a, b, out):  # type: ignore[no-untyped-def]
    """Squared distances from ``xi`` to columns a..b of ``XT`` (d8, n), into ``out[:b - a]``."""
    d8 = XT.shape[0]
    m = b - a
    acc = out[:m]
    for jj in range(m):
        acc[jj] = 0.0
    for f0 in range(0, d8, 8):
        x0 = xi[f0]
        x1 = xi[f0 + 1]
        x2 = xi[f0 + 2]
        x3 = xi[f0 + 3]
        x4 = xi[f0 + 4]
        x5 = xi[f0 + 5]
        x6 = xi[f0 + 6]
        x7 = xi[f0 + 7]
        r0 = XT[f0, a:b]
        r1 = XT[f0 + 1, a:b]
        r2 = XT[f0 + 2, a:b]
        r3 = XT[f0 + 3, a:b]
        r4 = XT[f0 + 4, a:b]
        r5 = XT[f0 + 5, a:b]
        r6 = XT[f0 + 6, a:b]
        r7 = XT[f0 + 7, a:b]
        for jj in range(m):
            t0 = r0[jj] - x0
            t1 = r1[jj] - x1
            t2 = r2[jj] - x2
            t3 = r3[jj] - x3
            t4 = r4[jj] - x4
            t5 = r5[jj] - x5
            t6 = r6[jj] - x6
            t7 = r7[jj] - x7
            acc[jj] += ((t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)) + (
                (t4 * t4 + t5 * t5) + (t6 * t6 + t7 * t7)
            )


@njit(cache=True, nogil=True)
def _greater(da, ja, db, jb):  # type: ignore[no-untyped-def]
    """(da, ja) > (db, jb) lexicographically."""
    return da > db or (da == db and ja > jb)


@njit(cache=True, nogil=True)
def _sift_down(hd, hj, start, size):  # type: ignore[no-untyped-def]
    """Restore the max-heap property of hd/hj[:size] below ``start``."""
    pos = start
    d = hd[pos]
    j = hj[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _greater(hd[right], hj[right], hd[child], hj[child]):
            child = right
        if not _greater(hd[child], hj[child], d, j):
            break
        hd[pos] = hd[child]
        hj[pos] = hj[child]
        pos = child
    hd[pos] = d
    hj[pos] = j


@njit(parallel=True, cache=True, nogil=True)
def knn_sq(XT, group, k, out_idx, out_sq):  # type: ignore[no-untyped-def]
    """The k nearest points of every point outside its own group, by (squared distance, index).

    With ``group = arange(n)`` these are the k nearest other points (the k-NN graph); with
    cross-validation folds as groups, each point's k nearest training points of its fold.

    Args:
        XT: (d8, n) float64 points as columns, features zero-padded to a multiple of 8.
        group: (n,) int64; a point is never a neighbour of a point of its own group.
        k: Neighbours per point, at most the number of points outside any group.
        out_idx: (n, k) int64, filled with neighbour indices, nearest first.
        out_sq: (n, k) float64, filled with their squared distances.
    """
    d8, n = XT.shape
    n_blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    for blk in prange(n_blocks):
        i0 = blk * BLOCK_ROWS
        i1 = min(i0 + BLOCK_ROWS, n)
        rows = i1 - i0
        buf = np.empty(BLOCK_COLS)
        xs = np.empty((rows, d8))
        for r in range(rows):
            for f in range(d8):
                xs[r, f] = XT[f, i0 + r]
        hd = np.full((rows, k), np.inf)
        hj = np.full((rows, k), n, dtype=np.int64)  # sentinel index larger than any column
        for j0 in range(0, n, BLOCK_COLS):
            j1 = min(j0 + BLOCK_COLS, n)
            for r in range(rows):
                gi = group[i0 + r]
                _row_sq_dists(XT, xs[r], j0, j1, buf)
                hdr = hd[r]
                hjr = hj[r]
                for jj in range(j1 - j0):
                    d = buf[jj]
                    if d < hdr[0]:
                        j = j0 + jj
                        if group[j] == gi:
                            continue
                        hdr[0] = d
                        hjr[0] = j
                        _sift_down(hdr, hjr, 0, k)
        # Heap sort: popping the maximum into the end leaves ascending (distance, index).
        for r in range(rows):
            hdr = hd[r]
            hjr = hj[r]
            for size in range(k - 1, 0, -1):
                d = hdr[0]
                j = hjr[0]
                hdr[0] = hdr[size]
                hjr[0] = hjr[size]
                hdr[size] = d
                hjr[size] = j
                _sift_down(hdr, hjr, 0, size)
            for c in range(k):
                out_idx[i0 + r, c] = hjr[c]
                out_sq[i0 + r, c] = hdr[c]
