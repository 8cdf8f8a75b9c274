"""A labelled grid of example images from any dataset (``latentdiag data preview``); vector
data gets a feature heatmap and a PCA scatter instead (:mod:`latentdiag.data.vector_preview`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from latentdiag.data._common import atomic_output
from latentdiag.data.base import ImageDataset, Subset
from latentdiag.errors import ReportError

__all__ = ["dataset_labels", "save_preview"]

_LABEL_MARGIN_PX = 170
_TITLE_PX = 44


def dataset_labels(ds: ImageDataset) -> np.ndarray | None:
    """The (N,) label array of a dataset without decoding images where the source keeps one;
    None for unlabelled data."""
    if not ds.has_labels:
        return None
    if isinstance(ds, Subset):
        parent = dataset_labels(ds.parent)
        return None if parent is None else parent[ds.indices]
    labels = getattr(ds, "labels", None)
    if isinstance(labels, np.ndarray) and labels.shape == (len(ds),):
        return labels
    return np.array([int(ds[i]["label"]) for i in range(len(ds))], dtype=np.int64)


def save_preview(
    ds: ImageDataset,
    out: str | os.PathLike[str],
    *,
    per_label: int = 8,
    max_labels: int = 12,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draw ``per_label`` random images of each label in a row, the label name on the left.

    Unlabelled data gets a plain grid of ``4 × per_label`` images. Images are shown at an
    integer zoom with nearest-neighbour pixels, so what you see is what a model gets. Vector
    data (``ds.kind == "vectors"``) gets a per-label feature heatmap and a PCA scatter
    (:func:`~latentdiag.data.vector_preview.save_vector_preview`; ``per_label`` unused).

    Args:
        ds: Any dataset.
        out: Output image (``.png``, ``.jpg``, ``.svg`` or ``.pdf``), written atomically.
        per_label: Columns of the grid.
        max_labels: Rows shown at most (the first labels).
        seed: Which images are picked.
        title: Title above the grid (default: the source).

    Returns:
        The path written.

    Raises:
        ReportError: Unsupported output format, or ``per_label`` < 1.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out)
    if per_label < 1:
        raise ReportError(f"images per label must be at least 1; got {per_label}.")
    if ds.kind == "vectors":
        from latentdiag.data.vector_preview import save_vector_preview

        return save_vector_preview(ds, out, max_labels=max_labels, seed=seed, title=title)
    rng = np.random.default_rng([seed, 0x9AE7])
    labels = dataset_labels(ds)
    rows: list[tuple[str, np.ndarray]] = []
    if labels is None or ds.label_names is None:
        pick = np.sort(rng.choice(len(ds), size=min(len(ds), 4 * per_label), replace=False))
        rows = [("", pick[i : i + per_label]) for i in range(0, pick.size, per_label)]
    else:
        for value, name in enumerate(ds.label_names[:max_labels]):
            idx = np.flatnonzero(labels == value)
            chosen = rng.choice(idx, size=min(idx.size, per_label), replace=False)
            rows.append((f"{name}\n({idx.size:,})", np.sort(chosen)))

    s, c = ds.size, ds.channels
    zoom = max(1, round(96 / s))
    pad = max(1, s // 16)
    cell = s + pad
    width_px = _LABEL_MARGIN_PX + per_label * cell * zoom + 16
    row_px = s * zoom + 10
    height_px = _TITLE_PX + len(rows) * row_px + 8
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    if out.suffix.lower().lstrip(".") not in canvas.get_supported_filetypes():
        raise ReportError(
            f"cannot write a preview to {out}: expected .png, .jpg, .svg or .pdf; found "
            f"{out.suffix or 'no suffix'}."
        )
    for r, (name, idx) in enumerate(rows):
        mosaic = np.ones((c, s, per_label * cell - pad), dtype=np.float32)
        for j, i in enumerate(idx):
            mosaic[:, :, j * cell : j * cell + s] = ds[int(i)]["image"]
        left = _LABEL_MARGIN_PX / width_px
        bottom = 1 - (_TITLE_PX + (r + 1) * row_px - 5) / height_px
        ax = fig.add_axes(
            (left, bottom, (per_label * cell - pad) * zoom / width_px, s * zoom / height_px)
        )
        if c == 1:
            ax.imshow(mosaic[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(mosaic.transpose(1, 2, 0), interpolation="nearest")
        ax.set_axis_off()
        if name:
            fig.text(
                left - 8 / width_px,
                bottom + s * zoom / height_px / 2,
                name,
                ha="right",
                va="center",
                fontsize=10,
            )
    text = title if title is not None else (ds.source or "dataset")
    if len(text) > 110:
        text = text[:107] + "…"
    fig.text(0.5, 1 - 14 / height_px, text, ha="center", va="top", fontsize=11)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=dpi, facecolor="white")
    return out
