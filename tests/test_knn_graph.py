"""Exact k-NN graph: equal to scikit-learn's brute force, deterministic ties, k checked."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from latentdiag.errors import MetricInputError
from latentdiag.metrics.knn_graph import KNNGraph, exact_knn_graph


def _sklearn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors()
    return idx, dist


@pytest.mark.parametrize(
    ("n", "d", "k", "dtype"),
    [
        (40, 1, 5, np.float64),
        (300, 3, 15, np.float64),
        (777, 13, 50, np.float64),  # rows and columns not multiples of the blocks
        (600, 16, 90, np.float32),
    ],
)
def test_equal_to_sklearn_brute(n: int, d: int, k: int, dtype: type) -> None:
    X = np.random.default_rng(n).normal(size=(n, d)).astype(dtype)
    graph = exact_knn_graph(X, k)
    idx, dist = _sklearn(X, k)
    assert graph.indices.shape == (n, k) and graph.indices.dtype == np.int64
    assert graph.distances.dtype == dtype
    for ours, theirs in zip(graph.indices, idx, strict=True):
        assert set(ours.tolist()) == set(theirs.tolist())
    np.testing.assert_allclose(graph.distances, dist, atol=1e-5)
    assert not (graph.indices == np.arange(n)[:, None]).any()  # no point is its own neighbour
    assert (np.diff(graph.distances, axis=1) >= 0).all()


def test_worked_by_hand_on_a_line() -> None:
    # Points 0, 1, 3, 7: nearest of 0 are 1 (d 1), 3 (d 3); of 3 are 1 (d 2), 0 (d 3); of 7
    # are 3 (d 4), 1 (d 6).
    graph = exact_knn_graph(np.array([[0.0], [1.0], [3.0], [7.0]]), 2)
    np.testing.assert_array_equal(graph.indices, [[1, 2], [0, 2], [1, 0], [2, 1]])
    np.testing.assert_allclose(graph.distances, [[1, 3], [1, 2], [2, 3], [4, 6]])


def test_duplicate_rows_and_ties_break_by_index() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4))
    X = np.repeat(base, 5, axis=0)  # 6 groups of 5 identical rows
    graph = exact_knn_graph(X, 4)
    # Each row's 4 neighbours are the other copies of it, at distance exactly 0, by index.
    for i in range(X.shape[0]):
        group = i // 5
        expected = [j for j in range(5 * group, 5 * group + 5) if j != i]
        assert graph.indices[i].tolist() == expected
    assert (graph.distances == 0).all()
    # Equidistant points: on a line 0, 1, 2 the middle one's neighbours tie (d 1 each).
    line = exact_knn_graph(np.array([[0.0], [1.0], [2.0]]), 2)
    assert line.indices[1].tolist() == [0, 2]
    # Deterministic: the same graph again, and from the torch path.
    again = exact_knn_graph(X, 4)
    np.testing.assert_array_equal(graph.indices, again.indices)
    torch_graph = exact_knn_graph(X, 4, device="torch-cpu")
    np.testing.assert_array_equal(graph.indices, torch_graph.indices)


def test_torch_path_equals_numba() -> None:
    X = np.random.default_rng(3).normal(size=(500, 7))
    a = exact_knn_graph(X, 20)
    b = exact_knn_graph(X, 20, device="torch-cpu")
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-12)


def test_subset_takes_the_nearest() -> None:
    X = np.random.default_rng(1).normal(size=(200, 5))
    graph = exact_knn_graph(X, 30)
    sub = graph.subset(10)
    direct = exact_knn_graph(X, 10)
    assert sub.k == 10
    np.testing.assert_array_equal(sub.indices, direct.indices)
    np.testing.assert_array_equal(sub.distances, direct.distances)
    with pytest.raises(MetricInputError, match="holds 30 neighbours"):
        graph.subset(31)
    with pytest.raises(MetricInputError, match="at least 1"):
        graph.subset(0)


def test_k_is_checked() -> None:
    X = np.random.default_rng(2).normal(size=(10, 3))
    with pytest.raises(MetricInputError, match=r"k=10 neighbours .* 10 rows: .* Use k <= 9"):
        exact_knn_graph(X, 10)
    with pytest.raises(MetricInputError, match="at least 1"):
        exact_knn_graph(X, 0)
    with pytest.raises(MetricInputError, match="must be an integer"):
        exact_knn_graph(X, 2.5)  # type: ignore[arg-type]
    with pytest.raises(MetricInputError, match="non-finite"):
        exact_knn_graph(np.full((5, 2), np.nan), 2)
    assert exact_knn_graph(X, 9).k == 9


def test_graph_shapes_are_checked() -> None:
    with pytest.raises(MetricInputError, match="one shape"):
        KNNGraph(indices=np.zeros((3, 2), dtype=np.int64), distances=np.zeros((3, 1)), k=2)


def test_a_saved_graph_loads_equal_and_refuses_other_points(tmp_path) -> None:
    X = np.random.default_rng(3).normal(size=(120, 5)).astype(np.float32)
    graph = exact_knn_graph(X, 12)
    path = graph.save(tmp_path / "graph.npz")
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no temporary left
    back = KNNGraph.load(path, X)
    np.testing.assert_array_equal(back.indices, graph.indices)
    np.testing.assert_array_equal(back.distances, graph.distances)
    assert back.k == 12 and back.source == graph.source
    assert KNNGraph.load(path).subset(5).source == graph.source  # X is optional
    other = X.copy()
    other[7, 2] += 1e-3
    with pytest.raises(MetricInputError, match="built on other points than X"):
        KNNGraph.load(path, other)
    with pytest.raises(MetricInputError, match="holds a graph of 120 points; X has 119 rows"):
        KNNGraph.load(path, X[:-1])


def test_a_bad_graph_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(MetricInputError, match="no k-NN graph file at"):
        KNNGraph.load(tmp_path / "missing.npz")
    good = exact_knn_graph(np.random.default_rng(0).normal(size=(30, 2)), 4).save(
        tmp_path / "g.npz"
    )
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(MetricInputError, match="cannot be read as a saved k-NN graph"):
        KNNGraph.load(cut)
    alien = tmp_path / "alien.npz"
    np.savez(alien, indices=np.zeros((3, 1)))
    with pytest.raises(MetricInputError, match=r"is not a k-NN graph written by KNNGraph\.save"):
        KNNGraph.load(alien)
