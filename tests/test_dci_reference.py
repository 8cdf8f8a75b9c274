"""DCI as the literature reports it: latentdiag's default equals disentanglement_lib's
algorithm (restated in benchmarks/dislib_dci.py) on the same codes, and both completeness
conventions are there under their own keys."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from latentdiag.metrics import dci
from latentdiag.metrics.disentanglement.dci import _fit_gbt, dci_scores

_PEER = Path(__file__).resolve().parents[1] / "benchmarks" / "dislib_dci.py"


def peer():
    spec = importlib.util.spec_from_file_location("dislib_dci", _PEER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_messy(n: int = 800, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [2, 3, 4, 6]
    factors = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    mixing = rng.normal(size=(4, 5)) * (rng.random((4, 5)) < 0.6)
    codes = (factors / np.array(sizes)) @ mixing + 0.25 * rng.normal(size=(n, 5))
    return codes.astype(np.float32), factors


def test_gbt_equals_scikit_learns_gradient_boosting_per_factor() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    codes, factors = small_messy()
    xtr, xte = codes[:400], codes[400:]
    for j in range(factors.shape[1]):
        y = factors[:400, j]
        sk = GradientBoostingClassifier(random_state=0).fit(xtr, y)
        imp, p_tr, p_te = _fit_gbt(xtr, y, xte, 0)
        # The same trees up to splits of equal merit, which scikit-learn breaks at random.
        assert np.abs(imp - sk.feature_importances_).max() < 0.03, j
        assert (p_tr == sk.predict(xtr)).mean() > 0.97, j
        assert (p_te == sk.predict(xte)).mean() > 0.9, j
        assert imp.sum() == pytest.approx(1.0)


def test_dci_default_reproduces_disentanglement_lib() -> None:
    dislib = peer()
    codes, factors = small_messy()
    # latentdiag's protocol: a random half for training, the rest for testing.
    ours = dci(codes, factors, random_state=0)
    perm = np.random.default_rng(0)
    perm.integers(0, 2**31 - 1)  # the seed dci draws first
    order = perm.permutation(codes.shape[0])
    tr, te = order[:400], order[400:]
    theirs = dislib.dci(codes[tr], factors[tr], codes[te], factors[te], seed=0)
    assert ours.model == "gbt"
    assert ours.disentanglement == pytest.approx(theirs["disentanglement"], abs=0.02)
    assert ours.completeness == pytest.approx(theirs["completeness"], abs=0.02)
    assert ours.informativeness == pytest.approx(theirs["informativeness_test"], abs=0.02)
    assert ours.informativeness_train == pytest.approx(theirs["informativeness_train"], abs=0.02)


def test_the_other_estimators_are_still_there() -> None:
    codes, factors = small_messy(400)
    gbt = dci(codes, factors)
    forest = dci(codes, factors, model="forest")
    sk = dci(codes, factors, model="sklearn-gbt")
    assert (forest.model, sk.model) == ("forest", "sklearn-gbt")
    assert forest.disentanglement != gbt.disentanglement
    assert sk.disentanglement == pytest.approx(gbt.disentanglement, abs=0.02)


def test_completeness_weighted_and_unweighted() -> None:
    # Codes × factors; the second factor is read by no code at all (a constant factor, say).
    R = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    d, c, c_unweighted = dci_scores(R)
    # Code 0 holds factor 0 alone: D = 1 (codes 1 and 2 weigh nothing).
    assert d == pytest.approx(1.0, abs=1e-9)
    # Factor 0 sits in one of 3 codes: 1 − H_3(1, 0, 0) = 1; factor 1 is spread evenly:
    # 1 − H_3(1/3, 1/3, 1/3) = 0. Weighted by importance (disentanglement_lib): 1·1 + 0·0.
    assert c == pytest.approx(1.0, abs=1e-6)
    # Unweighted (Eastwood & Williams' notebook): the mean, 0.5.
    assert c_unweighted == pytest.approx(0.5, abs=1e-6)
    dislib = peer()
    assert dislib.completeness(R) == pytest.approx(c, abs=1e-9)
    assert dislib.disentanglement(R) == pytest.approx(d, abs=1e-9)


def test_scores_agree_with_the_peer_formulas_on_random_matrices() -> None:
    dislib = peer()
    rng = np.random.default_rng(0)
    for _ in range(20):
        R = rng.random((6, 4)) ** 3
        d, c, _ = dci_scores(R)
        assert d == pytest.approx(dislib.disentanglement(R), abs=1e-12)
        assert c == pytest.approx(dislib.completeness(R), abs=1e-12)
    assert not math.isnan(dci_scores(np.zeros((3, 2)))[0])
