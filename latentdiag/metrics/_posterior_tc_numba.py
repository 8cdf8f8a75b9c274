"""Log-density of sampled z under the aggregate posterior of a whole data set, in numba.

For S points z_i and N diagonal-Gaussian posteriors N(mu_j, diag exp(logvar_j)), returns
log Σ_j q(z_i | x_j) (joint) and log Σ_j q(z_id | x_j) (per dimension), with a two-pass
log-sum-exp: the first pass finds the largest term, the second adds exp(term - largest) and
skips terms below exp(-40) relative to it, which cannot change a double. Imported lazily by
:mod:`latentdiag.metrics.posterior_tc`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

_LOG_2PI = math.log(2.0 * math.pi)
_CUTOFF = -40.0


@njit(parallel=True, cache=True, nogil=True)
def log_aggregate(Z, mu, logvar):  # type: ignore[no-untyped-def]
    """(S,) joint and (S, d) per-dimension log Σ_j q(z_i | x_j) over the N rows of mu/logvar."""
    S, d = Z.shape
    N = mu.shape[0]
    inv_var = np.exp(-logvar)
    const = -0.5 * (_LOG_2PI + logvar)
    joint_out = np.empty(S)
    marg_out = np.empty((S, d))
    for i in prange(S):
        z = Z[i]
        top = np.full(d, -np.inf)
        top_joint = -np.inf
        for j in range(N):
            joint = 0.0
            for f in range(d):
                t = z[f] - mu[j, f]
                lp = const[j, f] - 0.5 * t * t * inv_var[j, f]
                joint += lp
                if lp > top[f]:
                    top[f] = lp
            if joint > top_joint:
                top_joint = joint
        sums = np.zeros(d)
        sum_joint = 0.0
        for j in range(N):
            joint = 0.0
            for f in range(d):
                t = z[f] - mu[j, f]
                lp = const[j, f] - 0.5 * t * t * inv_var[j, f]
                joint += lp
                v = lp - top[f]
                if v > _CUTOFF:
                    sums[f] += math.exp(v)
            v = joint - top_joint
            if v > _CUTOFF:
                sum_joint += math.exp(v)
        joint_out[i] = top_joint + math.log(sum_joint)
        for f in range(d):
            marg_out[i, f] = top[f] + math.log(sums[f])
    return joint_out, marg_out


@njit(parallel=True, cache=True, nogil=True)
def batch_estimates(Z, mu, logvar, log_w, log_nm):  # type: ignore[no-untyped-def]
    """β-TCVAE's minibatch estimators on one batch: per-row (mws, mss) terms, shape (B, 2).

    ``Z`` holds z_i ~ q(z | x_i) for the batch rows ``mu``/``logvar``; ``log_w`` is the log of
    the stratification weights, ``log_nm`` is log(N · B) of weighted sampling. Row i gives
    log q(z_i) − Σ_f log q(z_if) for both estimators. Both log-sum-exps share one exp per
    term: with e_j = exp(t_j − max_j t_j), mws uses log Σ e_j and mss log Σ w_ij e_j (the
    weights are at least 1/N, so the weighted sum cannot underflow where the plain one does
    not).
    """
    B, d = Z.shape
    inv_var = np.exp(-logvar)
    const = -0.5 * (_LOG_2PI + logvar)
    w = np.exp(log_w)
    out = np.empty((B, 2))
    for i in prange(B):
        lq = np.empty((B, d))
        joint = np.empty(B)
        for j in range(B):
            s = 0.0
            for f in range(d):
                t = Z[i, f] - mu[j, f]
                v = const[j, f] - 0.5 * t * t * inv_var[j, f]
                lq[j, f] = v
                s += v
            joint[j] = s
        top = -np.inf
        for j in range(B):
            if joint[j] > top:
                top = joint[j]
        acc_w = 0.0
        acc_s = 0.0
        for j in range(B):
            e = math.exp(joint[j] - top)
            acc_w += e
            acc_s += w[i, j] * e
        # Weighted sampling (mws): plain log-sum-exp over the batch, minus log(N B).
        # Stratified sampling (mss): log Σ_j w_ij q(z_i | x_j).
        mws = top + math.log(acc_w) - log_nm
        mss = top + math.log(acc_s)
        for f in range(d):
            top = -np.inf
            for j in range(B):
                if lq[j, f] > top:
                    top = lq[j, f]
            acc_w = 0.0
            acc_s = 0.0
            for j in range(B):
                e = math.exp(lq[j, f] - top)
                acc_w += e
                acc_s += w[i, j] * e
            mws -= top + math.log(acc_w) - log_nm
            mss -= top + math.log(acc_s)
        out[i, 0] = mws
        out[i, 1] = mss
    return out
