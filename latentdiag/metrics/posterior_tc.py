"""Total correlation of the aggregate posterior q(z) = (1/N) Σ_n q(z | x_n), from mu and logvar.

TC(q) = KL(q(z) ‖ Π_j q(z_j)) = E_q[log q(z) − Σ_j log q(z_j)]: how far the dimensions of the
encoded data are from independent — the term β-TCVAE penalises. Three estimators:

* ``full``: draw S points z_i ~ q(z | x_i) for random rows i and evaluate log q(z_i) and
  log q(z_ij) exactly over all N rows. Unbiased for the TC of the empirical aggregate
  posterior up to Monte-Carlo noise; costs O(S · N · d). The headline figure.
* ``mws`` and ``mss``: the minibatch weighted / stratified sampling estimators of β-TCVAE
  (Chen et al. 2018), evaluated over minibatches as during training, for comparison with
  training logs. Both are biased for batches much smaller than N.

The stratified estimator uses the weight matrix of the paper: 1/N on the diagonal (the sample
itself), (N − M)/(N M) for one other element of the batch, 1/M for the rest (M = batch − 1).
A widely copied implementation fills column 0 instead of the diagonal; see
:func:`stratification_weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import (
    check_latents,
    check_logvar,
    check_positive_int,
    check_random_state,
)

__all__ = ["PosteriorTC", "posterior_total_correlation", "stratification_weights"]


@dataclass(frozen=True)
class PosteriorTC:
    """Estimates of the total correlation of the aggregate posterior, in nats.

    Attributes:
        value: The headline estimate (``full``).
        full: Full-data Monte-Carlo estimate from ``n_z`` sampled points.
        mws: Minibatch weighted sampling estimate (β-TCVAE), averaged over batches.
        mss: Minibatch stratified sampling estimate (β-TCVAE), averaged over batches.
        n_z: Points sampled for ``full``.
        batch_size: Minibatch size for ``mws``/``mss``.
        n_batches: Minibatches averaged.
    """

    value: float
    full: float
    mws: float
    mss: float
    n_z: int
    batch_size: int
    n_batches: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stratification_weights(batch_size: int, dataset_size: int) -> np.ndarray:
    """Importance weights of minibatch stratified sampling (β-TCVAE, appendix C.2).

    Row i weighs the batch elements used to estimate q(z_i): 1/N for element i itself,
    (N − M)/(N M) for the next element (cyclically), and 1/M for the others, with
    M = batch_size − 1. Each row sums to 1.

    Args:
        batch_size: Minibatch size B >= 2.
        dataset_size: Data set size N >= B.

    Returns:
        (B, B) weights (not logarithms).

    Raises:
        MetricInputError: ``batch_size`` < 2 or ``dataset_size`` < ``batch_size``.

    References:
        R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of Disentanglement in
        Variational Autoencoders", NeurIPS 2018.
    """
    B = check_positive_int(batch_size, "batch_size", minimum=2)
    N = check_positive_int(dataset_size, "dataset_size", minimum=B)
    M = B - 1
    W = np.full((B, B), 1.0 / M)
    idx = np.arange(B)
    W[idx, idx] = 1.0 / N  # the diagonal: stride B + 1 in the flattened matrix
    W[idx, (idx + 1) % B] = (N - M) / (N * M)
    return W


def _batch_estimates(
    mu: np.ndarray, logvar: np.ndarray, batch_size: int, n_batches: int, rng: np.random.Generator
) -> tuple[float, float]:
    from latentdiag.metrics._posterior_tc_numba import batch_estimates

    N = mu.shape[0]
    B = batch_size
    log_w = np.log(stratification_weights(B, N))
    log_nm = math.log(N * B)
    perm = rng.permutation(N)
    mws, mss = [], []
    for b in range(n_batches):
        rows = perm[(b * B) % N : (b * B) % N + B]
        if rows.shape[0] < B:
            rows = rng.choice(N, size=B, replace=False)
        m, lv = mu[rows], logvar[rows]
        z = m + np.exp(0.5 * lv) * rng.standard_normal(m.shape)
        terms = batch_estimates(z, m, lv, log_w, log_nm)  # (B, 2): mws and mss per row
        mws.append(float(terms[:, 0].mean()))
        mss.append(float(terms[:, 1].mean()))
    return float(np.mean(mws)), float(np.mean(mss))


def posterior_total_correlation(
    mu: Any,
    logvar: Any,
    *,
    n_z: int = 1000,
    batch_size: int = 256,
    n_batches: int = 20,
    random_state: int | np.random.Generator | None = 0,
) -> PosteriorTC:
    """Total correlation of the aggregate posterior of a diagonal-Gaussian encoder, in nats.

    Args:
        mu: Posterior means, shape (n_samples, n_features).
        logvar: Posterior log-variances, same shape.
        n_z: Sampled points for the full-data estimate (capped at n_samples); the cost is
            O(n_z · n_samples · n_features).
        batch_size: Minibatch size of the β-TCVAE estimators (capped at n_samples).
        n_batches: Minibatches averaged for those estimators.
        random_state: Seed or Generator.

    Returns:
        A :class:`PosteriorTC`. TC >= 0 in truth (estimates can dip below through noise);
        0 means factorised dimensions, lower is more disentangled.

    Raises:
        MetricInputError: Bad shapes or values, or fewer than 2 rows.

    References:
        R. T. Q. Chen, X. Li, R. Grosse, D. Duvenaud, "Isolating Sources of Disentanglement in
        Variational Autoencoders", NeurIPS 2018. S. Watanabe, "Information theoretical analysis
        of multivariate correlation", IBM J. Res. Dev. 4(1), 1960.
    """
    m = check_latents(mu, name="mu", min_samples=2).astype(np.float64)
    lv = check_logvar(logvar, m).astype(np.float64)
    if np.any(lv < -80.0) or np.any(lv > 80.0):
        raise MetricInputError(
            "logvar holds values outside [-80, 80] (variances that underflow or overflow); "
            "expected log-variances of a working encoder."
        )
    N = m.shape[0]
    S = min(check_positive_int(n_z, "n_z"), N)
    B = min(check_positive_int(batch_size, "batch_size", minimum=2), N)
    nb = check_positive_int(n_batches, "n_batches")
    rng = check_random_state(random_state)

    from latentdiag.metrics._posterior_tc_numba import log_aggregate

    rows = rng.choice(N, size=S, replace=False)
    z = m[rows] + np.exp(0.5 * lv[rows]) * rng.standard_normal((S, m.shape[1]))
    joint, marg = log_aggregate(np.ascontiguousarray(z), m, lv)
    log_n = math.log(N)
    full = float(((joint - log_n) - (marg - log_n).sum(axis=1)).mean())
    mws, mss = _batch_estimates(m, lv, B, nb, rng)
    return PosteriorTC(value=full, full=full, mws=mws, mss=mss, n_z=S, batch_size=B, n_batches=nb)
