"""The report's words: numbers as short text, plain-words readings, changes between files.

Everything here returns text for :mod:`latentdiag.report.html`; :func:`esc` escapes whatever
came from a user or a file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from latentdiag.report.catalog import MetricInfo, get_path
from latentdiag.report.palette import BETTER, NEUTRAL, WORSE
from latentdiag.report.sections import FileReport

__all__ = [
    "INTROS",
    "LEAKAGE_COLUMNS",
    "NOT_METRICS",
    "NOT_REQUESTED",
    "PARTITION_COMPARED",
    "delta_cell",
    "describe",
    "direction",
    "esc",
    "fmt_value",
    "interval",
    "is_number",
    "short",
    "verdict",
]


def esc(value: object) -> str:
    """Escape any value for HTML text or an attribute value."""
    return html.escape(str(value), quote=True)


def fmt_value(value: Any) -> str:
    """A metric value as short text: integers with separators, floats to 3 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "not finite"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.3g}"


def verdict(path: str, value: Any, report: FileReport) -> str:
    """A plain-words reading of a headline value ("" when there is nothing sound to say)."""
    if value is None:
        return ""
    v = float(value)
    if path == "separation.silhouette":
        # Bands of Kaufman & Rousseeuw, "Finding Groups in Data" (1990), ch. 2.
        if v > 0.70:
            return "strong structure, the labels form clear, well separated clusters"
        if v > 0.50:
            return "reasonable structure, the labels form clear clusters"
        if v > 0.25:
            return "weak structure, the label clusters overlap a good deal"
        return "no substantial structure, the labels overlap"
    if path in ("separation.knn_accuracy", "separation.linear_probe_accuracy"):
        chance = report.chance_accuracy
        if chance is None:
            return ""
        if v <= chance + 0.05 * (1 - chance):
            return f"about chance ({fmt_value(chance)}), the label cannot be read from the latents"
        return f"chance would be {fmt_value(chance)}"
    if path in ("batch_separation.knn_accuracy", "batch_separation.linear_probe_accuracy"):
        chance = report.batch_chance_accuracy
        if chance is None:
            return ""
        if v <= chance + 0.05 * (1 - chance):
            return f"about chance ({fmt_value(chance)}), the batches are mixed"
        return f"chance would be {fmt_value(chance)}; the batch can be read from the latents"
    if path == "batch_separation.silhouette":
        if abs(v) <= 0.05:
            return "near 0, the batches are mixed"
        if v > 0.25:
            return "the batches form their own clusters"
        return ""
    if path == "information.active_units":
        return f"{int(v)} of {report.latent_dim} dimensions carry information"
    return ""


def direction(info: MetricInfo | None) -> str:
    """Which way is better, in words ("higher is better"); "" when neither is."""
    if info is None or info.direction is None:
        return ""
    return f"{info.direction} is better"


def interval(f: FileReport, path: str) -> str:
    """The confidence interval of a sampled silhouette as text; "" when it was exact."""
    ci = get_path(f.metrics, path + "_ci")
    if not (isinstance(ci, Sequence) and len(ci) == 2 and all(is_number(v) for v in ci)):
        return ""
    level = get_path(f.metrics, path + "_ci_level")
    rows = get_path(f.metrics, path + "_sample_size")
    pct = f"{float(level):.0%} " if is_number(level) else ""
    on = f", estimated on {int(rows):,} rows" if is_number(rows) else ""
    return f" ({pct}CI {fmt_value(ci[0])} to {fmt_value(ci[1])}{on})"


def is_number(value: Any) -> bool:
    """Whether a value is a real number (booleans are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short(value: Any, limit: int = 120) -> str:
    """Text on one line, cut to ``limit`` characters."""
    s = " ".join(str(value).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def describe(f: FileReport) -> str:
    """One sentence on what a file holds: sizes, labels, logvar, factors, partitions."""
    bits = [f"{f.n_samples:,} samples × {f.latent_dim} latent dimensions"]
    if f.label_counts:
        names = [n for n, c in f.label_counts.items() if c > 0]
        # Format-1 files have no named columns: their labels show as the column "label".
        column = f" in column {f.label_key}" if f.label_key not in (None, "label") else ""
        bits.append(f"{len(names)} labels{column} ({', '.join(names)})")
    else:
        bits.append("no labels")
    if f.batch_counts:
        names = [n for n, c in f.batch_counts.items() if c > 0]
        bits.append(f"{len(names)} batches in column {f.batch_key} ({', '.join(names)})")
    bits.append("posterior log-variances" if f.has_logvar else "no logvar")
    if f.factor_names:
        bits.append(f"{len(f.factor_names)} factors")
    if f.partitions:
        bits.append(f"{len(f.partitions)} partitions ({', '.join(f.partitions)})")
    return f"{f.name}: " + ", ".join(bits) + "."


def delta_cell(base_name: str, name: str, v0: Any, v: Any, info: MetricInfo | None) -> str:
    """The table cell of a change from ``v0`` to ``v``: arrow, amount, better or worse."""
    if not (is_number(v0) and is_number(v)):
        return "<td></td>"
    a, b = float(v0), float(v)
    if not (math.isfinite(a) and math.isfinite(b)):
        return "<td></td>"
    diff = b - a
    title = f"{base_name} → {name}: {fmt_value(a)} → {fmt_value(b)}"
    if abs(diff) <= 1e-9 * max(1.0, abs(a)):
        return f'<td class="delta" title="{esc(title)}" style="color:{NEUTRAL}">= same</td>'
    arrow = "▲" if diff > 0 else "▼"
    word, colour = "", NEUTRAL
    if info is not None and info.direction is not None:
        better = diff > 0 if info.direction == "higher" else diff < 0
        word, colour = ("better", BETTER) if better else ("worse", WORSE)
    sign = "+" if diff > 0 else "−"
    return (
        f'<td class="delta" title="{esc(title)}" style="color:{colour}">'
        f"{arrow} {sign}{esc(fmt_value(abs(diff)))} {word}</td>"
    )


# Top-level keys of the metrics dict that hold no measurements.
NOT_METRICS = (
    "settings",
    "skipped",
    "notes",
    "file",
    "obsm",
    "label_names",
    "factor_names",
    "batch_names",
    "label_key",
    "batch_key",
)

# Leakage measures of the metrics suite, and their column headings.
LEAKAGE_COLUMNS = {
    "linear_probe_accuracy": "linear probe accuracy",
    "chance_accuracy": "chance accuracy",
    "probe_above_chance": "probe above chance (0 chance … 1 perfect)",
    "mi_sum": "summed MI with the label (nats)",
    "mi_sum_normalized": "summed MI ÷ label entropy",
    "batch_linear_probe_accuracy": "batch: linear probe accuracy",
    "batch_chance_accuracy": "batch: chance accuracy",
    "batch_probe_above_chance": "batch: probe above chance",
}

# Per-subspace metrics the comparison table shows (the partitions section shows them all).
PARTITION_COMPARED = (
    "separation.silhouette",
    "separation.centroid_distance.normalized_mean",
    "separation.knn_accuracy",
    "separation.linear_probe_accuracy",
)

INTROS = {
    "projections": (
        "<p>Each point is one sample's latent mean, placed in two dimensions; colours are labels "
        "and ✕ marks each label's centroid. Clear, separate islands mean the labels are easy to "
        "tell apart.</p>"
    ),
    "separation": (
        "<p>How far apart the labels lie in the full latent space, and how cleanly each sample "
        "sits inside its own label's group.</p>"
    ),
    "mixing": (
        "<p>Whether the groups that should <em>mix</em> (the batch column: batch, site, donor "
        "or scanner) are spread through the latent space rather than kept apart: the same "
        "separation scores with the batch as the grouping, where near chance is good.</p>"
    ),
    "information": (
        "<p>Which latent dimensions carry information about the label, and which ones the "
        "encoder uses at all.</p>"
    ),
    "disentanglement": (
        "<p>Whether each ground-truth factor is captured by its own latent dimension.</p>"
    ),
    "partitions": (
        "<p>Named subspaces of the latent vector, each measured on its own: a shared subspace "
        "should hold little label information, a label-specific one a lot.</p>"
    ),
    "generation": (
        "<p>Whether the decoder generates what each label asks for (from <code>latentdiag "
        "gencheck</code>): a judge trained on real data classifies samples generated for each "
        "label; its accuracy on real held-out data comes first, since a judge that cannot tell "
        "real labels apart cannot judge generated ones. Real samples are on the left, "
        "generated ones on the right.</p>"
    ),
    "training": (
        "<p>The metrics <code>latentdiag.track</code> logged while the model trained, on a "
        "fixed validation set, epoch by epoch: whether separation grew, and when it stopped "
        "growing.</p>"
    ),
    "reference": (
        "<p>Images drawn by the reference model that wrote these latents: reconstructions, "
        "samples conditioned on each label, and traversals of single latent dimensions.</p>"
    ),
}

NOT_REQUESTED = {
    "projections": "no projection was requested (--projection).",
    "separation": "nothing to show.",
    "mixing": "no batch column was chosen: pass --batch-key COL (the column whose groups should "
    "mix, such as batch, site or donor) to see how well they mix.",
    "information": "nothing to show.",
    "disentanglement": "nothing to show.",
    "partitions": "nothing to show.",
    "generation": "no gencheck result was given: run `latentdiag gencheck MODEL DATA -o DIR` and "
    "pass --generation DIR (one per file, in order).",
    "training": "no track log: reference runs write one (track.jsonl); for your own training "
    "loop use latentdiag.track.Tracker and pass --track LOG_DIR.",
    "reference": "reference-model images are drawn only for files written by a reference-model "
    "run, through the `latentdiag report` command.",
}
