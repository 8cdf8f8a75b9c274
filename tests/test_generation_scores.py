"""Fidelity and diversity scores of generated samples: Fréchet distance, KID and PRDC.

Each score is checked against a reference computation written out here (scipy's ``sqrtm`` for
the Fréchet distance, a brute-force loop for KID), against the peer packages where they are
installed (pytorch-fid, clean-fid, torchmetrics, prdc; the tests skip without them), on tiny
cases worked out by hand, and on bad input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from latentdiag.errors import MetricInputError
from latentdiag.generation import scores
from latentdiag.generation.scores import frechet_distance, kernel_inception_distance, prdc


def _gaussian(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """(n, d) correlated Gaussian features with a non-zero mean."""
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    return rng.normal(size=(n, d)) @ mix + shift + rng.normal(size=d)


# -- Fréchet distance --------------------------------------------------------------------------


def _sqrtm_fd(real: np.ndarray, fake: np.ndarray) -> float:
    """The formula as pytorch-fid and clean-fid write it: np.cov, then scipy.linalg.sqrtm."""
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


FD_CASES = [(500, 400, 8, 0.3), (2000, 1500, 64, 0.0), (300, 300, 3, 2.0)]


@pytest.mark.parametrize(("n", "m", "d", "shift"), FD_CASES)
def test_frechet_distance_matches_the_sqrtm_formula(n: int, m: int, d: int, shift: float) -> None:
    rng = np.random.default_rng(n + d)
    real, fake = _gaussian(rng, n, d), _gaussian(rng, m, d, shift) * 1.2
    expected = _sqrtm_fd(real, fake)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")
@pytest.mark.parametrize(("n", "m", "d", "shift"), FD_CASES)
def test_frechet_distance_matches_pytorch_fid(n: int, m: int, d: int, shift: float) -> None:
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(n + d)
    real, fake = _gaussian(rng, n, d), _gaussian(rng, m, d, shift) * 1.2
    expected = fid_score.calculate_frechet_distance(*_moments(real), *_moments(fake))
    assert frechet_distance(real, fake) == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")
@pytest.mark.parametrize(("n", "m", "d", "shift"), FD_CASES)
def test_frechet_distance_matches_clean_fid(n: int, m: int, d: int, shift: float) -> None:
    cleanfid = pytest.importorskip("cleanfid.fid")
    rng = np.random.default_rng(n + d)
    real, fake = _gaussian(rng, n, d), _gaussian(rng, m, d, shift) * 1.2
    expected = cleanfid.frechet_distance(*_moments(real), *_moments(fake))
    assert frechet_distance(real, fake) == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_worked_by_hand() -> None:
    # One feature. real = [0, 2]: mean 1, variance (1 + 1) / 1 = 2. fake = [0, 4]: mean 2,
    # variance (4 + 4) / 1 = 8. FD = (1 - 2)² + 2 + 8 - 2 sqrt(2 · 8) = 1 + 10 - 8 = 3.
    assert frechet_distance([[0.0], [2.0]], [[0.0], [4.0]]) == pytest.approx(3.0, rel=1e-12)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_a_shift_adds_its_square() -> None:
    rng = np.random.default_rng(3)
    real = _gaussian(rng, 400, 10)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)
    shift = np.arange(10.0) / 10  # same covariance, means |shift| apart
    assert frechet_distance(real, real + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_distance_without_full_rank_covariances() -> None:
    # Fewer samples than features: both covariances are singular, where sqrtm struggles. With
    # A = centred real / sqrt(n - 1) and B = centred fake / sqrt(m - 1), S_r = AᵀA, S_f = BᵀB
    # and Tr (S_r S_f)^{1/2} is the nuclear norm of A Bᵀ: an exact reference with no root.
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(20, 50)), rng.normal(size=(30, 50)) + 0.1
    A = (real - real.mean(axis=0)) / np.sqrt(19)
    B = (fake - fake.mean(axis=0)) / np.sqrt(29)
    diff = real.mean(axis=0) - fake.mean(axis=0)
    nuclear = np.linalg.svd(A @ B.T, compute_uv=False).sum()
    expected = diff @ diff + (A * A).sum() + (B * B).sum() - 2 * nuclear
    assert frechet_distance(real, fake) == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_is_the_same_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    real, fake = _gaussian(rng, 300, 6), _gaussian(rng, 200, 6, 0.5)
    whole = frechet_distance(real, fake)
    monkeypatch.setattr(scores, "_BLOCK_ELEMENTS", 7 * 6)  # blocks of 7 rows
    assert frechet_distance(real, fake) == pytest.approx(whole, rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 6))
def test_frechet_distance_is_symmetric_and_unchanged_by_a_rotation(seed: int, d: int) -> None:
    rng = np.random.default_rng(seed)
    real, fake = _gaussian(rng, 40, d), _gaussian(rng, 30, d, 0.5) * 1.5
    value = frechet_distance(real, fake)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    assert frechet_distance(fake, real) == pytest.approx(value, rel=1e-7, abs=1e-9)
    assert frechet_distance(real @ Q + 3, fake @ Q + 3) == pytest.approx(value, rel=1e-7, abs=1e-9)


# -- kernel inception distance -----------------------------------------------------------------


def _brute_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """The unbiased MMD² of Bińkowski et al., one kernel evaluation at a time."""
    s = len(x)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((gamma * float(a @ b) + coef0) ** degree)

    xx = sum(k(x[i], x[j]) for i in range(s) for j in range(s) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(s) for j in range(s) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(s) for j in range(s))
    return (xx + yy) / (s * (s - 1)) - 2 * xy / (s * s)


def _draws(n: int, m: int, s: int, subsets: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """The subset draws kernel_inception_distance documents: real rows, then fake rows."""
    rng = np.random.default_rng(seed)
    return [
        (rng.choice(n, s, replace=False), rng.choice(m, s, replace=False)) for _ in range(subsets)
    ]


@pytest.mark.parametrize(
    ("degree", "gamma", "coef0"), [(3, None, 1.0), (2, 0.5, 0.0), (1, 2.0, 3.0), (4, 0.1, 1.0)]
)
def test_kid_on_whole_sets_matches_a_brute_force_loop(
    degree: int, gamma: float | None, coef0: float
) -> None:
    rng = np.random.default_rng(degree)
    real, fake = rng.normal(size=(9, 3)), rng.normal(size=(9, 3)) + 0.4
    # subset_size >= n = m: every subset is the whole set, reordered, so std is 0.
    mean, std = kernel_inception_distance(
        real, fake, subsets=3, subset_size=50, degree=degree, gamma=gamma, coef0=coef0
    )
    expected = _brute_mmd2(real, fake, degree, 1 / 3 if gamma is None else gamma, coef0)
    assert mean == pytest.approx(expected, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_worked_by_hand() -> None:
    # Linear kernel (degree 1, gamma 1, coef0 0): MMD² = Σ_{i≠j} (x_i x_j + y_i y_j) / 2
    # - 2 Σ x_i y_j / 4. real = [0, 1], fake = [2, 3] (one feature):
    # xx = 2 · 0 · 1 = 0; yy = 2 · 2 · 3 = 12; xy = (0 + 1) · (2 + 3) = 5.
    # MMD² = (0 + 12) / 2 - 2 · 5 / 4 = 6 - 2.5 = 3.5.
    mean, _ = kernel_inception_distance(
        [[0.0], [1.0]], [[2.0], [3.0]], subsets=1, degree=1, gamma=1.0, coef0=0.0
    )
    assert mean == pytest.approx(3.5, rel=1e-12)


def test_kid_subsets_are_the_documented_draws() -> None:
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(60, 5)), rng.normal(size=(45, 5)) * 1.3
    mean, std = kernel_inception_distance(real, fake, subsets=7, subset_size=20, seed=11)
    values = [_brute_mmd2(real[r], fake[f], 3, 1 / 5, 1.0) for r, f in _draws(60, 45, 20, 7, 11)]
    assert mean == pytest.approx(np.mean(values), rel=1e-10)
    assert std == pytest.approx(np.std(values), rel=1e-8)  # population std, ddof = 0
    assert std > 0


def test_kid_subset_size_is_capped_by_the_smaller_set() -> None:
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    mean, _ = kernel_inception_distance(real, fake, subsets=4, subset_size=1000, seed=2)
    values = [_brute_mmd2(real[r], fake[f], 3, 1 / 4, 1.0) for r, f in _draws(30, 12, 12, 4, 2)]
    assert mean == pytest.approx(np.mean(values), rel=1e-10)


def test_kid_seed_fixes_the_value() -> None:
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(80, 4)), rng.normal(size=(80, 4)) + 0.2
    first = kernel_inception_distance(real, fake, subsets=5, subset_size=30, seed=1)
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=30, seed=1) == first
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=30, seed=2) != first
    generator = kernel_inception_distance(
        real, fake, subsets=5, subset_size=30, seed=np.random.default_rng(1)
    )
    assert generator == first


def test_kid_near_zero_for_one_distribution_and_larger_for_a_shift() -> None:
    rng = np.random.default_rng(9)
    real, same = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    mean_same, std_same = kernel_inception_distance(real, same, subsets=20, subset_size=200)
    mean_shift, _ = kernel_inception_distance(real, same + 1.0, subsets=20, subset_size=200)
    assert abs(mean_same) < 3 * std_same + 1e-3
    assert mean_shift > 10 * max(abs(mean_same), std_same)


def test_kid_matches_torchmetrics_poly_mmd() -> None:
    torch = pytest.importorskip("torch")
    kid = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(200, 16)), rng.normal(size=(150, 16)) * 1.1 + 0.1
    mean, std = kernel_inception_distance(real, fake, subsets=10, subset_size=50, seed=4)
    values = torch.stack(
        [
            kid.poly_mmd(torch.from_numpy(real[r]), torch.from_numpy(fake[f]))
            for r, f in _draws(200, 150, 50, 10, 4)
        ]
    )
    assert mean == pytest.approx(float(values.mean()), rel=1e-10)
    assert std == pytest.approx(float(values.std(unbiased=False)), rel=1e-8)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_the_torchmetrics_metric_on_whole_sets() -> None:
    # The metric draws its subsets with torch's generator; with subset_size equal to both set
    # sizes each subset is the whole set, so the value does not depend on the draws.
    torch = pytest.importorskip("torch")
    kid = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(11)
    real, fake = rng.normal(size=(64, 12)), rng.normal(size=(64, 12)) + 0.3
    metric = kid.KernelInceptionDistance(
        feature=torch.nn.Identity(), subsets=3, subset_size=64, degree=3, coef=1.0
    )
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    expected_mean, expected_std = metric.compute()
    mean, std = kernel_inception_distance(real, fake, subsets=3, subset_size=64)
    assert mean == pytest.approx(float(expected_mean), rel=1e-10)
    assert std == pytest.approx(float(expected_std), abs=1e-12)


def test_kid_matches_clean_fid_kernel_distance() -> None:
    cleanfid = pytest.importorskip("cleanfid.fid")
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(120, 10)), rng.normal(size=(100, 10)) * 0.9 + 0.2
    # clean-fid draws from numpy's global generator: fake rows, then real rows, per subset.
    np.random.seed(5)
    expected = cleanfid.kernel_distance(real, fake, num_subsets=6, max_subset_size=40)
    np.random.seed(5)
    draws = [
        (np.random.choice(100, 40, replace=False), np.random.choice(120, 40, replace=False))
        for _ in range(6)
    ]
    values = [
        scores._poly_mmd2(real[r], fake[f], degree=3, gamma=1 / 10, coef0=1.0) for f, r in draws
    ]
    assert float(np.mean(values)) == pytest.approx(expected, rel=1e-10)
    # And the public function on whole sets, where the draws do not matter.
    whole = cleanfid.kernel_distance(real[:100], fake, num_subsets=1, max_subset_size=1000)
    mean, _ = kernel_inception_distance(real[:100], fake, subsets=1)
    assert mean == pytest.approx(whole, rel=1e-10)


# -- precision, recall, density, coverage ------------------------------------------------------


def test_prdc_worked_by_hand() -> None:
    # One feature, k = 1. real = 0, 1, 2, 3: each real ball has radius 1. fake = 0.5, 4: the
    # two fakes are 3.5 apart, so each fake ball has radius 3.5.
    # precision: 0.5 lies in the balls of 0 and 1; 4 is exactly 1 from 3, and the ball is
    # open (strict <), so it lies in none -> 1/2. density: (2 + 0) / (k · 2) = 1.
    # recall: the ball of 0.5 (radius 3.5) holds 0, 1, 2 and 3 -> 1.
    # coverage: 0 and 1 have a fake within their radius 1 (0.5 away); 2 is 1.5 from the
    # nearest fake, 3 exactly 1 (not < 1) -> 2/4.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [4.0]])
    assert prdc(real, fake, k=1) == {
        "precision": 0.5,
        "recall": 1.0,
        "density": 1.0,
        "coverage": 0.5,
    }


def test_prdc_of_a_set_with_itself() -> None:
    rng = np.random.default_rng(13)
    real = rng.normal(size=(200, 5))
    out = prdc(real, real.copy(), k=5)
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert out["density"] > 0.5


def test_prdc_of_far_apart_sets_is_zero() -> None:
    rng = np.random.default_rng(14)
    real = rng.normal(size=(100, 4))
    fake = rng.normal(size=(80, 4)) + 1000.0
    assert prdc(real, fake, k=3) == {
        "precision": 0.0,
        "recall": 0.0,
        "density": 0.0,
        "coverage": 0.0,
    }


PRDC_CASES = [(300, 250, 8, 5, 0.2), (1000, 900, 32, 3, 0.0), (150, 400, 2, 10, 1.0)]


@pytest.mark.parametrize(("n", "m", "d", "k", "shift"), PRDC_CASES)
def test_prdc_matches_the_prdc_package(n: int, m: int, d: int, k: int, shift: float) -> None:
    reference = pytest.importorskip("prdc")
    rng = np.random.default_rng(n + m + d)
    real = rng.normal(size=(n, d))
    fake = rng.normal(size=(m, d)) * 1.2 + shift
    expected = reference.compute_prdc(real, fake, k)
    out = prdc(real, fake, k=k)
    assert set(out) == set(expected)
    for key, value in out.items():
        assert value == pytest.approx(float(expected[key]), abs=1e-9), key


def test_prdc_is_the_same_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(15)
    real, fake = rng.normal(size=(130, 6)), rng.normal(size=(110, 6)) + 0.3
    whole = prdc(real, fake, k=4)
    monkeypatch.setattr(scores, "_BLOCK_ELEMENTS", 5 * 130)  # blocks of 5 rows
    assert prdc(real, fake, k=4) == whole


def test_prdc_is_unchanged_far_from_the_origin() -> None:
    # Centring on the real mean keeps ||a||² - 2 a·b + ||b||² accurate for features with a
    # large common offset (Inception features are all positive).
    rng = np.random.default_rng(16)
    real, fake = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) * 1.1
    assert prdc(real + 1e4, fake + 1e4, k=5) == prdc(real, fake, k=5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 5))
def test_prdc_ignores_the_order_of_the_samples(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(30, 3)), rng.normal(size=(25, 3)) + 0.5
    out = prdc(real, fake, k=k)
    permuted = prdc(real[rng.permutation(30)], fake[rng.permutation(25)], k=k)
    assert permuted == pytest.approx(out, abs=1e-12)
    assert all(0.0 <= out[key] <= 1.0 for key in ("precision", "recall", "coverage"))


# -- bad input ---------------------------------------------------------------------------------

GOOD = np.random.default_rng(17).normal(size=(20, 3))
SCORES: dict[str, Any] = {
    "frechet_distance": frechet_distance,
    "kernel_inception_distance": kernel_inception_distance,
    "prdc": prdc,
}
BAD: dict[str, tuple[Any, str]] = {
    "1-D": (GOOD[:, 0], r"fake must be a 2-D array \(n_samples, n_features\); found shape \(20,\)"),
    "3-D": (GOOD.reshape(20, 3, 1), r"fake must be a 2-D array .* found shape \(20, 3, 1\)"),
    "nan": (np.where(np.eye(20, 3) > 0, np.nan, GOOD), r"fake has non-finite .* in 3 of 20 rows"),
    "inf": (np.where(np.eye(20, 3) > 0, np.inf, GOOD), r"fake has non-finite .* in 3 of 20 rows"),
    "strings": (np.full((20, 3), "a"), "fake must hold numbers"),
    "no columns": (np.empty((20, 0)), "fake has no features"),
    "other width": (
        GOOD[:, :2],
        "real has 3 features and fake 2; expected the same number. Take both from the same layer",
    ),
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("score", list(SCORES))
def test_bad_features_are_refused(score: str, bad: str) -> None:
    value, message = BAD[bad]
    with pytest.raises(MetricInputError, match=message):
        SCORES[score](GOOD, value)
    if bad != "other width":
        with pytest.raises(MetricInputError, match=message.replace("fake", "real")):
            SCORES[score](value, GOOD)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: frechet_distance(GOOD[:1], GOOD),
            r"frechet_distance needs at least 2 rows in real \(an unbiased covariance\); "
            r"found 1\. Pass more samples\.",
        ),
        (
            lambda: kernel_inception_distance(GOOD, GOOD[:1]),
            r"kernel_inception_distance needs at least 2 rows in fake .*; found 1\.",
        ),
        (
            lambda: prdc(GOOD, GOOD[:5], k=5),
            r"prdc with k=5 needs at least 6 rows in fake \(each point's radius is the distance "
            r"to its k-th nearest other point\); found 5\. Pass more samples or a smaller k\.",
        ),
        (lambda: prdc(GOOD[:3], GOOD, k=3), r"at least 4 rows in real .*; found 3\."),
    ],
)
def test_too_few_rows_are_refused(call: Any, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        call()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subsets": 0}, "subsets must be at least 1; got 0"),
        ({"subsets": 2.5}, "subsets must be an integer; got 2.5"),
        ({"subset_size": 1}, "subset_size must be at least 2; got 1"),
        ({"degree": 0}, "degree must be at least 1; got 0"),
        ({"degree": True}, "degree must be an integer; got True"),
        ({"gamma": 0.0}, "gamma must be a finite number > 0; got 0.0"),
        ({"gamma": float("nan")}, "gamma must be a finite number > 0; got nan"),
        ({"gamma": "auto"}, "gamma must be a real number; got 'auto'"),
        ({"coef0": float("inf")}, "coef0 must be a finite number; got inf"),
    ],
)
def test_bad_kid_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        kernel_inception_distance(GOOD, GOOD, **options)


@pytest.mark.parametrize(
    ("k", "message"), [(0, "k must be at least 1; got 0"), (1.5, "k must be an integer; got 1.5")]
)
def test_bad_prdc_k_is_refused(k: Any, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        prdc(GOOD, GOOD, k=k)
