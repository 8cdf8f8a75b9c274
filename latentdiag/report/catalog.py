"""What each metric means in one sentence, which way is better, and where docs/metrics.md has it.

The keys are the dotted paths of the metrics JSON (DESIGN.md). The report reads titles,
directions and explanations from here, so every metric it shows is explained the same way in
the summary, the tables and the comparison.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from latentdiag.metrics.registry import MetricInfo

__all__ = [
    "DOCS_PAGE",
    "EXTRAS",
    "GENERATION",
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


# What the report explains beside the metrics: the file's size and the leakage summary.
_OTHER_EXTRAS: dict[str, MetricInfo] = {
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
    "leakage.*.linear_probe_accuracy": MetricInfo(
        "Subspace probe accuracy",
        None,
        "0 to 1",
        "Accuracy of a linear classifier that reads the label from this subspace alone.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.chance_accuracy": MetricInfo(
        "Chance accuracy",
        None,
        "0 to 1",
        "The accuracy of always guessing the most common label.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.probe_above_chance": MetricInfo(
        "Probe above chance",
        None,
        "0 chance … 1 perfect",
        "How much of the label this subspace gives away to a linear read-out.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.mi_sum": MetricInfo(
        "Subspace mutual information",
        None,
        "0 and up, in nats",
        "The mutual information of the subspace's dimensions with the label, added up.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.batch_linear_probe_accuracy": MetricInfo(
        "Linear probe accuracy of the batch in this subspace",
        None,
        "0 to 1",
        "How well a linear classifier reads the batch from this subspace alone.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.batch_chance_accuracy": MetricInfo(
        "Chance accuracy of the batch",
        None,
        "0 to 1",
        "The accuracy of always guessing the most common batch.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.batch_probe_above_chance": MetricInfo(
        "Batch probe above chance",
        "lower",
        "0 (chance) to 1 (perfect)",
        "The batch probe's accuracy rescaled so that chance reads 0 and a perfect read-out 1: "
        "the share of the batch this subspace gives away.",
        *LEAKAGE_DOC,
    ),
    "leakage.*.mi_sum_normalized": MetricInfo(
        "Subspace mutual information share",
        None,
        "0 and up",
        "The summed mutual information divided by the label's entropy.",
        *LEAKAGE_DOC,
    ),
}


GENERATION_DOC = ("conditional-generation-gencheck", "Conditional generation (gencheck)")
#: The numbers of a gencheck result, as the report's generation table lists them.
GENERATION: dict[str, MetricInfo] = {
    "generation.judge.heldout_accuracy": MetricInfo(
        "Judge accuracy on real held-out data",
        "higher",
        "0 to 1",
        "How often the judge names the right label of a real sample it was not trained on; "
        "the scores below are only as good as this.",
        *GENERATION_DOC,
    ),
    "generation.condition_accuracy": MetricInfo(
        "Condition accuracy",
        "higher",
        "chance (1 / labels) to 1",
        "The share of samples generated for a label that the judge sees as that label.",
        *GENERATION_DOC,
    ),
    "generation.chance_accuracy": MetricInfo(
        "Chance",
        None,
        "1 / labels",
        "The condition accuracy of a decoder that ignores its label.",
        *GENERATION_DOC,
    ),
    "generation.cas": MetricInfo(
        "Classification accuracy score (CAS)",
        "higher",
        "0 to 1",
        "Accuracy on real held-out data of a classifier trained on generated samples only.",
        *GENERATION_DOC,
    ),
    "generation.condition_sensitivity": MetricInfo(
        "Condition sensitivity",
        "higher",
        "0 (label ignored) and up",
        "How much the output changes when only the label changes, relative to how much it "
        "changes across latents z for one label.",
        *GENERATION_DOC,
    ),
    "generation.frechet_distance.mean": MetricInfo(
        "Fréchet distance (mean over labels)",
        "lower",
        "0 and up",
        "Distance between Gaussians fitted to real and generated samples of a label, in the "
        "judge's feature space.",
        *GENERATION_DOC,
    ),
    "generation.kid.mean": MetricInfo(
        "KID (mean over labels)",
        "lower",
        "about 0 and up",
        "Kernel distance between real and generated samples of a label (unbiased, so it can "
        "dip below 0), in the judge's feature space.",
        *GENERATION_DOC,
    ),
    "generation.precision.mean": MetricInfo(
        "Precision",
        "higher",
        "0 to 1",
        "The share of generated samples that fall within the real samples' neighbourhoods "
        "(fidelity).",
        *GENERATION_DOC,
    ),
    "generation.recall.mean": MetricInfo(
        "Recall",
        "higher",
        "0 to 1",
        "The share of real samples that fall within the generated samples' neighbourhoods "
        "(diversity).",
        *GENERATION_DOC,
    ),
    "generation.density.mean": MetricInfo(
        "Density",
        "higher",
        "0 and up (about 1 when alike)",
        "How many real neighbourhoods hold each generated sample, on average, over k.",
        *GENERATION_DOC,
    ),
    "generation.coverage.mean": MetricInfo(
        "Coverage",
        "higher",
        "0 to 1",
        "The share of real samples with a generated sample inside their neighbourhood.",
        *GENERATION_DOC,
    ),
}
_OTHER_EXTRAS.update(GENERATION)


class _FromRegistry(Mapping[str, MetricInfo]):
    """The registered metrics' presentation, read from their declarations on each use.

    ``headline=True``: the numbers the report's tables list (each declaration's ``headline``
    paths), by section, then the declaration's rank, then its own order. ``False``: the
    secondary numbers the declarations explain, then the file's size and the leakage keys.
    """

    def __init__(self, headline: bool) -> None:
        self._headline = headline

    def _items(self) -> dict[str, MetricInfo]:
        from latentdiag.metrics.registry import SECTIONS, registered

        rows: list[tuple[tuple[int, float, int], str, MetricInfo]] = []
        for index, spec in enumerate(registered()):
            rank = spec.rank if spec.rank is not None else float(index)
            for order, (path, info) in enumerate(spec.shown.items()):
                if (path in spec.headline) != self._headline:
                    continue
                section = path.split(".")[0]
                place = SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)
                rows.append(((place, rank, order), path, info))
        out = {path: info for _, path, info in sorted(rows, key=lambda r: r[0])}
        if not self._headline:
            size = {k: v for k, v in _OTHER_EXTRAS.items() if not k.startswith("leakage.")}
            leakage = {k: v for k, v in _OTHER_EXTRAS.items() if k.startswith("leakage.")}
            out = {**size, **out, **leakage}
        return out

    def __getitem__(self, path: str) -> MetricInfo:
        return self._items()[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


# The metrics the report's tables show, in order (from the declarations in
# latentdiag.metrics.declarations).
METRICS: Mapping[str, MetricInfo] = _FromRegistry(headline=True)


# Numbers the metrics suite writes beside the metrics above (and the file's size), explained
# for the "All metrics" table; keys with a variable part (a label, a partition) end in ".*".
EXTRAS: Mapping[str, MetricInfo] = _FromRegistry(headline=False)

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
