"""One latents file's part of a report: what it holds, its metrics, and its panels.

:func:`measure_file` reads a :class:`~latentdiag.store.LatentStore` and computes the metrics
(through :func:`latentdiag.metrics.suite.compute_metrics`); :func:`shared_limits` gives compared
files common scales; :func:`latentdiag.report.draw.draw_file` then fills in the
:class:`Panel` list, one per figure or per reason a figure could not be drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latentdiag.report.catalog import get_path
from latentdiag.report.projections import stratified_sample
from latentdiag.store import LatentSource

__all__ = [
    "SECTIONS",
    "Extras",
    "FileReport",
    "Panel",
    "measure_file",
    "shared_limits",
]

# A callback that adds reference-model images for a file: a list of (title, caption, image),
# or None when the file does not come from a reference-model run. It raises a
# LatentDiagError to say why the images cannot be made (the report then says so).
Extras = Callable[[LatentSource], list[tuple[str, str, np.ndarray]] | None]

# Section id -> title, in report order.
SECTIONS: dict[str, str] = {
    "projections": "Projections",
    "separation": "Separation of labels",
    "mixing": "Mixing of batches",
    "information": "Information per dimension",
    "disentanglement": "Disentanglement of factors",
    "partitions": "Partitions of the latent space",
    "generation": "Conditional generation",
    "training": "Metrics during training",
    "reference": "Reference model: reconstructions, samples, traversals",
}

# Rows the factor × dimension MI matrix is estimated on: 20 × 20-bin histograms need thousands.
_MI_ROWS = 20_000


@dataclass
class Panel:
    """One figure of one file, or the reason it could not be drawn.

    Attributes:
        section: Section id (a key of :data:`SECTIONS`).
        kind: Identifies the figure within the section, the same across compared files.
        title: Plain title.
        caption: What the figure shows and how it was made.
        png: The figure as PNG bytes; ``None`` when skipped.
        skipped: Why the figure is missing; ``None`` when drawn.
    """

    section: str
    kind: str
    title: str
    caption: str = ""
    png: bytes | None = None
    skipped: str | None = None


@dataclass
class FileReport:
    """Everything the report shows about one latents file."""

    name: str
    path: str
    n_samples: int
    latent_dim: int
    label_names: list[str] | None
    label_counts: dict[str, int] | None
    has_logvar: bool
    factor_names: list[str] | None
    partitions: dict[str, tuple[int, int]]
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    sample_size: int
    panels: list[Panel] = field(default_factory=list)
    label_key: str | None = None
    batch_key: str | None = None
    batch_names: list[str] | None = None
    batch_counts: dict[str, int] | None = None
    # (f, d) factor × dimension mutual information and the rows it was estimated on.
    factor_mi: np.ndarray | None = None
    mi_rows: int = 0
    # What gencheck noted about this file's decoder (an unreliable judge, labels skipped).
    generation_notes: list[str] = field(default_factory=list)

    @property
    def n_labels(self) -> int:
        """Number of labels that have at least one row."""
        return sum(1 for c in (self.label_counts or {}).values() if c > 0)

    @property
    def chance_accuracy(self) -> float | None:
        """Accuracy of always guessing the most common label."""
        given = get_path(self.metrics, "separation.chance_accuracy")
        if isinstance(given, (int, float)):
            return float(given)
        counts = [c for c in (self.label_counts or {}).values() if c > 0]
        return max(counts) / sum(counts) if len(counts) > 1 else None

    @property
    def batch_chance_accuracy(self) -> float | None:
        """Accuracy of always guessing the most common batch."""
        given = get_path(self.metrics, "batch_separation.chance_accuracy")
        if isinstance(given, (int, float)):
            return float(given)
        counts = [c for c in (self.batch_counts or {}).values() if c > 0]
        return max(counts) / sum(counts) if len(counts) > 1 else None


def measure_file(
    store: LatentSource,
    name: str,
    *,
    metrics_sample: int | None,
    seed: int,
    device: str,
    progress: Callable[[str], None],
    exhaustive: bool = False,
    while_waiting: Callable[[FileReport], None] | None = None,
) -> FileReport:
    """Compute the metrics of one latents file (figures come later, from :func:`draw_file`).

    Args:
        store: The open latents file (its label and batch chosen).
        name: How the report names the file.
        metrics_sample: Passed to ``compute_metrics(sample=...)``.
        seed: Seed of every random choice.
        device: Passed to ``compute_metrics(device=...)``.
        progress: Receives one line per step.
        exhaustive: Passed to ``compute_metrics``.
        while_waiting: Work of the caller's that overlaps the last metrics (DCI's boosting):
            called once with the file's report, its metrics complete but for DCI's (which
            arrive in the same object once computed; keys the caller adds to its metrics
            meanwhile stay).

    Returns:
        The file's :class:`FileReport`, without panels yet.

    Raises:
        LatentDiagError: The file cannot be read or its arrays are not valid metric input.
    """
    from latentdiag.metrics.suite import compute_metrics, no_label_reason

    progress(f"{name}: reading {store.path}")
    mu = store.mu  # (n, d)
    labels = store.labels  # (n,) or None
    factors = store.factors
    label_names = store.label_names if labels is not None else None
    factor_names = store.factor_names if factors is not None else None
    progress(f"{name}: computing metrics on {store.n_samples:,} × {store.latent_dim}")
    last: list[str] = []

    def metric_progress(key: str, _fraction: float) -> None:
        if key not in last and key != "done":  # one line per metric, not per tick
            last.append(key)
            progress(f"{name}: {key}")

    obsm_key = getattr(store, "obsm_key", None)

    def named(metrics: dict[str, Any]) -> dict[str, Any]:
        return {"obsm": obsm_key, **metrics} if obsm_key is not None else metrics

    def make_report(metrics: dict[str, Any]) -> FileReport:
        report = FileReport(
            name=name,
            path=str(store.path),
            n_samples=store.n_samples,
            latent_dim=store.latent_dim,
            label_names=label_names,
            label_counts=store.label_counts() if labels is not None else None,
            has_logvar=store.has_logvar,
            factor_names=factor_names,
            partitions=dict(store.partitions),
            provenance=dict(store.provenance),
            metrics=named(metrics),
            sample_size=0,
            label_key=store.label_key if labels is not None else None,
            batch_key=store.batch_key,
            batch_names=store.batch_names,
            batch_counts=store.batch_counts(),
        )
        if factors is not None:
            progress(f"{name}: factor × dimension mutual information")
            rows = stratified_sample(store.n_samples, _MI_ROWS, random_state=seed)
            report.mi_rows = int(rows.size)
            report.factor_mi = _factor_mi_matrix(mu[rows], factors[rows])
        return report

    early: list[FileReport] = []

    def waiting(known: Callable[[], dict[str, Any]]) -> None:
        early.append(make_report(known()))
        assert while_waiting is not None
        while_waiting(early[0])

    metrics = compute_metrics(
        mu,
        labels=labels,
        label_names=label_names,
        logvar=store.logvar,
        factors=factors,
        factor_names=factor_names,
        partitions=store.partitions or None,
        sample=metrics_sample,
        seed=seed,
        device=device,
        progress=metric_progress,
        batch=store.batch,
        batch_names=store.batch_names,
        label_key=store.label_key,
        batch_key=store.batch_key,
        why_no_labels=no_label_reason(store),
        exhaustive=exhaustive,
        pre_embedding=store.pre_embedding,
        while_waiting=waiting if while_waiting is not None else None,
    )
    if not early:
        return make_report(metrics)
    # The early report's figures and factor MI stand; its metrics gain DCI's, and keep what
    # the caller added to them meanwhile (the generation section).
    final = named(metrics)
    final.update({k: v for k, v in early[0].metrics.items() if k not in final})
    early[0].metrics = final
    return early[0]


def shared_limits(reports: Sequence[FileReport]) -> dict[str, float]:
    """Axis and colour limits shared by compared files, so side-by-side panels read alike."""
    limits: dict[str, float] = {}

    def grow(key: str, values: Any) -> None:
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            limits[key] = max(limits.get(key, 0.0), float(arr.max()))

    for r in reports:
        m = r.metrics
        for key, path in (
            ("kl", "information.kl_per_dim"),
            ("mi", "information.mi_per_dim"),
            ("centroids", "separation.centroid_distance.matrix"),
        ):
            value = get_path(m, path)
            if value is not None:
                grow(key, value)
        if r.n_labels > 1:
            grow("mi", [np.log(r.n_labels)])
        if r.factor_mi is not None:
            grow("factor-mi", r.factor_mi)
    return limits


def _factor_mi_matrix(x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(f, d) mutual information between each factor and each latent dimension, in nats.

    The matrix MIG is computed from: codes binned into 20 equal-width bins, factors taken as
    classes (or binned the same way when they have more than 32 distinct values).
    """
    from latentdiag.metrics.discretize import (
        discrete_mutual_info,
        discretize_factors,
        histogram_discretize,
    )

    codes = histogram_discretize(x)  # (m, d)
    classes = discretize_factors(np.asarray(factors, dtype=np.float64))  # (m, f)
    return np.asarray(discrete_mutual_info(codes, classes)).T  # (f, d)
