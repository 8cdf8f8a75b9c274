"""A preview of vector data (``latentdiag data preview`` on tables, counts, AnnData).

Two panels: a heatmap of each label's mean of every standardized feature (rows = labels,
columns = features, at most :data:`MAX_FEATURES` of them: with more, those whose label means
differ most), and a 2-D PCA scatter coloured by label. Unlabelled data shows a random sample
of rows instead of label means, and an uncoloured scatter. Statistics come from a random
sample of at most :data:`SAMPLE_ROWS` rows (fewer when there are many features: at most
:data:`SAMPLE_VALUES` values), so a million cells preview as fast as a thousand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.data._common import atomic_output
from latentdiag.data.base import ImageDataset, Subset
from latentdiag.errors import ReportError

__all__ = ["MAX_FEATURES", "SAMPLE_ROWS", "SAMPLE_VALUES", "save_vector_preview", "vector_rows"]

MAX_FEATURES = 60  # heatmap columns at most
SAMPLE_ROWS = 20_000  # rows the statistics are computed on at most
SAMPLE_VALUES = 10_000_000  # ... and at most this many values (rows × features)
_MIN_SAMPLE_ROWS = 500
_SCATTER_POINTS = 4000  # rows the PCA is fitted on and drawn
_PCA_FEATURES = 500  # PCA on at most this many (the most variable) features
_UNLABELLED_ROWS = 24


def vector_rows(ds: ImageDataset, index: np.ndarray) -> np.ndarray:
    """Rows of a vector dataset (or a subset of one) as float32 (len, F), as the model sees
    them (standardized when the dataset is)."""
    if isinstance(ds, Subset):
        return vector_rows(ds.parent, ds.indices[index])
    rows = getattr(ds, "rows", None)
    if rows is not None:
        return np.asarray(rows(np.asarray(index, dtype=np.int64)))
    return np.stack([ds[int(i)]["image"] for i in index]).astype(np.float32)


def _labels(ds: ImageDataset) -> np.ndarray | None:
    from latentdiag.data.preview import dataset_labels

    return dataset_labels(ds)


def save_vector_preview(
    ds: ImageDataset,
    out: str | os.PathLike[str],
    *,
    max_labels: int = 12,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draw the feature heatmap and the PCA scatter of a vector dataset.

    Args:
        ds: A dataset of ``kind == "vectors"``.
        out: Output image (``.png``, ``.jpg``, ``.svg`` or ``.pdf``), written atomically.
        max_labels: Heatmap rows at most (the first labels).
        seed: Which rows are sampled.
        title: Title above the panels (default: the source).

    Returns:
        The path written.

    Raises:
        ReportError: Unsupported output format.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    fig = Figure(figsize=(13.5, 5.6), dpi=100)
    canvas = FigureCanvasAgg(fig)
    if out.suffix.lower().lstrip(".") not in canvas.get_supported_filetypes():
        raise ReportError(
            f"cannot write a preview to {out}: expected .png, .jpg, .svg or .pdf; found "
            f"{out.suffix or 'no suffix'}."
        )
    rng = np.random.default_rng([seed, 0x7EC9])
    n = len(ds)
    f = int(ds.image_shape[0])
    budget = max(_MIN_SAMPLE_ROWS, SAMPLE_VALUES // max(f, 1))
    pick = np.sort(rng.choice(n, size=min(n, SAMPLE_ROWS, budget), replace=False))
    x = vector_rows(ds, pick).astype(np.float64)  # (s, F)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[~(std > 1e-12)] = 1.0
    z = (x - mean) / std  # (s, F) standardized over the sample
    all_labels = _labels(ds)
    labels = None if all_labels is None else all_labels[pick]
    names = list(ds.label_names or [])
    feature_names = _feature_names(ds, x.shape[1])

    if labels is not None and names:
        shown = list(range(min(len(names), max_labels)))
        means = np.stack(
            [
                z[labels == k].mean(axis=0) if np.any(labels == k) else np.zeros(z.shape[1])
                for k in shown
            ]
        )  # (k, F)
        cols, how = _choose_features(means.var(axis=0), "whose label means differ most")
        grid = means[:, cols]
        assert all_labels is not None
        row_names = [f"{names[k]} ({int(np.sum(all_labels == k)):,})" for k in shown]
        heading = "mean of each standardized feature per label"
    else:
        cols, how = _choose_features(x.var(axis=0), "most variable")
        rows = rng.choice(z.shape[0], size=min(z.shape[0], _UNLABELLED_ROWS), replace=False)
        grid = z[np.sort(rows)][:, cols]
        row_names = [f"row {int(pick[r])}" for r in np.sort(rows)]
        heading = "standardized features of random rows (no labels)"
    # The row names fix the left margin (about 6.5 px per character at 9 pt on 1,350 px).
    left = min(0.25, (14 + 6.5 * max(len(r) for r in row_names)) / 1350)
    heat_ax = fig.add_axes((left, 0.30, 0.59 - left, 0.58))
    cbar_ax = fig.add_axes((0.60, 0.30, 0.008, 0.58))
    scatter_ax = fig.add_axes((0.68, 0.12, 0.30, 0.76))
    limit = float(np.max(np.abs(grid))) or 1.0
    image = heat_ax.imshow(
        grid, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    heat_ax.set_yticks(range(len(row_names)), row_names, fontsize=7 if len(row_names) > 12 else 9)
    heat_ax.set_xticks(range(len(cols)), [feature_names[c] for c in cols], rotation=90, fontsize=7)
    which = f"all {f:,} features" if len(cols) == f else f"{len(cols)} of {f:,} features ({how})"
    heat_ax.set_title(f"{heading}: {which}", fontsize=10)
    fig.colorbar(image, cax=cbar_ax).ax.tick_params(labelsize=7)

    _scatter(scatter_ax, z, labels, names[:max_labels], rng)
    text = title if title is not None else (ds.source or "dataset")
    if len(text) > 110:
        text = text[:107] + "…"
    fig.text(0.5, 0.975, f"{text} — vectors: {n:,} × {f:,}", ha="center", va="top", fontsize=11)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=100, facecolor="white")
    return out


def _feature_names(ds: ImageDataset, f: int) -> list[str]:
    base = ds.parent if isinstance(ds, Subset) else ds
    names = getattr(base, "feature_names", None)
    return list(names) if names is not None else [f"f{i}" for i in range(f)]


def _choose_features(score: np.ndarray, how: str) -> tuple[np.ndarray, str]:
    """Column indices of the heatmap: all features, or the :data:`MAX_FEATURES` scoring
    highest (shown in their own order)."""
    if score.size <= MAX_FEATURES:
        return np.arange(score.size), how
    top = np.argsort(-score, kind="stable")[:MAX_FEATURES]
    return np.sort(top), how


def _scatter(
    ax: Any, z: np.ndarray, labels: np.ndarray | None, names: list[str], rng: np.random.Generator
) -> None:
    """The first two principal components of ``z``, coloured by label."""
    cols = np.arange(z.shape[1])
    if z.shape[1] > _PCA_FEATURES:
        cols = np.sort(np.argsort(-z.var(axis=0), kind="stable")[:_PCA_FEATURES])
    sub = np.sort(rng.choice(z.shape[0], size=min(z.shape[0], _SCATTER_POINTS), replace=False))
    centred = z[np.ix_(sub, cols)]
    centred = centred - centred.mean(axis=0)  # (points, ≤ 500)
    if min(centred.shape) < 2:
        ax.text(0.5, 0.5, "too few rows or features for PCA", ha="center", va="center")
        ax.set_axis_off()
        return
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    pcs = u[:, :2] * s[:2]  # (points, 2)
    share = s[:2] ** 2 / max(float(np.sum(s**2)), 1e-12)
    if labels is None or not names:
        ax.scatter(pcs[:, 0], pcs[:, 1], s=4, alpha=0.5, color="tab:gray", linewidths=0)
    else:
        cmap = _colours(len(names))
        for k, name in enumerate(names):
            mask = labels[sub] == k  # labels of the sampled rows
            ax.scatter(
                pcs[mask, 0], pcs[mask, 1], s=4, alpha=0.6, color=cmap[k], label=name,
                linewidths=0,
            )  # fmt: skip
        ax.legend(fontsize=7, markerscale=3, loc="best", frameon=False)
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)", fontsize=9)
    ax.set_ylabel(f"PC2 ({share[1]:.0%})", fontsize=9)
    on = "" if cols.size == z.shape[1] else f", {cols.size:,} most variable features"
    ax.set_title(f"PCA of the standardized features{on}", fontsize=10)
    ax.tick_params(labelsize=7)


def _colours(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]
