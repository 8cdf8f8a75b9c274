"""What each metric means in one sentence, which way is better, and where docs/metrics.md has it.

The keys are the dotted paths of the metrics JSON (DESIGN.md). The report reads titles,
directions and explanations from here, so every metric it shows is explained the same way in
the summary, the tables and the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DOCS_PAGE",
    "EXTRAS",
    "HEADLINE",
    "LEAKAGE_DOC",
    "METRICS",
    "MetricInfo",
    "get_path",
    "info_for",
    "scalar_paths",
]

DOCS_PAGE = "docs/metrics.md"
# The section on partitions and the leakage summary.
LEAKAGE_DOC = ("partitions-and-leakage", "Partitions and leakage")


@dataclass(frozen=True)
class MetricInfo:
    """How the report presents one metric.

    Attributes:
        title: Plain name.
        direction: ``"higher"`` or ``"lower"`` (is better), or ``None`` where neither is.
        range: The values it can take, in words.
        explanation: One sentence a newcomer can read.
        anchor: Section anchor in docs/metrics.md (GitHub's slug of the heading).
        doc_section: That section's name, for link text.
    """

    title: str
    direction: str | None
    range: str
    explanation: str
    anchor: str
    doc_section: str


METRICS: dict[str, MetricInfo] = {
    "separation.silhouette": MetricInfo(
        "Silhouette",
        "higher",
        "−1 to 1",
        "How much closer each sample lies to its own label's samples than to the nearest other "
        "label's, averaged over samples: above 0.5 the labels form clear clusters, near 0 they "
        "overlap.",
        "silhouette--separationsilhouette-silhouette_per_label",
        "Silhouette",
    ),
    "separation.centroid_distance.normalized_mean": MetricInfo(
        "Normalized centroid distance",
        "higher",
        "0 and up",
        "The mean distance between label centroids divided by the typical spread of samples "
        "around their own centroid, so it does not depend on the scale of the latent space.",
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.mean": MetricInfo(
        "Mean centroid distance",
        "higher",
        "0 and up, in latent units",
        "The average Euclidean distance between the centres of every pair of labels; read it "
        "with the normalized value, since it grows with the latent scale.",
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.centroid_distance.min": MetricInfo(
        "Closest centroid pair",
        "higher",
        "0 and up, in latent units",
        "The distance between the two label centres that lie closest together: the pair most "
        "likely to be confused.",
        "centroid-distances--separationcentroid_distance",
        "Centroid distances",
    ),
    "separation.knn_accuracy": MetricInfo(
        "k-NN accuracy",
        "higher",
        "0 to 1",
        "Cross-validated accuracy of a k-nearest-neighbour classifier that predicts the label "
        "from the latent vector; compare it with the chance accuracy.",
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
    "separation.linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy",
        "higher",
        "0 to 1",
        "Cross-validated accuracy of a linear classifier on the latent vector: high means the "
        "label can be read off a straight cut through the latent space.",
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
    "separation.davies_bouldin": MetricInfo(
        "Davies–Bouldin index",
        "lower",
        "0 and up, 0 best",
        "For each label, the worst ratio of within-label spread to the distance to another "
        "label's centre, averaged over labels.",
        "daviesbouldin--separationdavies_bouldin",
        "Davies–Bouldin",
    ),
    "separation.calinski_harabasz": MetricInfo(
        "Calinski–Harabasz index",
        "higher",
        "0 and up",
        "The ratio of between-label to within-label variance, corrected for the numbers of "
        "samples and labels.",
        "calinskiharabasz--separationcalinski_harabasz",
        "Calinski–Harabasz",
    ),
    "batch_separation.silhouette": MetricInfo(
        "Silhouette by batch",
        "lower",
        "−1 to 1",
        "The silhouette with the batch column as the grouping: near 0 the batches are mixed "
        "through each other, as a batch that should not matter must be; high values mean each "
        "batch sits in its own region.",
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
    "batch_separation.knn_accuracy": MetricInfo(
        "k-NN accuracy of the batch",
        "lower",
        "0 to 1",
        "How often a sample's 5 nearest neighbours name its batch (5-fold cross-validated): "
        "near chance when the batches are mixed.",
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
    "batch_separation.linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy of the batch",
        "lower",
        "0 to 1",
        "How well a linear classifier reads the batch from the latents (5-fold "
        "cross-validated): near chance when nothing of the batch is left.",
        "separation-by-batch--batch_separation",
        "Separation by batch",
    ),
    "information.active_units": MetricInfo(
        "Active units",
        "higher",
        "0 to the latent dimension",
        "How many latent dimensions the encoder actually uses; an inactive dimension has "
        "collapsed to the prior and carries no information.",
        "active-units--informationactive_units",
        "Active units",
    ),
    "information.gaussian_total_correlation": MetricInfo(
        "Gaussian total correlation",
        "lower",
        "0 and up, in nats",
        "How far the dimensions of mu are from independent, under a Gaussian fit of their "
        "covariance: 0 means uncorrelated dimensions.",
        "gaussian-total-correlation--informationgaussian_total_correlation",
        "Gaussian total correlation",
    ),
    "information.posterior_total_correlation": MetricInfo(
        "Posterior total correlation",
        "lower",
        "0 and up, in nats",
        "How far the aggregate posterior q(z) is from a product of independent per-dimension "
        "distributions, estimated from mu and logvar.",
        "posterior-total-correlation--informationposterior_total_correlation",
        "Posterior total correlation",
    ),
    "information.mi_per_dim": MetricInfo(
        "Mutual information per dimension",
        None,
        "0 to ln(number of labels), in nats",
        "How much knowing one latent dimension tells about the label; a dimension near 0 "
        "ignores the label.",
        "mutual-information-with-the-label--informationmi_per_dim",
        "Mutual information with the label",
    ),
    "information.kl_per_dim": MetricInfo(
        "KL per dimension",
        None,
        "0 and up, in nats",
        "The mean KL divergence of each dimension's posterior from the N(0, 1) prior; a "
        "dimension near 0 carries no information about its input.",
        "kl-to-the-prior--informationkl_per_dim",
        "KL to the prior",
    ),
    "disentanglement.mig": MetricInfo(
        "MIG",
        "higher",
        "0 to 1",
        "Mutual information gap: for each factor, the gap between the two latent dimensions "
        "most informative about it, normalized by the factor's entropy.",
        "mig--disentanglementmig",
        "MIG",
    ),
    "disentanglement.dci.disentanglement": MetricInfo(
        "DCI disentanglement",
        "higher",
        "0 to 1",
        "Whether each latent dimension predicts at most one factor, from the importances of a "
        "regressor.",
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.completeness": MetricInfo(
        "DCI completeness",
        "higher",
        "0 to 1",
        "Whether each factor is captured by a single latent dimension, averaged over factors "
        "by their importance (disentanglement_lib's convention, the one papers report).",
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
    "disentanglement.sap": MetricInfo(
        "SAP",
        "higher",
        "0 to 1",
        "Separated attribute predictability: for each factor, the gap in predictiveness between "
        "the best and second-best single latent dimension.",
        "sap--disentanglementsap-sap_discrete",
        "SAP",
    ),
    "disentanglement.modularity": MetricInfo(
        "Modularity",
        "higher",
        "0 to 1",
        "Whether each latent dimension depends on only one factor.",
        "modularity--disentanglementmodularity",
        "Modularity",
    ),
    "disentanglement.factor_vae": MetricInfo(
        "FactorVAE score",
        "higher",
        "0 to 1",
        "Accuracy of a majority-vote classifier that names the fixed factor from the latent "
        "dimension with the least variance.",
        "factorvae-score--disentanglementfactor_vae",
        "FactorVAE score",
    ),
}

_SIL = ("silhouette--separationsilhouette-silhouette_per_label", "Silhouette")
_CEN = ("centroid-distances--separationcentroid_distance", "Centroid distances")
_MI = ("mutual-information-with-the-label--informationmi_per_dim", "Mutual information")
_LEAK = ("partitions-and-leakage", "Partitions and leakage")

# Numbers the metrics suite writes beside the metrics above (and the file's size), explained
# for the "All metrics" table; keys with a variable part (a label, a partition) end in ".*".
EXTRAS: dict[str, MetricInfo] = {
    "n_samples": MetricInfo(
        "Samples", None, "", "Rows in the latents file.", "json-keys", "JSON keys"
    ),
    "latent_dim": MetricInfo(
        "Latent dimensions",
        None,
        "",
        "Dimensions of each latent vector.",
        "json-keys",
        "JSON keys",
    ),
    "separation.silhouette_per_label.*": MetricInfo(
        "Silhouette of one label",
        "higher",
        "−1 to 1",
        "The mean silhouette of the samples of this label: how well this label stands apart.",
        *_SIL,
    ),
    "separation.silhouette_ci_level": MetricInfo(
        "Silhouette confidence level",
        None,
        "0 to 1",
        "Confidence level of the silhouette's interval, when it was estimated from a sample.",
        *_SIL,
    ),
    "separation.silhouette_sample_size": MetricInfo(
        "Silhouette sample size",
        None,
        "rows",
        "Rows the silhouette was estimated from (each measured against all rows).",
        *_SIL,
    ),
    "separation.centroid_distance.normalized_min": MetricInfo(
        "Normalized closest centroid pair",
        "higher",
        "0 and up",
        "The closest pair of label centres, divided by the typical spread around a centre.",
        *_CEN,
    ),
    "separation.centroid_distance.rms_radius": MetricInfo(
        "Within-label spread",
        None,
        "0 and up, in latent units",
        "The pooled root-mean-square distance of samples from their own label's centre.",
        *_CEN,
    ),
    "separation.chance_accuracy": MetricInfo(
        "Chance accuracy",
        None,
        "0 to 1",
        "The accuracy of always guessing the most common label: the floor for the probes.",
        "k-nn-and-linear-probe-accuracy--separationknn_accuracy-linear_probe_accuracy",
        "k-NN and linear-probe accuracy",
    ),
    "information.mi_sum": MetricInfo(
        "Summed mutual information",
        None,
        "0 and up, in nats",
        "The mutual information of every dimension with the label, added up.",
        *_MI,
    ),
    "information.label_entropy": MetricInfo(
        "Label entropy",
        None,
        "0 to ln(number of labels), in nats",
        "How uncertain the label is before looking at the latents: the most any dimension "
        "can tell about it.",
        *_MI,
    ),
    "information.posterior_total_correlation_estimators.*": MetricInfo(
        "Posterior TC estimator detail",
        None,
        "",
        "The estimators and settings behind the posterior total correlation.",
        "posterior-total-correlation--informationposterior_total_correlation",
        "Posterior total correlation",
    ),
    "information.kl_total": MetricInfo(
        "Total KL",
        None,
        "0 and up, in nats",
        "The KL per dimension added up: the KL term of the VAE's loss, per sample.",
        "kl-to-the-prior--informationkl_per_dim",
        "KL to the prior",
    ),
    "information.active_units_threshold": MetricInfo(
        "Active-unit threshold",
        None,
        "",
        "The variance of a dimension's mean above which it counts as active.",
        "active-units--informationactive_units",
        "Active units",
    ),
    "disentanglement.dci.completeness_unweighted": MetricInfo(
        "DCI completeness (unweighted)",
        "higher",
        "0 to 1",
        "Completeness as a plain mean over factors (Eastwood & Williams' notebook); it differs "
        "from the weighted one when some factors are read by no code at all.",
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.dci.informativeness_train": MetricInfo(
        "DCI informativeness (training rows)",
        "higher",
        "0 to 1",
        "How accurately the factors are predicted on the rows the regressor was fitted on.",
        "dci--disentanglementdcidisentanglement-completeness-informativeness",
        "DCI",
    ),
    "disentanglement.sap_discrete": MetricInfo(
        "SAP (discrete factors)",
        "higher",
        "0 to 1",
        "SAP with each factor treated as classes, scored by classification accuracy.",
        "sap--disentanglementsap-sap_discrete",
        "SAP",
    ),
    "leakage.*.linear_probe_accuracy": MetricInfo(
        "Subspace probe accuracy",
        None,
        "0 to 1",
        "Accuracy of a linear classifier that reads the label from this subspace alone.",
        *_LEAK,
    ),
    "leakage.*.chance_accuracy": MetricInfo(
        "Chance accuracy",
        None,
        "0 to 1",
        "The accuracy of always guessing the most common label.",
        *_LEAK,
    ),
    "leakage.*.probe_above_chance": MetricInfo(
        "Probe above chance",
        None,
        "0 chance … 1 perfect",
        "How much of the label this subspace gives away to a linear read-out.",
        *_LEAK,
    ),
    "leakage.*.mi_sum": MetricInfo(
        "Subspace mutual information",
        None,
        "0 and up, in nats",
        "The mutual information of the subspace's dimensions with the label, added up.",
        *_LEAK,
    ),
    "leakage.*.batch_linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy of the batch in this subspace",
        None,
        "0 to 1",
        "How well a linear classifier reads the batch from this subspace alone.",
        *_LEAK,
    ),
    "leakage.*.batch_chance_accuracy": MetricInfo(
        "Chance accuracy of the batch",
        None,
        "0 to 1",
        "The accuracy of always guessing the most common batch.",
        *_LEAK,
    ),
    "leakage.*.batch_probe_above_chance": MetricInfo(
        "Batch probe above chance",
        "lower",
        "0 (chance) to 1 (perfect)",
        "The batch probe's accuracy rescaled so that chance reads 0 and a perfect read-out 1: "
        "the share of the batch this subspace gives away.",
        *_LEAK,
    ),
    "leakage.*.mi_sum_normalized": MetricInfo(
        "Subspace mutual information share",
        None,
        "0 and up",
        "The summed mutual information divided by the label's entropy.",
        *_LEAK,
    ),
}

# The figures the summary leads with, in order (those present in the metrics are shown).
HEADLINE: tuple[str, ...] = (
    "separation.silhouette",
    "separation.centroid_distance.normalized_mean",
    "separation.centroid_distance.mean",
    "separation.centroid_distance.min",
    "separation.knn_accuracy",
    "separation.linear_probe_accuracy",
    "separation.davies_bouldin",
    "batch_separation.silhouette",
    "batch_separation.linear_probe_accuracy",
    "information.active_units",
    "information.gaussian_total_correlation",
    "disentanglement.mig",
    "disentanglement.dci.disentanglement",
)


def info_for(path: str) -> MetricInfo | None:
    """The catalog entry of a metric path, or ``None``.

    Partition paths (``partitions.<name>.…``) map to the same metric on the whole latent
    space; a label or partition name inside a path matches the ``*`` of an :data:`EXTRAS` key.
    """
    if path in METRICS:
        return METRICS[path]
    parts = path.split(".")
    if len(parts) > 2 and parts[0] == "partitions":
        return info_for(".".join(parts[2:]))
    if parts[0] == "batch_separation" and len(parts) > 1:
        # Any other separation number, by batch: the label's entry with the batch's wording.
        rest = ".".join(parts[1:]).replace("silhouette_per_batch", "silhouette_per_label")
        base = info_for(f"separation.{rest}")
        if base is None:
            return None
        flipped = {"higher": "lower", "lower": "higher"}.get(base.direction or "")
        return MetricInfo(
            f"{base.title} (by batch)",
            flipped if base.direction is not None else None,
            base.range,
            base.explanation.replace("label", "batch")
            + " Here the batch column is the grouping, and mixed batches are what is wanted.",
            "separation-by-batch--batch_separation",
            "Separation by batch",
        )
    for key, info in EXTRAS.items():
        pattern = key.split(".")
        if key.endswith(".*") and path.startswith(key[:-1]):
            return info
        if len(pattern) == len(parts) and all(
            p in ("*", q) for p, q in zip(pattern, parts, strict=True)
        ):
            return info
    return None


def get_path(metrics: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a nested dict, or ``None`` where any step is missing."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def scalar_paths(metrics: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path whose value is a number (booleans excluded), in dict order."""
    out: list[str] = []
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(scalar_paths(value, path + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(path)
    return out
