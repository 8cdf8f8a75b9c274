"""The fused silhouette kernel: per-sample, per-label sums of Euclidean distances, in numba.

Imported only by :mod:`latentdiag.metrics.silhouette` when a silhouette is computed, so that
``import latentdiag.metrics`` stays cheap (importing numba takes a few tenths of a second).

Design, for speed without giving up exactness:

* Rows are sorted by label, so every label is one contiguous block; work is cut into tiles
  (a block of rows × a block of columns, each inside one label).
* Distances are computed from differences, ``sqrt(sum_f (x_if - x_jf)^2)``, never with the
  ``|x|^2 + |y|^2 - 2 x·y`` identity, which cancels catastrophically for tight clusters far from
  the origin. Sums over points (per sample and label) are float64. The squared distance of
  one pair is summed in the data's precision: float64 for float64 input, float32 for float32
  input (what latents files hold) — twice the SIMD width, and a relative error of ~1e-7 per
  distance that averages out (measured: 1.4e-8 on the per-label sums at n = 100,000).
* In the symmetric (all-pairs) mode each pair is computed once: a tile adds its row sums to the
  rows and its column sums to the columns. Each thread owns an accumulator (n × k), so there
  are no races and memory is O(threads · n · k), never O(n²).
* Features are padded to a multiple of 8 with zeros (which add exactly 0 to every distance) and
  processed eight at a time, so the inner loop keeps a partial sum in registers and vectorises.
  ``fastmath`` allows only reassociation and fused multiply-add: the square root stays exact.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

# Tile sizes: BLOCK_COLS doubles of each of 8 feature rows stay in L1; BLOCK_ROWS rows reuse them.
BLOCK_ROWS = 128
BLOCK_COLS = 256
_FASTMATH = {"reassoc", "contract"}


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _row_sum(XT, xi, a, b, buf, col):  # type: ignore[no-untyped-def]
    """Sum of distances from the point ``xi`` to columns a..b of ``XT``; adds each to ``col``.

    ``XT`` is (d8, n) with d8 a multiple of 8. 1-D views indexed from 0 let LLVM vectorise.
    """
    d8 = XT.shape[0]
    m = b - a
    acc = buf[:m]
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
    s = 0.0
    for jj in range(m):
        dist = math.sqrt(acc[jj])
        s += dist
        col[jj] += dist
    return s


@njit(cache=True, nogil=True)
def _tile(XA, XTB, acc, i0, i1, j0, j1, ci, cj, symmetric, buf, col):  # type: ignore[no-untyped-def]
    """One tile: rows i0..i1 (label ci) of XA against columns j0..j1 (label cj) of XTB."""
    m = j1 - j0
    same = symmetric and ci == cj
    for jj in range(m):
        col[jj] = 0.0
    for i in range(i0, i1):
        # Within one label in symmetric mode, only pairs j > i: each pair once.
        js = 0
        if same and i >= j0:
            js = i - j0 + 1
        if js >= m:
            continue
        acc[i, cj] += _row_sum(XTB, XA[i], j0 + js, j1, buf, col[js:m])
    if symmetric:
        for jj in range(m):
            acc[j0 + jj, ci] += col[jj]


@njit(parallel=True, cache=True, nogil=True)
def label_distance_sums(XA, XTB, tiles, acc, symmetric):  # type: ignore[no-untyped-def]
    """Add, for each tile, sum_j dist(a_i, b_j) into ``acc[owner, i, label(j)]``.

    Args:
        XA: (nA, d8) float64 rows, sorted by label, features zero-padded to a multiple of 8.
        XTB: (d8, nB) float64 columns (transposed), sorted by label; XA itself when symmetric.
        tiles: (t, 6) int64 rows (i0, i1, j0, j1, label_i, label_j).
        acc: (owners, nA, k) float64 accumulators; owner o handles tiles o, o+owners, ...
        symmetric: XA and XTB hold the same points and tiles cover label pairs ci <= cj once;
            each tile then also adds its column sums to the column points.
    """
    owners = acc.shape[0]
    n_tiles = tiles.shape[0]
    for o in prange(owners):
        buf = np.empty(BLOCK_COLS, dtype=XA.dtype)  # pair sums in the data's precision
        col = np.empty(BLOCK_COLS)
        mine = acc[o]
        for t in range(o, n_tiles, owners):
            _tile(
                XA,
                XTB,
                mine,
                tiles[t, 0],
                tiles[t, 1],
                tiles[t, 2],
                tiles[t, 3],
                tiles[t, 4],
                tiles[t, 5],
                symmetric,
                buf,
                col,
            )


def num_threads() -> int:
    """Threads numba will use."""
    return int(numba.get_num_threads())
