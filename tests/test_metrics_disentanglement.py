"""Disentanglement metrics against the reference cases of REFERENCE_CASES.md (from
disentanglement_lib's metric tests), without that library's known bugs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentdiag.metrics import (
    dci,
    dci_from_importance,
    factor_vae_score,
    histogram_discretize,
    mig,
    modularity,
    modularity_from_mi,
    sap_score,
)
from latentdiag.metrics.discretize import discrete_mutual_info, discretize_factors
from latentdiag.metrics.disentanglement.factorvae import factor_vae_votes

C_DUP = 1 - math.log(2) / math.log(10)  # 0.69897


def ground_truth(n: int, seed: int = 0) -> np.ndarray:
    """10 factors, each uniform on {1..10}; the observations are the factors."""
    return np.random.default_rng(seed).integers(1, 11, size=(n, 10)).astype(float)


def representations(factors: np.ndarray, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "identity": factors,
        "zeros": np.zeros_like(factors),
        "duplicated": np.hstack([factors, factors]),
        "permuted": np.array([rng.permutation(row) for row in factors]),
    }


@pytest.fixture(scope="module")
def reps3000() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y = ground_truth(3000)
    return y, representations(y)


# -- MIG, SAP, modularity, FactorVAE (n = 3000) --------------------------------------------------


@pytest.mark.parametrize(
    ("rep", "low", "high"), [("identity", 0.9, 1.0), ("zeros", 0.0, 0.2), ("duplicated", 0.0, 0.1)]
)
def test_mig_reference(reps3000, rep: str, low: float, high: float) -> None:
    y, reps = reps3000
    assert low <= mig(reps[rep], y) <= high


@pytest.mark.parametrize(
    ("rep", "low", "high"), [("identity", 0.9, 1.0), ("zeros", 0.0, 0.2), ("duplicated", 0.0, 0.2)]
)
def test_sap_continuous_reference(reps3000, rep: str, low: float, high: float) -> None:
    y, reps = reps3000
    assert low <= sap_score(reps[rep], y, continuous_factors=True) <= high


def test_sap_discrete_orders_the_representations(reps3000) -> None:
    y, reps = reps3000
    # The top code predicts its factor (~1) while the runner-up sits at chance (1/10).
    assert sap_score(reps["identity"], y, continuous_factors=False) > 0.8
    assert sap_score(reps["zeros"], y, continuous_factors=False) == 0.0
    assert sap_score(reps["duplicated"], y, continuous_factors=False) < 0.1


@pytest.mark.parametrize(("rep", "low", "high"), [("identity", 0.9, 1.0), ("duplicated", 0.9, 1.0)])
def test_modularity_reference(reps3000, rep: str, low: float, high: float) -> None:
    y, reps = reps3000
    assert low <= modularity(reps[rep], y) <= high


def test_modularity_reference_permuted_n20000() -> None:
    y = ground_truth(20000, seed=3)
    assert 0.0 <= modularity(representations(y)["permuted"], y) <= 0.2


@pytest.mark.parametrize(("rep", "low", "high"), [("identity", 0.9, 1.0), ("zeros", 0.0, 0.2)])
def test_factor_vae_reference(reps3000, rep: str, low: float, high: float) -> None:
    y, reps = reps3000
    assert low <= factor_vae_score(reps[rep], y, n_train=3000, n_eval=3000) <= high


def test_factor_vae_constant_code_does_not_capture_the_votes() -> None:
    # disentanglement_lib keeps constant codes, whose 0/0 variance ratio (NaN) wins every
    # argmin: all votes land in that column and the score collapses. Here it is pruned.
    y = ground_truth(3000)
    X = np.hstack([np.zeros((3000, 1)), y])
    assert factor_vae_score(X, y, n_train=2000, n_eval=2000) >= 0.9


def test_factor_vae_votes_use_full_code_indices() -> None:
    # Informative codes after pruned ones: indexing votes within the pruned subset (the other
    # known bug) would credit columns 0 and 1. Code 3 carries factor 0, code 1 factor 1.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(3000, 2)).astype(float)
    X = np.column_stack(
        [np.zeros(3000), y[:, 1], np.full(3000, 2.0), y[:, 0], 1e-4 * rng.normal(size=3000)]
    )
    score, votes = factor_vae_votes(X, y, n_train=2000, n_eval=2000)
    assert score == 1.0
    assert votes.argmax(axis=1).tolist() == [3, 1]
    assert votes[:, [0, 2, 4]].sum() == 0  # pruned codes get no votes


def test_factor_vae_all_codes_collapsed_is_zero() -> None:
    y = ground_truth(500)
    assert factor_vae_score(np.ones((500, 4)), y, n_train=200, n_eval=200) == 0.0


# -- DCI (n = 1000 train / 1000 test) -------------------------------------------------------------


@pytest.fixture(scope="module")
def dci_reps() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y = ground_truth(2000, seed=4)
    return y, representations(y, seed=5)


def test_dci_identity(dci_reps) -> None:
    y, reps = dci_reps
    r = dci(reps["identity"], y, max_train=1000, max_test=1000)
    assert 0.9 <= r.disentanglement <= 1.0
    assert 0.9 <= r.completeness <= 1.0
    assert r.informativeness > 0.9
    assert r.importance.shape == (10, 10)


def test_dci_duplicated(dci_reps) -> None:
    y, reps = dci_reps
    r = dci(reps["duplicated"], y, max_train=1000, max_test=1000)
    assert 0.9 <= r.disentanglement <= 1.0
    assert r.completeness == pytest.approx(C_DUP, abs=0.1)


def test_dci_permuted(dci_reps) -> None:
    y, reps = dci_reps
    r = dci(reps["permuted"], y, max_train=1000, max_test=1000)
    assert 0.0 <= r.disentanglement <= 0.2
    assert 0.0 <= r.completeness <= 0.2


def test_dci_from_importance_reference() -> None:
    eye = np.eye(5)
    assert dci_from_importance(np.diag(5.0 * np.ones(5))) == pytest.approx((1.0, 1.0))
    assert dci_from_importance([[1, 0], [0, 1], [0, 0]]) == pytest.approx((1.0, 1.0))
    assert dci_from_importance(np.zeros((10, 10))) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert dci_from_importance(np.vstack([eye, eye])) == pytest.approx((1.0, C_DUP))
    assert dci_from_importance(np.hstack([eye, eye])) == pytest.approx((C_DUP, 1.0))


def test_dci_with_more_codes_than_factors_and_one_factor() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(600, 1)).astype(float)
    X = np.column_stack([y[:, 0] + 0.01 * rng.normal(size=600), rng.normal(size=(600, 5))])
    r = dci(X, y)
    # One factor: disentanglement is 1 by definition; completeness rewards the single code.
    assert r.disentanglement == pytest.approx(1.0)
    assert r.completeness > 0.6
    assert r.importance.argmax() == 0


# -- building blocks ------------------------------------------------------------------------


def test_modularity_from_mi_reference() -> None:
    eye = np.eye(5)
    assert modularity_from_mi(eye) == pytest.approx(1.0)
    assert modularity_from_mi(np.zeros((5, 5))) == 0.0
    assert modularity_from_mi(np.hstack([eye, eye])) == pytest.approx(1 - 1 / 9)


def test_histogram_discretize_reference() -> None:
    target = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]])
    # disentanglement_lib's layout is (codes, samples); ours is (samples, codes).
    out = histogram_discretize(target.T, n_bins=3).T
    assert out.tolist() == [[1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1]]


def test_discrete_mutual_info_equals_sklearn() -> None:
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, size=(500, 3))
    b = np.column_stack([a[:, 0] // 2, rng.integers(0, 3, 500)])
    m = discrete_mutual_info(a, b)
    for i in range(3):
        for j in range(2):
            assert m[i, j] == pytest.approx(mutual_info_score(a[:, i], b[:, j]), abs=1e-12)


def test_continuous_factors_are_binned_and_few_levels_kept() -> None:
    rng = np.random.default_rng(0)
    f = np.column_stack([rng.integers(0, 3, 200), rng.normal(size=200)])
    codes = discretize_factors(f)
    assert set(codes[:, 0]) == {0, 1, 2}
    assert 2 < len(set(codes[:, 1])) <= 20


def test_metrics_work_for_codes_unequal_to_factors() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(800, 3)).astype(float)
    X = np.column_stack([y[:, 0], rng.normal(size=800), y[:, 2], y[:, 1], rng.normal(size=800)])
    assert mig(X, y) > 0.8
    assert sap_score(X, y) > 0.8
    assert modularity(X, y) > 0.5
    assert factor_vae_score(X, y, n_train=500, n_eval=500) > 0.8
    assert mig(X[:, :2], y) < 0.5  # two codes cannot capture three factors


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_code_and_factor_order_do_not_matter(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=(300, 3)).astype(float)
    X = np.column_stack([y[:, 1] + 0.1 * rng.normal(size=300), rng.normal(size=(300, 2)), y[:, 0]])
    codes = rng.permutation(X.shape[1])
    facs = rng.permutation(y.shape[1])
    for fn in (mig, modularity, sap_score):
        assert fn(X[:, codes], y[:, facs]) == pytest.approx(fn(X, y), abs=1e-12)
