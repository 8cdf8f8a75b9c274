"""Drawing one measured file: every figure it supports, and a reason for each it does not.

A section the file cannot support (no labels, one label, no logvar, no factors, no partitions)
becomes a :class:`~latentdiag.report.sections.Panel` with a reason instead of a figure, so the
report explains the gap rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from latentdiag.errors import LatentDiagError, ReportError
from latentdiag.report.catalog import get_path
from latentdiag.report.palette import LabelStyle
from latentdiag.report.projections import (
    BackgroundProjection,
    project,
    stratified_sample,
)
from latentdiag.report.sections import Extras, FileReport, Panel
from latentdiag.store import LatentSource

__all__ = ["draw_file"]

_PROJECTION_TITLES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}


# Projections worth starting on a thread before anything else: the slow one, which runs in
# compiled code without the GIL. (UMAP's numba kernels stay on the main thread: numba's
# workqueue layer does not take parallel launches from two threads at once.)
BACKGROUND_METHODS = ("tsne",)


def start_background_projections(
    store: LatentSource, *, projections: Sequence[str], sample: int, seed: int
) -> dict[str, BackgroundProjection]:
    """Start the slow projections of one file on its sample rows (those :func:`draw_file`
    draws), to be handed to :func:`draw_file` as ``background``."""
    methods = [m for m in projections if m in BACKGROUND_METHODS]
    if not methods:
        return {}
    rows = stratified_sample(store.n_samples, sample, labels=store.labels, random_state=seed)
    x = np.asarray(store.mu[rows], dtype=np.float64)
    return {m: BackgroundProjection(m, x, seed) for m in methods}


def draw_projections(
    store: LatentSource,
    name: str,
    *,
    label_names: Sequence[str] | None,
    label_key: str | None,
    style: LabelStyle,
    projections: Sequence[str],
    sample: int,
    seed: int,
    progress: Callable[[str], None],
    background: Mapping[str, BackgroundProjection] | None = None,
) -> tuple[list[Panel], dict[str, Any]]:
    """The projection panels of one file, and the projections by method (the batch-mixing
    panels colour them again). They need no metric, so the report draws them while the
    file's last metrics finish (``compute_metrics(while_waiting=...)``).

    Args:
        store: The open latents file.
        name: How the report names the file.
        label_names: The file's label names, or ``None`` when it is drawn without labels.
        label_key: The label column's name (the legend's title).
        style: Label colours shared by the whole report.
        projections: Projection methods to draw.
        sample: Rows in the stratified sample the projections use.
        seed: Seed of every random choice.
        progress: Receives one line per projection.
        background: Projections already started on the sample rows, by method.
    """
    from latentdiag.report import figures as fg

    labels = store.labels if label_names is not None else None
    rows = stratified_sample(store.n_samples, sample, labels=labels, random_state=seed)
    sample_labels = labels[rows] if labels is not None else None
    note = _sample_note(store.n_samples, rows.size, labels is not None)
    label_note = (
        " ✕ marks each label's centroid."
        if labels is not None
        else " Not coloured: this file has no labels."
    )
    panels: list[Panel] = []
    projected: dict[str, Any] = {}
    for method in projections:
        title = _PROJECTION_TITLES[method]
        progress(f"{name}: {title} projection of {rows.size:,} rows")
        try:
            if background is not None and method in background:
                proj = background[method].result()
            else:
                proj = project(method, store.mu, rows, random_state=seed)
        except ReportError as exc:
            panels.append(Panel("projections", method, title, skipped=str(exc)))
            continue
        projected[method] = proj
        fig = fg.projection_figure(
            proj,
            labels=sample_labels,
            label_names=label_names,
            style=style,
            title=f"{title} of the latent means",
            random_state=seed,
            legend_title=fg.plain(label_key or "label"),
        )
        caption = f"{proj.note} {note}{label_note}"
        panels.append(Panel("projections", method, title, caption, fg.to_png(fig)))
    return panels, projected


def _sample_note(n: int, size: int, labelled: bool) -> str:
    if size == n:
        return f"All {n:,} rows."
    if not labelled:
        return f"Drawn on a random sample of {size:,} of {n:,} rows."
    return f"Drawn on a stratified sample of {size:,} of {n:,} rows (each label keeps its share)."


def draw_file(
    report: FileReport,
    store: LatentSource,
    *,
    style: LabelStyle,
    projections: Sequence[str],
    sample: int,
    seed: int,
    extras: Extras | None,
    limits: Mapping[str, float],
    progress: Callable[[str], None],
    batch_style: LabelStyle | None = None,
    background: Mapping[str, BackgroundProjection] | None = None,
    drawn_projections: tuple[list[Panel], dict[str, Any]] | None = None,
) -> None:
    """Draw every figure of one measured file into ``report.panels``.

    Args:
        report: The file's measurements, from :func:`measure_file`.
        store: The open latents file.
        style: Label colours shared by the whole report.
        batch_style: Batch colours shared by the whole report.
        projections: Projection methods to draw.
        sample: Rows in the stratified sample that projections and silhouette bars use.
        seed: Seed of every random choice.
        extras: Reference-model images callback.
        limits: Shared axis limits, from :func:`shared_limits`.
        progress: Receives one line per step.
        background: Projections already started on this file's sample rows (by
            :func:`start_background_projections`), by method.
        drawn_projections: What :func:`draw_projections` returned, when it ran already
            (while the metrics finished); it runs here otherwise.
    """
    from latentdiag.report import figures as fg

    name, metrics = report.name, report.metrics
    mu = store.mu  # (n, d)
    labels = store.labels if report.label_names is not None else None
    logvar_present = report.has_logvar
    label_names = report.label_names
    factor_names = report.factor_names
    rows = stratified_sample(store.n_samples, sample, labels=labels, random_state=seed)
    report.sample_size = int(rows.size)
    sample_labels = labels[rows] if labels is not None else None
    sample_note = _sample_note(store.n_samples, rows.size, labels is not None)
    panels = report.panels

    # -- projections ----------------------------------------------------------------------
    if drawn_projections is None:
        drawn_projections = draw_projections(
            store,
            name,
            label_names=label_names,
            label_key=report.label_key,
            style=style,
            projections=projections,
            sample=sample,
            seed=seed,
            progress=progress,
            background=background,
        )
    projection_panels, projected = drawn_projections
    panels.extend(projection_panels)

    # -- separation -----------------------------------------------------------------------
    progress(f"{name}: separation figures")
    no_sep = _separation_gap(report)
    matrix = get_path(metrics, "separation.centroid_distance.matrix")
    if no_sep:
        panels.append(Panel("separation", "centroids", "Centroid distances", skipped=no_sep))
        panels.append(Panel("separation", "silhouette", "Silhouette by label", skipped=no_sep))
    else:
        assert labels is not None and label_names is not None and sample_labels is not None
        given = get_path(metrics, "separation.centroid_distance.labels")
        present = [str(n) for n in given] if given is not None else _present_names(report)
        if matrix is not None:
            fig = fg.centroid_heatmap(
                np.asarray(matrix, dtype=float),
                present,
                vmax=limits.get("centroids"),
                title="Distance between label centroids",
            )
            panels.append(
                Panel(
                    "separation",
                    "centroids",
                    "Centroid distances",
                    "Euclidean distance between the mean latent vectors of every pair of labels, "
                    f"over all {store.n_samples:,} rows. Bigger numbers off the diagonal mean "
                    "better separated labels.",
                    fg.to_png(fig),
                )
            )
        else:
            panels.append(
                Panel(
                    "separation",
                    "centroids",
                    "Centroid distances",
                    skipped=_skip_reason(metrics, "separation.centroid_distance")
                    or "the metrics hold no centroid distance matrix.",
                )
            )
        panels.append(
            _silhouette_panel(mu[rows], sample_labels, label_names, style, metrics, sample_note)
        )

    # -- mixing of batches ------------------------------------------------------------------
    batch = store.batch
    panels.extend(
        _mixing_panels(
            report,
            batch[rows] if batch is not None else None,
            projected,
            batch_style or LabelStyle.from_names([report.batch_names]),
            seed,
            sample_note,
        )
    )

    # -- information ----------------------------------------------------------------------
    mi = get_path(metrics, "information.mi_per_dim")
    if mi is not None and labels is not None:
        fig = fg.mi_per_dim_figure(
            mi,
            n_labels=report.n_labels,
            partitions=report.partitions,
            ymax=limits.get("mi"),
            title="Mutual information between each dimension and the label",
        )
        panels.append(
            Panel(
                "information",
                "mi",
                "Mutual information with the label",
                "How much each latent dimension tells about the label, in nats; the dashed line "
                "is the most any dimension can tell (ln of the number of labels).",
                fg.to_png(fig),
            )
        )
    else:
        panels.append(
            Panel(
                "information",
                "mi",
                "Mutual information with the label",
                skipped=_separation_gap(report, "mutual information with the label and its figure")
                or _skip_reason(metrics, "information.mi_per_dim")
                or "the metrics hold no per-dimension mutual information.",
            )
        )
    kl = get_path(metrics, "information.kl_per_dim")
    if not logvar_present:
        panels.append(
            Panel(
                "information",
                "kl",
                "KL per dimension",
                skipped="No logvar in this file: KL per dimension and active units need the "
                "posterior log-variances (/logvar).",
            )
        )
    elif kl is not None:
        mask = get_path(metrics, "information.active_units_mask")
        fig = fg.kl_per_dim_figure(
            kl,
            active=mask,
            partitions=report.partitions,
            ymax=limits.get("kl"),
            title="KL divergence from the prior per dimension",
        )
        active = get_path(metrics, "information.active_units")
        active_text = (
            f" Active units (grey bars are not): {_fmt(active)} of {store.latent_dim}."
            if active is not None
            else ""
        )
        panels.append(
            Panel(
                "information",
                "kl",
                "KL per dimension",
                "Mean KL(q(z_j | x) ‖ N(0, 1)) of each dimension over all rows: a dimension near "
                f"0 has collapsed to the prior and carries nothing.{active_text}",
                fg.to_png(fig),
            )
        )
    else:
        panels.append(
            Panel(
                "information",
                "kl",
                "KL per dimension",
                skipped=_skip_reason(metrics, "information.kl_per_dim")
                or "the metrics hold no KL per dimension.",
            )
        )

    # -- disentanglement ------------------------------------------------------------------
    if report.factor_mi is None or factor_names is None:
        panels.append(
            Panel(
                "disentanglement",
                "factor-mi",
                "Factor × dimension mutual information",
                skipped="No factors in this file: disentanglement scores need the ground-truth "
                "generative factors (/factors).",
            )
        )
    else:
        fig = fg.factor_mi_heatmap(
            report.factor_mi,
            factor_names,
            vmax=limits.get("factor-mi"),
            title="Mutual information between factors and dimensions",
        )
        panels.append(
            Panel(
                "disentanglement",
                "factor-mi",
                "Factor × dimension mutual information",
                "Each row is a ground-truth factor, each column a latent dimension. A "
                "disentangled code has one bright cell per row and per column. Both sides "
                "are binned as for MIG (20 equal-width bins), on "
                f"{report.mi_rows:,} of {store.n_samples:,} rows.",
                fg.to_png(fig),
            )
        )

    # -- partitions -----------------------------------------------------------------------
    if not report.partitions:
        panels.append(
            Panel(
                "partitions",
                "partition-scores",
                "Label information per subspace",
                skipped="No partitions in this file: per-subspace figures need named latent "
                "subspaces (/partitions, e.g. shared = [0, 8), modality = [8, 16)).",
            )
        )
    else:
        progress(f"{name}: partition figures")
        panels.extend(
            _partition_panels(
                report,
                mu,
                rows,
                sample_labels,
                label_names,
                style,
                seed,
                _separation_gap(report, "label scores per subspace"),
                sample_note,
            )
        )

    # -- reference-model images -----------------------------------------------------------
    if extras is not None:
        try:
            images = extras(store)
        except LatentDiagError as exc:
            panels.append(Panel("reference", "gallery", "Reference model", skipped=str(exc)))
        else:
            if images is None:
                panels.append(
                    Panel(
                        "reference",
                        "gallery",
                        "Reference model",
                        skipped="This file does not come from a reference-model run "
                        "(`latentdiag train`), so there is no decoder to draw images with.",
                    )
                )
            for i, (title, caption, image) in enumerate(images or []):
                panels.append(
                    Panel(
                        "reference", f"gallery-{i}", str(title), str(caption), fg.image_png(image)
                    )
                )


def _mixing_panels(
    report: FileReport,
    sample_batch: np.ndarray | None,
    projected: Mapping[str, Any],
    style: LabelStyle,
    seed: int,
    sample_note: str,
) -> list[Panel]:
    """The projections again, coloured by batch, and the batch scores per subspace."""
    from latentdiag.report import figures as fg

    if sample_batch is None or report.batch_names is None:
        return []  # no batch asked for: the section says how to ask (text.NOT_REQUESTED)
    present = [n for n, c in (report.batch_counts or {}).items() if c > 0]
    if len(present) < 2:
        return [
            Panel(
                "mixing",
                "batch",
                "Mixing of batches",
                skipped=f"Only one batch ({present[0] if present else 'none'}) in column "
                f"{report.batch_key}: mixing needs at least two.",
            )
        ]
    panels: list[Panel] = []
    for method, proj in projected.items():
        title = _PROJECTION_TITLES[method]
        fig = fg.projection_figure(
            proj,
            labels=sample_batch,
            label_names=report.batch_names,
            style=style,
            title=f"{title} of the latent means, by {fg.plain(str(report.batch_key))}",
            random_state=seed,
            legend_title=fg.plain(str(report.batch_key)),
        )
        panels.append(
            Panel(
                "mixing",
                f"batch-{method}",
                f"{title} by batch",
                f"The {title} projection above, coloured by the batch column "
                f"{report.batch_key!r}. Well mixed batches are interleaved everywhere; islands "
                f"of one colour mean the latents remember the batch. {sample_note}",
                fg.to_png(fig),
            )
        )
    names = ["all dimensions", *report.partitions]
    series = _subspace_series(report, "batch_separation")
    if series:
        fig = fg.partition_figure(
            names,
            series,
            chance=report.batch_chance_accuracy,
            title=f"How well each subspace tells the batches ({report.batch_key}) apart",
        )
        panels.append(
            Panel(
                "mixing",
                "batch-scores",
                "Batch information per subspace",
                "The separation scores with the batch as the grouping, for the whole latent space "
                "and each named subspace. Mixed batches score near chance (the dashed line: "
                "always guessing the most common batch) and a silhouette near 0; high scores "
                "mean the batch can be read from the latents.",
                fg.to_png(fig),
            )
        )
    return panels


def _subspace_series(report: FileReport, section: str) -> dict[str, list[float | None]]:
    """Silhouette, k-NN and probe accuracy of ``section`` for the whole space and each
    partition, by title: the bars of a per-subspace figure (metrics missing everywhere left
    out)."""
    keys = {
        "silhouette": "silhouette",
        "k-NN accuracy": "knn_accuracy",
        "linear probe accuracy": "linear_probe_accuracy",
    }
    series: dict[str, list[float | None]] = {}
    for title, key in keys.items():
        path = f"{section}.{key}"
        values = [get_path(report.metrics, path)] + [
            get_path(report.metrics, f"partitions.{p}.{path}") for p in report.partitions
        ]
        if any(v is not None for v in values):
            series[title] = [None if v is None else float(v) for v in values]
    return series


def _present_names(report: FileReport) -> list[str]:
    return [n for n, c in (report.label_counts or {}).items() if c > 0]


def _separation_gap(report: FileReport, what: str = "separation figures") -> str | None:
    """Why label-based figures (``what``) cannot be drawn, or None when they can."""
    if report.label_names is None:
        return f"No labels in this file: {what} need a label per row (/labels)."
    if report.n_labels < 2:
        only = _present_names(report)
        return (
            f"Only one label ({only[0] if only else 'none'}) in this file: {what} need at "
            "least two labels."
        )
    return None


def _skip_reason(metrics: dict[str, Any], prefix: str) -> str | None:
    """The reason the metrics suite gave for skipping a metric under ``prefix``."""
    for entry in metrics.get("skipped") or []:
        if not isinstance(entry, dict):
            continue
        names = [str(v) for k, v in entry.items() if k != "reason"]
        if any(n == prefix or n.startswith(prefix + ".") or prefix.startswith(n) for n in names):
            return str(entry.get("reason", ""))
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.3g}"


def _silhouette_panel(
    x: np.ndarray,
    sample_labels: np.ndarray,
    label_names: list[str],
    style: LabelStyle,
    metrics: dict[str, Any],
    sample_note: str,
) -> Panel:
    from latentdiag.metrics import silhouette_samples
    from latentdiag.report import figures as fg

    k = len(np.unique(sample_labels))
    if not 2 <= k <= x.shape[0] - 1:
        return Panel(
            "separation",
            "silhouette",
            "Silhouette by label",
            skipped=f"silhouette needs 2 ≤ labels < samples; the sample has {k} labels in "
            f"{x.shape[0]} rows.",
        )
    values = np.asarray(silhouette_samples(x, sample_labels), dtype=float)
    overall = get_path(metrics, "separation.silhouette")
    fig = fg.silhouette_figure(
        values,
        sample_labels,
        label_names,
        style=style,
        overall=None if overall is None else float(overall),
        title="Silhouette of each sample, by label",
    )
    return Panel(
        "separation",
        "silhouette",
        "Silhouette by label",
        "Each bar is one sample: its silhouette, sorted within its label. Long bars to the right "
        "mean samples sit well inside their label's cluster; bars to the left of 0 sit closer to "
        f"another label. The dashed line is the mean over the sample. {sample_note}",
        fg.to_png(fig),
    )


def _partition_panels(
    report: FileReport,
    mu: np.ndarray,
    rows: np.ndarray,
    sample_labels: np.ndarray | None,
    label_names: list[str] | None,
    style: LabelStyle,
    seed: int,
    no_sep: str | None,
    sample_note: str,
) -> list[Panel]:
    from latentdiag.report import figures as fg

    panels: list[Panel] = []
    names = ["all dimensions", *report.partitions]
    if no_sep:
        panels.append(
            Panel(
                "partitions", "partition-scores", "Label information per subspace", skipped=no_sep
            )
        )
    else:
        series = _subspace_series(report, "separation")
        if series:
            fig = fg.partition_figure(
                names,
                series,
                chance=report.chance_accuracy,
                title="How well each subspace tells the labels apart",
            )
            panels.append(
                Panel(
                    "partitions",
                    "partition-scores",
                    "Label information per subspace",
                    "Separation of the labels within each named subspace, next to the whole "
                    "latent space. A subspace meant to be shared across labels should score near "
                    "chance; one meant to hold the label should score high. The dashed line is "
                    "the accuracy of always guessing the most common label.",
                    fg.to_png(fig),
                )
            )
        else:
            panels.append(
                Panel(
                    "partitions",
                    "partition-scores",
                    "Label information per subspace",
                    skipped="the metrics hold no per-partition separation scores.",
                )
            )
    for pname, (start, stop) in report.partitions.items():
        sub = mu[:, start:stop]
        proj = project("pca", sub, rows, random_state=seed)
        fig = fg.projection_figure(
            proj,
            labels=sample_labels,
            label_names=label_names,
            style=style,
            title=f"Subspace {fg.plain(pname)}: dimensions {start}–{stop - 1}",
            random_state=seed,
        )
        panels.append(
            Panel(
                "partitions",
                f"subspace-{pname}",
                f"Subspace {pname} [{start}, {stop})",
                f"PCA of dimensions {start} to {stop - 1} only. {proj.note} {sample_note}"
                + (" ✕ marks each label's centroid." if sample_labels is not None else ""),
                fg.to_png(fig),
            )
        )
    return panels
