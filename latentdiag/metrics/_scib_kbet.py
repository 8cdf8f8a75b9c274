"""kBET per label, as scib-metrics' ``kbet_per_label``: connectivities, diffusion map, χ² test.

The steps follow scib-metrics 0.5 (``metrics/_kbet.py``, ``utils/_diffusion_nn.py``, which
take their diffusion map from scanpy):

1. UMAP fuzzy connectivities of the k-NN graph (umap-learn's ``fuzzy_simplicial_set``,
   reproduced, fed the graph with each cell as its own first neighbour as scib-metrics
   feeds it).
2. Per label: its induced subgraph; labels with < 10 cells or a single batch are skipped.
   k0 = min(70, max(10, floor(mean cells per batch / 4))).
3. One connected component: a diffusion map of the subgraph (density-normalised transitions,
   the top min(100, n - 1) eigenpairs in float32, eigenvalues e scaled to e / (1 - e)), the
   k0 + 1 nearest neighbours in it (the cell itself included), the χ² test of each cell's
   neighbour batches against the label's batch frequencies; the score is the share of cells
   with p >= alpha. Several components: the same on the components of >= 3 · k0 cells when
   they hold >= 75% of the label, else 0.
4. The mean over the labels that were not skipped.

Deviations, neither of which changed a score in the comparisons (tests/test_scib.py):

* scib-metrics finds the neighbours in the diffusion map with pynndescent (approximate); here
  they are exact (:func:`~latentdiag.metrics.knn_graph.exact_knn_graph`).
* scib-metrics' loop overwrites ``diffusion_n_comps`` with min(it, n_label - 1), so after a
  small label every later label (in sorted order) gets fewer components, and renaming the
  labels can change the score. Here each label uses min(diffusion_n_comps, n_label - 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics.knn_graph import KNNGraph, exact_knn_graph

_EPS = 1e-8
_SIZE_MAX = 2**31 - 1


def connectivities(graph: KNNGraph) -> Any:
    """UMAP's symmetric fuzzy connectivities (n, n) CSR of a k-NN graph (the cell excluded).

    umap-learn's ``fuzzy_simplicial_set`` with set_op_mix_ratio 1 and local_connectivity 1,
    on the neighbour lists scib-metrics gives it (each cell first, at distance 0): the same
    float32 kernels (:mod:`latentdiag.metrics._scib_numba`) and the same sparse algebra.
    """
    import scipy.sparse as sp

    from latentdiag.metrics._scib_numba import membership_strengths, smooth_knn_dist

    n = graph.n_samples
    idx = np.ascontiguousarray(np.hstack([np.arange(n, dtype=np.int64)[:, None], graph.indices]))
    dist = np.ascontiguousarray(
        np.hstack([np.zeros((n, 1), dtype=np.float32), graph.distances.astype(np.float32)])
    )
    sigmas, rhos = smooth_knn_dist(dist, float(graph.k + 1))
    rows, cols, vals = membership_strengths(idx, dist, sigmas, rhos)
    result = sp.coo_matrix((vals, (rows, cols)), shape=(n, n))
    result.eliminate_zeros()
    transpose = result.transpose()
    prod = result.multiply(transpose)
    result = 1.0 * (result + transpose - prod) + 0.0 * prod  # fuzzy union, as umap-learn
    result.eliminate_zeros()
    return sp.csr_matrix(result)


def _diffusion_embedding(conn: Any, n_comps: int) -> np.ndarray:
    """scanpy's multiscale diffusion map of a connectivity matrix, float32 as in scib-metrics."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    n = conn.shape[0]
    q = np.asarray(conn.sum(axis=0)).ravel()  # density estimate (Coifman et al. 2005)
    Q = sp.diags(1.0 / q)
    K = Q @ conn @ Q
    z = np.sqrt(np.asarray(K.sum(axis=0)).ravel())
    Z = sp.diags(1.0 / z)
    T = (Z @ K @ Z).astype(np.float64)
    n_comps = min(n - 1, n_comps)
    evals, evecs = sla.eigsh(T, k=n_comps, which="LM")
    evals = evals.astype(np.float32)[::-1] + np.float32(_EPS)
    evecs = evecs.astype(np.float32)[:, ::-1]
    # In float32 the top eigenvalue (1 up to rounding) stays exactly 1 and keeps weight 1.
    scaled = np.array([e if e == 1 else e / (1 - e) for e in evals], dtype=np.float32)
    return np.ascontiguousarray(evecs * scaled)


def _acceptance(neigh_batches: np.ndarray, batches: np.ndarray, alpha: float) -> float:
    """Share of cells whose neighbour batch counts pass the χ² test (scib-metrics' ``kbet``)."""
    from scipy.special import gammainc

    codes = np.unique(batches, return_inverse=True)[1].reshape(-1)
    n_batches = int(codes.max()) + 1
    expected_freq = np.bincount(codes, minlength=n_batches) / codes.shape[0]
    m = neigh_batches.shape[1]
    nb = codes[neigh_batches]  # (n, m) batch codes of each cell's neighbours
    observed = np.stack([np.bincount(row, minlength=n_batches) for row in nb])  # (n, B)
    expected = expected_freq * m
    stat = np.sum((observed - expected) ** 2 / expected, axis=1)
    with np.errstate(invalid="ignore"):
        p = 1.0 - gammainc((n_batches - 1) / 2.0, stat / 2.0)
    return float(np.mean(p >= alpha))  # a NaN p-value (one batch: dof 0) is a rejection


def _kbet_on(conn: Any, batches: np.ndarray, k0: int, n_comps: int, alpha: float) -> float:
    """kBET of one connected set of cells: diffusion map, k0 + 1 neighbours, χ² test."""
    n = conn.shape[0]
    emb = _diffusion_embedding(conn, min(n_comps, n - 1))
    own = np.arange(n, dtype=np.int64)[:, None]
    nn = np.hstack([own, exact_knn_graph(emb, min(k0, n - 1)).indices])
    if k0 >= n:
        # Only at n = k0 = 10: pynndescent fills the missing neighbour with index -1, which
        # scib-metrics then reads as the subset's last cell. Kept, to give the same scores.
        nn = np.hstack([nn, np.full((n, k0 + 1 - n), n - 1, dtype=np.int64)])
    return _acceptance(nn, batches, alpha)


def kbet_per_label(
    graph: KNNGraph,
    batch_codes: np.ndarray,
    label_codes: np.ndarray,
    n_labels: int,
    *,
    alpha: float,
    diffusion_n_comps: int,
) -> tuple[float, np.ndarray]:
    """Mean kBET acceptance over labels, and per label (NaN where skipped)."""
    import scipy.sparse.csgraph as csgraph

    conn = connectivities(graph)
    scores = np.full(n_labels, np.nan)
    for c in range(n_labels):
        mask = label_codes == c
        sub = conn[mask][:, mask].tocsr()
        sub.sort_indices()
        n_obs = sub.shape[0]
        b = batch_codes[mask]
        per_batch = np.unique(b, return_counts=True)[1]
        if n_obs < 10 or per_batch.shape[0] == 1:
            continue
        quarter_mean = int(np.floor(np.mean(per_batch) / 4))
        k0 = min(70, max(10, quarter_mean))
        if k0 * n_obs >= _SIZE_MAX:
            k0 = int(np.floor(_SIZE_MAX / n_obs))
        n_comp, comp = csgraph.connected_components(sub, connection="strong")
        if n_comp == 1:
            scores[c] = _kbet_on(sub, b, k0, diffusion_n_comps, alpha)
            continue
        sizes = np.bincount(comp)
        keep = np.flatnonzero(sizes[comp] >= 3 * k0)
        if keep.shape[0] / n_obs >= 0.75:
            subsub = sub[keep][:, keep].tocsr()
            subsub.sort_indices()
            scores[c] = _kbet_on(subsub, b[keep], k0, diffusion_n_comps, alpha)
        else:  # too many cells in small components: 100% rejection
            scores[c] = 0.0
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan"), scores
