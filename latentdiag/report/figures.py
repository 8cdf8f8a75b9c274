"""The report's figures: one function per figure, each returning a matplotlib ``Figure``.

Figures are drawn with the Agg canvas on ``matplotlib.figure.Figure`` objects, never through
``pyplot``, so no global state or display is involved. Every figure has a plain title, labelled
axes and, where colours carry meaning, a legend; labels take their colour and marker from one
:class:`~latentdiag.report.palette.LabelStyle` for the whole report.

Text that comes from users (label, factor and partition names) goes through :func:`plain`, so
that a ``$`` in a name is drawn as a dollar sign rather than starting matplotlib math.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from latentdiag.report.palette import SEQUENTIAL_CMAP, LabelStyle
from latentdiag.report.projections import Projection

__all__ = [
    "centroid_heatmap",
    "factor_mi_heatmap",
    "image_png",
    "kl_per_dim_figure",
    "mi_per_dim_figure",
    "partition_figure",
    "plain",
    "projection_figure",
    "silhouette_figure",
    "to_png",
]

DPI = 100
# Most labels a scatter legend names; the others are counted.
_MAX_LEGEND = 20
# Names longer than this are shortened in figures (the HTML shows them whole).
_MAX_NAME = 28


def plain(text: object, limit: int = _MAX_NAME) -> str:
    """User text made safe for a matplotlib label: ``$`` escaped, long names shortened."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _grid(ax: Axes, axis: Literal["both", "x", "y"]) -> None:
    ax.grid(True, axis=axis, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def _figure(width: float = 6.4, height: float = 4.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes (no timestamp metadata, so output repeats)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def image_png(image: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` or ``(H, W)`` uint8 image as PNG bytes."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _legend_outside(ax: Axes, handles: Sequence[Any], title: str | None = None) -> None:
    ax.legend(
        handles=list(handles),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8 if len(handles) > 10 else 9,
        title=title,
        title_fontsize=9,
    )


def projection_figure(
    proj: Projection,
    *,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    style: LabelStyle,
    title: str,
    random_state: int = 0,
    legend_title: str = "label",
) -> Figure:
    """Scatter plot of a 2-D projection, coloured by label, with each label's centroid marked.

    Args:
        proj: The projection of the sampled rows.
        labels: ``(m,)`` label codes of those rows (indices into ``label_names``), or ``None``.
        label_names: Names of the label codes.
        style: Colours and markers of the labels.
        title: Figure title.
        random_state: Seed of the drawing order (points are drawn shuffled, so no label is
            hidden under another just because it comes later).
        legend_title: Title of the legend (the column the colours show).

    Returns:
        The figure.
    """
    fig = _figure()
    ax = fig.add_subplot()
    xy = proj.coords
    order = np.random.default_rng(random_state).permutation(xy.shape[0])
    point_size = float(np.clip(1500.0 / max(np.sqrt(xy.shape[0]), 1.0), 3.0, 30.0))
    handles: list[Line2D] = []
    if labels is None or label_names is None:
        ax.scatter(xy[order, 0], xy[order, 1], s=point_size, c="#0072B2", alpha=0.6, lw=0)
    else:
        names = [str(n) for n in label_names]
        present = [k for k in range(len(names)) if np.any(labels == k)]
        colours = np.array([style.colour(n) for n in names], dtype=object)
        markers = {style.marker(names[k]) for k in present}
        for marker in sorted(markers):
            # One scatter call per marker shape, points shuffled across labels.
            mask = np.array([style.marker(names[labels[i]]) == marker for i in order], bool)
            idx = order[mask]
            ax.scatter(
                xy[idx, 0],
                xy[idx, 1],
                s=point_size,
                c=list(colours[labels[idx]]),
                marker=marker,
                alpha=0.6,
                lw=0,
                rasterized=True,
            )
        for k in present:
            centre = xy[labels == k].mean(axis=0)
            ax.scatter(
                [centre[0]],
                [centre[1]],
                s=160,
                marker="X",
                c=[style.colour(names[k])],
                edgecolors="black",
                linewidths=1.4,
                zorder=3,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    ls="",
                    marker=style.marker(names[k]),
                    color=style.colour(names[k]),
                    label=plain(names[k]),
                    markersize=7,
                )
            )
        if len(handles) > _MAX_LEGEND:
            # A legend taller than the plot helps no one: name the first labels, count the rest.
            rest = len(handles) - (_MAX_LEGEND - 1)
            handles = handles[: _MAX_LEGEND - 1]
            handles.append(Line2D([], [], ls="", label=f"… {rest} more labels"))
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="X",
                color="white",
                markeredgecolor="black",
                markersize=10,
                label="centroid",
            )
        )
        _legend_outside(ax, handles, legend_title)
    ax.set_title(title)
    ax.set_xlabel(proj.xlabel)
    ax.set_ylabel(proj.ylabel)
    _grid(ax, "both")
    return fig


def centroid_heatmap(
    matrix: np.ndarray,
    label_names: Sequence[str],
    *,
    vmax: float | None = None,
    title: str,
) -> Figure:
    """Heatmap of the Euclidean distances between label centroids, values written in cells.

    ``vmax`` fixes the top of the colour scale, so compared files share one scale.
    """
    m = np.asarray(matrix, dtype=float)
    k = m.shape[0]
    size = float(np.clip(2.5 + 0.45 * k, 4.0, 9.0))
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=vmax)
    names = [plain(n, 18) for n in label_names]
    # Past ~30 labels every name cannot fit: name every step-th one, smaller.
    step = max(1, int(np.ceil(k / 30)))
    size = 10 if k <= 12 else 8 if k <= 30 else 7
    ticks = list(range(0, k, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=45, ha="right", fontsize=size)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=size)
    ax.set_xlabel("label")
    ax.set_ylabel("label")
    if k <= 12:
        finite = m[np.isfinite(m)]
        top = vmax if vmax is not None else (float(finite.max()) if finite.size else 0.0)
        for i in range(k):
            for j in range(k):
                value = m[i, j]
                dark = value < 0.6 * top
                ax.text(
                    j,
                    i,
                    f"{value:.2g}" if abs(value) < 100 else f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
    fig.colorbar(im, ax=ax, label="distance between centroids (latent units)", shrink=0.8)
    ax.set_title(title)
    return fig


def silhouette_figure(
    values: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    *,
    style: LabelStyle,
    overall: float | None,
    title: str,
) -> Figure:
    """The classic silhouette plot: each label's per-sample silhouettes as sorted bars.

    Args:
        values: ``(m,)`` silhouette of each sampled row.
        labels: ``(m,)`` label codes of those rows.
        label_names: Names of the label codes.
        style: Colours of the labels.
        overall: The file's silhouette from the metrics (drawn as a dashed line), if known.
        title: Figure title.

    Returns:
        The figure.
    """
    names = [str(n) for n in label_names]
    present = [k for k in range(len(names)) if np.any(labels == k)]
    fig = _figure(6.4, float(np.clip(2.5 + 0.35 * len(present), 4.0, 9.0)))
    ax = fig.add_subplot()
    gap = max(int(0.02 * values.shape[0]), 2)
    y = 0
    ticks, ticklabels = [], []
    for k in present:
        v = np.sort(values[labels == k])
        ax.fill_betweenx(
            np.arange(y, y + v.size),
            0,
            v,
            facecolor=style.colour(names[k]),
            edgecolor=style.colour(names[k]),
            alpha=0.85,
            lw=0.3,
        )
        ticks.append(y + v.size / 2)
        ticklabels.append(f"{plain(names[k], 20)}  ({v.mean():+.2f})")
        y += v.size + gap
    sample_mean = float(values.mean())
    ax.axvline(sample_mean, color="black", ls="--", lw=1.2, label=f"mean ({sample_mean:.2f})")
    if overall is not None and np.isfinite(overall) and abs(overall - sample_mean) > 0.005:
        ax.axvline(overall, color="#555555", ls=":", lw=1.2, label=f"metric ({overall:.2f})")
    ax.axvline(0, color="#888888", lw=0.8)
    ax.set_yticks(ticks, ticklabels, fontsize=8)
    ax.set_ylim(-gap, y)
    lo = float(min(-0.1, values.min() - 0.05))
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("silhouette of each sample (−1 … 1)")
    ax.set_ylabel("samples, sorted within each label (label mean)")
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    _grid(ax, "x")
    ax.set_title(title)
    return fig


def _shade_partitions(ax: Axes, partitions: Mapping[str, tuple[int, int]] | None) -> None:
    for i, (name, (start, stop)) in enumerate((partitions or {}).items()):
        ax.axvspan(
            start - 0.5, stop - 0.5, color="#000000", alpha=0.04 if i % 2 == 0 else 0.09, lw=0
        )
        ax.text(
            (start + stop - 1) / 2,
            1.0,
            plain(name, 16),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="#333333",
        )


def _dim_ticks(ax: Axes, d: int) -> None:
    step = max(1, int(np.ceil(d / 32)))
    ax.set_xticks(range(0, d, step))
    ax.set_xlim(-0.6, d - 0.4)


def mi_per_dim_figure(
    mi: Sequence[float],
    *,
    n_labels: int | None,
    partitions: Mapping[str, tuple[int, int]] | None = None,
    ymax: float | None = None,
    title: str,
) -> Figure:
    """Bars of the mutual information between each latent dimension and the label.

    ``ymax`` fixes the top of the axis, so compared files share one scale.
    """
    values = np.asarray(mi, dtype=float)
    d = values.size
    fig = _figure(float(np.clip(3.0 + 0.18 * d, 6.4, 12.0)), 3.8)
    ax = fig.add_subplot()
    _shade_partitions(ax, partitions)
    ax.bar(range(d), values, color="#0072B2", width=0.8, label="I(z_j ; label)")
    if n_labels and n_labels > 1:
        bound = float(np.log(n_labels))
        ax.axhline(bound, color="#D55E00", ls="--", lw=1.2, label=f"most possible: ln {n_labels}")
    _dim_ticks(ax, d)
    if ymax:
        ax.set_ylim(0, ymax * 1.08)
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("mutual information (nats)")
    ax.legend(loc="upper right", fontsize=8)
    _grid(ax, "y")
    ax.set_title(title, pad=14 if partitions else 6)
    return fig


def kl_per_dim_figure(
    kl: Sequence[float],
    *,
    active: Sequence[bool] | None = None,
    partitions: Mapping[str, tuple[int, int]] | None = None,
    ymax: float | None = None,
    title: str,
) -> Figure:
    """Bars of the mean KL(q(z_j | x) ‖ N(0, 1)) of each latent dimension.

    Args:
        kl: One value per dimension, in nats.
        active: Which dimensions are active units; inactive ones are drawn grey.
        partitions: Named subspaces, shaded behind the bars.
        ymax: Top of the axis, shared by compared files.
        title: Figure title.

    Returns:
        The figure.
    """
    values = np.asarray(kl, dtype=float)
    d = values.size
    fig = _figure(float(np.clip(3.0 + 0.18 * d, 6.4, 12.0)), 3.8)
    ax = fig.add_subplot()
    _shade_partitions(ax, partitions)
    if active is None:
        ax.bar(range(d), values, color="#009E73", width=0.8)
    else:
        mask = np.asarray(active, dtype=bool)
        dims = np.arange(d)
        ax.bar(dims[mask], values[mask], color="#009E73", width=0.8, label="active unit")
        if (~mask).any():
            ax.bar(
                dims[~mask],
                values[~mask],
                color="#BBBBBB",
                hatch="//",
                edgecolor="#777777",
                width=0.8,
                label="inactive (collapsed)",
            )
        ax.legend(loc="upper right", fontsize=8)
    _dim_ticks(ax, d)
    if ymax:
        ax.set_ylim(0, ymax * 1.08)
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("KL to the prior (nats, mean over samples)")
    _grid(ax, "y")
    ax.set_title(title, pad=14 if partitions else 6)
    return fig


def factor_mi_heatmap(
    matrix: np.ndarray,
    factor_names: Sequence[str],
    *,
    vmax: float | None = None,
    title: str,
) -> Figure:
    """Heatmap of the mutual information between each factor (rows) and latent dimension."""
    m = np.asarray(matrix, dtype=float)
    f, d = m.shape
    fig = _figure(float(np.clip(3.0 + 0.3 * d, 6.4, 12.0)), float(np.clip(2.2 + 0.35 * f, 3.5, 9)))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_yticks(range(f), [plain(n, 20) for n in factor_names])
    step = max(1, int(np.ceil(d / 32)))
    ax.set_xticks(range(0, d, step))
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("factor")
    fig.colorbar(im, ax=ax, label="mutual information (nats)", shrink=0.9)
    ax.set_title(title)
    return fig


def partition_figure(
    partition_names: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    chance: float | None,
    title: str,
) -> Figure:
    """Grouped bars: how well the label can be read from each subspace.

    Args:
        partition_names: One group of bars per name (e.g. "all dims", "shared", "modality").
        series: Metric name -> one value per partition (``None`` where not computed).
        chance: Accuracy of always guessing the most common label, drawn as a line.
        title: Figure title.

    Returns:
        The figure.
    """
    colours = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")
    p = len(partition_names)
    fig = _figure(float(np.clip(3.5 + 1.1 * p, 6.4, 12.0)), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, (metric, values) in enumerate(series.items()):
        xs = np.arange(p) + (i - (len(series) - 1) / 2) * width
        vals = np.array([np.nan if v is None else float(v) for v in values])
        ax.bar(xs, vals, width=width * 0.95, color=colours[i % len(colours)], label=metric)
    if chance is not None:
        ax.axhline(chance, color="black", ls="--", lw=1.0, label=f"chance accuracy ({chance:.2f})")
    ax.axhline(0, color="#888888", lw=0.8)
    ax.set_xticks(range(p), [plain(n, 18) for n in partition_names])
    ax.set_xlabel("latent subspace")
    ax.set_ylabel("score (silhouette −1…1, accuracy 0…1)")
    ax.set_ylim(min(-0.1, float(np.nanmin([0.0, *_flat(series)])) - 0.05), 1.05)
    _legend_outside(ax, ax.get_legend_handles_labels()[0])
    _grid(ax, "y")
    ax.set_title(title)
    return fig


def _flat(series: Mapping[str, Sequence[float | None]]) -> list[float]:
    return [float(v) for values in series.values() for v in values if v is not None]


def scib_table_figure(table: Mapping[str, Any]) -> Figure:
    """scIB's ranked table as an image: one row per file (best total first), one column per
    metric, each cell coloured by its value on 0–1 and written in it, the best of each column
    in bold. ``table`` is :func:`latentdiag.report.scib_table.scib_table`'s result."""
    columns = list(table["columns"])
    rows = list(table["rows"])
    m = np.array(
        [[np.nan if r["values"][c["key"]] is None else r["values"][c["key"]] for c in columns]
         for r in rows],
        dtype=float,
    )  # fmt: skip
    fig = _figure(1.2 + 0.9 * len(columns), 1.6 + 0.45 * len(rows))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(m), cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0, aspect="auto")
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            value = m[i, j]
            if not np.isfinite(value):
                ax.text(j, i, "—", ha="center", va="center", fontsize=8)
                continue
            best = r["name"] in table["best"].get(c["key"], ())
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                fontweight="bold" if best else "normal",
                color="white" if value < 0.6 else "black",
            )
    ax.set_xticks(range(len(columns)), [plain(c["title"], 20) for c in columns], rotation=40,
                  ha="right", fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(rows)), [f"{r['rank']}. {plain(r['name'], 24)}" for r in rows])
    groups = [c["group"] for c in columns]
    for j in range(1, len(columns)):
        if groups[j] != groups[j - 1]:
            ax.axvline(j - 0.5, color="white", linewidth=3)
    ax.set_title("scIB ranking (0 to 1, higher better; best of each column in bold)")
    return fig
