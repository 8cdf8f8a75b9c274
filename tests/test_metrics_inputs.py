"""One shared test feeds every public metric bad input: each must refuse it with a
MetricInputError that says what was expected and what was found — no NaN, no traceback from
deep inside numpy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import latentdiag.metrics as M
from latentdiag.errors import MetricInputError

rng = np.random.default_rng(0)
N, D = 40, 4
X = rng.normal(size=(N, D))
LABELS = np.arange(N) % 3
FACTORS = np.column_stack([np.arange(N) % 4, np.arange(N) % 5]).astype(float)
LOGVAR = np.zeros((N, D))
BATCH = (np.arange(N) // 2) % 2

# name -> (kind, call). kind says which second argument the metric takes.
LABELLED: dict[str, Callable[[Any, Any], Any]] = {
    "silhouette_score": lambda x, y: M.silhouette_score(x, y),
    "silhouette_samples": lambda x, y: M.silhouette_samples(x, y),
    "silhouette_per_label": lambda x, y: M.silhouette_per_label(x, y),
    "silhouette_report": lambda x, y: M.silhouette_report(x, y),
    "centroid_distances": lambda x, y: M.centroid_distances(x, y),
    "davies_bouldin_score": lambda x, y: M.davies_bouldin_score(x, y),
    "calinski_harabasz_score": lambda x, y: M.calinski_harabasz_score(x, y),
    "knn_accuracy": lambda x, y: M.knn_accuracy(x, y),
    "linear_probe_accuracy": lambda x, y: M.linear_probe_accuracy(x, y),
    "mutual_info_per_dim": lambda x, y: M.mutual_info_per_dim(x, y),
    "silhouette_batch": lambda x, y: M.silhouette_batch(x, y, BATCH[: len(y)]),
    "bras": lambda x, y: M.bras(x, y, BATCH[: len(y)]),
    "isolated_labels": lambda x, y: M.isolated_labels(x, y, BATCH[: len(y)]),
    "nmi_ari_kmeans": lambda x, y: M.nmi_ari_kmeans(x, y),
}
FACTORED: dict[str, Callable[[Any, Any], Any]] = {
    "mig": lambda x, f: M.mig(x, f),
    "dci": lambda x, f: M.dci(x, f),
    "sap_score": lambda x, f: M.sap_score(x, f),
    "sap_score_discrete": lambda x, f: M.sap_score(x, f, continuous_factors=False),
    "modularity": lambda x, f: M.modularity(x, f),
    "factor_vae_score": lambda x, f: M.factor_vae_score(x, f, n_train=50, n_eval=50),
}
POSTERIOR: dict[str, Callable[[Any, Any], Any]] = {
    "posterior_total_correlation": lambda m, lv: M.posterior_total_correlation(m, lv, n_z=10),
    "kl_per_dim": lambda m, lv: M.kl_per_dim(m, lv),
}
LATENTS_ONLY: dict[str, Callable[[Any], Any]] = {
    "gaussian_total_correlation": lambda x: M.gaussian_total_correlation(x),
    "active_units": lambda x: M.active_units(x),
    "zero_variance_dims": lambda x: M.zero_variance_dims(x),
    "histogram_discretize": lambda x: M.histogram_discretize(x),
    "compute_metrics": lambda x: M.compute_metrics(x, labels=LABELS),
    "exact_knn_graph": lambda x: M.exact_knn_graph(x, 5),
    "pcr_comparison": lambda x: M.pcr_comparison(x, x, BATCH),
}
# The scIB graph metrics take a KNNGraph, not latents: their labels are checked below.
GRAPH: dict[str, Callable[[Any], Any]] = {
    "lisi": lambda y: M.lisi(GRAPH_OF_X, y, n_neighbors=15),
    "ilisi": lambda y: M.ilisi(GRAPH_OF_X, y, n_neighbors=15),
    "clisi": lambda y: M.clisi(GRAPH_OF_X, y, n_neighbors=15),
    "graph_connectivity": lambda y: M.graph_connectivity(GRAPH_OF_X, y),
    "kbet": lambda y: M.kbet(GRAPH_OF_X, y, LABELS, n_neighbors=15),
}
GRAPH_OF_X = M.exact_knn_graph(X, 20)

EVERY: dict[str, Callable[[Any], Any]] = {
    **{
        k: (lambda x, f=f: f(x, LABELS[: len(x)] if len(x) == N else LABELS))
        for k, f in LABELLED.items()
    },
    **{k: (lambda x, f=f: f(x, FACTORS)) for k, f in FACTORED.items()},
    **{k: (lambda x, f=f: f(x, LOGVAR)) for k, f in POSTERIOR.items()},
    **LATENTS_ONLY,
}


def test_every_public_metric_is_covered() -> None:
    """A new public metric must be added to this file, so it gets the bad-input treatment."""
    metric_like = {
        name
        for name in M.__all__
        if name[0].islower()
        and name
        not in {
            "stratified_sample",
            "chance_accuracy",
            "label_entropy",
            "stratification_weights",
            "dci_from_importance",
            "modularity_from_mi",
            "parse_requirement",
            "check_requirements",
            "compute_metrics_for_store",
            "active_unit_mask",
        }
    }
    assert metric_like <= set(EVERY) | set(GRAPH), metric_like - set(EVERY) - set(GRAPH)


@pytest.mark.parametrize("bad", ["wrong length", "2-D", "nan"])
@pytest.mark.parametrize("metric", list(GRAPH))
def test_graph_metrics_refuse_bad_labels(metric: str, bad: str) -> None:
    value, message = BAD_LABELS[bad]
    with pytest.raises(
        MetricInputError, match=message.replace("the latents", "the (graph|latents)")
    ):
        GRAPH[metric](value)


BAD_LATENTS: dict[str, tuple[Any, str]] = {
    "nan": (
        np.where(np.arange(N * D).reshape(N, D) == 5, np.nan, X),
        "non-finite values \\(NaN or inf\\) in 1 of 40 rows",
    ),
    "inf": (
        np.where(np.isin(np.arange(N), [0, 3])[:, None], -np.inf, X),
        "non-finite .* in 2 of 40 rows",
    ),
    "1-D": (X[:, 0], "must be a 2-D array \\(n_samples, n_features\\); found shape \\(40,\\)"),
    "3-D": (X.reshape(N, 2, 2), "must be a 2-D array .* found shape \\(40, 2, 2\\)"),
    "no columns": (np.empty((N, 0)), "has no features"),
    "strings": (np.full((N, D), "a"), "must hold numbers"),
}


@pytest.mark.parametrize("bad", list(BAD_LATENTS))
@pytest.mark.parametrize("metric", list(EVERY))
def test_bad_latents_are_refused(metric: str, bad: str) -> None:
    value, message = BAD_LATENTS[bad]
    with pytest.raises(MetricInputError, match=message):
        EVERY[metric](value)


BAD_LABELS: dict[str, tuple[Any, str]] = {
    "wrong length": (
        LABELS[:-1],
        "has 39 entries but the latents have 40 rows; expected one label per row",
    ),
    "one label": (
        np.zeros(N, int),
        "at least 2 distinct labels; labels has only (1 distinct label \\(0\\)|one)",
    ),
    "2-D": (
        LABELS.reshape(-1, 1),
        "must be a 1-D array with one label per row; found shape \\(40, 1\\)",
    ),
    "nan": (np.where(LABELS == 1, np.nan, LABELS), "NaN or inf"),
}


#: The batch silhouettes compare batches within each label: one label is a valid input.
ONE_LABEL_ALLOWED = {"silhouette_batch", "bras"}


@pytest.mark.parametrize("bad", list(BAD_LABELS))
@pytest.mark.parametrize("metric", list(LABELLED))
def test_bad_labels_are_refused(metric: str, bad: str) -> None:
    value, message = BAD_LABELS[bad]
    if bad == "one label" and metric in ONE_LABEL_ALLOWED:
        assert 0.0 <= LABELLED[metric](X, value) <= 1.0
        return
    with pytest.raises(MetricInputError, match=message):
        LABELLED[metric](X, value)


SEPARATION = [m for m in LABELLED if m != "mutual_info_per_dim"]


@pytest.mark.parametrize("metric", SEPARATION)
def test_constant_latents_are_refused_by_separation_metrics(metric: str) -> None:
    with pytest.raises(MetricInputError, match="is constant: all 40 rows are the same vector"):
        LABELLED[metric](np.ones((N, D)), LABELS)


@pytest.mark.parametrize("metric", ["knn_accuracy", "linear_probe_accuracy"])
def test_a_label_with_one_sample_is_refused_where_two_are_needed(metric: str) -> None:
    y = LABELS.copy()
    y[0] = 7
    with pytest.raises(
        MetricInputError, match="at least 2 samples per label; label 7 \\(1\\) has fewer"
    ):
        LABELLED[metric](X, y)


def test_silhouette_needs_fewer_labels_than_samples() -> None:
    with pytest.raises(MetricInputError, match="at most 3 distinct labels \\(n_samples - 1\\)"):
        M.silhouette_score(X[:4], [0, 1, 2, 3])


def test_mutual_info_needs_two_labels_with_repeats() -> None:
    with pytest.raises(MetricInputError, match="at least two labels with two or more samples"):
        M.mutual_info_per_dim(X[:5], [0, 0, 1, 2, 3])


@pytest.mark.parametrize("metric", list(FACTORED))
def test_bad_factors_are_refused(metric: str) -> None:
    with pytest.raises(MetricInputError, match="factors has 39 rows but the latents have 40"):
        FACTORED[metric](X, FACTORS[:-1])
    with pytest.raises(MetricInputError, match="factors has non-finite values"):
        FACTORED[metric](X, np.where(FACTORS > 3, np.nan, FACTORS))
    with pytest.raises(MetricInputError, match="needs at least one factor that varies"):
        FACTORED[metric](X, np.ones((N, 2)))


@pytest.mark.parametrize("metric", list(POSTERIOR))
def test_bad_logvar_is_refused(metric: str) -> None:
    with pytest.raises(
        MetricInputError, match="logvar must have the shape of mu \\(40, 4\\); found \\(40, 3\\)"
    ):
        POSTERIOR[metric](X, LOGVAR[:, :3])
    with pytest.raises(MetricInputError, match="logvar has non-finite values"):
        POSTERIOR[metric](X, np.full((N, D), np.nan))


def test_gaussian_tc_refuses_all_constant_latents() -> None:
    with pytest.raises(MetricInputError, match="every one of the 4 latent dimensions is constant"):
        M.gaussian_total_correlation(np.ones((N, D)))


@pytest.mark.parametrize(
    ("partitions", "message"),
    [
        ({"shared": (2, 2)}, "partition 'shared' = \\[2, 2\\) is empty; expected start < stop"),
        ({"shared": (0, 9)}, "lies outside the 4 latent dimensions"),
        ({"shared": "ab"}, "must be a pair \\[start, stop\\)"),
    ],
)
def test_compute_metrics_refuses_bad_partitions(partitions: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        M.compute_metrics(X, partitions=partitions)


def test_compute_metrics_refuses_mismatched_inputs() -> None:
    with pytest.raises(
        MetricInputError, match="labels must be 1-D with one label per row \\(40\\)"
    ):
        M.compute_metrics(X, labels=LABELS[:3])
    with pytest.raises(MetricInputError, match="logvar must have the shape of mu"):
        M.compute_metrics(X, logvar=LOGVAR[:5])
    with pytest.raises(MetricInputError, match="factors has 5 rows"):
        M.compute_metrics(X, factors=FACTORS[:5])


def test_options_are_validated() -> None:
    with pytest.raises(MetricInputError, match="sample_size must be at least 1"):
        M.silhouette_score(X, LABELS, sample_size=0)
    with pytest.raises(MetricInputError, match="n_neighbors must be an integer"):
        M.mutual_info_per_dim(X, LABELS, n_neighbors=2.5)  # type: ignore[arg-type]
    with pytest.raises(MetricInputError, match="model must be one of gbt, sklearn-gbt, forest"):
        M.dci(X, FACTORS, model="svm")


def test_only_the_euclidean_silhouette() -> None:
    assert M.silhouette_score(X, LABELS, metric="euclidean") == M.silhouette_score(X, LABELS)
    with pytest.raises(MetricInputError, match="Euclidean only; got metric='cosine'"):
        M.silhouette_score(X, LABELS, metric="cosine")
    with pytest.raises(MetricInputError, match="Euclidean only"):
        M.silhouette_samples(X, LABELS, metric="manhattan")


def test_a_missing_gpu_fails_before_any_metric() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(MetricInputError, match="torch sees no usable CUDA GPU"):
        M.compute_metrics(X, labels=LABELS, device="cuda")
