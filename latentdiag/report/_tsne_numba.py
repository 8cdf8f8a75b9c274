"""Exact t-SNE in numba, for the report's few thousand points.

scikit-learn's t-SNE approximates the repulsive forces with a Barnes-Hut tree; on the report's
default 2,000 points its 750 iterations took 7 s of one core. Below a few thousand points the
exact O(n²) gradient is cheaper: each iteration is one pass over all pairs, branch-free and
vectorised in float32, about 0.6 ms for 2,000 points (1 s for the 750 iterations).
Everything else follows scikit-learn's ``TSNE(init="pca", learning_rate="auto")``:

* affinities: for each point, the ``3·perplexity`` nearest neighbours (exact), a Gaussian
  whose precision is found by bisection so that the conditional distribution's perplexity
  is the one asked for (tolerance 1e-5 on its entropy in nats, 100 steps), then P = (P + Pᵀ)
  normalised to sum 1;
* initialisation: the first two principal components, scaled so that the first has standard
  deviation 1e-4;
* optimisation: gradient descent on KL(P‖Q) with a Student-t kernel (one degree of freedom),
  the gradient ``4 Σ_j (p_ij − q_ij)(1 + |y_i − y_j|²)⁻¹ (y_i − y_j)``; early exaggeration 12
  with momentum 0.5 for the first 250 iterations, then momentum 0.8; learning rate
  ``max(n / 12 / 4, 50)``; per-coordinate gains (+0.2 when the step changes sign, ×0.8
  otherwise, at least 0.01); steps and gains start afresh with the second phase.

Serial kernels that release the GIL: the report runs t-SNE on a background thread while the
metrics' parallel kernels have the cores (numba's workqueue layer launches one parallel kernel
at a time). Imported lazily by :mod:`latentdiag.report.projections`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

_PERPLEXITY_TOL = 1e-5
_BISECTION_STEPS = 100


@njit(nogil=True, cache=True)
def conditional_affinities(sq, perplexity):  # type: ignore[no-untyped-def]
    """Row-wise Gaussian affinities over each point's neighbours, at the given perplexity.

    Args:
        sq: (n, k) squared distances to each point's k nearest neighbours.
        perplexity: The wanted perplexity, below k.

    Returns:
        (n, k) conditional probabilities p_{j|i}, each row summing to 1.
    """
    n, k = sq.shape
    out = np.empty((n, k))
    target = math.log(perplexity)
    for i in range(n):
        beta = 1.0
        lo = -np.inf
        hi = np.inf
        for _ in range(_BISECTION_STEPS):
            total = 0.0
            for t in range(k):
                p = math.exp(-sq[i, t] * beta)
                out[i, t] = p
                total += p
            if total == 0.0:
                total = 1e-8
            weighted = 0.0
            for t in range(k):
                out[i, t] /= total
                weighted += sq[i, t] * out[i, t]
            entropy = math.log(total) + beta * weighted
            diff = entropy - target
            if abs(diff) <= _PERPLEXITY_TOL:
                break
            if diff > 0.0:
                lo = beta
                beta = beta * 2.0 if hi == np.inf else (beta + hi) / 2.0
            else:
                hi = beta
                beta = beta / 2.0 if lo == -np.inf else (beta + lo) / 2.0
    return out


# numpy's error model: no zero-division branch in the pair loop, which then vectorises
# (1 + d² is never 0).
@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _repulsion(f0, f1, g0, g1):  # type: ignore[no-untyped-def]
    """Σ_j q̃_ij² (y_i − y_j) into (g0, g1), and Z = Σ_{i≠j} q̃_ij, over every pair.

    In float32 (as scikit-learn's Barnes-Hut gradient), one row's sums at a time: the
    pair loop then runs 16 pairs per vector step; Z is summed over rows in float64.
    """
    n = f0.shape[0]
    one = np.float32(1.0)
    z = 0.0
    for i in range(n):
        a0 = f0[i]
        a1 = f1[i]
        zi = np.float32(0.0)
        r0 = np.float32(0.0)
        r1 = np.float32(0.0)
        for j in range(n):
            d0 = a0 - f0[j]
            d1 = a1 - f1[j]
            q = one / (one + d0 * d0 + d1 * d1)
            zi += q
            qq = q * q
            r0 += qq * d0
            r1 += qq * d1
        z += np.float64(zi) - 1.0  # the pair (i, i) adds q = 1 and no force
        g0[i] = r0
        g1[i] = r1
    return z


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _gradient(y0, y1, f0, f1, indptr, indices, pvals, exaggeration, g0, g1):  # type: ignore[no-untyped-def]
    """The exact KL gradient at (y0, y1) into (g0, g1); P in CSR form, times ``exaggeration``;
    (f0, f1) are scratch space for the float32 positions."""
    n = y0.shape[0]
    for i in range(n):
        f0[i] = y0[i]
        f1[i] = y1[i]
    inv_z = 1.0 / max(_repulsion(f0, f1, g0, g1), 1e-300)
    for i in range(n):
        a0 = y0[i]
        a1 = y1[i]
        s0 = 0.0
        s1 = 0.0
        for t in range(indptr[i], indptr[i + 1]):
            j = indices[t]
            d0 = a0 - y0[j]
            d1 = a1 - y1[j]
            w = pvals[t] / (1.0 + d0 * d0 + d1 * d1)
            s0 += w * d0
            s1 += w * d1
        g0[i] = 4.0 * (exaggeration * s0 - g0[i] * inv_z)
        g1[i] = 4.0 * (exaggeration * s1 - g1[i] * inv_z)


@njit(nogil=True, cache=True)
def optimise(  # type: ignore[no-untyped-def]
    y, indptr, indices, pvals, n_iter, exploration, exaggeration, learning_rate
):
    """Gradient descent with momentum and gains, scikit-learn's schedule; ``y`` (n, 2) in place.

    Args:
        y: (n, 2) float64 starting positions, updated in place.
        indptr, indices, pvals: The joint affinities P in CSR form (symmetric, sum 1).
        n_iter: Iterations in all.
        exploration: The first iterations, with early exaggeration and momentum 0.5.
        exaggeration: Early exaggeration (12).
        learning_rate: Step size.
    """
    n = y.shape[0]
    y0 = np.ascontiguousarray(y[:, 0])
    y1 = np.ascontiguousarray(y[:, 1])
    g0 = np.zeros(n)
    g1 = np.zeros(n)
    f0 = np.zeros(n, dtype=np.float32)
    f1 = np.zeros(n, dtype=np.float32)
    u0 = np.zeros(n)
    u1 = np.zeros(n)
    gain0 = np.ones(n)
    gain1 = np.ones(n)
    for it in range(n_iter):
        early = it < exploration
        momentum = 0.5 if early else 0.8
        if it == exploration:
            # scikit-learn's second phase starts its steps and gains afresh.
            for i in range(n):
                u0[i] = 0.0
                u1[i] = 0.0
                gain0[i] = 1.0
                gain1[i] = 1.0
        _gradient(y0, y1, f0, f1, indptr, indices, pvals, exaggeration if early else 1.0, g0, g1)
        for i in range(n):
            gain0[i] = gain0[i] + 0.2 if u0[i] * g0[i] < 0.0 else gain0[i] * 0.8
            gain1[i] = gain1[i] + 0.2 if u1[i] * g1[i] < 0.0 else gain1[i] * 0.8
            gain0[i] = max(gain0[i], 0.01)
            gain1[i] = max(gain1[i], 0.01)
            u0[i] = momentum * u0[i] - learning_rate * gain0[i] * g0[i]
            u1[i] = momentum * u1[i] - learning_rate * gain1[i] * g1[i]
            y0[i] += u0[i]
            y1[i] += u1[i]
    for i in range(n):
        y[i, 0] = y0[i]
        y[i, 1] = y1[i]
