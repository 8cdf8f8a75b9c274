"""Input checks of the scIB metrics: the graph and its neighbourhood size, labels and batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import EncodedLabels, check_labels
from latentdiag.metrics.knn_graph import KNNGraph


def check_graph(graph: Any, n_neighbors: int, metric: str) -> KNNGraph:
    """The graph's first ``n_neighbors - 1`` neighbours (``n_neighbors`` counts the cell)."""
    if not isinstance(graph, KNNGraph):
        raise MetricInputError(
            f"{metric} needs a KNNGraph (latentdiag.metrics.knn_graph.exact_knn_graph); got "
            f"{type(graph).__name__}."
        )
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)):
        raise MetricInputError(f"n_neighbors must be an integer; got {n_neighbors!r}.")
    if n_neighbors < 2:
        raise MetricInputError(
            f"n_neighbors counts the cell itself and must be at least 2; got {n_neighbors}."
        )
    if graph.k < n_neighbors - 1:
        raise MetricInputError(
            f"{metric} with n_neighbors={n_neighbors} (the cell and {n_neighbors - 1} others) "
            f"needs a graph of k >= {n_neighbors - 1}; this one has k={graph.k}. Build it with "
            f"exact_knn_graph(X, {n_neighbors - 1}) or pass a smaller n_neighbors."
        )
    return graph.subset(int(n_neighbors) - 1)


def check_groups(values: Any, n: int, *, name: str, metric: str) -> EncodedLabels:
    """Labels or batches: one per cell, at least two distinct values."""
    what = "batches" if name == "batch" else "labels"
    try:
        return check_labels(values, n, name=name, min_labels=2, metric=metric)
    except MetricInputError as exc:
        if "distinct labels" not in str(exc):
            raise
        raise MetricInputError(
            f"{metric} needs at least 2 distinct {what}; {name} has only one. "
            + (
                "With a single batch there is no batch effect to remove."
                if name == "batch"
                else "With a single label there are no cell types to compare."
            )
        ) from None
