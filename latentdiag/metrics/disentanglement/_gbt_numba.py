"""Gradient-boosted trees as scikit-learn's ``GradientBoostingClassifier()`` fits them, in numba.

disentanglement_lib's DCI fits ``sklearn.ensemble.GradientBoostingClassifier()`` with its
defaults — 100 stages, learning rate 0.1, depth-3 regression trees on the loss's negative
gradient, one Newton step per leaf — once per factor, and reads ``feature_importances_``.
This module is the same algorithm, step for step, so the importances and accuracies are the
same numbers (up to float rounding in the order of sums, and exact ties between splits, which
scikit-learn breaks by a random feature order):

* features as float32 (scikit-learn's trees cast X to float32); a split sits between two
  consecutive distinct values ``a < b`` (``b > a + 1e-7`` in float32) at ``a/2 + b/2``, and
  rows with ``x <= threshold`` go left;
* the best split of a node maximises ``S_L²/n_L + S_R²/n_R`` (the squared-error proxy, which
  orders splits as Friedman's MSE does); a node is a leaf at depth 3, below 2 rows, or when
  its variance is at most machine epsilon;
* binary factors: one tree per stage on ``y − p``, leaf value ``Σ(y − p) / Σ p(1 − p)``;
  more classes: one tree per class on ``1[y = k] − p_k`` (gradients of the stage start), leaf
  value ``(K − 1)/K · Σ r / Σ p_k(1 − p_k)``; values with a denominator below 1e-150 are 0;
* initial raw scores from the class priors (clipped to [eps, 1 − eps]): the logit for two
  classes, ``log p_k − mean_j log p_j`` for more;
* a tree's importance of feature f: Σ over its splits on f of
  ``n·var(node) − n_L·var(left) − n_R·var(right)``, divided by the training rows; the model's
  importances are the mean over trees with a split, normalised to sum 1.

Trees are built level by level: at each depth, one pass over every feature's presorted rows
finds the best split of every node of that depth at once, so a tree costs ``3 · d · n`` steps;
each row's node slot is looked up once per depth, and a candidate clearly below the best is
dropped before the tie rule (1.2× over the plain scan, the same splits).
The roots of a stage's trees all hold every row, so one pass finds all their splits together;
a candidate's score multiplies by a table of 1/c instead of dividing. (Measured and not kept:
growing a stage's trees together below the root, keeping each node's rows contiguous with a
partition per split, and scanning four features at once to overlap their dependency chains;
none was faster on 2 cores.)
Imported lazily by :mod:`latentdiag.metrics.disentanglement.dci`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

_FEATURE_THRESHOLD = np.float32(1e-7)
_EPSILON = np.finfo(np.float64).eps
_PROB_EPS = np.finfo(np.float64).eps
_MAX_DEPTH = 3
_N_NODES = 2 ** (_MAX_DEPTH + 1) - 1  # a complete tree of depth 3, in heap order


@njit(nogil=True, cache=True, inline="always")
def _takes(proxy, best, f, bf, rank):  # type: ignore[no-untyped-def]
    """Whether a candidate split of merit ``proxy`` on feature ``f`` replaces the best so far
    (``best`` on feature ``bf``; ``bf`` < 0: none yet). Strictly better by more than 1e-12
    relative wins; equal merit on another feature goes to the one ``rank`` puts first."""
    if bf < 0:
        return True
    tol = 1e-12 * abs(best)
    return proxy > best + tol or (f != bf and abs(proxy - best) <= tol and rank[f] < rank[bf])


@njit(nogil=True, cache=True)
def _grow_tree(  # type: ignore[no-untyped-def]
    X,
    order,
    xs,
    r,
    node_of,
    feature,
    threshold,
    is_split,
    node_n,
    node_sum,
    node_sq,
    work,
    rank,
    inv,
    root_f,
    root_t,
    slot,
    cnt,
    tot_n,
    lastv,
):
    """Grow one depth-3 regression tree on residuals ``r`` (heap layout: children 2i+1, 2i+2).

    Fills ``feature``, ``threshold``, ``is_split`` and the per-node row counts, sums and sums
    of squares; leaves ``node_of[i]`` at each row's leaf. Nodes that do not exist keep n = 0.
    ``xs[f]`` holds feature f's values in ``order[f]``; ``work`` (6, 8), ``rank`` (8, d),
    ``slot`` (n,), ``cnt``, ``tot_n`` and ``lastv`` (8,) are scratch space, ``inv[c]`` is 1/c.
    The root's split (``root_f`` < 0: none) comes from :func:`_root_splits`, which finds it
    for every tree of a stage in one pass.

    Splits of equal merit on different features (in small nodes several features often cut
    the rows the same way) go to the feature first in a random order per node, as
    scikit-learn's random feature order decides them; ``np.random`` is seeded by the caller.
    A candidate below the best so far by more than the tie tolerance (``lo``) is passed over
    without the tie rule: the same decisions, fewer steps.
    """
    n, d = X.shape
    for j in range(_N_NODES):
        is_split[j] = False
        node_n[j] = 0.0
        node_sum[j] = 0.0
        node_sq[j] = 0.0
    for i in range(n):
        node_of[i] = 0
    best, best_f, best_t, lo, cum_s, tot_s = work[0], work[1], work[2], work[3], work[4], work[5]
    first = 0
    for depth in range(_MAX_DEPTH + 1):
        width = 1 << depth
        for i in range(n):
            j = node_of[i]
            ri = r[i]
            node_n[j] += 1.0
            node_sum[j] += ri
            node_sq[j] += ri * ri
        if depth == _MAX_DEPTH:
            break
        # Which nodes of this depth may split (tot_n >= 0): at least 2 rows, variance above
        # epsilon.
        any_open = False
        for w in range(width):
            j = first + w
            c = node_n[j]
            best[w] = -np.inf
            lo[w] = -np.inf
            best_f[w] = -1.0
            tot_n[w] = -1
            if c >= 2.0:
                mean = node_sum[j] / c
                if node_sq[j] / c - mean * mean > _EPSILON:
                    tot_n[w] = int(c)
                    tot_s[w] = node_sum[j]
                    any_open = True
        if not any_open:
            break
        if depth == 0:
            best_f[0] = root_f
            best_t[0] = root_t
            d_scan = 0  # found by _root_splits
        else:
            d_scan = d
            for w in range(width):
                rank[w, :d] = np.random.permutation(d)
            # Each row's slot among this depth's open nodes (-1: in a leaf or a closed node).
            for i in range(n):
                w = node_of[i] - first
                if w >= 0 and w < width and tot_n[w] >= 0:
                    slot[i] = w
                else:
                    slot[i] = -1
        for f in range(d_scan):
            for w in range(width):
                cnt[w] = 0
                cum_s[w] = 0.0
            of = order[f]
            xf = xs[f]
            for q in range(n):
                i = of[q]
                w = slot[i]
                if w < 0:
                    continue
                v = xf[q]
                c = cnt[w]
                if c > 0 and v > lastv[w] + _FEATURE_THRESHOLD:
                    sl = cum_s[w]
                    sr = tot_s[w] - sl
                    proxy = sl * sl * inv[c] + sr * sr * inv[tot_n[w] - c]
                    if proxy >= lo[w] and _takes(proxy, best[w], f, int(best_f[w]), rank[w]):
                        best[w] = proxy
                        lo[w] = proxy - 1e-12 * abs(proxy)
                        best_f[w] = f
                        best_t[w] = np.float64(lastv[w]) / 2.0 + np.float64(v) / 2.0
                cnt[w] = c + 1
                cum_s[w] += r[i]
                lastv[w] = v
        for w in range(width):
            if best_f[w] >= 0.0:
                j = first + w
                is_split[j] = True
                feature[j] = int(best_f[w])
                threshold[j] = best_t[w]
        for i in range(n):
            j = node_of[i]
            if j >= first and j < first + width and is_split[j]:
                if np.float64(X[i, feature[j]]) <= threshold[j]:
                    node_of[i] = 2 * j + 1
                else:
                    node_of[i] = 2 * j + 2
        first += width
    return


@njit(nogil=True, cache=True)
def _root_splits(order, xs, r, rank, inv, best_f, best_t):  # type: ignore[no-untyped-def]
    """The best root split of each of the T trees of a stage (``best_f[k]`` < 0: none).

    Every tree's root holds all n rows, so one pass over a feature's sorted rows scores the
    candidate splits of all T trees: the row index, the value and the counts are shared, and
    the T running sums are independent chains. Candidates are visited feature by feature in
    sorted order, as :func:`_grow_tree` visits a node's, with the same tie rule (``rank[k]``).
    A tree whose residuals have no variance gets no split.
    """
    d, n = order.shape
    T = r.shape[1]
    total = np.zeros(T)
    sq = np.zeros(T)
    for i in range(n):
        for k in range(T):
            total[k] += r[i, k]
            sq[k] += r[i, k] * r[i, k]
    best = np.full(T, -np.inf)
    open_k = np.zeros(T, dtype=np.bool_)
    for k in range(T):
        best_f[k] = -1
        best_t[k] = 0.0
        mean = total[k] / n
        open_k[k] = n >= 2 and sq[k] / n - mean * mean > _EPSILON
    cum = np.zeros(T)
    for f in range(d):
        of = order[f]
        xf = xs[f]
        cum[:] = 0.0
        last = xf[0]
        for q in range(n):
            v = xf[q]
            if q > 0 and v > last + _FEATURE_THRESHOLD:
                a = inv[q]
                b = inv[n - q]
                t = np.float64(last) / 2.0 + np.float64(v) / 2.0
                for k in range(T):
                    if not open_k[k]:
                        continue
                    sl = cum[k]
                    sr = total[k] - sl
                    proxy = sl * sl * a + sr * sr * b
                    if _takes(proxy, best[k], f, best_f[k], rank[k]):
                        best[k] = proxy
                        best_f[k] = f
                        best_t[k] = t
            i = of[q]
            for k in range(T):
                cum[k] += r[i, k]
            last = v


@njit(nogil=True, cache=True)
def _leaf_of(x, feature, threshold, is_split):  # type: ignore[no-untyped-def]
    j = 0
    while is_split[j]:
        j = 2 * j + 1 + np.int64(np.float64(x[feature[j]]) > threshold[j])
    return j


@njit(nogil=True, cache=True)
def fit_gbt(X, y, X_test, n_classes, n_estimators, learning_rate, seed):  # type: ignore[no-untyped-def]
    """Fit one factor; returns (importances (d,), train predictions, test predictions).

    Args:
        X: (n, d) float32 training codes.
        y: (n,) int64 class indices 0..K-1 (every class present).
        X_test: (m, d) float32 test codes.
        n_classes: K >= 2.
        n_estimators: Boosting stages (scikit-learn's default: 100).
        learning_rate: Shrinkage (default 0.1).
        seed: Seed of the order in which equal splits are broken.
    """
    np.random.seed(seed)
    n, d = X.shape
    m = X_test.shape[0]
    K = n_classes
    T = 1 if K == 2 else K  # trees per stage
    order = np.empty((d, n), dtype=np.int64)
    xs = np.empty((d, n), dtype=np.float32)
    for f in range(d):
        order[f] = np.argsort(X[:, f], kind="mergesort")
        for q in range(n):
            xs[f, q] = X[order[f, q], f]
    work = np.zeros((6, 1 << _MAX_DEPTH))
    rank = np.zeros((1 << _MAX_DEPTH, d))
    counts = np.zeros(K)
    for i in range(n):
        counts[y[i]] += 1.0
    raw = np.zeros((n, T))
    raw_test = np.zeros((m, T))
    if T == 1:
        p1 = min(max(counts[1] / n, _PROB_EPS), 1.0 - _PROB_EPS)
        init = math.log(p1 / (1.0 - p1))
        raw[:, 0] = init
        raw_test[:, 0] = init
    else:
        logs = np.empty(K)
        for k in range(K):
            logs[k] = math.log(min(max(counts[k] / n, _PROB_EPS), 1.0 - _PROB_EPS))
        mean_log = logs.mean()
        for k in range(K):
            raw[:, k] = logs[k] - mean_log
            raw_test[:, k] = logs[k] - mean_log
    importance = np.zeros(d)
    relevant = 0
    neg = np.empty((n, T))
    prob = np.empty((n, T))
    node_of = np.empty(n, dtype=np.int64)
    feature = np.zeros(_N_NODES, dtype=np.int64)
    threshold = np.zeros(_N_NODES)
    is_split = np.zeros(_N_NODES, dtype=np.bool_)
    node_n = np.zeros(_N_NODES)
    node_sum = np.zeros(_N_NODES)
    node_sq = np.zeros(_N_NODES)
    value = np.zeros(_N_NODES)
    r = np.empty(n)
    inv = 1.0 / np.maximum(np.arange(n + 1), 1.0)  # 1/c: a split's score multiplies
    root_rank = np.zeros((T, d), dtype=np.int64)
    slot = np.empty(n, dtype=np.int64)
    cnt = np.zeros(1 << _MAX_DEPTH, dtype=np.int64)
    tot_n = np.zeros(1 << _MAX_DEPTH, dtype=np.int64)
    lastv = np.zeros(1 << _MAX_DEPTH, dtype=np.float32)
    root_f = np.empty(T, dtype=np.int64)
    root_t = np.empty(T)
    for _stage in range(n_estimators):
        # Gradients of the stage start, for every tree of the stage.
        for i in range(n):
            if T == 1:
                p = 1.0 / (1.0 + math.exp(-raw[i, 0]))
                prob[i, 0] = p
                neg[i, 0] = (1.0 if y[i] == 1 else 0.0) - p
            else:
                top = raw[i, 0]
                for k in range(1, K):
                    if raw[i, k] > top:
                        top = raw[i, k]
                total = 0.0
                for k in range(K):
                    e = math.exp(raw[i, k] - top)
                    prob[i, k] = e
                    total += e
                for k in range(K):
                    prob[i, k] /= total
                    neg[i, k] = (1.0 if y[i] == k else 0.0) - prob[i, k]
        for k in range(T):
            root_rank[k] = np.random.permutation(d)
        _root_splits(order, xs, neg, root_rank, inv, root_f, root_t)
        for k in range(T):
            for i in range(n):
                r[i] = neg[i, k]
            _grow_tree(
                X,
                order,
                xs,
                r,
                node_of,
                feature,
                threshold,
                is_split,
                node_n,
                node_sum,
                node_sq,
                work,
                rank,
                inv,
                root_f[k],
                root_t[k],
                slot,
                cnt,
                tot_n,
                lastv,
            )
            if is_split[0]:
                relevant += 1
                for j in range(_N_NODES):
                    if is_split[j]:
                        a, b = 2 * j + 1, 2 * j + 2
                        gain = _weighted_var(node_n[j], node_sum[j], node_sq[j])
                        gain -= _weighted_var(node_n[a], node_sum[a], node_sq[a])
                        gain -= _weighted_var(node_n[b], node_sum[b], node_sq[b])
                        importance[feature[j]] += gain / n
            # One Newton step per leaf.
            num = np.zeros(_N_NODES)
            den = np.zeros(_N_NODES)
            for i in range(n):
                j = node_of[i]
                num[j] += r[i]
                den[j] += prob[i, k] * (1.0 - prob[i, k])
            factor = 1.0 if T == 1 else (K - 1.0) / K
            for j in range(_N_NODES):
                value[j] = 0.0
                if node_n[j] > 0.0 and not is_split[j]:
                    numerator = num[j] / node_n[j] * factor
                    denominator = den[j] / node_n[j]
                    if abs(denominator) >= 1e-150:
                        value[j] = numerator / denominator
            for i in range(n):
                raw[i, k] += learning_rate * value[node_of[i]]
            for i in range(m):
                raw_test[i, k] += (
                    learning_rate * value[_leaf_of(X_test[i], feature, threshold, is_split)]
                )
    if relevant > 0:
        importance /= relevant
    total_importance = importance.sum()
    if total_importance > 0.0:
        importance /= total_importance
    return importance, _predict(raw, T), _predict(raw_test, T)


@njit(nogil=True, cache=True)
def _weighted_var(c, s, sq):  # type: ignore[no-untyped-def]
    """n · var of a node from its row count, sum and sum of squares (0 for an empty node)."""
    if c <= 0.0:
        return 0.0
    mean = s / c
    return c * (sq / c - mean * mean)


@njit(nogil=True, cache=True)
def _predict(raw, T):  # type: ignore[no-untyped-def]
    n = raw.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        if T == 1:
            out[i] = 1 if raw[i, 0] > 0.0 else 0
        else:
            best = 0
            for k in range(1, raw.shape[1]):
                if raw[i, k] > raw[i, best]:
                    best = k
            out[i] = best
    return out
