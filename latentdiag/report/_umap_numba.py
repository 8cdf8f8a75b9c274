"""UMAP's layout optimisation, as umap-learn runs it, in numba.

umap-learn takes 2 s to import (it imports scikit-learn, pynndescent and pandas, and compiles
some of its kernels at import), longer than the report's whole 2,000-point UMAP. The report
builds the fuzzy graph with the kernels latentdiag already has for kBET (umap-learn's
``smooth_knn_dist`` and ``compute_membership_strengths``, then the fuzzy union), and lays it
out here with umap-learn's ``optimize_layout_euclidean`` (``move_other=True``, one thread):

* each edge is sampled every ``epochs_per_sample`` epochs (``n_epochs · w / max w`` samples
  in all); an attractive step ``−2ab d^{2(b−1)} / (1 + a d^{2b}) · (y_i − y_j)`` moves both
  ends, then ``negative_sample_rate`` (5) random points per sample push the head away with
  ``2b / ((0.001 + d²)(1 + a d^{2b}))``; every gradient coordinate is clipped to [−4, 4];
* the learning rate falls linearly from 1 to 0 over the epochs;
* random points come from umap-learn's Tausworthe generator, seeded as it seeds it.

Imported lazily by :mod:`latentdiag.report.projections`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)


@njit(nogil=True, cache=True)
def _tau_rand_int(state):  # type: ignore[no-untyped-def]
    """umap-learn's ``tau_rand_int``: a Tausworthe step on three int64 words (as int32)."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ (
        (((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19
    )
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ (
        (((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25
    )
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ (
        (((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11
    )
    return np.int32(state[0] ^ state[1] ^ state[2])


@njit(nogil=True, cache=True, inline="always")
def _clip(v):  # type: ignore[no-untyped-def]
    if v > 4.0:
        return 4.0
    if v < -4.0:
        return -4.0
    return v


@njit(nogil=True, cache=True)
def optimise_layout(  # type: ignore[no-untyped-def]
    embedding, head, tail, epochs_per_sample, n_epochs, a, b, rng_state, negative_sample_rate
):
    """Move ``embedding`` (n, dim) float32 in place along the edges (head, tail) of the graph.

    Args:
        embedding: (n, dim) float32 starting layout, updated in place.
        head, tail: (m,) int64 edge ends.
        epochs_per_sample: (m,) float64 epochs between two samples of each edge.
        n_epochs: Epochs in all.
        a, b: The curve 1 / (1 + a d^{2b}) fitted to the wanted ``min_dist``.
        rng_state: (3,) int64 state of the random generator.
        negative_sample_rate: Random points per positive sample.
    """
    n, dim = embedding.shape
    m = head.shape[0]
    per_negative = epochs_per_sample / negative_sample_rate
    next_negative = per_negative.copy()
    next_sample = epochs_per_sample.copy()
    alpha = 1.0
    for epoch in range(n_epochs):
        for i in range(m):
            if next_sample[i] > epoch:
                continue
            j = head[i]
            k = tail[i]
            dist_sq = 0.0
            for d in range(dim):
                diff = embedding[j, d] - embedding[k, d]
                dist_sq += diff * diff
            coeff = 0.0
            if dist_sq > 0.0:
                coeff = -2.0 * a * b * dist_sq ** (b - 1.0) / (a * dist_sq**b + 1.0)
            for d in range(dim):
                grad = _clip(coeff * (embedding[j, d] - embedding[k, d]))
                embedding[j, d] += grad * alpha
                embedding[k, d] += -grad * alpha
            next_sample[i] += epochs_per_sample[i]
            n_negative = int((epoch - next_negative[i]) / per_negative[i])
            for _ in range(n_negative):
                k = _tau_rand_int(rng_state) % n
                dist_sq = 0.0
                for d in range(dim):
                    diff = embedding[j, d] - embedding[k, d]
                    dist_sq += diff * diff
                if dist_sq > 0.0:
                    coeff = 2.0 * b / ((0.001 + dist_sq) * (a * dist_sq**b + 1.0))
                elif j == k:
                    continue
                else:
                    coeff = 0.0
                if coeff > 0.0:
                    for d in range(dim):
                        embedding[j, d] += (
                            _clip(coeff * (embedding[j, d] - embedding[k, d])) * alpha
                        )
            next_negative[i] += n_negative * per_negative[i]
        alpha = 1.0 - epoch / n_epochs  # as umap-learn: 1, 1, 1 - 1/n, ...
