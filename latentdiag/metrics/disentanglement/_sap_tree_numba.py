"""The decision tree of scikit-learn's ``DecisionTreeClassifier`` on one feature, in numba.

SAP's discrete scores fit ``DecisionTreeClassifier(max_leaf_nodes=2 * K,
class_weight="balanced")`` on a single code, once per (code, factor). This module grows the
same tree, step for step, so its predictions are the same labels; scikit-learn's own fit costs
about a millisecond of Python overhead per tree, and importing it costs more than the whole
metric. The conventions it keeps:

* the feature as float32; row weights ``n / (K · count[class])`` (``class_weight="balanced"``);
* Gini impurity on weighted class counts; a split sits between two consecutive sorted values
  ``a < b`` with ``b > a + 1e-7`` (in float32), at ``a/2 + b/2`` (in float64); rows with
  ``x <= threshold`` go left. A node's best split is the first, in sorted order, of the
  largest proxy ``-w_R·gini_R - w_L·gini_L`` (a later candidate must be strictly better);
* a node is a leaf below 2 rows, at impurity ``<= eps`` (float64), when its values span at
  most 1e-7, or when no candidate exists; its improvement is
  ``w_node/w_all · (gini - w_R/w_node · gini_R - w_L/w_node · gini_L)``, and a split whose
  improvement is below ``-eps`` is not made;
* best-first growth: the frontier is a binary max-heap on the improvement, pushed and popped
  as the GNU C++ library's ``push_heap`` / ``pop_heap`` do (scikit-learn's Linux builds use
  it), so nodes of equal improvement are expanded in the same order; at most
  ``max_leaf_nodes - 1`` splits;
* a leaf predicts the class of the largest weighted fraction (the first on ties).

Exactness: every floating-point sum is taken in scikit-learn's order, so every proxy,
threshold and improvement is the same float64 number, and exact ties (common on codes with few
values) are broken the same way. Where the order matters:

* a node's rows are summed in the order scikit-learn's row buffer holds them: the root's in
  row order; a child's as its parent's sort and in-place partition left them (a left child's
  sorted, a right child's rows r0, r1, ... rotated to r1, ..., r_last, r0);
* a candidate's class sums are reached from the previous candidate's by adding its rows, or
  from the node's totals by subtracting rows from the end, whichever moves fewer rows, as
  scikit-learn's criterion reaches them;
* among rows of equal value, the order scikit-learn's introsort leaves them in (median of 3,
  3-way partition, heapsort beyond ``2·log2 n`` levels, insertion sort below 16 rows) changes
  a sum only when their weights differ. A node holding such rows sorts them with that
  introsort and partitions them in place, as scikit-learn does; any other node reads its rows
  in the root's sorted order, since with one feature every node is a contiguous run of it.
  The code is therefore sorted once (:func:`presort`), for every factor.

The Gini proxy of a candidate is a K-term sum; running sums of squares give every candidate's
proxy up to a rounding error far below a margin of ``1e-11 · (n_node + 64) · w_node``, and only
candidates within the margin of the largest so far are scored exactly. The first largest is
always among them, so the split chosen is the same.
(A single feature leaves scikit-learn's random feature order nothing to decide.)

Imported lazily by :mod:`latentdiag.metrics.disentanglement.sap`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

_FEATURE_THRESHOLD = np.float32(1e-7)
_EPSILON = np.finfo(np.float64).eps
_INSERTION_MAX = 15  # introsort hands ranges of at most this many rows to insertion sort


@njit(nogil=True, cache=True, inline="always")
def _swap(v, s, i, j):  # type: ignore[no-untyped-def]
    v[i], v[j] = v[j], v[i]
    s[i], s[j] = s[j], s[i]


@njit(nogil=True, cache=True, inline="always")
def _sift_down(v, s, lo, root, end):  # type: ignore[no-untyped-def]
    """Sift ``v[lo + root]`` down within ``v[lo:lo + end]`` (max-heap), ``s`` alongside."""
    while True:
        child = root * 2 + 1
        top = root
        if child < end and v[lo + top] < v[lo + child]:
            top = child
        if child + 1 < end and v[lo + top] < v[lo + child + 1]:
            top = child + 1
        if top == root:
            return
        _swap(v, s, lo + root, lo + top)
        root = top


@njit(nogil=True, cache=True)
def _heapsort(v, s, lo, n):  # type: ignore[no-untyped-def]
    """Heapsort of ``v[lo:lo + n]`` (and ``s`` alongside), as scikit-learn's ``heapsort``."""
    start = (n - 2) // 2
    end = n
    while True:
        _sift_down(v, s, lo, start, end)
        if start == 0:
            break
        start -= 1
    end = n - 1
    while end > 0:
        _swap(v, s, lo, lo + end)
        _sift_down(v, s, lo, 0, end)
        end -= 1


@njit(nogil=True, cache=True)
def _introsort(v, s, lo, n, stack):  # type: ignore[no-untyped-def]
    """Sort ``v[lo:lo + n]`` and permute ``s`` alongside, as scikit-learn's
    ``simultaneous_sort(..., use_three_way_partition=True)``: the same swaps, so rows of equal
    value end in the same order. ``stack`` (3, >= 2·log2 n + 2) is scratch space; the ranges
    left for later are disjoint, so the order in which they are sorted does not matter."""
    if n == 0:
        return
    log2n = 0
    while (2 << log2n) <= n:
        log2n += 1
    top = 0
    stack[0, 0] = lo
    stack[1, 0] = n
    stack[2, 0] = 2 * log2n
    top = 1
    while top > 0:
        top -= 1
        a = stack[0, top]
        m = stack[1, top]
        maxd = stack[2, top]
        done = False
        while m > _INSERTION_MAX:
            if maxd <= 0:
                _heapsort(v, s, a, m)
                done = True
                break
            maxd -= 1
            x0 = v[a]
            x1 = v[a + m // 2]
            x2 = v[a + m - 1]
            if x0 < x1:
                if x1 < x2:
                    pivot = x1
                elif x0 < x2:
                    pivot = x2
                else:
                    pivot = x0
            elif x1 < x2:
                if x0 < x2:
                    pivot = x0
                else:
                    pivot = x2
            else:
                pivot = x1
            i = 0
            left = 0
            right = m
            while i < right:
                if v[a + i] < pivot:
                    _swap(v, s, a + i, a + left)
                    i += 1
                    left += 1
                elif v[a + i] > pivot:
                    right -= 1
                    _swap(v, s, a + i, a + right)
                else:
                    i += 1
            # [a, a + left) is sorted later with the same depth budget.
            stack[0, top] = a
            stack[1, top] = left
            stack[2, top] = maxd
            top += 1
            a += right
            m -= right
        if not done:
            for i in range(a + 1, a + m):  # insertion sort
                tv = v[i]
                ts = s[i]
                j = i
                while j > a and v[j - 1] > tv:
                    v[j] = v[j - 1]
                    s[j] = s[j - 1]
                    j -= 1
                v[j] = tv
                s[j] = ts


@njit(nogil=True, cache=True, inline="always")
def _move(pos, new_pos, start, end, samples, y, w, sum_left, sum_total, w_left, w_node, K):  # type: ignore[no-untyped-def]
    """Class sums of the rows ``[start, new_pos)`` from those of ``[start, pos)``: add rows
    ``[pos, new_pos)``, or, when fewer rows lie to the right, start from the node's totals and
    subtract rows ``end - 1`` down to ``new_pos`` (scikit-learn's ``update``). Returns the
    left weight."""
    if new_pos - pos <= end - new_pos:
        for p in range(pos, new_pos):
            i = samples[p]
            sum_left[y[i]] += w[i]
            w_left += w[i]
    else:
        for c in range(K):
            sum_left[c] = sum_total[c]
        w_left = w_node
        for p in range(end - 1, new_pos - 1, -1):
            i = samples[p]
            sum_left[y[i]] -= w[i]
            w_left -= w[i]
    return w_left


@njit(nogil=True, cache=True, inline="always")
def _children_gini(sum_left, sum_total, w_left, w_right, K):  # type: ignore[no-untyped-def]
    sq_left = 0.0
    sq_right = 0.0
    for c in range(K):
        cl = sum_left[c]
        sq_left += cl * cl
        cr = sum_total[c] - cl
        sq_right += cr * cr
    return 1.0 - sq_left / (w_left * w_left), 1.0 - sq_right / (w_right * w_right)


@njit(nogil=True, cache=True)
def _evaluate(  # type: ignore[no-untyped-def]
    start, end, impurity, kind, literal, exact_buffer, x, y, w, w_all, scratch, sums
):
    """Evaluate the node of rows ``samples[start:end]`` as scikit-learn's ``_add_split_node``
    does: its class sums and label, and, unless it is a leaf already, its best split.

    Returns (label, split position (``end``: none), whether it is a leaf, improvement,
    threshold, Gini impurity of the left side, of the right side); without a split the two
    impurities are the node's own. ``impurity`` is the node's, as its parent's split found it
    (unused for the root). ``scratch`` is (``samples``, ``fv``: the row buffer and its values,
    ``stack``: for :func:`_introsort`), ``sums`` the (2, K) class sums of the node and of a
    split's left side.

    ``kind``: 0 the root (its rows are summed in row order, as scikit-learn's buffer holds them
    before the first sort; ``samples`` arrive sorted by :func:`presort`), 1 a left child, 2 a
    right child. ``exact_buffer``: ``samples[start:end]`` holds the rows in scikit-learn's
    order (the parent was ``literal``); otherwise it holds them sorted, and a right child's
    rows, which scikit-learn's partition leaves rotated by one, are read in that rotated order.
    ``literal``: the node holds rows of equal value and different weights, whose order changes
    sums; it sorts its rows with scikit-learn's introsort and partitions them in place, so its
    children get exact buffers. A node without such rows may use any sorted order of its rows:
    every sum then sees the same sequence of weights.
    """
    samples, fv, stack = scratch
    sum_total = sums[0]
    sum_left = sums[1]
    K = sum_total.shape[0]
    w_node = 0.0
    for c in range(K):
        sum_total[c] = 0.0
    if kind == 0:
        for i in range(x.shape[0]):
            sum_total[y[i]] += w[i]
            w_node += w[i]
        sq = 0.0
        for c in range(K):
            sq += sum_total[c] * sum_total[c]
        impurity = 1.0 - sq / (w_node * w_node)
    else:
        first = start + 1 if kind == 2 and not exact_buffer else start
        for p in range(first, end):
            i = samples[p]
            sum_total[y[i]] += w[i]
            w_node += w[i]
        if first > start:
            i = samples[start]
            sum_total[y[i]] += w[i]
            w_node += w[i]
    best_c = 0
    best_v = sum_total[0] / w_node
    for c in range(1, K):
        vc = sum_total[c] / w_node
        if vc > best_v:
            best_v = vc
            best_c = c
    if end - start < 2 or impurity <= _EPSILON:
        return best_c, end, True, 0.0, 0.0, impurity, impurity
    if kind != 0:
        if literal:
            for p in range(start, end):
                fv[p] = x[samples[p]]
            _introsort(fv, samples, start, end - start, stack)
        elif exact_buffer and kind == 2:
            # Undo the partition's rotation: r1, ..., r_last, r0 back to sorted order (``fv``
            # still holds the parent's sorted values).
            last = samples[end - 1]
            for p in range(end - 1, start, -1):
                samples[p] = samples[p - 1]
            samples[start] = last
    if fv[end - 1] <= fv[start] + _FEATURE_THRESHOLD:
        return best_c, end, True, 0.0, 0.0, impurity, impurity  # constant on this node
    # scikit-learn's scan: the class sums of each candidate, reached from the previous one's
    # as its criterion reaches them, and the proxy of the first largest. The proxy's K-term
    # sums are taken only where they can matter: running sums of squares give every
    # candidate's proxy up to a rounding error far below ``margin``; one more than ``margin``
    # below the largest so far cannot be the first largest, the others are scored exactly.
    # (The right side's sum of squares is recomputed whenever its weight halves, and both
    # after a move from the node's totals, so the error stays relative to each side's weight.)
    margin = 1e-11 * (end - start + 64) * w_node
    for c in range(K):
        sum_left[c] = 0.0
    w_left = 0.0
    sq_left = 0.0
    sq_right = 0.0
    for c in range(K):
        sq_right += sum_total[c] * sum_total[c]
    w_ref = w_node
    top = -np.inf
    best = -np.inf
    best_pos = end
    pos = start
    p = start
    while p < end:
        p += 1
        while p < end and fv[p] <= fv[p - 1] + _FEATURE_THRESHOLD:
            p += 1
        if p == end:
            break
        if p - pos <= end - p:
            for r in range(pos, p):
                i = samples[r]
                c = y[i]
                wi = w[i]
                a = sum_left[c]
                sum_left[c] = a + wi
                w_left += wi
                sq_left += (a + a + wi) * wi
                sq_right -= (sum_total[c] - a + sum_total[c] - a - wi) * wi
        else:
            w_left = _move(
                pos, p, start, end, samples, y, w, sum_left, sum_total, w_left, w_node, K
            )
            sq_left = 0.0
            for c in range(K):
                sq_left += sum_left[c] * sum_left[c]
            w_ref = np.inf
        pos = p
        w_right = w_node - w_left
        if w_right < 0.5 * w_ref:
            sq_right = 0.0
            for c in range(K):
                d = sum_total[c] - sum_left[c]
                sq_right += d * d
            w_ref = w_right
        v = sq_left / w_left + sq_right / w_right
        if v >= top - margin:
            g_left, g_right = _children_gini(sum_left, sum_total, w_left, w_right, K)
            proxy = -w_right * g_right - w_left * g_left
            if proxy > best:
                best = proxy
                best_pos = p
        if v > top:
            top = v
    if best_pos >= end:
        return best_c, end, True, 0.0, 0.0, impurity, impurity
    best_t = np.float64(fv[best_pos - 1]) / 2.0 + np.float64(fv[best_pos]) / 2.0
    for c in range(K):
        sum_left[c] = 0.0
    if literal:  # scikit-learn's partition, then its criterion on the partitioned rows
        lo = start
        hi = end
        while lo < hi:
            if np.float64(x[samples[lo]]) <= best_t:
                lo += 1
            else:
                hi -= 1
                samples[lo], samples[hi] = samples[hi], samples[lo]
        w_left = _move(
            start, best_pos, start, end, samples, y, w, sum_left, sum_total, 0.0, w_node, K
        )
    elif best_pos - start <= end - best_pos:
        w_left = _move(
            start, best_pos, start, end, samples, y, w, sum_left, sum_total, 0.0, w_node, K
        )
    else:
        # The partition leaves the right rows r0, r1, ... as r1, ..., r_last, r0; scikit-learn
        # subtracts them from the end: r0 first, then r_last down to r1.
        for c in range(K):
            sum_left[c] = sum_total[c]
        w_left = w_node
        i = samples[best_pos]
        sum_left[y[i]] -= w[i]
        w_left -= w[i]
        for p in range(end - 1, best_pos, -1):
            i = samples[p]
            sum_left[y[i]] -= w[i]
            w_left -= w[i]
    w_right = w_node - w_left
    g_left, g_right = _children_gini(sum_left, sum_total, w_left, w_right, K)
    gain = (w_node / w_all) * (impurity - (w_right / w_node * g_right) - (w_left / w_node * g_left))
    return best_c, best_pos, gain + _EPSILON < 0.0, gain, best_t, g_left, g_right


@njit(nogil=True, cache=True, inline="always")
def _sift_up(heap, gain, hole, top, value):  # type: ignore[no-untyped-def]
    """libstdc++'s ``__push_heap``: move ``value`` up from ``hole`` while its parent is less."""
    parent = (hole - 1) // 2
    while hole > top and gain[heap[parent]] < gain[value]:
        heap[hole] = heap[parent]
        hole = parent
        parent = (hole - 1) // 2
    heap[hole] = value


@njit(nogil=True, cache=True, inline="always")
def _heap_push(heap, size, gain, value):  # type: ignore[no-untyped-def]
    heap[size] = value
    _sift_up(heap, gain, size, 0, value)
    return size + 1


@njit(nogil=True, cache=True, inline="always")
def _heap_pop(heap, size, gain):  # type: ignore[no-untyped-def]
    """libstdc++'s ``pop_heap`` then ``pop_back``: returns (top record, new size)."""
    first = heap[0]
    if size > 1:
        last = size - 1
        value = heap[last]
        heap[last] = first
        # __adjust_heap(first, 0, last, value)
        length = last
        hole = 0
        child = 0
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if gain[heap[child]] < gain[heap[child - 1]]:
                child -= 1
            heap[hole] = heap[child]
            hole = child
        if (length & 1) == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            heap[hole] = heap[child - 1]
            hole = child - 1
        _sift_up(heap, gain, hole, 0, value)
    return first, size - 1


@njit(nogil=True, cache=True)
def presort(x):  # type: ignore[no-untyped-def]
    """The root's sort: (rows, values) as scikit-learn's introsort orders ``x`` (float32)."""
    n = x.shape[0]
    samples = np.arange(n)
    fv = x.copy()
    _introsort(fv, samples, 0, n, _sort_stack(n))
    return samples, fv


@njit(nogil=True, cache=True)
def _sort_stack(n):  # type: ignore[no-untyped-def]
    depth = 2
    while (1 << depth) <= n:
        depth += 1
    return np.empty((3, 2 * depth + 2), dtype=np.int64)


@njit(nogil=True, cache=True)
def fit_predict(x, order, sorted_x, y, x_test, n_classes, max_leaf_nodes):  # type: ignore[no-untyped-def]
    """Grow the tree on ``(x, y)`` and return its labels for ``x_test``.

    Args:
        x: (n,) float32 training values of the feature.
        order, sorted_x: :func:`presort` of ``x`` (shared by every fit on the same values).
        y: (n,) int64 class indices 0..K-1, every class present.
        x_test: (m,) float32 values to label.
        n_classes: K >= 1.
        max_leaf_nodes: At most this many leaves (>= 2).

    Returns:
        (m,) int64 class indices.
    """
    n = x.shape[0]
    K = n_classes
    counts = np.zeros(K)
    for i in range(n):
        counts[y[i]] += 1.0
    cw = np.empty(K)
    for c in range(K):
        cw[c] = n / (K * counts[c]) if counts[c] > 0 else 0.0
    w = np.empty(n)
    w_all = 0.0
    for i in range(n):
        w[i] = cw[y[i]]
        w_all += w[i]
    # mixed[q]: how many of the sorted positions 1..q hold a row equal in value to the row
    # before it and different in weight. Only nodes that hold such rows depend on the order
    # scikit-learn's sorts leave them in. A node holds the sorted positions [start, end).
    mixed = np.zeros(n, dtype=np.int64)
    for q in range(1, n):
        tie = sorted_x[q] == sorted_x[q - 1] and w[order[q]] != w[order[q - 1]]
        mixed[q] = mixed[q - 1] + (1 if tie else 0)
    scratch = (order.copy(), sorted_x.copy(), _sort_stack(n))
    sums = np.empty((2, K))
    n_nodes = 2 * max_leaf_nodes
    start = np.zeros(n_nodes, dtype=np.int64)
    end = np.zeros(n_nodes, dtype=np.int64)
    pos = np.zeros(n_nodes, dtype=np.int64)
    is_leaf = np.ones(n_nodes, dtype=np.bool_)
    literal = np.zeros(n_nodes, dtype=np.bool_)
    gain = np.zeros(n_nodes)
    imp_left = np.zeros(n_nodes)
    imp_right = np.zeros(n_nodes)
    threshold = np.zeros(n_nodes)
    label = np.zeros(n_nodes, dtype=np.int64)
    left = np.full(n_nodes, -1, dtype=np.int64)
    right = np.full(n_nodes, -1, dtype=np.int64)
    heap = np.empty(n_nodes, dtype=np.int64)

    end[0] = n
    literal[0] = n > 0 and mixed[n - 1] > 0
    found = _evaluate(0, n, 0.0, 0, literal[0], True, x, y, w, w_all, scratch, sums)
    label[0], pos[0], is_leaf[0], gain[0], threshold[0], imp_left[0], imp_right[0] = found
    n_made = 1
    size = _heap_push(heap, 0, gain, 0)
    splits_left = max_leaf_nodes - 1
    while size > 0:
        node, size = _heap_pop(heap, size, gain)
        if is_leaf[node] or splits_left <= 0:
            continue  # a leaf for good
        splits_left -= 1
        for side in range(2):
            j = n_made + side
            lo = start[node] if side == 0 else pos[node]
            hi = pos[node] if side == 0 else end[node]
            imp = imp_left[node] if side == 0 else imp_right[node]
            start[j] = lo
            end[j] = hi
            literal[j] = mixed[hi - 1] > mixed[lo]
            exact = literal[node]  # the parent's partition left scikit-learn's row order
            found = _evaluate(
                lo, hi, imp, 1 + side, literal[j], exact, x, y, w, w_all, scratch, sums
            )
            label[j], pos[j], is_leaf[j], gain[j], threshold[j], imp_left[j], imp_right[j] = found
        left[node] = n_made
        right[node] = n_made + 1
        size = _heap_push(heap, size, gain, n_made)
        size = _heap_push(heap, size, gain, n_made + 1)
        n_made += 2

    m = x_test.shape[0]
    out = np.empty(m, dtype=np.int64)
    for i in range(m):
        j = 0
        xi = np.float64(x_test[i])
        while left[j] >= 0:
            j = left[j] if xi <= threshold[j] else right[j]
        out[i] = label[j]
    return out
