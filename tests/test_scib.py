"""scIB metrics: cases worked by hand, renaming invariance, errors, and scib-metrics itself.

The comparison tests run scib-metrics (YosefLab's package, the ``scib`` extra) on the same
exact graph and the same arrays, and skip where it is not installed. Reference values are not
stored: they are computed live by the installed package, with the agreed tolerances
(LISI and graph connectivity 0.01, kBET 0.02, silhouettes and BRAS 0.005, NMI/ARI 0.05).
Produced with::

    pip install -e '.[test,scib]'   # scib-metrics 0.5.10, jax 0.10.2 at the time of writing
    python -m pytest tests/test_scib.py -m 'slow or not slow'

Measured agreement then (seeds 0-2 of the data below and 3 overlapping-label sets): iLISI,
cLISI, graph connectivity, kBET, batch ASW, BRAS, isolated labels and PCR within 4e-7 (kBET
identical); NMI/ARI identical where k-means has one optimum, else apart by up to 0.2 (each
package's k-means lands in its own local optimum).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from latentdiag.errors import MetricInputError
from latentdiag.metrics import scib
from latentdiag.metrics._scib_embedding import _distance_sums, _pcr
from latentdiag.metrics._scib_kbet import _acceptance, connectivities
from latentdiag.metrics.knn_graph import KNNGraph, exact_knn_graph


def _data(
    n: int = 900,
    d: int = 8,
    n_labels: int = 4,
    n_batches: int = 3,
    batch_shift: float = 0.5,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled clusters with a batch offset: X (n, d) float32, labels, batches (strings)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, n)
    b = rng.integers(0, n_batches, n)
    centers = rng.normal(scale=4.0, size=(n_labels, d))
    shift = rng.normal(scale=batch_shift, size=(n_batches, d))
    X = centers[y] + shift[b] + rng.normal(scale=noise, size=(n, d))
    names_y = np.array([f"type_{v}" for v in range(n_labels)])[y]
    names_b = np.array([f"donor_{v}" for v in range(n_batches)])[b]
    return X.astype(np.float32), names_y, names_b


X0, Y0, B0 = _data()
G0 = exact_knn_graph(X0, 89)


def _graph(neighbours: list[list[int]], distances: list[list[float]] | None = None) -> KNNGraph:
    idx = np.asarray(neighbours, dtype=np.int64)
    dist = np.ones(idx.shape) if distances is None else np.asarray(distances, dtype=np.float64)
    return KNNGraph(indices=idx, distances=dist, k=idx.shape[1])


# -- cases worked by hand ---------------------------------------------------------------------


def test_lisi_worked_by_hand() -> None:
    # Five cells, each with the other four as neighbours at distance 1: whatever the kernel
    # width, the weights are 1/4 each, with entropy log 4 (perplexity 4). Batches 0, 0, 1, 1, 1.
    # Cells 0, 1 see batches (0, 1, 1, 1): Simpson 1/16 + 9/16 = 10/16, LISI 1.6.
    # Cells 2, 3, 4 see (0, 0, 1, 1): Simpson 1/2, LISI 2. Median 2: iLISI (2 - 1)/(2 - 1) = 1.
    graph = _graph([[j for j in range(5) if j != i] for i in range(5)])
    batch = np.array([0, 0, 1, 1, 1])
    lisi = scib.lisi(graph, batch, n_neighbors=5, perplexity=4)
    np.testing.assert_allclose(lisi, [1.6, 1.6, 2, 2, 2])
    assert scib.ilisi(graph, batch, n_neighbors=5, perplexity=4) == pytest.approx(1.0)
    # As cell-type labels the same neighbourhoods are mixed: cLISI (2 - 2) / (2 - 1) = 0.
    assert scib.clisi(graph, batch, n_neighbors=5, perplexity=4) == pytest.approx(0.0)
    # The default perplexity floor(5 / 3) = 1 cannot be reached with equal distances: the
    # bisection raises beta until every weight underflows, and the cell scores -1, as in
    # scib-metrics.
    np.testing.assert_array_equal(scib.lisi(graph, batch, n_neighbors=5), -1.0)
    # Pure neighbourhoods: two groups of three, each cell's two neighbours its own group.
    pure = _graph([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    assert scib.clisi(pure, labels, n_neighbors=3, perplexity=2) == pytest.approx(1.0)
    assert scib.ilisi(pure, labels, n_neighbors=3, perplexity=2) == pytest.approx(0.0)


def test_lisi_perplexity_calibrates_the_kernel() -> None:
    # One neighbour at distance 0 and one at distance 1, labels a and b. Perplexity 2 needs
    # equal weights: beta -> 0, Simpson -> 1/2, LISI -> 2. Perplexity close to 1 puts the
    # weight on the nearer one: LISI -> 1.
    graph = _graph([[1, 2], [0, 2], [0, 1]], [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 0, 1])
    assert scib.lisi(graph, labels, n_neighbors=3, perplexity=2.0)[0] == pytest.approx(2, abs=1e-3)
    assert scib.lisi(graph, labels, n_neighbors=3, perplexity=1.001)[0] < 1.01


def test_graph_connectivity_worked_by_hand() -> None:
    # Label a = cells 0, 1, 2 with edges 0 -> 1, 1 -> 2, 2 -> 1: weakly one piece, but the
    # largest strongly connected component is {1, 2}: 2/3. Label b = 3 -> 4 -> 5 -> 3, a
    # cycle: 1. Mean 5/6.
    graph = _graph([[1], [2], [1], [4], [5], [3]])
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    assert scib.graph_connectivity(graph, labels, n_neighbors=2) == pytest.approx(5 / 6)


def test_kbet_chi2_test_worked_by_hand() -> None:
    # Two batches of equal size; each cell tested on 4 neighbours (itself included), expected
    # 2 + 2. Counts (2, 2): statistic 0, p = 1, accepted. Counts (4, 0): statistic
    # (2² + 2²) / 2 = 4, p = P(χ²₁ > 4) = 0.0455 < 0.05, rejected. Acceptance 1/2.
    batches = np.array([0, 0, 1, 1])
    neigh = np.array([[0, 1, 2, 3], [1, 0, 1, 0], [2, 3, 0, 1], [3, 2, 3, 2]])
    assert _acceptance(neigh[:2], batches, 0.05) == pytest.approx(0.5)
    assert _acceptance(neigh, batches, 0.05) == pytest.approx(0.5)  # cells 2, 3 likewise
    assert _acceptance(neigh, batches, 0.04) == pytest.approx(1.0)


@pytest.mark.slow  # umap-learn compiles its kernels on first use: ~5 s
def test_connectivities_equal_umap() -> None:
    import scipy.sparse as sp
    from umap.umap_ import fuzzy_simplicial_set

    X = np.random.default_rng(5).normal(size=(500, 6))
    X[10:20] = X[10]  # duplicates: neighbours at distance 0 beside the cell itself
    graph = exact_knn_graph(X, 29)
    n = graph.n_samples
    ref = fuzzy_simplicial_set(
        sp.coo_matrix((n, 1)),
        n_neighbors=30,
        random_state=None,
        metric=None,
        knn_indices=np.hstack([np.arange(n)[:, None], graph.indices]),
        knn_dists=np.hstack([np.zeros((n, 1)), graph.distances]),
    )[0]
    ours = connectivities(graph)
    assert ours.nnz == ref.nnz
    assert abs(ours - sp.csr_matrix(ref)).max() == 0.0


def test_kbet_mixed_against_separated_batches() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 150)
    X = rng.normal(size=(300, 4)) + 10.0 * y[:, None]
    mixed = rng.integers(0, 2, 300)
    graph = exact_knn_graph(X, 49)
    assert scib.kbet(graph, mixed, y) > 0.8
    # Batches far apart inside each label: every neighbourhood is one batch.
    apart = np.tile(np.repeat([0, 1], 75), 2)
    X_apart = X + 20.0 * apart[:, None]
    assert scib.kbet(exact_knn_graph(X_apart, 49), apart, y) == pytest.approx(0.0)
    # A label of fewer than 10 cells is skipped (NaN), the others averaged.
    y_small = y.copy()
    y_small[:5] = 7
    score, per_label = scib.kbet(graph, mixed, y_small, return_per_label=True)
    assert np.isnan(per_label["7"]) and score == pytest.approx(
        np.mean([per_label["0"], per_label["1"]])
    )


def test_silhouette_batch_and_bras_worked_by_hand() -> None:
    # Label a on a line: 0 (batch x), 1 (x), 3 (y), 7 (z). Label b is one batch: skipped.
    # Cells 3 and 7 are alone in their batch: s = 0, so 1 - |s| = 1.
    #   nearest (batch ASW): cell 0 a = 1, b = min(3, 7) = 3, s = 2/3; cell 1 a = 1,
    #     b = min(2, 6) = 2, s = 1/2 -> mean of (1/3, 1/2, 1, 1) = 17/24.
    #   mean_other (BRAS): cell 0 b = (3 + 7)/2 = 5, s = 4/5; cell 1 b = (2 + 6)/2 = 4,
    #     s = 3/4 -> mean of (1/5, 1/4, 1, 1) = 0.6125.
    #   furthest: cell 0 b = 7, s = 6/7; cell 1 b = 6, s = 5/6 -> mean of (1/7, 1/6, 1, 1).
    X = np.array([[0.0], [1.0], [3.0], [7.0], [100.0], [101.0], [102.0]])
    labels = np.array(["a"] * 4 + ["b"] * 3)
    batch = np.array(["x", "x", "y", "z", "x", "x", "x"])
    assert scib.silhouette_batch(X, labels, batch) == pytest.approx(17 / 24)
    assert scib.silhouette_batch(X, labels, batch, rescale=False) == pytest.approx(
        (2 / 3 + 1 / 2) / 4
    )
    assert scib.bras(X, labels, batch, metric="euclidean") == pytest.approx(0.6125)
    furthest = scib.bras(X, labels, batch, metric="euclidean", between_cluster_distances="furthest")
    assert furthest == pytest.approx((1 / 7 + 1 / 6 + 2) / 4)


def test_bras_cosine_sums_equal_brute_force() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    codes = rng.integers(0, 3, 60)
    D = cdist(X, X, metric="cosine")
    brute = np.stack([D[:, codes == c].sum(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(_distance_sums(X, codes, 3, "cosine"), brute, atol=1e-10)
    Xe = X.astype(np.float64)
    De = cdist(Xe, Xe)
    brute_e = np.stack([De[:, codes == c].sum(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(_distance_sums(Xe, codes, 3, "euclidean"), brute_e, rtol=1e-12)


def test_isolated_labels_worked_by_hand() -> None:
    # Labels a (0, 1) and c (20, 21) appear in batches x and y; b (10, 11) only in x, the
    # fewest: b is the isolated label. Its cells: a = 1, b = min(9.5, 10.5) = 9.5,
    # s = 8.5 / 9.5 each; score (s + 1) / 2.
    X = np.array([[0.0], [1.0], [10.0], [11.0], [20.0], [21.0]])
    labels = np.array(["a", "a", "b", "b", "c", "c"])
    batch = np.array(["x", "y", "x", "x", "x", "y"])
    assert scib.isolated_labels(X, labels, batch) == pytest.approx((8.5 / 9.5 + 1) / 2)
    assert scib.isolated_labels(X, labels, batch, rescale=False) == pytest.approx(8.5 / 9.5)


def test_pcr_comparison_worked_by_hand() -> None:
    # X_pre: batch x at 0, 2 and batch y at 10, 12; mean 6, total SS 104, between-batch SS
    # 2·25 + 2·25 = 100. X_post: x at 0, 10 and y at 2, 12: between SS 2·1 + 2·1 = 4.
    # (100/104 - 4/104) / (100/104) = 0.96.
    batch = np.array(["x", "x", "y", "y"])
    pre = np.array([[0.0], [2.0], [10.0], [12.0]])
    post = np.array([[0.0], [10.0], [2.0], [12.0]])
    assert scib.pcr_comparison(pre, post, batch) == pytest.approx(0.96)
    assert scib.pcr_comparison(pre, post, batch, scale=False) == pytest.approx((4 - 100) / 104)
    # More batch variance after than before: clipped at 0.
    assert scib.pcr_comparison(post, pre, batch) == 0.0


def test_pcr_equals_regression_on_every_principal_component() -> None:
    # The closed form against the definition: PCA, one-hot regression per PC, R² weighted by
    # each PC's variance.
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 3, 200)
    X = rng.normal(size=(200, 6)) + 0.7 * batch[:, None] * rng.normal(size=(1, 6))
    Xc = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(Xc, full_matrices=False)
    pcs = u * s
    onehot = np.eye(3)[batch]
    onehot -= onehot.mean(axis=0)
    fitted = onehot @ np.linalg.lstsq(onehot, pcs, rcond=None)[0]
    r2 = 1 - ((pcs - fitted) ** 2).sum(axis=0) / (pcs**2).sum(axis=0)
    expected = float(r2 @ s**2 / (s**2).sum())
    assert _pcr(X, batch) == pytest.approx(expected, rel=1e-10)


def test_nmi_ari_on_separated_clusters() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat(["a", "b", "c"], 40)
    X = rng.normal(size=(120, 3)) + 20.0 * np.repeat(np.eye(3), 40, axis=0)
    assert scib.nmi_ari_kmeans(X, y) == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


# -- invariances ------------------------------------------------------------------------------


def _all_metrics(X: np.ndarray, graph: KNNGraph, labels: Any, batch: Any) -> dict[str, float]:
    nmi_ari = scib.nmi_ari_kmeans(X, labels)
    return {
        "ilisi": scib.ilisi(graph, batch),
        "clisi": scib.clisi(graph, labels),
        "graph_connectivity": scib.graph_connectivity(graph, labels),
        "silhouette_batch": scib.silhouette_batch(X, labels, batch),
        "bras": scib.bras(X, labels, batch),
        "isolated_labels": scib.isolated_labels(X, labels, batch),
        "pcr_comparison": scib.pcr_comparison(X + 3.0 * (batch == batch[0])[:, None], X, batch),
        **nmi_ari,
    }


BASE = _all_metrics(X0, G0, Y0, B0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    perm_y=st.permutations(list(range(4))),
    perm_b=st.permutations(list(range(3))),
    ints=st.booleans(),
)
def test_renaming_labels_and_batches_changes_nothing(
    perm_y: list[int], perm_b: list[int], ints: bool
) -> None:
    codes_y = np.unique(Y0, return_inverse=True)[1]
    codes_b = np.unique(B0, return_inverse=True)[1]
    y: Any = np.asarray(perm_y)[codes_y]
    b: Any = np.asarray(perm_b)[codes_b]
    if not ints:
        y, b = np.array(["zz", "m", "a", "q"])[y], np.array(["9", "10", "b"])[b]
    renamed = _all_metrics(X0, G0, y, b)
    for key, value in BASE.items():
        assert renamed[key] == pytest.approx(value, abs=1e-12), key


def test_kbet_renaming_changes_nothing() -> None:
    graph = G0.subset(49)
    base = scib.kbet(graph, B0, Y0)
    codes_y = np.unique(Y0, return_inverse=True)[1]
    codes_b = np.unique(B0, return_inverse=True)[1]
    renamed = scib.kbet(graph, np.array([2, 0, 1])[codes_b], np.array([30, 10, 40, 20])[codes_y])
    assert renamed == pytest.approx(base, abs=1e-12)
    assert 0.0 <= base <= 1.0


# -- errors -------------------------------------------------------------------------------------

ONE = np.zeros(X0.shape[0], dtype=np.int64)
GRAPH_CALLS = {
    "ilisi": lambda g, y, b: scib.ilisi(g, b),
    "clisi": lambda g, y, b: scib.clisi(g, y),
    "kbet": lambda g, y, b: scib.kbet(g, b, y),
    "graph_connectivity": lambda g, y, b: scib.graph_connectivity(g, y),
}
ARRAY_CALLS = {
    "silhouette_batch": lambda x, y, b: scib.silhouette_batch(x, y, b),
    "bras": lambda x, y, b: scib.bras(x, y, b),
    "isolated_labels": lambda x, y, b: scib.isolated_labels(x, y, b),
    "pcr_comparison": lambda x, y, b: scib.pcr_comparison(x, x, b),
    "nmi_ari_kmeans": lambda x, y, b: scib.nmi_ari_kmeans(x, y),
}
USES_BATCH = {"ilisi", "kbet", "silhouette_batch", "bras", "isolated_labels", "pcr_comparison"}
USES_LABELS = {"clisi", "kbet", "graph_connectivity", "isolated_labels", "nmi_ari_kmeans"}


@pytest.mark.parametrize("name", sorted(USES_BATCH))
def test_a_single_batch_is_refused(name: str) -> None:
    call = GRAPH_CALLS.get(name) or ARRAY_CALLS[name]
    first = G0 if name in GRAPH_CALLS else X0
    with pytest.raises(MetricInputError, match="at least 2 distinct batches; batch has only one"):
        call(first, Y0, ONE)


@pytest.mark.parametrize("name", sorted(USES_LABELS))
def test_a_single_label_is_refused(name: str) -> None:
    call = GRAPH_CALLS.get(name) or ARRAY_CALLS[name]
    first = G0 if name in GRAPH_CALLS else X0
    with pytest.raises(MetricInputError, match="at least 2 distinct labels; labels has only one"):
        call(first, ONE, B0)


@pytest.mark.parametrize("name", sorted(GRAPH_CALLS))
def test_graph_metrics_check_the_graph(name: str) -> None:
    call = GRAPH_CALLS[name]
    with pytest.raises(MetricInputError, match="needs a KNNGraph"):
        call(X0, Y0, B0)
    with pytest.raises(MetricInputError, match=r"needs a graph of k >= \d+; this one has k=5"):
        call(G0.subset(5), Y0, B0)
    with pytest.raises(MetricInputError, match="entries but the latents have"):
        call(G0, Y0[:-1], B0[:-1])


@pytest.mark.parametrize("name", sorted(ARRAY_CALLS))
def test_array_metrics_check_their_input(name: str) -> None:
    call = ARRAY_CALLS[name]
    bad = X0.copy()
    bad[3, 1] = np.nan
    with pytest.raises(MetricInputError, match="non-finite"):
        call(bad, Y0, B0)
    with pytest.raises(MetricInputError, match="entries but the latents have"):
        call(X0, Y0[:-1], B0[:-1])


def test_metric_specific_errors() -> None:
    with pytest.raises(MetricInputError, match="zero rows"):
        scib.bras(np.vstack([np.zeros((1, 8)), X0[1:]]), Y0, B0)
    with pytest.raises(MetricInputError, match="metric must be"):
        scib.bras(X0, Y0, B0, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(MetricInputError, match="X_pre has 899 rows and X_post 900"):
        scib.pcr_comparison(X0[1:], X0, B0)
    with pytest.raises(MetricInputError, match="explains none of the variance"):
        scib.pcr_comparison(np.ones((900, 2)), X0, B0)
    # Every label from one batch: no label has two batches to compare.
    split = np.where(B0 == "donor_0", "p", "q")
    with pytest.raises(MetricInputError, match="from at least 2 batches"):
        scib.silhouette_batch(X0, split, B0 == "donor_0")
    with pytest.raises(MetricInputError, match="at least 10 cells from at least 2 batches"):
        scib.kbet(G0, B0 == "donor_0", split)
    with pytest.raises(MetricInputError, match="counts the cell itself"):
        scib.ilisi(G0, B0, n_neighbors=1)


# -- against scib-metrics, on the same exact graph -----------------------------------------


def _neighbors_results(graph: KNNGraph, n_neighbors: int) -> Any:
    """scib-metrics' neighbour lists: each cell first, then its n_neighbors - 1 nearest."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    sub = graph.subset(n_neighbors - 1)
    n = sub.n_samples
    return NeighborsResults(
        indices=np.hstack([np.arange(n)[:, None], sub.indices]),
        distances=np.hstack([np.zeros((n, 1)), sub.distances]).astype(np.float32),
    )


CASES = [
    _data(seed=1, batch_shift=0.3),
    _data(seed=2, batch_shift=1.5),
    _data(seed=3, batch_shift=0.5, noise=3.0),  # overlapping labels
]


@pytest.fixture(scope="module")
def sm() -> Any:
    module = pytest.importorskip("scib_metrics")
    warnings.filterwarnings("ignore", module="scib_metrics")
    return module


@pytest.mark.parametrize("case", range(len(CASES)))
def test_graph_metrics_equal_scib_metrics(sm: Any, case: int) -> None:
    X, y, b = CASES[case]
    graph = exact_knn_graph(X, 89)
    assert scib.ilisi(graph, b) == pytest.approx(
        sm.ilisi_knn(_neighbors_results(graph, 90), b), abs=0.01
    )
    assert scib.clisi(graph, y) == pytest.approx(
        sm.clisi_knn(_neighbors_results(graph, 90), y), abs=0.01
    )
    assert scib.graph_connectivity(graph, y) == pytest.approx(
        sm.graph_connectivity(_neighbors_results(graph, 15), y), abs=0.01
    )


def _silhouettes_agree(sm: Any, X: np.ndarray, y: np.ndarray, b: np.ndarray) -> None:
    assert scib.silhouette_batch(X, y, b) == pytest.approx(sm.silhouette_batch(X, y, b), abs=5e-3)
    assert scib.bras(X, y, b) == pytest.approx(sm.bras(X, y, b), abs=5e-3)
    assert scib.bras(X, y, b, metric="euclidean") == pytest.approx(
        sm.bras(X, y, b, metric="euclidean"), abs=5e-3
    )
    assert scib.isolated_labels(X, y, b) == pytest.approx(sm.isolated_labels(X, y, b), abs=5e-3)


def test_batch_silhouettes_take_a_single_label(sm: Any) -> None:
    """All cells of one type: the batches are still compared, as scib-metrics does."""
    X, _, b = _data(n=200, n_labels=2, seed=8, noise=1.0)
    one = np.zeros(len(X), dtype=int)
    assert scib.silhouette_batch(X, one, b) == pytest.approx(
        sm.silhouette_batch(X, one, b), abs=5e-3
    )
    assert scib.bras(X, one, b) == pytest.approx(sm.bras(X, one, b), abs=5e-3)


def test_silhouettes_equal_scib_metrics(sm: Any) -> None:
    # Small: scib-metrics compiles its jax silhouette for every label's shape.
    _silhouettes_agree(sm, *_data(n=256, n_labels=2, seed=5, noise=2.0))


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(CASES)))
def test_silhouettes_equal_scib_metrics_larger(sm: Any, case: int) -> None:
    _silhouettes_agree(sm, *CASES[case])


@pytest.mark.parametrize("case", range(len(CASES)))
def test_pcr_comparison_equals_scib_metrics(sm: Any, case: int) -> None:
    X, _, b = CASES[case]
    codes = np.unique(b, return_inverse=True)[1]
    pre = X + np.random.default_rng(case).normal(scale=2.0, size=(1, X.shape[1])) * codes[:, None]
    ours = scib.pcr_comparison(pre, X, b)
    assert ours == pytest.approx(sm.pcr_comparison(pre, X, b, categorical=True), abs=5e-3)


def test_nmi_ari_equal_scib_metrics(sm: Any) -> None:
    # Data where k-means has one optimum: both packages' k-means find it.
    X, y, _ = _data(seed=1, batch_shift=0.3)
    ours, theirs = scib.nmi_ari_kmeans(X, y), sm.nmi_ari_cluster_labels_kmeans(X, y)
    assert ours["nmi"] == pytest.approx(theirs["nmi"], abs=0.05)
    assert ours["ari"] == pytest.approx(theirs["ari"], abs=0.05)


@pytest.mark.slow  # scib-metrics compiles its jax kernels for every label: ~40 s
def test_kbet_equals_scib_metrics(sm: Any) -> None:
    X, y, b = _data(n=600, n_labels=3, seed=4, batch_shift=0.5, noise=2.0)
    graph = exact_knn_graph(X, 49)
    ours = scib.kbet(graph, b, y)
    assert 0.2 < ours < 1.0  # neither trivially 0 nor 1
    assert ours == pytest.approx(sm.kbet_per_label(_neighbors_results(graph, 50), b, y), abs=0.02)


@pytest.mark.slow
def test_kbet_edge_cases_equal_scib_metrics(sm: Any) -> None:
    # A label of 8 cells (skipped), one of exactly 10 (k0 = 10 > its 9 other cells), 30
    # duplicate rows, and labels split into far-apart pieces (the component rules).
    X, y, b = _data(n=1000, d=6, n_labels=4, n_batches=2, seed=7)
    X = X.astype(np.float64)
    y = y.copy()
    y[:8] = "small"
    y[8:18] = "ten"
    X[100:130] = X[100]
    X[np.flatnonzero(y == "type_0")[:60]] += 50.0
    X[np.flatnonzero(y == "type_1")[:200]] -= 50.0
    graph = exact_knn_graph(X, 89)
    ours = scib.kbet(graph, b, y)
    assert ours == pytest.approx(sm.kbet_per_label(_neighbors_results(graph, 50), b, y), abs=0.02)
    assert scib.graph_connectivity(graph, y) == pytest.approx(
        sm.graph_connectivity(_neighbors_results(graph, 15), y), abs=0.01
    )
