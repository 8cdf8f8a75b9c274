"""The scIB integration metrics (Luecken et al. 2022), as YosefLab's scib-metrics defines them.

Batch removal: :func:`ilisi`, :func:`kbet`, :func:`graph_connectivity`,
:func:`silhouette_batch`, :func:`bras`, :func:`pcr_comparison`. Label conservation:
:func:`clisi`, :func:`isolated_labels`, :func:`nmi_ari_kmeans`. Each follows scib-metrics 0.5
(``scib_metrics.metrics``) in its definition, defaults and scaling, with the inputs its
``Benchmarker`` passes; where this module deviates, the function says so.

The graph metrics take an exact :class:`~latentdiag.metrics.knn_graph.KNNGraph`, which leaves
each cell out of its own neighbours. scib-metrics' neighbour lists count the cell itself, so
its "90 neighbours" are the cell and 89 others: here ``n_neighbors`` counts the same way
(LISI 90, kBET 50, graph connectivity 15, the ``Benchmarker``'s sizes) and a function uses the
first ``n_neighbors - 1`` neighbours of the graph. One graph built with
``exact_knn_graph(X, 89)`` serves them all.

Every score lies in [0, 1] (ARI in [-0.5, 1]), 1 best (most batch mixing, best label
conservation).

Costs, n cells, d features: LISI O(n · 89 · 50) after the graph; graph connectivity O(n · 14);
kBET the connectivities O(n · 49), then per label an ARPACK eigendecomposition (<= 100
components) and exact neighbours in that 100-dimensional map, O(n_label² · 100); the batch
ASW and BRAS O(Σ n_label² · d); isolated labels O(n² · d) (one full silhouette); PCR O(n · d);
k-means O(n · d · n_labels · iterations). The graph itself is O(n² · d)
(:func:`~latentdiag.metrics.knn_graph.exact_knn_graph`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._scib_checks import check_graph as _check_graph
from latentdiag.metrics._scib_checks import check_groups as _groups
from latentdiag.metrics._scib_embedding import (
    bras,
    isolated_labels,
    nmi_ari_kmeans,
    pcr_comparison,
    silhouette_batch,
)
from latentdiag.metrics._validation import EncodedLabels, check_labels
from latentdiag.metrics.knn_graph import KNNGraph

__all__ = [
    "N_NEIGHBORS",
    "bras",
    "clisi",
    "graph_connectivity",
    "ilisi",
    "isolated_labels",
    "kbet",
    "lisi",
    "nmi_ari_kmeans",
    "pcr_comparison",
    "silhouette_batch",
]

#: Neighbourhood sizes of scib-metrics' Benchmarker, each counting the cell itself.
N_NEIGHBORS = {"lisi": 90, "kbet": 50, "graph_connectivity": 15}

# -- LISI -----------------------------------------------------------------------------------


def lisi(
    graph: KNNGraph, labels: Any, *, n_neighbors: int = 90, perplexity: float | None = None
) -> np.ndarray:
    """Local inverse Simpson's index of every cell (Korsunsky et al. 2019), unscaled.

    The weights of a cell's neighbours are a Gaussian kernel exp(-beta · d) on their
    distances, beta found by bisection so that their perplexity is ``perplexity``; the LISI is
    1 / Σ_c (weight of label c)², the effective number of labels around the cell (scib-metrics'
    ``lisi_knn``). A cell whose weights all vanish gets -1, as there.

    Args:
        graph: Exact k-NN graph of the latents, k >= n_neighbors - 1.
        labels: One label (or batch) per cell.
        n_neighbors: Neighbours counting the cell itself (scib-metrics' 90).
        perplexity: Effective neighbourhood; ``None`` is floor(n_neighbors / 3), i.e. 30.

    Returns:
        (n_samples,) float64 LISI values in [1, number of labels].

    Raises:
        MetricInputError: Not a KNNGraph, too few neighbours, or labels of the wrong length.

    References:
        I. Korsunsky et al., 'Fast, sensitive and accurate integration of single-cell data
        with Harmony', Nature Methods 16, 2019.
    """
    sub = _check_graph(graph, n_neighbors, "LISI")
    enc = check_labels(labels, sub.n_samples, min_labels=1, metric="LISI")
    return _lisi(sub, enc, n_neighbors, perplexity)


def _lisi(
    sub: KNNGraph, enc: EncodedLabels, n_neighbors: int, perplexity: float | None
) -> np.ndarray:
    from latentdiag.metrics._scib_numba import simpson_index

    perp = float(np.floor(n_neighbors / 3)) if perplexity is None else float(perplexity)
    if not perp > 0:
        raise MetricInputError(f"perplexity must be positive; got {perp}.")
    out = np.empty(sub.n_samples)
    dist = np.ascontiguousarray(sub.distances, dtype=np.float64)
    simpson_index(dist, enc.codes[sub.indices], enc.n_labels, perp, 1e-5, out)
    return 1.0 / out


def ilisi(
    graph: KNNGraph, batch: Any, *, n_neighbors: int = 90, perplexity: float | None = None
) -> float:
    """Integration LISI: how many batches a cell's neighbourhood mixes, scaled to [0, 1].

    (median LISI over cells − 1) / (n_batches − 1), scib-metrics' ``ilisi_knn`` (scale=True).

    Args:
        graph: Exact k-NN graph of the latents, k >= n_neighbors - 1 (89 by default).
        batch: One batch per cell.
        n_neighbors: Neighbours counting the cell itself (scib-metrics' 90).
        perplexity: ``None`` is floor(n_neighbors / 3).

    Returns:
        iLISI in [0, 1]; 1 best (batches fully mixed), 0 worst (no neighbour from another
        batch).

    Raises:
        MetricInputError: Not a KNNGraph, too few neighbours, a single batch, or batches of
            the wrong length.

    References:
        Korsunsky et al. 2019 (see :func:`lisi`); Luecken et al., Nature Methods 19, 2022.
    """
    sub = _check_graph(graph, n_neighbors, "iLISI")
    enc = _groups(batch, sub.n_samples, name="batch", metric="iLISI")
    median = float(np.nanmedian(_lisi(sub, enc, n_neighbors, perplexity)))
    return (median - 1.0) / (enc.n_labels - 1)


def clisi(
    graph: KNNGraph, labels: Any, *, n_neighbors: int = 90, perplexity: float | None = None
) -> float:
    """Cell-type LISI: how pure a cell's neighbourhood is in its label, scaled to [0, 1].

    (n_labels − median LISI over cells) / (n_labels − 1), scib-metrics' ``clisi_knn``.

    Args:
        graph: Exact k-NN graph of the latents, k >= n_neighbors - 1 (89 by default).
        labels: One label per cell.
        n_neighbors: Neighbours counting the cell itself (scib-metrics' 90).
        perplexity: ``None`` is floor(n_neighbors / 3).

    Returns:
        cLISI in [0, 1]; 1 best (neighbourhoods of one label), 0 worst (all labels mixed).

    Raises:
        MetricInputError: Not a KNNGraph, too few neighbours, a single label, or labels of
            the wrong length.

    References:
        Korsunsky et al. 2019 (see :func:`lisi`); Luecken et al., Nature Methods 19, 2022.
    """
    sub = _check_graph(graph, n_neighbors, "cLISI")
    enc = _groups(labels, sub.n_samples, name="labels", metric="cLISI")
    median = float(np.nanmedian(_lisi(sub, enc, n_neighbors, perplexity)))
    return (enc.n_labels - median) / (enc.n_labels - 1)


# -- kBET and graph connectivity ------------------------------------------------------------


def kbet(
    graph: KNNGraph,
    batch: Any,
    labels: Any,
    *,
    n_neighbors: int = 50,
    alpha: float = 0.05,
    diffusion_n_comps: int = 100,
    return_per_label: bool = False,
) -> float | tuple[float, dict[str, float]]:
    """kBET acceptance rate per label, averaged (Büttner et al. 2019; scib-metrics' version).

    Per label: the UMAP connectivities of the graph restricted to its cells, a diffusion map
    of that subgraph, each cell's k0 + 1 nearest cells in it (k0 = min(70, max(10, mean cells
    per batch / 4)), and a χ² test of their batches against the label's batch frequencies;
    the score is the share of cells not rejected at ``alpha``. Labels with fewer than 10
    cells or a single batch are skipped; a label split into small components scores 0 (see
    :mod:`latentdiag.metrics._scib_kbet` for the rules). This is scib-metrics'
    ``kbet_per_label``, except that neighbours in the diffusion map are exact where
    scib-metrics uses pynndescent (approximate).

    Args:
        graph: Exact k-NN graph of the latents, k >= n_neighbors - 1 (49 by default).
        batch: One batch per cell.
        labels: One label per cell.
        n_neighbors: Neighbours counting the cell itself (scib-metrics' 50).
        alpha: Significance level of the test.
        diffusion_n_comps: Components of the diffusion map.
        return_per_label: Also return each label's score (NaN where skipped).

    Returns:
        The mean acceptance rate in [0, 1]; 1 best (batches mixed within every label).
        With ``return_per_label``, also ``{label: score}``.

    Raises:
        MetricInputError: Not a KNNGraph, too few neighbours, a single batch or label,
            wrong lengths, or no label with >= 10 cells from >= 2 batches.

    References:
        M. Büttner et al., 'A test metric for assessing single-cell RNA-seq batch
        correction', Nature Methods 16, 2019; Luecken et al., Nature Methods 19, 2022.
    """
    from latentdiag.metrics._scib_kbet import kbet_per_label

    sub = _check_graph(graph, n_neighbors, "kBET")
    b = _groups(batch, sub.n_samples, name="batch", metric="kBET")
    y = _groups(labels, sub.n_samples, name="labels", metric="kBET")
    if not 0.0 < alpha < 1.0:
        raise MetricInputError(f"alpha must lie in (0, 1); got {alpha}.")
    score, per_label = kbet_per_label(
        sub, b.codes, y.codes, y.n_labels, alpha=alpha, diffusion_n_comps=diffusion_n_comps
    )
    if not np.isfinite(score):
        raise MetricInputError(
            "kBET needs a label with at least 10 cells from at least 2 batches; none has."
        )
    if return_per_label:
        names = y.names()
        return score, {names[c]: float(v) for c, v in enumerate(per_label)}
    return score


def graph_connectivity(graph: KNNGraph, labels: Any, *, n_neighbors: int = 15) -> float:
    """Share of each label's cells in the largest connected component of its subgraph, mean.

    The directed k-NN graph restricted to one label's cells; its largest *strongly* connected
    component; that component's share of the label's cells; the mean over labels
    (scib-metrics' ``graph_connectivity``).

    Args:
        graph: Exact k-NN graph of the latents, k >= n_neighbors - 1 (14 by default).
        labels: One label per cell.
        n_neighbors: Neighbours counting the cell itself (scib-metrics' 15).

    Returns:
        Graph connectivity in (0, 1]; 1 best (every label one connected piece).

    Raises:
        MetricInputError: Not a KNNGraph, too few neighbours, a single label, or labels of
            the wrong length.

    References:
        Luecken et al., Nature Methods 19, 2022.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    sub = _check_graph(graph, n_neighbors, "graph connectivity")
    y = _groups(labels, sub.n_samples, name="labels", metric="graph connectivity")
    n, k = sub.indices.shape
    adj = sp.csr_matrix(
        (np.ones(n * k, dtype=np.int8), sub.indices.ravel(), np.arange(0, n * k + 1, k)),
        shape=(n, n),
    )
    shares = np.empty(y.n_labels)
    for c in range(y.n_labels):
        mask = y.codes == c
        _, comp = connected_components(adj[mask][:, mask], directed=True, connection="strong")
        shares[c] = np.bincount(comp).max() / comp.shape[0]
    return float(shares.mean())
