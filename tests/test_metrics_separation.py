"""Separation metrics: silhouette, centroid distances, Davies–Bouldin, Calinski–Harabasz, probes.

Each is compared with scikit-learn where scikit-learn has it, checked on a case worked out by
hand, and tested for invariance under label permutation and renaming (hypothesis).
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentdiag.errors import MetricInputError
from latentdiag.metrics import (
    calinski_harabasz_score,
    centroid_distances,
    davies_bouldin_score,
    knn_accuracy,
    linear_probe_accuracy,
    silhouette_per_label,
    silhouette_samples,
    silhouette_score,
)
from latentdiag.metrics.probes import chance_accuracy
from latentdiag.metrics.silhouette import silhouette_report, stratified_sample


def blobs(n: int = 300, d: int = 5, k: int = 3, spread: float = 2.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + spread * labels[:, None]
    return X, labels


# -- silhouette -------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 8, 13, 20])
def test_silhouette_samples_equal_sklearn_float64(d: int) -> None:
    X, y = blobs(n=257, d=d, k=4, spread=0.7, seed=d)
    np.testing.assert_allclose(silhouette_samples(X, y), skm.silhouette_samples(X, y), atol=1e-12)
    assert silhouette_score(X, y) == pytest.approx(skm.silhouette_score(X, y), abs=1e-12)


def test_silhouette_equal_sklearn_float32_and_string_labels() -> None:
    X, y = blobs(n=400, d=16, k=4, spread=0.5)
    X32 = X.astype(np.float32)
    names = np.array(["chest_xray", "oct", "pathology", "derm"])[y]
    # scikit-learn rounds float32 distances to float32; we keep float64 throughout.
    assert silhouette_score(X32, names) == pytest.approx(skm.silhouette_score(X32, names), abs=1e-6)
    np.testing.assert_allclose(
        silhouette_samples(X32, names), skm.silhouette_samples(X32, names), atol=1e-6
    )


def test_silhouette_worked_by_hand_with_a_singleton() -> None:
    # Points 0, 1 (label a), 4 (label b), 10 (label c) on a line.
    # s(0): a = 1, b = min(mean d to b = 4, to c = 10) = 4 -> (4 - 1) / 4 = 0.75
    # s(1): a = 1, b = min(3, 9) = 3 -> 2 / 3
    # s(4): alone in b -> 0 (scikit-learn's convention for clusters of size 1)
    # s(10): alone in c -> 0
    X = np.array([[0.0], [1.0], [4.0], [10.0]])
    y = ["a", "a", "b", "c"]
    np.testing.assert_allclose(silhouette_samples(X, y), [0.75, 2 / 3, 0.0, 0.0], atol=1e-15)
    assert silhouette_score(X, y) == pytest.approx((0.75 + 2 / 3) / 4)
    assert silhouette_per_label(X, y) == pytest.approx({"a": (0.75 + 2 / 3) / 2, "b": 0, "c": 0})


def test_silhouette_exact_for_tight_clusters_far_from_the_origin() -> None:
    # Two clusters of radius ~1e-4 centred at 1e4: |x|^2 + |y|^2 - 2xy loses every digit of the
    # within-cluster distances in float64; differences keep them.
    rng = np.random.default_rng(1)
    base = np.full(6, 1.0e4)
    a = base + 1e-4 * rng.normal(size=(30, 6))
    b = base + 1e-3 + 1e-4 * rng.normal(size=(30, 6))
    X = np.vstack([a, b])
    y = np.repeat([0, 1], 30)
    # Reference: the definition, with distances from differences in extended precision.
    Xl = X.astype(np.longdouble)
    D = np.sqrt(((Xl[:, None, :] - Xl[None, :, :]) ** 2).sum(axis=2))
    ref = []
    for i in range(60):
        same = y == y[i]
        a_i = D[i, same].sum() / (same.sum() - 1)
        b_i = D[i, ~same].mean()
        ref.append((b_i - a_i) / max(a_i, b_i))
    np.testing.assert_allclose(silhouette_samples(X, y), np.asarray(ref, float), atol=1e-9)


def test_silhouette_torch_path_equals_kernel() -> None:
    pytest.importorskip("torch")
    X, y = blobs(n=300, d=11, k=3, spread=1.0)
    np.testing.assert_allclose(
        silhouette_samples(X, y, device="torch-cpu"), silhouette_samples(X, y), atol=1e-12
    )
    sampled = silhouette_report(X, y, sample_size=90, device="torch-cpu", random_state=3)
    reference = silhouette_report(X, y, sample_size=90, device="cpu", random_state=3)
    np.testing.assert_allclose(sampled.samples, reference.samples, atol=1e-12)


def test_silhouette_device_cuda_without_gpu_is_a_clear_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    X, y = blobs(n=20)
    with pytest.raises(MetricInputError, match="no usable CUDA GPU"):
        silhouette_samples(X, y, device="cuda")
    with pytest.raises(MetricInputError, match="device must be"):
        silhouette_samples(X, y, device="tpu")


def test_sampled_silhouette_rows_are_exact_and_ci_covers_the_truth() -> None:
    X, y = blobs(n=1200, d=4, k=3, spread=1.0, seed=5)
    exact = skm.silhouette_samples(X, y)
    r = silhouette_report(X, y, sample_size=300, random_state=0)
    assert r.sample_size == 300 and not r.exact
    # Each sampled row's silhouette is its exact silhouette in the full data.
    np.testing.assert_allclose(r.samples, exact[r.sample_index], atol=1e-12)
    assert r.ci_low is not None and r.ci_high is not None
    assert r.ci_low < r.score < r.ci_high
    assert r.ci_low <= exact.mean() <= r.ci_high
    assert set(r.per_label) == {"0", "1", "2"}


def test_sample_size_at_least_n_is_exact() -> None:
    X, y = blobs(n=50)
    r = silhouette_report(X, y, sample_size=500)
    assert r.exact and r.ci_low is None
    assert r.score == pytest.approx(skm.silhouette_score(X, y), abs=1e-12)


def test_stratified_sample_keeps_proportions_and_small_labels() -> None:
    y = np.array([0] * 900 + [1] * 95 + [2] * 5)
    rows = stratified_sample(y, 100, random_state=0)
    assert rows.shape == (100,) and np.unique(rows).shape == (100,)
    counts = np.bincount(y[rows])
    assert counts.tolist() == [89, 9, 2]
    assert counts[2] >= 2  # a tiny label keeps two rows
    assert (stratified_sample(y, 100, random_state=0) == rows).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(6, 40),
    k=st.integers(2, 4),
    d=st.integers(1, 9),
)
def test_silhouette_invariant_to_label_permutation_and_renaming(
    seed: int, n: int, k: int, d: int
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.arange(n) % k
    rng.shuffle(y)
    perm = rng.permutation(n)
    renamed = np.array([f"label-{v * 7 % 11}" for v in y])
    base = silhouette_samples(X, y)
    np.testing.assert_allclose(silhouette_samples(X[perm], y[perm]), base[perm], atol=1e-12)
    np.testing.assert_allclose(silhouette_samples(X, renamed), base, atol=1e-12)
    relabelled = (y + 1) % k  # a permutation of the label values
    np.testing.assert_allclose(silhouette_samples(X, relabelled), base, atol=1e-12)


# -- centroid distances -----------------------------------------------------------------------


def test_centroid_distances_by_hand_and_scale_invariance() -> None:
    # Label a: (0,0), (2,0) -> centroid (1,0); b: (1,3), (1,5) -> (1,4); c: (5,0) -> (5,0).
    X = np.array([[0, 0], [2, 0], [1, 3], [1, 5], [5, 0]], dtype=float)
    y = [0, 0, 1, 1, 2]
    r = centroid_distances(X, y, label_names=["a", "b", "c"])
    expected = np.array([[0, 4, 4], [4, 0, np.hypot(4, 4)], [4, np.hypot(4, 4), 0]])
    np.testing.assert_allclose(r.matrix, expected)
    assert r.labels == ["a", "b", "c"]
    assert r.mean == pytest.approx((8 + np.hypot(4, 4)) / 3)
    assert r.min == pytest.approx(4.0)
    # Squared residuals: 1, 1, 1, 1, 0 over 5 rows -> RMS radius sqrt(4/5).
    assert r.rms_radius == pytest.approx(np.sqrt(0.8))
    assert r.normalized_mean == pytest.approx(r.mean / np.sqrt(0.8))
    scaled = centroid_distances(X * 37.5, y)
    assert scaled.mean == pytest.approx(37.5 * r.mean)
    assert scaled.normalized_mean == pytest.approx(r.normalized_mean)
    assert scaled.normalized_min == pytest.approx(r.normalized_min)


def test_centroid_distances_of_point_labels_normalize_to_infinity() -> None:
    r = centroid_distances(np.array([[0.0], [0.0], [3.0], [3.0]]), [0, 0, 1, 1])
    assert r.mean == 3.0 and r.rms_radius == 0.0 and r.normalized_mean == float("inf")


# -- Davies–Bouldin, Calinski–Harabasz ------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_davies_bouldin_and_calinski_harabasz_equal_sklearn(seed: int) -> None:
    X, y = blobs(n=200, d=6, k=2 + seed, spread=1.5, seed=seed)
    assert davies_bouldin_score(X, y) == pytest.approx(skm.davies_bouldin_score(X, y), rel=1e-10)
    assert calinski_harabasz_score(X, y) == pytest.approx(
        skm.calinski_harabasz_score(X, y), rel=1e-10
    )


def test_davies_bouldin_and_calinski_harabasz_conventions_match_sklearn() -> None:
    # Each label a single repeated point: zero spread.
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    y = [0, 0, 1, 1]
    assert davies_bouldin_score(X, y) == skm.davies_bouldin_score(X, y) == 0.0
    assert calinski_harabasz_score(X, y) == skm.calinski_harabasz_score(X, y) == 1.0


# -- probes ----------------------------------------------------------------------------------------


def _random_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes of random sizes, dimensions and spreads."""
    rng = np.random.default_rng(seed)
    n, d, k = int(rng.integers(20, 1200)), int(rng.integers(1, 20)), int(rng.integers(2, 8))
    y = rng.integers(0, k, n)
    y = np.where(np.bincount(y, minlength=k)[y] < 5, 0, y)  # every label in every fold
    centres = rng.normal(size=(k, d)) * rng.uniform(0.1, 3.0)
    return centres[y] + rng.normal(size=(n, d)), y


@pytest.mark.parametrize("seed", range(12))
def test_probes_equal_sklearn_cross_validation(seed: int) -> None:
    """The folds, the k-NN votes and the logistic optimum are scikit-learn's: the same
    accuracy, to the row (its L-BFGS at a tight tolerance; at its default one it stops short
    of the optimum and can differ by a row or two)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from latentdiag.metrics.probes import stratified_folds

    X, y = _random_problem(seed)
    if np.unique(y).shape[0] < 2:
        pytest.skip("one label left")
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    theirs = np.empty(y.shape[0], dtype=np.int64)
    for fold, (_, test) in enumerate(cv.split(X, y)):
        theirs[test] = fold
    np.testing.assert_array_equal(stratified_folds(y, 5, seed), theirs)
    knn_pred = cross_val_predict(KNeighborsClassifier(n_neighbors=5), X, y, cv=cv)
    assert knn_accuracy(X, y, random_state=seed) == (knn_pred == y).mean()
    tight = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, tol=1e-10))
    lin_pred = cross_val_predict(tight, X, y, cv=cv)
    assert linear_probe_accuracy(X, y, random_state=seed) == (lin_pred == y).mean()
    default = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    default_pred = cross_val_predict(default, X, y, cv=cv)
    assert abs((default_pred == y).sum() - (lin_pred == y).sum()) <= 2


def test_logistic_fit_is_sklearn_optimum() -> None:
    """The fitted weights themselves, binary and multinomial, against a tight L-BFGS."""
    from sklearn.linear_model import LogisticRegression

    from latentdiag.metrics.probes import fit_logistic

    rng = np.random.default_rng(3)
    for k in (2, 5):
        y = rng.integers(0, k, 400)
        X = rng.normal(size=(k, 6))[y] + rng.normal(size=(400, 6))
        ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(X, y)
        model, _ = fit_logistic(X, y, k, C=0.5)
        coef, intercept = model.coef, model.intercept
        if k > 2:  # the multinomial intercepts are defined up to a common shift
            intercept = intercept - intercept.mean()
            ref_intercept = ref.intercept_ - ref.intercept_.mean()
        else:
            ref_intercept = ref.intercept_
        np.testing.assert_allclose(coef, ref.coef_, atol=1e-6)
        np.testing.assert_allclose(intercept, ref_intercept, atol=1e-6)
        np.testing.assert_array_equal(model.predict(X), ref.predict(X))


def test_knn_probe_breaks_ties_by_index_and_smallest_label() -> None:
    """Duplicate rows: the nearest are the earliest rows of the training folds, and a tied
    vote goes to the smallest label; each row's neighbours never include its own fold."""
    from latentdiag.metrics.knn_graph import _knn_numba
    from latentdiag.metrics.probes import stratified_folds

    X = np.repeat(np.arange(6, dtype=np.float64)[:, None], 10, axis=0)  # 6 points × 10 copies
    y = np.tile([0, 1], 30)
    folds = stratified_folds(y, 5, 0)
    idx, sq = _knn_numba(X, 4, group=folds)
    assert (folds[idx] != folds[:, None]).all()
    for i in range(X.shape[0]):
        same = np.flatnonzero((X[:, 0] == X[i, 0]) & (folds != folds[i]))
        np.testing.assert_array_equal(idx[i], same[:4])
    np.testing.assert_array_equal(sq, 0.0)
    assert 0.0 <= knn_accuracy(X, y, n_neighbors=4) <= 1.0


def test_probes_separate_from_chance() -> None:
    X, y = blobs(n=400, d=3, k=4, spread=6.0)
    rng = np.random.default_rng(0)
    assert knn_accuracy(X, y) > 0.95
    assert linear_probe_accuracy(X, y) > 0.95
    noise = rng.normal(size=X.shape)
    assert linear_probe_accuracy(noise, y) < chance_accuracy(y) + 0.15
    assert chance_accuracy([0, 0, 0, 1]) == 0.75


def test_probe_max_samples_uses_a_stratified_subset() -> None:
    X, y = blobs(n=2000, d=3, k=2, spread=5.0)
    assert linear_probe_accuracy(X, y, max_samples=200) > 0.95


def test_probes_need_two_samples_per_label() -> None:
    X, y = blobs(n=30)
    y = y.copy()
    y[0] = 9
    with pytest.raises(MetricInputError, match="at least 2 samples per label; label 9 \\(1\\) has"):
        knn_accuracy(X, y)


def test_silhouette_torch_fused_path_falls_back_when_it_cannot_compile(monkeypatch) -> None:
    pytest.importorskip("torch")
    from latentdiag.metrics import _silhouette_sums as sums_module

    def broken(a, b):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(sums_module, "_COMPILED", {"cpu": broken})
    X, y = blobs(n=150, d=5, k=3, spread=1.0)
    np.testing.assert_allclose(
        silhouette_samples(X, y, device="torch-cpu-compiled"),
        skm.silhouette_samples(X, y),
        atol=1e-12,
    )
    assert sums_module._COMPILED["cpu"] is None


@pytest.mark.slow
def test_silhouette_torch_compiled_path_equals_sklearn() -> None:
    """The graph torch.compile fuses on a GPU, compiled here for the CPU (minutes to compile)."""
    pytest.importorskip("torch")
    from latentdiag.metrics import _silhouette_sums as sums_module

    sums_module._COMPILED.pop("cpu", None)
    X, y = blobs(n=300, d=7, k=3, spread=1.0)
    np.testing.assert_allclose(
        silhouette_samples(X, y, device="torch-cpu-compiled"),
        skm.silhouette_samples(X, y),
        atol=1e-12,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(8, 60), k=st.integers(2, 5))
def test_cluster_indices_invariant_to_permutation_and_renaming(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * rng.uniform(0.1, 10)
    y = np.arange(n) % k
    rng.shuffle(y)
    perm = rng.permutation(n)
    renamed = np.array([f"m{(v * 3 + 1) % 7}" for v in y])
    for fn in (davies_bouldin_score, calinski_harabasz_score, silhouette_score):
        base = fn(X, y)
        assert fn(X[perm], y[perm]) == pytest.approx(base, rel=1e-9, abs=1e-12)
        assert fn(X, renamed) == pytest.approx(base, rel=1e-9, abs=1e-12)
    base = centroid_distances(X, y)
    for other in (centroid_distances(X[perm], y[perm]), centroid_distances(X, renamed)):
        assert other.mean == pytest.approx(base.mean)
        assert other.min == pytest.approx(base.min)
        assert other.normalized_mean == pytest.approx(base.normalized_mean)
        assert sorted(np.ravel(other.matrix)) == pytest.approx(sorted(np.ravel(base.matrix)))


def test_kernels_use_the_workqueue_threading_layer_unless_told_otherwise() -> None:
    """numba's OpenMP layer beside torch's OpenMP runtime can abort a process at exit."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, numba\n"
        "from latentdiag.metrics import silhouette_score\n"
        "silhouette_score(np.random.rand(50, 3).astype('float32'), np.arange(50) % 2)\n"
        "print(numba.threading_layer())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "workqueue"
