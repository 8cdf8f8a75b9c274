"""Information metrics: per-dimension MI, Gaussian and posterior total correlation, KL, active
units — against scikit-learn and the closed forms of REFERENCE_CASES.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentdiag.errors import MetricInputError
from latentdiag.metrics import (
    active_units,
    gaussian_total_correlation,
    kl_per_dim,
    mutual_info_per_dim,
    posterior_total_correlation,
    stratification_weights,
)
from latentdiag.metrics.information import label_entropy, zero_variance_dims
from latentdiag.metrics.posterior_tc import _batch_estimates

# -- mutual information ----------------------------------------------------------------------


def test_mi_equals_mutual_info_classif() -> None:
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 4, n)
    X = rng.normal(size=(n, 6))
    X[:, :3] += y[:, None] * np.array([0.2, 1.0, 3.0])
    X[:, 4] = np.round(X[:, 4])  # ties, broken by the same tiny noise
    X[:, 5] = 0.0  # a dead dimension
    ours = mutual_info_per_dim(X, y, random_state=0)
    ref = mutual_info_classif(X, y, discrete_features=False, n_neighbors=3, random_state=0)
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert ours[5] == 0.0


def test_mi_with_singleton_labels_and_float32_equals_sklearn() -> None:
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(1)
    y = np.array([0] * 200 + [1] * 150 + [2] * 3 + [3])  # label 3 seen once: ignored
    X = (rng.normal(size=(y.shape[0], 3)) + y[:, None]).astype(np.float32)
    ref = mutual_info_classif(X, y, discrete_features=False, random_state=7)
    assert np.abs(mutual_info_per_dim(X, y, random_state=7) - ref).max() < 0.01


def _mixture_mi(means: np.ndarray, sigma: float) -> float:
    """I(z; y) for y uniform on K and z = mu_y + N(0, sigma^2), by 1-D quadrature."""
    z = np.linspace(means.min() - 10 * sigma, means.max() + 10 * sigma, 200_001)
    dens = np.exp(-0.5 * ((z[None, :] - means[:, None]) / sigma) ** 2) / (
        sigma * math.sqrt(2 * math.pi)
    )
    p = dens.mean(axis=0)
    dz = z[1] - z[0]
    h_z = -np.sum(np.where(p > 0, p * np.log(p), 0.0)) * dz
    h_z_given_y = 0.5 * math.log(2 * math.pi * math.e * sigma**2)
    return float(h_z - h_z_given_y)


@pytest.mark.parametrize("sep", [0.5, 1.5, 4.0])
def test_mi_matches_the_gaussian_mixture_closed_form(sep: float) -> None:
    rng = np.random.default_rng(2)
    K, n = 4, 20000
    means = sep * np.arange(K, dtype=float)
    y = rng.integers(0, K, n)
    z = means[y] + rng.normal(size=n)
    truth = _mixture_mi(means, 1.0)
    assert 0 <= truth <= math.log(K)
    est = mutual_info_per_dim(z.reshape(-1, 1), y)[0]
    assert est == pytest.approx(truth, abs=0.03)
    normalized = mutual_info_per_dim(z.reshape(-1, 1), y, normalize=True)[0]
    assert normalized == pytest.approx(est / label_entropy(y))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_mi_invariant_to_label_renaming(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.arange(120) % k
    X = rng.normal(size=(120, 2)) + y[:, None]
    base = mutual_info_per_dim(X, y)
    renamed = np.array(["abcd"[(v + 1) % k] for v in y])
    np.testing.assert_allclose(mutual_info_per_dim(X, renamed), base, atol=1e-12)


def test_label_entropy() -> None:
    assert label_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))
    assert label_entropy(["a", "a"]) == 0.0


# -- Gaussian total correlation ----------------------------------------------------------------


def _gaussian_sample(cov: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, cov.shape[0])) @ np.linalg.cholesky(cov).T


def test_gaussian_tc_closed_forms() -> None:
    # Sigma = [[1, .9], [.9, 1]] -> -0.5 ln(1 - 0.81) = 0.8304 nats.
    X = _gaussian_sample(np.array([[1.0, 0.9], [0.9, 1.0]]), 200_000)
    assert gaussian_total_correlation(X) == pytest.approx(-0.5 * math.log(0.19), abs=0.01)
    assert -0.5 * math.log(0.19) == pytest.approx(0.8304, abs=1e-4)
    # Sigma = I -> 0; scale does not matter.
    Z = _gaussian_sample(np.eye(3), 100_000, seed=1) * np.array([1.0, 100.0, 0.01])
    assert gaussian_total_correlation(Z) == pytest.approx(0.0, abs=1e-3)


def test_gaussian_tc_drops_and_reports_a_dead_dimension() -> None:
    X = _gaussian_sample(np.array([[1.0, 0.9], [0.9, 1.0]]), 50_000)
    with_dead = np.column_stack([X[:, 0], np.full(len(X), 3.0), X[:, 1]])
    assert zero_variance_dims(with_dead) == [1]
    value = gaussian_total_correlation(with_dead)
    assert math.isfinite(value)
    assert value == pytest.approx(gaussian_total_correlation(X), abs=1e-12)


def test_gaussian_tc_duplicate_dimension_is_infinite() -> None:
    X = _gaussian_sample(np.eye(2), 1000)
    assert gaussian_total_correlation(np.column_stack([X, X[:, 0]])) == float("inf")


# -- KL and active units ------------------------------------------------------------------------


def test_kl_per_dim_closed_form() -> None:
    mu = np.array([[0.0, 1.0], [2.0, -1.0]])
    logvar = np.array([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # 0.5 (mu^2 + s^2 - log s^2 - 1): row 0 -> 0, 0.5(1 + 4 - ln4 - 1); row 1 -> 0.5(4 + .25 +
    # ln4 - 1), 0.5(1 + 1 - 0 - 1).
    expected = np.array(
        [
            (0.0 + 0.5 * (4 + 0.25 + math.log(4) - 1)) / 2,
            (0.5 * (1 + 4 - math.log(4) - 1) + 0.5) / 2,
        ]
    )
    np.testing.assert_allclose(kl_per_dim(mu, logvar), expected)
    assert kl_per_dim(np.zeros((5, 3)), np.zeros((5, 3))).tolist() == [0.0, 0.0, 0.0]


def test_active_units() -> None:
    rng = np.random.default_rng(0)
    mu = np.column_stack(
        [rng.normal(size=500), 0.05 * rng.normal(size=500), np.zeros(500), rng.normal(size=500)]
    )
    assert active_units(mu) == 2  # variance 1, 0.0025, 0, 1 against the threshold 0.01
    assert active_units(mu, threshold=0.001) == 3


# -- posterior total correlation ----------------------------------------------------------------


def test_stratification_weights_fill_the_diagonal_not_column_zero() -> None:
    B, N = 6, 100
    W = stratification_weights(B, N)
    M = B - 1
    assert np.allclose(np.diag(W), 1 / N)
    # The known bug writes 1/N down column 0 (stride B in the flat view); here only W[0, 0] is.
    assert np.isclose(W[1:, 0], 1 / N).sum() == 0
    assert np.allclose(W.sum(axis=1), 1.0)
    for i in range(B):
        assert W[i, (i + 1) % B] == pytest.approx((N - M) / (N * M))
        others = [j for j in range(B) if j not in (i, (i + 1) % B)]
        assert np.allclose(W[i, others], 1 / M)


def _lse(values, weights=None):
    weights = [1.0] * len(values) if weights is None else weights
    return math.log(sum(math.exp(v) * w for v, w in zip(values, weights, strict=True)))


def _tc_estimates_by_brute_force(mu, logvar, z, N, W):
    """MWS and MSS TC on one batch with explicit loops, straight from the formulas."""
    B, d = mu.shape

    def logq(i, j, dims):
        var = np.exp(logvar[j, dims])
        return -0.5 * np.sum(np.log(2 * np.pi * var) + (z[i, dims] - mu[j, dims]) ** 2 / var)

    mws, mss = [], []
    for i in range(B):
        joint = [logq(i, j, slice(None)) for j in range(B)]
        marg = [[logq(i, j, [k]) for j in range(B)] for k in range(d)]
        log_nm = math.log(N * B)
        mws.append(_lse(joint) - log_nm - sum(_lse(m) - log_nm for m in marg))
        mss.append(_lse(joint, list(W[i])) - sum(_lse(m, list(W[i])) for m in marg))
    return float(np.mean(mws)), float(np.mean(mss))


def test_minibatch_estimators_match_their_formulas() -> None:
    rng = np.random.default_rng(0)
    N, d = 8, 3
    mu = rng.normal(size=(N, d))
    logvar = rng.normal(size=(N, d)) * 0.3
    # One batch covering the data (batch_size = N): the permutation decides the order.
    gen = np.random.default_rng(5)
    mws, mss = _batch_estimates(mu, logvar, N, 1, gen)
    gen = np.random.default_rng(5)
    perm = gen.permutation(N)
    m, lv = mu[perm], logvar[perm]
    z = m + np.exp(0.5 * lv) * gen.standard_normal(m.shape)
    ref_mws, ref_mss = _tc_estimates_by_brute_force(m, lv, z, N, stratification_weights(N, N))
    assert mws == pytest.approx(ref_mws, rel=1e-10)
    assert mss == pytest.approx(ref_mss, rel=1e-10)


def test_posterior_tc_matches_the_gaussian_closed_form() -> None:
    # mu ~ N(0, [[1, .9], [.9, 1]]), posteriors N(mu, 0.5 I): the aggregate posterior is close to
    # N(0, Sigma + 0.5 I), correlation 0.9/1.5 = 0.6, TC = -0.5 ln(1 - 0.36) = 0.2231 nats.
    rng = np.random.default_rng(0)
    N = 4000
    mu = rng.standard_normal((N, 2)) @ np.linalg.cholesky(np.array([[1, 0.9], [0.9, 1]])).T
    logvar = np.full((N, 2), math.log(0.5))
    r = posterior_total_correlation(mu, logvar, n_z=2000, random_state=1)
    truth = -0.5 * math.log(1 - 0.36)
    assert r.value == r.full
    assert r.full == pytest.approx(truth, abs=0.04)
    assert r.mss == pytest.approx(truth, abs=0.08)
    independent = posterior_total_correlation(rng.standard_normal((N, 2)), logvar, n_z=2000)
    assert abs(independent.full) < 0.03


def test_posterior_tc_rejects_extreme_logvar() -> None:
    with pytest.raises(MetricInputError, match="outside \\[-80, 80\\]"):
        posterior_total_correlation(np.zeros((10, 2)), np.full((10, 2), -200.0))


def test_vectorised_exp_is_within_one_ulp_on_its_range() -> None:
    import numba

    from latentdiag.metrics._posterior_tc_numba import _exp

    @numba.njit
    def apply(x, out):  # type: ignore[no-untyped-def]
        for i in range(x.shape[0]):
            out[i] = _exp(x[i])

    x = -np.random.default_rng(0).random(200_000) * 87.0
    x[:4] = [0.0, -1e-300, -87.0, -0.5 * math.log(2.0)]
    out = np.empty_like(x)
    apply(x, out)
    ref = np.exp(x)
    assert np.max(np.abs(out - ref) / np.spacing(ref)) <= 1.0


def test_log_aggregate_matches_a_log_sum_exp_by_brute_force() -> None:
    from scipy.special import logsumexp

    from latentdiag.metrics._posterior_tc_numba import log_aggregate

    rng = np.random.default_rng(3)
    N, d, S = 300, 5, 40
    mu = rng.normal(size=(N, d)) * 3.0
    logvar = rng.normal(size=(N, d)) * 1.5 - 2.0  # posteriors of very different widths
    z = mu[:S] + np.exp(0.5 * logvar[:S]) * rng.normal(size=(S, d))
    joint, marg = log_aggregate(z, mu, logvar)
    terms = -0.5 * (
        math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / np.exp(logvar[None])
    )  # (S, N, d)
    np.testing.assert_allclose(marg, logsumexp(terms, axis=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(joint, logsumexp(terms.sum(axis=2), axis=1), rtol=1e-12, atol=1e-12)
