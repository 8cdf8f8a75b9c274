"""Metrics on latent arrays: separation, mixing, information and disentanglement.

Pure functions on numpy arrays (n_samples, n_features) with scikit-learn's argument names::

    from latentdiag.metrics import silhouette_score, mutual_info_per_dim
    silhouette_score(mu, labels)          # == sklearn.metrics.silhouette_score, much faster

The scIB metrics on a graph take one exact k-NN graph, built once and shared::

    from latentdiag.metrics import exact_knn_graph, ilisi, clisi, kbet
    graph = exact_knn_graph(mu, 89)       # 90 neighbours counting the cell, as scib-metrics
    ilisi(graph, batch), clisi(graph, cell_type), kbet(graph, batch, cell_type)
    graph.save("graph.npz")               # reuse it: KNNGraph.load("graph.npz", mu)

The names are resolved lazily: importing this package loads none of numba, scikit-learn or
torch; each function's module is imported on first use (``import latentdiag.metrics`` stays
cheap for the command line). :func:`compute_metrics` runs them all (see ``suite``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module under latentdiag.metrics
_EXPORTS: dict[str, str] = {
    "silhouette_score": "silhouette",
    "silhouette_samples": "silhouette",
    "silhouette_per_label": "silhouette",
    "silhouette_report": "silhouette",
    "SilhouetteResult": "silhouette",
    "stratified_sample": "silhouette",
    "centroid_distances": "centroids",
    "CentroidDistances": "centroids",
    "davies_bouldin_score": "clustering",
    "calinski_harabasz_score": "clustering",
    "knn_accuracy": "probes",
    "linear_probe_accuracy": "probes",
    "chance_accuracy": "probes",
    "mutual_info_per_dim": "information",
    "label_entropy": "information",
    "gaussian_total_correlation": "information",
    "zero_variance_dims": "information",
    "kl_per_dim": "information",
    "active_units": "information",
    "active_unit_mask": "information",
    "posterior_total_correlation": "posterior_tc",
    "PosteriorTC": "posterior_tc",
    "stratification_weights": "posterior_tc",
    "mig": "disentanglement.mig",
    "dci": "disentanglement.dci",
    "DCIResult": "disentanglement.dci",
    "dci_from_importance": "disentanglement.dci",
    "sap_score": "disentanglement.sap",
    "modularity": "disentanglement.modularity",
    "modularity_from_mi": "disentanglement.modularity",
    "factor_vae_score": "disentanglement.factorvae",
    "histogram_discretize": "discretize",
    "exact_knn_graph": "knn_graph",
    "KNNGraph": "knn_graph",
    "lisi": "scib",
    "ilisi": "scib",
    "clisi": "scib",
    "kbet": "scib",
    "graph_connectivity": "scib",
    "silhouette_batch": "scib",
    "bras": "scib",
    "isolated_labels": "scib",
    "nmi_ari_kmeans": "scib",
    "pcr_comparison": "scib",
    "compute_metrics": "suite",
    "compute_metrics_for_store": "suite",
    "parse_requirement": "check",
    "check_requirements": "check",
}

__all__ = [
    "CentroidDistances",
    "DCIResult",
    "KNNGraph",
    "PosteriorTC",
    "SilhouetteResult",
    "active_unit_mask",
    "active_units",
    "bras",
    "calinski_harabasz_score",
    "centroid_distances",
    "chance_accuracy",
    "check_requirements",
    "clisi",
    "compute_metrics",
    "compute_metrics_for_store",
    "davies_bouldin_score",
    "dci",
    "dci_from_importance",
    "exact_knn_graph",
    "factor_vae_score",
    "gaussian_total_correlation",
    "graph_connectivity",
    "histogram_discretize",
    "ilisi",
    "isolated_labels",
    "kbet",
    "kl_per_dim",
    "knn_accuracy",
    "label_entropy",
    "linear_probe_accuracy",
    "lisi",
    "mig",
    "modularity",
    "modularity_from_mi",
    "mutual_info_per_dim",
    "nmi_ari_kmeans",
    "parse_requirement",
    "pcr_comparison",
    "posterior_total_correlation",
    "sap_score",
    "silhouette_batch",
    "silhouette_per_label",
    "silhouette_report",
    "silhouette_samples",
    "silhouette_score",
    "stratification_weights",
    "stratified_sample",
    "zero_variance_dims",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'latentdiag.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"latentdiag.metrics.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from latentdiag.metrics.centroids import CentroidDistances, centroid_distances
    from latentdiag.metrics.check import check_requirements, parse_requirement
    from latentdiag.metrics.clustering import calinski_harabasz_score, davies_bouldin_score
    from latentdiag.metrics.discretize import histogram_discretize
    from latentdiag.metrics.disentanglement.dci import DCIResult, dci, dci_from_importance
    from latentdiag.metrics.disentanglement.factorvae import factor_vae_score
    from latentdiag.metrics.disentanglement.mig import mig
    from latentdiag.metrics.disentanglement.modularity import modularity, modularity_from_mi
    from latentdiag.metrics.disentanglement.sap import sap_score
    from latentdiag.metrics.information import (
        active_unit_mask,
        active_units,
        gaussian_total_correlation,
        kl_per_dim,
        label_entropy,
        mutual_info_per_dim,
        zero_variance_dims,
    )
    from latentdiag.metrics.knn_graph import KNNGraph, exact_knn_graph
    from latentdiag.metrics.posterior_tc import (
        PosteriorTC,
        posterior_total_correlation,
        stratification_weights,
    )
    from latentdiag.metrics.probes import chance_accuracy, knn_accuracy, linear_probe_accuracy
    from latentdiag.metrics.scib import (
        bras,
        clisi,
        graph_connectivity,
        ilisi,
        isolated_labels,
        kbet,
        lisi,
        nmi_ari_kmeans,
        pcr_comparison,
        silhouette_batch,
    )
    from latentdiag.metrics.silhouette import (
        SilhouetteResult,
        silhouette_per_label,
        silhouette_report,
        silhouette_samples,
        silhouette_score,
        stratified_sample,
    )
    from latentdiag.metrics.suite import compute_metrics, compute_metrics_for_store
