"""Metrics on latent arrays: separation, information and disentanglement.

Pure functions on numpy arrays (n_samples, n_features) with scikit-learn's argument names::

    from latentdiag.metrics import silhouette_score, mutual_info_per_dim
    silhouette_score(mu, labels)          # == sklearn.metrics.silhouette_score, much faster

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
    "compute_metrics": "suite",
    "compute_metrics_for_store": "suite",
    "parse_requirement": "check",
    "check_requirements": "check",
}

__all__ = [
    "CentroidDistances",
    "DCIResult",
    "PosteriorTC",
    "SilhouetteResult",
    "active_unit_mask",
    "active_units",
    "calinski_harabasz_score",
    "centroid_distances",
    "chance_accuracy",
    "check_requirements",
    "compute_metrics",
    "compute_metrics_for_store",
    "davies_bouldin_score",
    "dci",
    "dci_from_importance",
    "factor_vae_score",
    "gaussian_total_correlation",
    "histogram_discretize",
    "kl_per_dim",
    "knn_accuracy",
    "label_entropy",
    "linear_probe_accuracy",
    "mig",
    "modularity",
    "modularity_from_mi",
    "mutual_info_per_dim",
    "parse_requirement",
    "posterior_total_correlation",
    "sap_score",
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
    from latentdiag.metrics.posterior_tc import (
        PosteriorTC,
        posterior_total_correlation,
        stratification_weights,
    )
    from latentdiag.metrics.probes import chance_accuracy, knn_accuracy, linear_probe_accuracy
    from latentdiag.metrics.silhouette import (
        SilhouetteResult,
        silhouette_per_label,
        silhouette_report,
        silhouette_samples,
        silhouette_score,
        stratified_sample,
    )
    from latentdiag.metrics.suite import compute_metrics, compute_metrics_for_store
