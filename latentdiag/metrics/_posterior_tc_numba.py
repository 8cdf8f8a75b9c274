"""Log-density of sampled z under the aggregate posterior of a whole data set, in numba.

For S points z_i and N diagonal-Gaussian posteriors N(mu_j, diag exp(logvar_j)), returns
log Σ_j q(z_i | x_j) (joint) and log Σ_j q(z_id | x_j) (per dimension), each as a two-pass
log-sum-exp over the rows j: the largest term first, then the sum of exp(term - largest).

The inner loops run over the rows j of one dimension (the posteriors stored dimension-major),
so the compiler turns them into vector instructions: the terms and their maximum in one loop,
their exponentials in the next. The exponential is :func:`_exp`, plain arithmetic (the Taylor
polynomial of degree 13 after range reduction by ln 2, then the power of two from seven
selects) where a call of the C library's would keep the loop scalar; it is within 1 ulp of
``math.exp`` on [-87, 0], the range these sums need (a term more than 87 nats below the
largest counts as e^-87 < 2e-38 of it: far below a double's precision of the sum, which is at
least 1). The sums may be added in another order (``fastmath`` reassociation); the range
reduction is compiled without it, so it stays exact. 3-4× faster than the scalar loops.
Imported lazily by :mod:`latentdiag.metrics.posterior_tc`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from latentdiag.metrics import _numba  # noqa: F401  (the threading layer, before any launch)

_LOG_2PI = math.log(2.0 * math.pi)
_FLOOR = -87.0  # -87 / ln 2 > -126: the power of two stays within the seven bits built
_FASTMATH = {"reassoc", "contract", "nnan", "ninf", "nsz"}
_EXACT = {"contract", "nnan", "ninf", "nsz"}  # no reassociation: the range reduction stays exact
_LN2_HI = 0.6931471803691238  # ln 2 in two parts (fdlibm's): k · _LN2_HI is exact here
_LN2_LO = 1.9082149292705877e-10
_INV_LN2 = 1.4426950408889634


@njit(fastmath=_EXACT, cache=True)
def _exp(x):  # type: ignore[no-untyped-def]
    """e^x for x <= 0 (clamped below at -87), branch-free so that loops over it vectorise."""
    x = max(x, _FLOOR)
    k = np.floor(x * _INV_LN2 + 0.5)  # in [-126, 0]
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln 2 / 2
    p = 1.6059043836821613e-10  # 1/13!
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2^k for k = -m, m in [0, 126], from the bits of m.
    m = -k
    s = 1.0
    c = m >= 64.0
    s = s * (5.421010862427522e-20 if c else 1.0)
    m = m - (64.0 if c else 0.0)
    c = m >= 32.0
    s = s * (2.3283064365386963e-10 if c else 1.0)
    m = m - (32.0 if c else 0.0)
    c = m >= 16.0
    s = s * (1.52587890625e-05 if c else 1.0)
    m = m - (16.0 if c else 0.0)
    c = m >= 8.0
    s = s * (0.00390625 if c else 1.0)
    m = m - (8.0 if c else 0.0)
    c = m >= 4.0
    s = s * (0.0625 if c else 1.0)
    m = m - (4.0 if c else 0.0)
    c = m >= 2.0
    s = s * (0.25 if c else 1.0)
    m = m - (2.0 if c else 0.0)
    c = m >= 1.0
    s = s * (0.5 if c else 1.0)
    return p * s


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _terms(z, mu_f, half_iv_f, const_f, out):  # type: ignore[no-untyped-def]
    """out[j] = log N(z; mu_f[j], var_f[j]); returns their maximum."""
    top = -np.inf
    for j in range(mu_f.shape[0]):
        t = z - mu_f[j]
        v = const_f[j] - t * t * half_iv_f[j]
        out[j] = v
        top = max(top, v)
    return top


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _sum_exp(v, top):  # type: ignore[no-untyped-def]
    """Σ_j exp(v[j] - top)."""
    s = 0.0
    for j in range(v.shape[0]):
        s += _exp(v[j] - top)
    return s


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _sum_exp_weighted(v, top, w):  # type: ignore[no-untyped-def]
    """(Σ_j exp(v[j] - top), Σ_j w[j] exp(v[j] - top))."""
    s = 0.0
    sw = 0.0
    for j in range(v.shape[0]):
        e = _exp(v[j] - top)
        s += e
        sw += w[j] * e
    return s, sw


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _add_to(acc, v):  # type: ignore[no-untyped-def]
    for j in range(acc.shape[0]):
        acc[j] += v[j]


@njit(fastmath=_FASTMATH, cache=True, nogil=True)
def _max(v):  # type: ignore[no-untyped-def]
    top = -np.inf
    for j in range(v.shape[0]):
        top = max(top, v[j])
    return top


def _by_dimension(mu, logvar):  # type: ignore[no-untyped-def]
    """Dimension-major (d, N) means, halved inverse variances and log-normalisers."""
    return (
        np.ascontiguousarray(mu.T),
        np.ascontiguousarray(0.5 * np.exp(-logvar.T)),
        np.ascontiguousarray(-0.5 * (_LOG_2PI + logvar.T)),
    )


@njit(parallel=True, cache=True, nogil=True)
def _log_aggregate(Z, muT, hivT, cT):  # type: ignore[no-untyped-def]
    S, d = Z.shape
    N = muT.shape[1]
    joint_out = np.empty(S)
    marg_out = np.empty((S, d))
    for i in prange(S):
        lp = np.empty(N)
        joint = np.zeros(N)
        for f in range(d):
            top = _terms(Z[i, f], muT[f], hivT[f], cT[f], lp)
            marg_out[i, f] = top + math.log(_sum_exp(lp, top))
            _add_to(joint, lp)
        top = _max(joint)
        joint_out[i] = top + math.log(_sum_exp(joint, top))
    return joint_out, marg_out


def log_aggregate(Z, mu, logvar):  # type: ignore[no-untyped-def]
    """(S,) joint and (S, d) per-dimension log Σ_j q(z_i | x_j) over the N rows of mu/logvar."""
    muT, hivT, cT = _by_dimension(mu, logvar)
    return _log_aggregate(np.ascontiguousarray(Z), muT, hivT, cT)


@njit(parallel=True, cache=True, nogil=True)
def _batch_estimates(Z, muT, hivT, cT, w, log_nm):  # type: ignore[no-untyped-def]
    B, d = Z.shape
    out = np.empty((B, 2))
    for i in prange(B):
        lq = np.empty(B)
        joint = np.zeros(B)
        mws = 0.0
        mss = 0.0
        for f in range(d):
            top = _terms(Z[i, f], muT[f], hivT[f], cT[f], lq)
            s, sw = _sum_exp_weighted(lq, top, w[i])
            mws -= top + math.log(s) - log_nm
            mss -= top + math.log(sw)
            _add_to(joint, lq)
        top = _max(joint)
        s, sw = _sum_exp_weighted(joint, top, w[i])
        # Weighted sampling (mws): plain log-sum-exp over the batch, minus log(N B).
        # Stratified sampling (mss): log Σ_j w_ij q(z_i | x_j).
        out[i, 0] = mws + top + math.log(s) - log_nm
        out[i, 1] = mss + top + math.log(sw)
    return out


def batch_estimates(Z, mu, logvar, log_w, log_nm):  # type: ignore[no-untyped-def]
    """β-TCVAE's minibatch estimators on one batch: per-row (mws, mss) terms, shape (B, 2).

    ``Z`` holds z_i ~ q(z | x_i) for the batch rows ``mu``/``logvar``; ``log_w`` is the log of
    the stratification weights, ``log_nm`` is log(N · B) of weighted sampling. Row i gives
    log q(z_i) − Σ_f log q(z_if) for both estimators. Both log-sum-exps share one exp per
    term: with e_j = exp(t_j − max_j t_j), mws uses log Σ e_j and mss log Σ w_ij e_j (the
    weights are at least 1/N, so the weighted sum cannot underflow where the plain one does
    not).
    """
    muT, hivT, cT = _by_dimension(mu, logvar)
    return _batch_estimates(np.ascontiguousarray(Z), muT, hivT, cT, np.exp(log_w), float(log_nm))
