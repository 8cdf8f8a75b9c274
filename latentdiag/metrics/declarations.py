"""The built-in metrics, declared: each one's needs, cost, computation and presentation.

Every metric of the metrics dict is one :class:`~latentdiag.metrics.registry.MetricSpec`
here, registered in the order the suite runs them. A plan function receives one latent
(sub)space and returns the step that computes the metric there, with the settings the suite
uses for large data (probes on a stratified subset, a budget for the full-data posterior TC,
capped training rows for the disentanglement models; constants in
:mod:`latentdiag.metrics._steps`), or the reason it cannot run. Heavy modules are imported
inside the steps, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._steps import (
    DCI_BUDGET,
    DCI_MAX_TEST,
    DCI_MAX_TRAIN,
    DCI_MIN_TRAIN,
    DISENTANGLEMENT_MAX_TRAIN,
    POSTERIOR_TC_BUDGET,
    PROBE_MAX_SAMPLES,
    WIDE_DIMS,
    WIDE_TC_DIMS,
    float_list,
    probe_rows,
    wide_skip,
)
from latentdiag.metrics.registry import MetricInfo, MetricSpec, Space, Step, register

Progress = Callable[[float], None]
NO_LOGVAR = "no logvar: the latents come without /logvar (a deterministic encoder?)"
NO_LABELS = "no labels: the latents come without /labels"


# -- how the report presents each number ------------------------------------------------------

# separation.silhouette
_SHOWN_SILHOUETTE = {
    "separation.silhouette": MetricInfo(
        "Silhouette",
        "higher",
        "−1 to 1",
        (
            "How much closer each sample lies to its own label's samples than to the "
            "nearest other label's, averaged over samples: above 0.5 the labels form "
            "clear clusters, near 0 they overlap."
        ),
        "silhouette--separationsilhouette-silhouette_per_label",
        "Silhouette",
    ),
    "batch_separation.silhouette": MetricInfo(
        "Silhouette by batch",
        "lower",
        "−1 to 1",
        (
            "The silhouette with the batch column as the grouping: near 0 the batches "
            "are mixed through each other, as a batch that should not matter must be; "
            "high values mean each batch sits in its own region."
        ),
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
    "separation.silhouette_per_label.*": MetricInfo(
        "Silhouette of one label",
        "higher",
        "−1 to 1",
        ("The mean silhouette of the samples of this label: how well this label stands apart."),
        "silhouette--separationsilhouette-silhouette_per_label",
        "Silhouette",
    ),
    "separation.silhouette_ci_level": MetricInfo(
        "Silhouette confidence level",
        None,
        "0 to 1",
        ("Confidence level of the silhouette's interval, when it was estimated from a sample."),
        "silhouette--separationsilhouette-silhouette_per_label",
        "Silhouette",
    ),
    "separation.silhouette_sample_size": MetricInfo(
        "Silhouette sample size",
        None,
        "rows",
        "Rows the silhouette was estimated from (each measured against all rows).",
        "silhouette--separationsilhouette-silhouette_per_label",
        "Silhouette",
    ),
}
_HEAD_SILHOUETTE = ("separation.silhouette", "batch_separation.silhouette")

# separation.centroid_distance
_SHOWN_CENTROID_DISTANCE = {
    "separation.centroid_distance.normalized_mean": MetricInfo(
        "Normalized centroid distance",
        "higher",
        "0 and up",
        (
            "The mean distance between label centroids divided by the typical spread of"
            " samples around their own centroid, so it does not depend on the scale of "
            "the latent space."
        ),
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.mean": MetricInfo(
        "Mean centroid distance",
        "higher",
        "0 and up, in latent units",
        (
            "The average Euclidean distance between the centres of every pair of "
            "labels; read it with the normalized value, since it grows with the latent "
            "scale."
        ),
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.min": MetricInfo(
        "Closest centroid pair",
        "higher",
        "0 and up, in latent units",
        (
            "The distance between the two label centres that lie closest together: the "
            "pair most likely to be confused."
        ),
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.normalized_min": MetricInfo(
        "Normalized closest centroid pair",
        "higher",
        "0 and up",
        ("The closest pair of label centres, divided by the typical spread around a centre."),
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.rms_radius": MetricInfo(
        "Within-label spread",
        None,
        "0 and up, in latent units",
        ("The pooled root-mean-square distance of samples from their own label's centre."),
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
}
_HEAD_CENTROID_DISTANCE = (
    "separation.centroid_distance.normalized_mean",
    "separation.centroid_distance.mean",
    "separation.centroid_distance.min",
)

# separation.davies_bouldin
_SHOWN_DAVIES_BOULDIN = {
    "separation.davies_bouldin": MetricInfo(
        "Davies–Bouldin index",
        "lower",
        "0 and up, 0 best",
        (
            "For each label, the worst ratio of within-label spread to the distance to "
            "another label's centre, averaged over labels."
        ),
        "daviesbouldin--separationdavies_bouldin",
        "Davies–Bouldin",
    ),
}
_HEAD_DAVIES_BOULDIN = ("separation.davies_bouldin",)

# separation.calinski_harabasz
_SHOWN_CALINSKI_HARABASZ = {
    "separation.calinski_harabasz": MetricInfo(
        "Calinski–Harabasz index",
        "higher",
        "0 and up",
        (
            "The ratio of between-label to within-label variance, corrected for the "
            "numbers of samples and labels."
        ),
        "calinskiharabasz--separationcalinski_harabasz",
        "Calinski–Harabasz",
    ),
}
_HEAD_CALINSKI_HARABASZ = ("separation.calinski_harabasz",)

# separation.knn_accuracy
_SHOWN_KNN_ACCURACY = {
    "separation.knn_accuracy": MetricInfo(
        "k-NN accuracy",
        "higher",
        "0 to 1",
        (
            "Cross-validated accuracy of a k-nearest-neighbour classifier that predicts"
            " the label from the latent vector; compare it with the chance accuracy."
        ),
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
    "batch_separation.knn_accuracy": MetricInfo(
        "k-NN accuracy of the batch",
        "lower",
        "0 to 1",
        (
            "How often a sample's 5 nearest neighbours name its batch (5-fold "
            "cross-validated): near chance when the batches are mixed."
        ),
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
}
_HEAD_KNN_ACCURACY = ("separation.knn_accuracy", "batch_separation.knn_accuracy")

# separation.linear_probe_accuracy
_SHOWN_LINEAR_PROBE_ACCURACY = {
    "separation.linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy",
        "higher",
        "0 to 1",
        (
            "Cross-validated accuracy of a linear classifier on the latent vector: high"
            " means the label can be read off a straight cut through the latent space."
        ),
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
    "batch_separation.linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy of the batch",
        "lower",
        "0 to 1",
        (
            "How well a linear classifier reads the batch from the latents (5-fold "
            "cross-validated): near chance when nothing of the batch is left."
        ),
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
    "separation.chance_accuracy": MetricInfo(
        "Chance accuracy",
        None,
        "0 to 1",
        ("The accuracy of always guessing the most common label: the floor for the probes."),
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
}
_HEAD_LINEAR_PROBE_ACCURACY = (
    "separation.linear_probe_accuracy",
    "batch_separation.linear_probe_accuracy",
)

# information.mi_per_dim
_SHOWN_MI_PER_DIM = {
    "information.mi_per_dim": MetricInfo(
        "Mutual information per dimension",
        None,
        "0 to ln(number of labels), in nats",
        (
            "How much knowing one latent dimension tells about the label; a dimension "
            "near 0 ignores the label."
        ),
        "mutual-information-with-the-label--informationmi_per_dim",
        "Mutual information with the label",
    ),
    "information.mi_sum": MetricInfo(
        "Summed mutual information",
        None,
        "0 and up, in nats",
        "The mutual information of every dimension with the label, added up.",
        "mutual-information-with-the-label--informationmi_per_dim",
        "Mutual information",
    ),
    "information.label_entropy": MetricInfo(
        "Label entropy",
        None,
        "0 to ln(number of labels), in nats",
        (
            "How uncertain the label is before looking at the latents: the most any "
            "dimension can tell about it."
        ),
        "mutual-information-with-the-label--informationmi_per_dim",
        "Mutual information",
    ),
}
_HEAD_MI_PER_DIM = ("information.mi_per_dim",)

# information.gaussian_total_correlation
_SHOWN_GAUSSIAN_TOTAL_CORRELATION = {
    "information.gaussian_total_correlation": MetricInfo(
        "Gaussian total correlation",
        "lower",
        "0 and up, in nats",
        (
            "How far the dimensions of mu are from independent, under a Gaussian fit of"
            " their covariance: 0 means uncorrelated dimensions."
        ),
        "gaussian-total-correlation--informationgaussian_total_correlation",
        "Gaussian total correlation",
    ),
}
_HEAD_GAUSSIAN_TOTAL_CORRELATION = ("information.gaussian_total_correlation",)

# information.posterior_total_correlation
_SHOWN_POSTERIOR_TOTAL_CORRELATION = {
    "information.posterior_total_correlation": MetricInfo(
        "Posterior total correlation",
        "lower",
        "0 and up, in nats",
        (
            "How far the aggregate posterior q(z) is from a product of independent "
            "per-dimension distributions, estimated from mu and logvar."
        ),
        "posterior-total-correlation--informationposterior_total_correlation",
        "Posterior total correlation",
    ),
    "information.posterior_total_correlation_estimators.*": MetricInfo(
        "Posterior TC estimator detail",
        None,
        "",
        "The estimators and settings behind the posterior total correlation.",
        "posterior-total-correlation--informationposterior_total_correlation",
        "Posterior total correlation",
    ),
}
_HEAD_POSTERIOR_TOTAL_CORRELATION = ("information.posterior_total_correlation",)

# information.kl_per_dim
_SHOWN_KL_PER_DIM = {
    "information.kl_per_dim": MetricInfo(
        "KL per dimension",
        None,
        "0 and up, in nats",
        (
            "The mean KL divergence of each dimension's posterior from the N(0, 1) "
            "prior; a dimension near 0 carries no information about its input."
        ),
        "kl-to-the-prior--informationkl_per_dim",
        "KL to the prior",
    ),
    "information.kl_total": MetricInfo(
        "Total KL",
        None,
        "0 and up, in nats",
        "The KL per dimension added up: the KL term of the VAE's loss, per sample.",
        "kl-to-the-prior--informationkl_per_dim",
        "KL to the prior",
    ),
}
_HEAD_KL_PER_DIM = ("information.kl_per_dim",)

# information.active_units
_SHOWN_ACTIVE_UNITS = {
    "information.active_units": MetricInfo(
        "Active units",
        "higher",
        "0 to the latent dimension",
        (
            "How many latent dimensions the encoder actually uses; an inactive "
            "dimension has collapsed to the prior and carries no information."
        ),
        "active-units--informationactive_units",
        "Active units",
    ),
    "information.active_units_threshold": MetricInfo(
        "Active-unit threshold",
        None,
        "",
        "The variance of a dimension's mean above which it counts as active.",
        "active-units--informationactive_units",
        "Active units",
    ),
}
_HEAD_ACTIVE_UNITS = ("information.active_units",)

# disentanglement.mig
_SHOWN_MIG = {
    "disentanglement.mig": MetricInfo(
        "MIG",
        "higher",
        "0 to 1",
        (
            "Mutual information gap: for each factor, the gap between the two latent "
            "dimensions most informative about it, normalized by the factor's entropy."
        ),
        "mig--disentanglementmig",
        "MIG",
    ),
}
_HEAD_MIG = ("disentanglement.mig",)

# disentanglement.dci
_SHOWN_DCI = {
    "disentanglement.dci.disentanglement": MetricInfo(
        "DCI disentanglement",
        "higher",
        "0 to 1",
        (
            "Whether each latent dimension predicts at most one factor, from the "
            "importances of a regressor."
        ),
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.completeness": MetricInfo(
        "DCI completeness",
        "higher",
        "0 to 1",
        (
            "Whether each factor is captured by a single latent dimension, averaged "
            "over factors by their importance (disentanglement_lib's convention, the "
            "one papers report)."
        ),
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.informativeness": MetricInfo(
        "DCI informativeness",
        "higher",
        "0 to 1",
        "How accurately the factors can be predicted from the latents.",
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.completeness_unweighted": MetricInfo(
        "DCI completeness (unweighted)",
        "higher",
        "0 to 1",
        (
            "Completeness as a plain mean over factors (Eastwood & Williams' notebook);"
            " it differs from the weighted one when some factors are read by no code at"
            " all."
        ),
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.informativeness_train": MetricInfo(
        "DCI informativeness (training rows)",
        "higher",
        "0 to 1",
        ("How accurately the factors are predicted on the rows the regressor was fitted on."),
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
}
_HEAD_DCI = (
    "disentanglement.dci.disentanglement",
    "disentanglement.dci.completeness",
    "disentanglement.dci.informativeness",
)

# disentanglement.sap
_SHOWN_SAP = {
    "disentanglement.sap": MetricInfo(
        "SAP",
        "higher",
        "0 to 1",
        (
            "Separated attribute predictability: for each factor, the gap in "
            "predictiveness between the best and second-best single latent dimension."
        ),
        "sap--disentanglementsap-sap_discrete",
        "SAP",
    ),
    "disentanglement.sap_discrete": MetricInfo(
        "SAP (discrete factors)",
        "higher",
        "0 to 1",
        "SAP with each factor treated as classes, scored by classification accuracy.",
        "sap--disentanglementsap-sap_discrete",
        "SAP",
    ),
}
_HEAD_SAP = ("disentanglement.sap",)

# disentanglement.modularity
_SHOWN_MODULARITY = {
    "disentanglement.modularity": MetricInfo(
        "Modularity",
        "higher",
        "0 to 1",
        "Whether each latent dimension depends on only one factor.",
        "modularity--disentanglementmodularity",
        "Modularity",
    ),
}
_HEAD_MODULARITY = ("disentanglement.modularity",)

# disentanglement.factor_vae
_SHOWN_FACTOR_VAE = {
    "disentanglement.factor_vae": MetricInfo(
        "FactorVAE score",
        "higher",
        "0 to 1",
        (
            "Accuracy of a majority-vote classifier that names the fixed factor from "
            "the latent dimension with the least variance."
        ),
        "factorvae-score--disentanglementfactor_vae",
        "FactorVAE score",
    ),
}
_HEAD_FACTOR_VAE = ("disentanglement.factor_vae",)


# -- separation -------------------------------------------------------------------------------


def _silhouette(s: Space) -> Step:
    from latentdiag.metrics import silhouette

    assert s.labels is not None
    y = s.labels

    def step(progress: Progress) -> dict[str, Any]:
        r = silhouette.silhouette_report(
            s.mu,
            y,
            label_names=s.label_names,
            sample_size=s.sample,
            random_state=s.seed,
            device=s.device,
            progress=progress,
        )
        out: dict[str, Any] = {"silhouette": r.score, "silhouette_per_label": r.per_label}
        if not r.exact:
            out["silhouette_ci"] = [r.ci_low, r.ci_high]
            out["silhouette_ci_level"] = r.confidence
            out["silhouette_sample_size"] = r.sample_size
        return out

    return step


def _centroid_distance(s: Space) -> Step:
    from latentdiag.metrics import centroids

    assert s.labels is not None
    y = s.labels
    return lambda _p: centroids.centroid_distances(s.mu, y, label_names=s.label_names).to_dict()


def _davies_bouldin(s: Space) -> Step:
    from latentdiag.metrics import clustering

    assert s.labels is not None
    y = s.labels
    return lambda _p: clustering.davies_bouldin_score(s.mu, y)


def _calinski_harabasz(s: Space) -> Step:
    from latentdiag.metrics import clustering

    assert s.labels is not None
    y = s.labels
    return lambda _p: clustering.calinski_harabasz_score(s.mu, y)


def _probe_settings(s: Space) -> tuple[int, list[str]]:
    """Rows the probes run on, and the note saying so when they are capped for wide latents."""
    rows = PROBE_MAX_SAMPLES if s.exhaustive else probe_rows(s.d)
    capped = (
        [f"on a stratified subset of {rows:,} of {s.n:,} rows: for {s.d:,} dimensions the "
         "probes' cost is capped at that of 20,000 rows of 32 (pass --exhaustive for 20,000)"]
        if s.n > rows and rows < PROBE_MAX_SAMPLES
        else []
    )  # fmt: skip
    return rows, capped


def _knn_accuracy(s: Space) -> Step:
    from latentdiag.metrics import probes

    assert s.labels is not None
    y = s.labels
    rows, capped = _probe_settings(s)

    def step(_p: Progress) -> dict[str, Any]:
        acc = probes.knn_accuracy(s.mu, y, max_samples=rows, random_state=s.seed)
        return {"knn_accuracy": acc, "_notes": capped}

    return step


def _linear_probe_accuracy(s: Space) -> Step:
    from latentdiag.metrics import probes

    assert s.labels is not None
    y = s.labels
    rows, capped = _probe_settings(s)

    def step(_p: Progress) -> dict[str, Any]:
        acc = probes.linear_probe_accuracy(s.mu, y, max_samples=rows, random_state=s.seed)
        return {
            "linear_probe_accuracy": acc,
            "chance_accuracy": probes.chance_accuracy(y),
            "_notes": capped,
        }

    return step


# -- information ------------------------------------------------------------------------------


def _mi_per_dim(s: Space) -> Step | str:
    from latentdiag.metrics import information

    if s.labels is None:
        return NO_LABELS
    y = s.labels

    def step(_p: Progress) -> dict[str, Any]:
        values = information.mutual_info_per_dim(s.mu, y, random_state=s.seed)
        h = information.label_entropy(y)
        return {
            "mi_per_dim": float_list(values),
            "mi_per_dim_normalized": float_list(values / h),
            "mi_sum": float(values.sum()),
            "label_entropy": h,
        }

    return step


def _gaussian_total_correlation(s: Space) -> Step | str:
    from latentdiag.metrics import information

    dropped = information.zero_variance_dims(s.mu)
    live = s.d - len(dropped)
    if live >= s.n:
        return (
            f"the Gaussian total correlation needs more rows than varying dimensions "
            f"(here {s.n:,} rows, {live:,} dimensions): the covariance of so few rows is "
            "singular and its log-determinant undefined"
        )

    def step(_p: Progress) -> dict[str, Any]:
        value = information.gaussian_total_correlation(s.mu)
        if not np.isfinite(value):
            raise MetricInputError(
                "the covariance of mu is singular: some dimensions are exact linear "
                "combinations of others, so the Gaussian total correlation is infinite; "
                "drop the redundant dimensions (or use a partition) to measure the rest"
            )
        return {
            "gaussian_total_correlation": value,
            "gaussian_total_correlation_dropped_dims": dropped,
        }

    return step


def _posterior_total_correlation(s: Space) -> Step:
    from latentdiag.metrics import information

    assert s.logvar is not None
    mu, lv = s.mu, s.logvar
    kept: np.ndarray | None = None
    if s.d > WIDE_DIMS and not s.exhaustive:
        # The most active dimensions (largest mean KL to the prior): TC over a subset of
        # dimensions is a lower bound of the TC over all of them.
        kl_dims = information.kl_per_dim(mu, lv)
        kept = np.sort(np.argsort(-kl_dims, kind="stable")[:WIDE_TC_DIMS])
    x, v = (mu, lv) if kept is None else (mu[:, kept], lv[:, kept])
    n_z = int(max(100, min(1000, POSTERIOR_TC_BUDGET // max(1, s.n * x.shape[1]))))

    def step(_p: Progress) -> dict[str, Any]:
        from latentdiag.metrics.posterior_tc import posterior_total_correlation

        r = posterior_total_correlation(x, v, n_z=n_z, random_state=s.seed)
        out: dict[str, Any] = {
            "posterior_total_correlation": r.value,
            "posterior_total_correlation_estimators": r.to_dict(),
        }
        if kept is not None:
            out["posterior_total_correlation_dims"] = [int(j) for j in kept]
            out["_notes"] = [
                f"on the {kept.size} most active of {s.d:,} dimensions (largest KL to the "
                "prior), listed in posterior_total_correlation_dims: a lower bound of the TC "
                "of all of them (pass --exhaustive for every dimension)"
            ]
        return out

    return step


def _kl_per_dim(s: Space) -> Step:
    from latentdiag.metrics import information

    assert s.logvar is not None
    lv = s.logvar

    def step(_p: Progress) -> dict[str, Any]:
        values = information.kl_per_dim(s.mu, lv)
        return {"kl_per_dim": float_list(values), "kl_total": float(values.sum())}

    return step


def _active_units(s: Space) -> Step:
    from latentdiag.metrics import information

    def step(_p: Progress) -> dict[str, Any]:
        mask = information.active_unit_mask(s.mu)
        return {
            "active_units": int(mask.sum()),
            "active_units_mask": [bool(v) for v in mask],
            "active_units_threshold": 0.01,
        }

    return step


# -- disentanglement --------------------------------------------------------------------------


def _mig(s: Space) -> Step:
    from latentdiag.metrics.disentanglement.mig import mig

    assert s.factors is not None
    f = s.factors
    return lambda _p: mig(s.mu, f)


def _dci(s: Space) -> Step | str:
    from latentdiag.metrics.discretize import discretize_factors
    from latentdiag.metrics.disentanglement.dci import dci

    assert s.factors is not None
    f, n, d = s.factors, s.n, s.d
    classes = [int(np.unique(c).size) for c in discretize_factors(f).T]
    trees = sum(1 if k == 2 else k for k in classes if k >= 2)  # per boosting stage
    per_row = 3.0 * d * max(trees, 1) * 100
    n_train = min(n // 2, DCI_MAX_TRAIN)
    notes: list[str] = []
    if not s.exhaustive and per_row * n_train > DCI_BUDGET:
        fit = int(DCI_BUDGET // per_row)
        if fit < min(DCI_MIN_TRAIN, n_train):
            return (
                f"DCI would fit {trees} boosted trees per stage on {d:,} dimensions; even "
                f"{min(DCI_MIN_TRAIN, n_train):,} training rows cost more than a minute here, "
                "and a subset of dimensions would change its importances; pass --exhaustive "
                "to compute it anyway"
            )
        notes.append(
            f"trained on {fit:,} of the {n_train:,} rows disentanglement_lib's protocol "
            f"takes: {trees} boosted trees per stage on {d:,} dimensions would cost more "
            "than a few seconds (pass --exhaustive for all of them)"
        )
        n_train = fit

    def step(_p: Progress) -> dict[str, Any]:
        r = dci(s.mu, f, max_train=n_train, max_test=DCI_MAX_TEST, random_state=s.seed)
        out = r.to_dict()
        out["factor_names"] = list(s.factor_names or [f"f{i}" for i in range(f.shape[1])])
        out["_notes"] = notes
        return out

    return step


def _sap(s: Space) -> Step:
    from latentdiag.metrics.disentanglement.sap import sap_score

    assert s.factors is not None
    f = s.factors
    wide = s.d > WIDE_DIMS and not s.exhaustive

    def step(_p: Progress) -> dict[str, Any]:
        out: dict[str, Any] = {"sap": sap_score(s.mu, f, continuous_factors=True)}
        if wide:  # the discrete SAP fits a classifier per (dimension, factor)
            why = wide_skip(
                "The discrete SAP", s.d, "it fits a classifier for every (dimension, factor) pair"
            )
            out["_skipped"] = [("sap_discrete", why)]
        else:
            out["sap_discrete"] = sap_score(
                s.mu,
                f,
                continuous_factors=False,
                max_samples=DISENTANGLEMENT_MAX_TRAIN,
                random_state=s.seed,
            )
        return out

    return step


def _modularity(s: Space) -> Step:
    from latentdiag.metrics.disentanglement.modularity import modularity

    assert s.factors is not None
    f = s.factors
    return lambda _p: modularity(s.mu, f)


def _factor_vae(s: Space) -> Step:
    from latentdiag.metrics.disentanglement.factorvae import factor_vae_score

    assert s.factors is not None
    f = s.factors
    return lambda _p: factor_vae_score(s.mu, f, random_state=s.seed)


# -- scIB: mixing and label conservation ------------------------------------------------------
# scib-metrics' definitions and scaling (latentdiag.metrics.scib), on one exact k-NN graph per
# space (Space.graph). Every score is in [0, 1], 1 best.


def _scib_info(title: str, explanation: str, anchor: str, section: str) -> MetricInfo:
    return MetricInfo(title, "higher", "0 to 1, 1 best", explanation, anchor, section)


_LISI_DOC = ("ilisi-and-clisi--mixingilisi-separationclisi", "iLISI and cLISI")
_KBET_DOC = ("kbet--mixingkbet", "kBET")
_GC_DOC = ("graph-connectivity--mixinggraph_connectivity", "Graph connectivity")
_ASW_DOC = (
    "batch-silhouette-and-bras--mixingsilhouette_batch-mixingbras",
    "Batch silhouette and BRAS",
)
_ISO_DOC = ("isolated-labels--separationisolated_labels", "Isolated labels")
_NMI_DOC = ("nmi-and-ari--separationnmi-separationari", "NMI and ARI")


def _neighbours(s: Space, metric: str) -> int:
    """scib-metrics' neighbourhood of ``metric`` (counting the cell), at most the rows."""
    from latentdiag.metrics.scib import N_NEIGHBORS

    return int(min(N_NEIGHBORS[metric], s.n))


def _graph(s: Space) -> Any:
    """The space's shared exact graph: 89 neighbours besides each cell (fewer on tiny data)."""
    return s.graph(int(min(89, s.n - 1)))


def _ilisi(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None
    b = s.batch
    k = _neighbours(s, "lisi")
    return lambda _p: scib.ilisi(_graph(s), b, n_neighbors=k)


def _kbet(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None and s.labels is not None
    b, y = s.batch, s.labels
    k = _neighbours(s, "kbet")
    return lambda _p: scib.kbet(_graph(s), b, y, n_neighbors=k)


def _graph_connectivity(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.labels is not None
    y = s.labels
    k = _neighbours(s, "graph_connectivity")
    return lambda _p: scib.graph_connectivity(_graph(s), y, n_neighbors=k)


def _silhouette_batch(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None and s.labels is not None
    b, y = s.batch, s.labels
    return lambda _p: scib.silhouette_batch(s.mu, y, b)


def _bras(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None and s.labels is not None
    b, y = s.batch, s.labels
    return lambda _p: scib.bras(s.mu, y, b)


def _pcr_comparison(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None and s.pre is not None
    b, pre = s.batch, s.pre
    return lambda _p: scib.pcr_comparison(pre, s.mu, b)


def _clisi(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.labels is not None
    y = s.labels
    k = _neighbours(s, "lisi")
    return lambda _p: scib.clisi(_graph(s), y, n_neighbors=k)


def _isolated_labels(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.batch is not None and s.labels is not None
    b, y = s.batch, s.labels
    return lambda _p: scib.isolated_labels(s.mu, y, b)


def _nmi(s: Space) -> Step:
    from latentdiag.metrics import scib

    assert s.labels is not None
    y = s.labels
    return lambda _p: scib.nmi_ari_kmeans(s.mu, y, random_state=s.seed)


_SHOWN_ILISI = {
    "mixing.ilisi": _scib_info(
        "iLISI",
        "How many batches a cell's neighbourhood holds (inverse Simpson's index on its 90 "
        "nearest neighbours), rescaled so that 1 means every batch in every neighbourhood.",
        *_LISI_DOC,
    )
}
_SHOWN_KBET = {
    "mixing.kbet": _scib_info(
        "kBET acceptance",
        "Within each label, the share of cells whose neighbourhood's batch mix a χ² test "
        "accepts as the label's own batch mix, averaged over labels.",
        *_KBET_DOC,
    )
}
_SHOWN_GRAPH_CONNECTIVITY = {
    "mixing.graph_connectivity": _scib_info(
        "Graph connectivity",
        "Within each label, the share of its cells in the largest connected piece of the "
        "15-neighbour graph among them, averaged: 1 when batches did not split a label apart.",
        *_GC_DOC,
    )
}
_SHOWN_SILHOUETTE_BATCH = {
    "mixing.silhouette_batch": _scib_info(
        "Batch silhouette (scIB)",
        "Within each label, 1 − |silhouette by batch|, averaged: 1 when a label's batches lie "
        "through each other.",
        *_ASW_DOC,
    )
}
_SHOWN_BRAS = {
    "mixing.bras": _scib_info(
        "BRAS",
        "Batch removal adapted silhouette (scib-metrics' successor of the batch silhouette): "
        "within each label, how little its batches stand apart, with cosine distances.",
        *_ASW_DOC,
    )
}
_SHOWN_PCR_COMPARISON = {
    "mixing.pcr_comparison": _scib_info(
        "PCR comparison",
        "How much less of the variance the batch explains after integration than before "
        "(principal component regression on the embedding given with --pre-obsm).",
        "pcr-comparison--mixingpcr_comparison",
        "PCR comparison",
    )
}
_SHOWN_CLISI = {
    "separation.clisi": _scib_info(
        "cLISI",
        "How few labels a cell's neighbourhood holds (inverse Simpson's index on its 90 "
        "nearest neighbours), rescaled so that 1 means neighbourhoods of one label.",
        *_LISI_DOC,
    )
}
_SHOWN_ISOLATED_LABELS = {
    "separation.isolated_labels": _scib_info(
        "Isolated labels",
        "The silhouette, rescaled to 0–1, of the labels found in the fewest batches: whether "
        "the rare labels stay apart.",
        *_ISO_DOC,
    )
}
_SHOWN_NMI = {
    "separation.nmi": _scib_info(
        "NMI (k-means)",
        "Normalized mutual information between the labels and a k-means clustering with one "
        "cluster per label.",
        *_NMI_DOC,
    ),
    "separation.ari": MetricInfo(
        "ARI (k-means)",
        "higher",
        "−0.5 to 1, 1 best",
        "Adjusted Rand index between the labels and the same k-means clustering.",
        *_NMI_DOC,
    ),
}


# -- the registry, in the order the suite runs them --------------------------------------------

_LABELS = ("labels",)
_SCIB = ("labels", "batch")
_FACTORS = ("factors",)
for _spec in (
    MetricSpec("separation", "silhouette", _silhouette, 6.0, _LABELS,
               ("silhouette_per_label", "silhouette_ci", "silhouette_ci_level",
                "silhouette_sample_size"),
               shown=_SHOWN_SILHOUETTE, headline=_HEAD_SILHOUETTE, rank=0),
    MetricSpec("separation", "centroid_distance", _centroid_distance, 0.2, _LABELS,
               shown=_SHOWN_CENTROID_DISTANCE, headline=_HEAD_CENTROID_DISTANCE, rank=1),
    MetricSpec("separation", "davies_bouldin", _davies_bouldin, 0.2, _LABELS, side_lane=True,
               shown=_SHOWN_DAVIES_BOULDIN, headline=_HEAD_DAVIES_BOULDIN, rank=4),
    MetricSpec("separation", "calinski_harabasz", _calinski_harabasz, 0.2, _LABELS,
               side_lane=True, shown=_SHOWN_CALINSKI_HARABASZ, headline=_HEAD_CALINSKI_HARABASZ,
               rank=5),
    # A parallel numba kernel: on the main lane with the others (one launch at a time).
    MetricSpec("separation", "knn_accuracy", _knn_accuracy, 1.0, _LABELS,
               shown=_SHOWN_KNN_ACCURACY, headline=_HEAD_KNN_ACCURACY, rank=2),
    MetricSpec("separation", "linear_probe_accuracy", _linear_probe_accuracy, 1.5, _LABELS,
               ("chance_accuracy",), side_lane=True, shown=_SHOWN_LINEAR_PROBE_ACCURACY,
               headline=_HEAD_LINEAR_PROBE_ACCURACY, rank=3),
    # scIB's label conservation runs with its batch correction: with a batch key.
    MetricSpec("separation", "clisi", _clisi, 0.5, _SCIB, by_batch=False,
               shown=_SHOWN_CLISI, headline=("separation.clisi",), rank=6),
    MetricSpec("separation", "isolated_labels", _isolated_labels, 0.5, _SCIB,
               by_batch=False, shown=_SHOWN_ISOLATED_LABELS,
               headline=("separation.isolated_labels",), rank=7),
    MetricSpec("separation", "nmi", _nmi, 0.5, _SCIB, ("ari",), side_lane=True,
               by_batch=False, shown=_SHOWN_NMI, headline=("separation.nmi", "separation.ari"),
               rank=8),
    MetricSpec("mixing", "ilisi", _ilisi, 0.5, ("batch",), label_as_batch=True,
               shown=_SHOWN_ILISI, headline=("mixing.ilisi",)),
    MetricSpec("mixing", "kbet", _kbet, 1.0, ("labels", "batch"),
               shown=_SHOWN_KBET, headline=("mixing.kbet",)),
    MetricSpec("mixing", "graph_connectivity", _graph_connectivity, 0.2, ("labels", "batch"),
               shown=_SHOWN_GRAPH_CONNECTIVITY, headline=("mixing.graph_connectivity",)),
    MetricSpec("mixing", "silhouette_batch", _silhouette_batch, 0.5, ("labels", "batch"),
               shown=_SHOWN_SILHOUETTE_BATCH, headline=("mixing.silhouette_batch",)),
    MetricSpec("mixing", "bras", _bras, 0.5, ("labels", "batch"),
               shown=_SHOWN_BRAS, headline=("mixing.bras",)),
    MetricSpec("mixing", "pcr_comparison", _pcr_comparison, 0.2, ("batch", "pre"),
               shown=_SHOWN_PCR_COMPARISON, headline=("mixing.pcr_comparison",)),
    MetricSpec("information", "mi_per_dim", _mi_per_dim, 0.5, (),
               ("mi_per_dim_normalized", "mi_sum", "label_entropy"),
               shown=_SHOWN_MI_PER_DIM, headline=_HEAD_MI_PER_DIM, rank=3),
    MetricSpec("information", "gaussian_total_correlation", _gaussian_total_correlation, 0.1,
               (), ("gaussian_total_correlation_dropped_dims",),
               shown=_SHOWN_GAUSSIAN_TOTAL_CORRELATION, headline=_HEAD_GAUSSIAN_TOTAL_CORRELATION,
               rank=1),
    MetricSpec("information", "posterior_total_correlation", _posterior_total_correlation, 2.0,
               ("logvar",),
               ("posterior_total_correlation_estimators", "posterior_total_correlation_dims"),
               shown=_SHOWN_POSTERIOR_TOTAL_CORRELATION,
               headline=_HEAD_POSTERIOR_TOTAL_CORRELATION, rank=2),
    MetricSpec("information", "kl_per_dim", _kl_per_dim, 0.1, ("logvar",), ("kl_total",),
               shown=_SHOWN_KL_PER_DIM, headline=_HEAD_KL_PER_DIM, rank=4),
    MetricSpec("information", "active_units", _active_units, 0.1, (),
               ("active_units_mask", "active_units_threshold"),
               shown=_SHOWN_ACTIVE_UNITS, headline=_HEAD_ACTIVE_UNITS, rank=0),
    MetricSpec("disentanglement", "mig", _mig, 0.5, _FACTORS,
               shown=_SHOWN_MIG, headline=_HEAD_MIG),
    MetricSpec("disentanglement", "dci", _dci, 2.0, _FACTORS, own_lane=True,
               shown=_SHOWN_DCI, headline=_HEAD_DCI),
    MetricSpec("disentanglement", "sap", _sap, 1.0, _FACTORS, ("sap_discrete",),
               side_lane=True, shown=_SHOWN_SAP, headline=_HEAD_SAP),
    MetricSpec("disentanglement", "modularity", _modularity, 0.3, _FACTORS,
               shown=_SHOWN_MODULARITY, headline=_HEAD_MODULARITY),
    MetricSpec("disentanglement", "factor_vae", _factor_vae, 0.5, _FACTORS, side_lane=True,
               shown=_SHOWN_FACTOR_VAE, headline=_HEAD_FACTOR_VAE),
):  # fmt: skip
    register(_spec)
