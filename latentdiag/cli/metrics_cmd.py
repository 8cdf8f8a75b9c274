"""``latentdiag metrics``: every metric a latents file allows, as tables or JSON."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import Any

import click

from latentdiag.cli._common import (
    console,
    device_option,
    echo_json,
    json_option,
    latents_options,
    pre_obsm_option,
    seed_option,
)


def exhaustive_option(f: Any) -> Any:
    """``--exhaustive``: every metric on every dimension, however long it takes."""
    return click.option(
        "--exhaustive",
        is_flag=True,
        help="Compute every metric on every dimension, however long it takes. By default wide "
        "latents (over 256 dims) stay fast: probes on fewer rows, posterior TC on the 64 most "
        "active dims, DCI and discrete SAP skipped (each one said in the output).",
    )(f)


def sample_option(f: Any) -> Any:
    """``--sample N``: estimate the silhouette from N stratified rows, with a CI."""
    return click.option(
        "--sample",
        type=click.IntRange(min=2),
        default=None,
        metavar="N",
        help="Estimate the silhouette from N stratified rows (measured against all rows), with "
        "a 95% bootstrap confidence interval; default: exact.",
    )(f)


@click.command("metrics")
@click.argument("latents", type=click.Path(dir_okay=False))
@latents_options
@pre_obsm_option
@json_option
@sample_option
@exhaustive_option
@seed_option
@device_option
def metrics_command(
    latents: str,
    label_key: str | None,
    batch_key: str | None,
    obsm: str | None,
    logvar_obsm: str | None,
    pre_obsm: str | None,
    as_json: bool,
    sample: int | None,
    exhaustive: bool,
    seed: int,
    device: str,
):
    """Compute every metric a latents file allows: separation, information, disentanglement.

    LATENTS is a latents file (.h5) or an AnnData file (.h5ad: the embedding from obsm, the
    columns from obs). Separation needs a label, posterior TC and KL need logvar,
    disentanglement needs factors; what the file cannot support is listed as skipped, with the
    reason. --batch-key scores the batches too (batch_separation: lower is better mixed) and
    runs the scIB suite with scib-metrics' definitions (mixing.*, cLISI, isolated labels,
    NMI/ARI, scores.*; --pre-obsm adds PCR comparison).
    Named partitions get every metric again, plus a leakage summary (how much label and batch
    information each subspace holds). Definitions and ranges: docs/metrics.md.

    \b
    Examples:
      latentdiag metrics latents.h5
      latentdiag metrics latents.h5 --json > metrics.json
      latentdiag metrics cells.h5ad --obsm X_scVI --label-key cell_type --batch-key batch
      latentdiag metrics cells.h5ad --obsm X_scVI --batch-key batch --pre-obsm X_pca
      latentdiag metrics big.h5 --sample 20000 --device cuda
    """
    from latentdiag.metrics.suite import compute_metrics_for_store

    with progress_bar() as progress:
        result = compute_metrics_for_store(
            latents,
            label_key=label_key,
            batch_key=batch_key,
            obsm=obsm,
            logvar_obsm=logvar_obsm,
            pre_obsm=pre_obsm,
            sample=sample,
            seed=seed,
            device=device,
            progress=progress,
            exhaustive=exhaustive,
        )
    if as_json:
        echo_json(result)
    else:
        render(result)


@contextlib.contextmanager
def progress_bar() -> Iterator[Any]:
    """A rich progress bar on stderr when it is a terminal; otherwise no callback."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("metrics", total=1.0)

        def update(name: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=name)

        yield update


# -- rendering -----------------------------------------------------------------------------

# key -> (label, range and direction)
_SEPARATION = [
    ("silhouette", "silhouette", "[-1, 1], higher better"),
    ("centroid_distance.mean", "centroid distance, mean", "[0, ∞), higher better"),
    ("centroid_distance.min", "centroid distance, min", "[0, ∞), higher better"),
    ("centroid_distance.normalized_mean", "  ÷ within-label RMS radius", "[0, ∞), higher better"),
    ("centroid_distance.normalized_min", "  min ÷ RMS radius", "[0, ∞), higher better"),
    ("davies_bouldin", "Davies–Bouldin", "[0, ∞), lower better"),
    ("calinski_harabasz", "Calinski–Harabasz", "[0, ∞), higher better"),
    ("knn_accuracy", "k-NN accuracy (5-fold)", "[0, 1], higher better"),
    ("linear_probe_accuracy", "linear probe accuracy (5-fold)", "[0, 1], higher better"),
    ("chance_accuracy", "  chance (majority label)", ""),
]
# The separation rows again for the batch, where mixing (low values) is what is wanted.
_BATCH = [
    (
        key,
        label,
        rng.replace("higher better", "lower = mixed").replace("lower better", "higher = mixed"),
    )
    for key, label, rng in _SEPARATION
]
_INFORMATION = [
    ("gaussian_total_correlation", "Gaussian total correlation of mu", "nats, lower = factorised"),
    ("posterior_total_correlation", "posterior total correlation", "nats, lower = factorised"),
    ("active_units", "active units (Var mu > 0.01)", "count, of latent_dim"),
    ("kl_total", "KL to the prior, summed", "nats"),
    ("mi_sum", "Σ I(z_j; label)", "nats"),
    ("label_entropy", "H(label)", "nats"),
]
_DISENTANGLEMENT = [
    ("mig", "MIG", "[0, 1], higher better"),
    ("dci.disentanglement", "DCI disentanglement", "[0, 1], higher better"),
    ("dci.completeness", "DCI completeness", "[0, 1], higher better"),
    ("dci.informativeness", "DCI informativeness (accuracy)", "[0, 1], higher better"),
    ("sap", "SAP (continuous)", "[0, 1], higher better"),
    ("sap_discrete", "SAP (discrete)", "[0, 1], higher better"),
    ("modularity", "modularity", "[0, 1], higher better"),
    ("factor_vae", "FactorVAE score", "[0, 1], higher better"),
]


_SCORES = [
    ("scores.batch_correction", "scIB batch correction", "0 to 1, higher better"),
    ("scores.bio_conservation", "scIB bio conservation", "0 to 1, higher better"),
    ("scores.total", "scIB total (0.4 / 0.6)", "0 to 1, higher better"),
]


def _scib_rows() -> list[tuple[str, str, str]]:
    """The scIB rows, from the declarations: the mixing metrics, the label-conservation ones
    (separation metrics that use labels and batch together), then the aggregates."""
    from latentdiag.metrics.registry import registered

    rows = []
    for spec in registered():
        if spec.section == "mixing" or (spec.section == "separation" and not spec.by_batch):
            for path in spec.headline:
                info = spec.shown[path]
                better = f", {info.direction} better" if info.direction else ""
                rows.append((path, info.title, f"{info.range.split(',')[0]}{better}"))
    return [*sorted(rows, key=lambda r: not r[0].startswith("mixing.")), *_SCORES]


_PER_DIM = [
    ("mi_per_dim", "I(z;label) nats"),
    ("mi_per_dim_normalized", "÷ H(label)"),
    ("kl_per_dim", "KL nats"),
    ("active_units_mask", "active"),
]
# Up to this many dimensions the per-dimension table lists them all; wider latents show the
# top and bottom ones (the JSON always holds every dimension).
ALL_DIMS_UP_TO = 32
_TOP, _BOTTOM = 10, 5


def _per_dim_table(info: dict[str, Any], present: list[tuple[str, str]], d: int) -> Any:
    """Every dimension, or for wide latents the 10 that carry the most and the 5 the least."""
    from rich.table import Table

    order = list(range(d))
    title = "per dimension"
    if d > ALL_DIMS_UP_TO:
        key = next(k for k in ("mi_per_dim", "kl_per_dim", "active_units_mask") if k in info)
        ranked = sorted(order, key=lambda j: -float(info[key][j]))
        order = ranked[:_TOP] + ranked[-_BOTTOM:]
        what = "I(z;label)" if key == "mi_per_dim" else ("KL" if key == "kl_per_dim" else key)
        title = f"per dimension: the {_TOP} with the most {what} and the {_BOTTOM} with the least"
    dims = Table(title=title, title_justify="left")
    dims.add_column("dim", justify="right")
    for _, heading in present:
        dims.add_column(heading, justify="right")
    for i, j in enumerate(order):
        if d > ALL_DIMS_UP_TO and i == _TOP:
            dims.add_row("…", *["…" for _ in present])
        dims.add_row(str(j), *[_fmt(info[k][j]) for k, _ in present])
    if d > ALL_DIMS_UP_TO:
        dims.caption = (
            f"{d - len(order):,} more dimensions: --json lists all {d:,} "
            f"({', '.join('information.' + k for k, _ in present)})."
        )
        dims.caption_justify = "left"
    return dims


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:,.4f}" if abs(value) < 1e5 else f"{value:,.1f}"
    return str(value)


def _section_table(title: str, section: dict[str, Any], rows: list[tuple[str, str, str]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("range", style="dim")
    for key, label, rng in rows:
        value = _get(section, key)
        if value is None:
            continue
        text = _fmt(value)
        if key == "silhouette" and "silhouette_ci" in section:
            lo, hi = section["silhouette_ci"]
            text += f"  [{_fmt(lo)}, {_fmt(hi)}]"
        table.add_row(label, text, rng)
    return table


def render(result: dict[str, Any]) -> None:
    """Print the metrics as rich tables, one per section."""
    from rich.table import Table

    out = console()
    roles = [
        f"{role} = {result[key]}"
        for role, key in (("obsm", "obsm"), ("label", "label_key"), ("batch", "batch_key"))
        if result.get(key)
    ]
    out.print(
        f"[bold]{result.get('file', 'latents')}[/bold]: {result['n_samples']:,} samples × "
        f"{result['latent_dim']} dims" + (f" ({', '.join(roles)})" if roles else "")
    )
    sep = result.get("separation")
    if sep:
        extra = ""
        if "silhouette_sample_size" in sep:
            extra = f" (silhouette from {sep['silhouette_sample_size']:,} sampled rows, 95% CI)"
        out.print(_section_table("separation" + extra, sep, _SEPARATION))
        labels = Table(title="per label", title_justify="left")
        labels.add_column(str(result.get("label_key") or "label"))
        labels.add_column("silhouette", justify="right")
        names = sep.get("centroid_distance", {}).get("labels") or list(sep["silhouette_per_label"])
        matrix = sep.get("centroid_distance", {}).get("matrix")
        if matrix is not None and len(matrix) > 12:
            matrix = None  # a wide matrix does not fit a terminal; --json holds it
        for name in names:
            labels.add_column(f"d({name})", justify="right") if matrix else None
        for i, name in enumerate(names):
            cells = [_fmt(sep.get("silhouette_per_label", {}).get(name))]
            cells += [_fmt(v) for v in matrix[i]] if matrix else []
            labels.add_row(name, *cells)
        out.print(labels)
    bsep = result.get("batch_separation")
    if bsep:
        title = f"separation by batch ({result.get('batch_key')}): lower = better mixed"
        out.print(_section_table(title, bsep, _BATCH))
    if result.get("mixing"):
        title = "scIB: mixing and label conservation (scib-metrics' definitions; 1 = best)"
        out.print(_section_table(title, result, _scib_rows()))
    info = result.get("information")
    if info:
        out.print(_section_table("information", info, _INFORMATION))
        present = [(k, t) for k, t in _PER_DIM if k in info]
        if present:
            out.print(_per_dim_table(info, present, result["latent_dim"]))
    dis = result.get("disentanglement")
    if dis:
        out.print(_section_table("disentanglement", dis, _DISENTANGLEMENT))
    parts = result.get("partitions") or {}
    if parts:
        table = Table(title="partitions", title_justify="left")
        table.add_column("metric")
        for name, sub in parts.items():
            table.add_column(f"{name} [{sub['dims'][0]}, {sub['dims'][1]})", justify="right")
        for section, rows in (
            ("separation", _SEPARATION),
            ("batch_separation", _SEPARATION),
            ("", _scib_rows()),
            ("information", _INFORMATION),
            ("disentanglement", _DISENTANGLEMENT),
        ):
            for key, label, _ in rows:
                values = [
                    _get(sub.get(section, {}) if section else sub, key) for sub in parts.values()
                ]
                if any(v is not None for v in values):
                    by = " (by batch)" if section == "batch_separation" else ""
                    table.add_row(label.strip() + by, *[_fmt(v) for v in values])
        out.print(table)
    leakage = result.get("leakage") or {}
    if leakage:
        table = Table(
            title="leakage: label (and batch) information per subspace", title_justify="left"
        )
        headings = {
            "linear_probe_accuracy": "probe acc",
            "chance_accuracy": "chance",
            "probe_above_chance": "above chance",
            "mi_sum": "Σ MI nats",
            "mi_sum_normalized": "Σ MI ÷ H",
            "batch_linear_probe_accuracy": "batch probe acc",
            "batch_chance_accuracy": "batch chance",
            "batch_probe_above_chance": "batch above chance",
        }
        shown = [k for k in headings if any(k in leak for leak in leakage.values())]
        table.add_column("partition")
        for key in shown:
            table.add_column(headings[key], justify="right")
        for name, leak in leakage.items():
            table.add_row(name, *[_fmt(leak.get(k)) for k in shown])
        out.print(table)
    if result.get("notes"):
        table = Table(title="notes: how some metrics were computed", title_justify="left")
        table.add_column("metric", overflow="fold")
        table.add_column("note", overflow="fold")
        for entry in result["notes"]:
            table.add_row(entry["metric"], entry["note"])
        out.print(table)
    if result.get("skipped"):
        table = Table(title="skipped", title_justify="left")
        table.add_column("metric", overflow="fold")
        table.add_column("reason", overflow="fold")
        for entry in result["skipped"]:
            table.add_row(entry.get("metric") or entry.get("section", ""), entry["reason"])
        out.print(table)
