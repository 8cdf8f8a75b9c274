"""Figures and files of ``gencheck``: sample grids per label beside real ones, the confusion
matrix, and the folder that ``gencheck -o DIR`` writes and ``report --generation DIR`` reads;
and the figure of a ``latentdiag.track`` log (:func:`track_figure`), the other report section
that comes from outside the latents file.

A gencheck folder holds ``generation.json`` (the result, as ``gencheck --json`` prints it),
``samples.npz`` (up to 8 generated and 8 real held-out samples per label), ``samples.png`` and
``confusion.png``. ``generation.json`` is written last, each file atomically, so a folder
with a ``generation.json`` is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from latentdiag.atomic import atomic_write_bytes
from latentdiag.errors import ReportError
from latentdiag.report.figures import _figure, plain, to_png
from latentdiag.report.palette import SEQUENTIAL_CMAP

__all__ = [
    "GencheckFolder",
    "confusion_figure",
    "read_gencheck",
    "samples_figure",
    "track_figure",
    "write_gencheck_folder",
]


def _tile(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """(m, C, H, W) in [0, 1] -> one (H', W', 3) float row."""
    m, c, h, w = images.shape
    arr = np.repeat(images, 3, axis=1) if c == 1 else images[:, :3]
    row = np.full((h + 2 * pad, m * (w + pad) + pad, 3), 0.5, dtype=np.float32)
    for i in range(m):
        x0 = pad + i * (w + pad)
        row[pad : pad + h, x0 : x0 + w] = np.clip(arr[i].transpose(1, 2, 0), 0.0, 1.0)
    return row


def samples_figure(
    generated: Mapping[str, np.ndarray], real: Mapping[str, np.ndarray], *, title: str
) -> Figure:
    """Per label, real held-out samples (left) beside samples generated for it (right).

    Images are drawn as tiles; vectors as heatmaps of their features (rows: samples), real and
    generated on one colour scale per label.
    """
    names = list(generated)
    k = len(names)
    is_images = bool(names) and np.asarray(generated[names[0]]).ndim == 4
    fig = _figure(10.0, max(1.8, 0.7 + 0.75 * k))
    axes = fig.subplots(k, 2, squeeze=False)
    for i, name in enumerate(names):
        gen, ref = np.asarray(generated[name]), np.asarray(real[name])
        for j, (arr, what) in enumerate(((ref, "real"), (gen, "generated"))):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if len(arr) == 0:
                ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            elif is_images:
                ax.imshow(_tile(arr), interpolation="nearest")
            else:
                both = np.concatenate([ref, gen]) if len(ref) else gen
                lo, hi = np.percentile(both, [2, 98]) if both.size else (0.0, 1.0)
                ax.imshow(arr, aspect="auto", cmap=SEQUENTIAL_CMAP, vmin=lo, vmax=hi)
            if i == 0:
                ax.set_title(what, fontsize=10)
            if j == 0:
                ax.set_ylabel(plain(name, 18), rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig


def confusion_figure(
    matrix: Sequence[Sequence[int]], label_names: Sequence[str], *, title: str
) -> Figure:
    """Row-normalised confusion matrix: the label asked for (rows) and the judge's (columns)."""
    m = np.asarray(matrix, dtype=float)
    k = m.shape[0]
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    size = float(np.clip(2.5 + 0.45 * k, 4.0, 9.0))
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0)
    names = [plain(n, 18) for n in label_names]
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("label the judge sees")
    ax.set_ylabel("label asked for")
    if k <= 12:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if share[i, j] > 0.6 else "white",
                )
    fig.colorbar(im, ax=ax, label="share of the row's samples", shrink=0.8)
    ax.set_title(title)
    return fig


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def write_gencheck_folder(
    out: str | os.PathLike[str], result: Any, doc: Mapping[str, Any]
) -> list[Path]:
    """Write a gencheck folder (see the module docstring); returns the files written."""
    import io

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    section = doc["generation"]
    names = list(section["label_names"])
    buf = io.BytesIO()
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        arrays[f"generated_{i}"] = np.asarray(result.generated[name], dtype=np.float32)
        arrays[f"real_{i}"] = np.asarray(result.real[name], dtype=np.float32)
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    written = []
    for name, data in (
        ("samples.npz", buf.getvalue()),
        (
            "samples.png",
            to_png(samples_figure(result.generated, result.real, title=_title(section))),
        ),
        (
            "confusion.png",
            to_png(
                confusion_figure(
                    section["confusion_matrix"], names, title="What the judge sees, per label"
                )
            ),
        ),
        ("generation.json", (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()),
    ):
        _atomic_write(folder / name, data)
        written.append(folder / name)
    return written


def _title(section: Mapping[str, Any]) -> str:
    acc = section["condition_accuracy"]
    return f"Real (left) and generated (right) per label — condition accuracy {acc:.2f}"


class GencheckFolder:
    """A gencheck result read back: the JSON document and the example samples per label."""

    def __init__(
        self,
        path: Path,
        doc: dict[str, Any],
        generated: dict[str, np.ndarray],
        real: dict[str, np.ndarray],
    ) -> None:
        self.path = path
        self.doc = doc
        self.section: dict[str, Any] = doc["generation"]
        self.generated = generated
        self.real = real
        self.notes: list[str] = list(doc.get("notes") or [])


def read_gencheck(path: str | os.PathLike[str]) -> GencheckFolder:
    """Read a gencheck folder, or a bare ``generation.json`` (then without samples).

    Raises:
        ReportError: Nothing gencheck wrote is there, or it is not readable.
    """
    p = Path(path)
    json_path = p / "generation.json" if p.is_dir() else p
    if not json_path.is_file():
        raise ReportError(
            f"no gencheck result at {p} (expected a folder written by `latentdiag gencheck -o "
            "DIR`, or its generation.json)."
        )
    try:
        doc = json.loads(json_path.read_text())
        section = doc["generation"]
        names = [str(n) for n in section["label_names"]]
        missing = [
            k for k in ("condition_accuracy", "confusion_matrix", "judge") if k not in section
        ]
        if missing:
            raise KeyError(missing[0])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(
            f"{json_path} is not a gencheck result ({type(exc).__name__}: {exc}); write it "
            "again with `latentdiag gencheck -o DIR`."
        ) from None
    generated: dict[str, np.ndarray] = {}
    real: dict[str, np.ndarray] = {}
    npz = json_path.parent / "samples.npz"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                for i, name in enumerate(names):
                    generated[name] = z[f"generated_{i}"]
                    real[name] = z[f"real_{i}"]
        except (OSError, ValueError, KeyError) as exc:
            raise ReportError(f"{npz} cannot be read ({exc}); run gencheck -o again.") from None
    return GencheckFolder(json_path.parent, doc, generated, real)


# -- metrics during training (latentdiag.track) ---------------------------------------------

#: Metrics a track figure shows first, when the log has them (then the others, by name).
_TRACK_FIRST = (
    "separation.silhouette",
    "separation.centroid_distance.mean",
    "separation.knn_accuracy",
    "information.active_units",
    "train.loss",
    "heldout.heldout_recon",
)
_TRACK_PANELS = 6


def track_figure(records: Sequence[Mapping[str, Any]], *, title: str) -> Figure:
    """Small multiples of a track log's metrics over epochs; a metric's partitions share its
    panel (``partitions.<name>.<metric>`` drawn beside ``<metric>``)."""
    keys: list[str] = []
    seen = {k for r in records for k in r["metrics"]}
    base = sorted({k.split(".", 2)[2] if k.startswith("partitions.") else k for k in seen})
    for k in (*_TRACK_FIRST, *base):
        if k in seen and k not in keys and not k.startswith("partitions."):
            keys.append(k)
    keys = keys[:_TRACK_PANELS]
    cols = 3 if len(keys) > 4 else max(1, len(keys))
    rows = max(1, -(-len(keys) // cols))
    fig = _figure(3.4 * cols, 2.5 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False)
    parts = sorted({k.split(".")[1] for k in seen if k.startswith("partitions.")})
    epochs = [int(r["epoch"]) for r in records]
    for ax, key in zip(axes.flat, keys, strict=False):
        series = [("z", key), *((p, f"partitions.{p}.{key}") for p in parts)]
        for name, full in series:
            ys = [r["metrics"].get(full) for r in records]
            if all(v is None for v in ys):
                continue
            values = [np.nan if v is None else float(v) for v in ys]
            ax.plot(epochs, values, marker="o", markersize=3, label=plain(name, 16))
        ax.set_title(plain(key, 40), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(True, color="#dddddd", linewidth=0.6)
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig
