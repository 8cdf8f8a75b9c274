"""``latentdiag explore``: one self-contained, interactive HTML page of every latent point.

The page draws a 2-D projection of every row (or a stratified sample above ``max_points``) on
a canvas with its own renderer: points are written straight into the canvas's pixel buffer, so
100,000 of them redraw in a few milliseconds while panning and zooming, with no WebGL and no
library (a plotting library would add megabytes and, for its fast WebGL mode, a GPU that
headless and remote browsers often lack). Everything the page needs is inside it: the
coordinates and columns as base64 typed arrays, the thumbnails as JPEG sprite sheets, the
script and the styles; it makes no request.

What the page offers: colour by any metadata column, factor or the label (categorical columns
get the report's palette, numeric ones a colour ramp); a choice of space (the whole latent
vector or one partition); hover shows the row's id, its values and, when DATA is images, its
thumbnail; shift-drag selects a box and lists the selection's composition by the colour column;
search finds a row by id.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.atomic import atomic_write_text
from latentdiag.errors import DataError, ReportError

__all__ = ["DEFAULT_MAX_POINTS", "DEFAULT_THUMBNAILS", "ExploreResult", "build_explorer"]

#: Rows drawn at most; above it, a stratified sample (every label keeps its share).
DEFAULT_MAX_POINTS = 100_000
#: Rows that get a thumbnail at most (a stratified sample of the drawn rows).
DEFAULT_THUMBNAILS = 5_000
#: Thumbnail side in pixels, and tiles per side of one sprite sheet.
THUMB = 32
_SHEET = 64
#: Categories a column may have to be offered as a colour (more: shown on hover only).
_MAX_CATEGORIES = 256
_PROJECTIONS = ("pca", "umap")


@dataclass
class ExploreResult:
    """What ``build_explorer`` wrote."""

    path: Path
    n_rows: int  # rows in the file
    n_points: int  # rows drawn
    n_thumbnails: int
    spaces: list[str]
    projection: str
    bytes: int
    seconds: float


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _quantised(xy: np.ndarray) -> np.ndarray:
    """Coordinates in [-1, 1] as uint16 (a step of 1/32,768 of the plot: finer than a pixel at
    any zoom the page allows); half the bytes of float32."""
    return np.round((np.clip(xy, -1.0, 1.0) + 1.0) * 32767.5).astype(np.uint16)


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(m, 2) float32 coordinates, scaled into [-1, 1] on their larger side."""
    from latentdiag.report.projections import project

    if x.shape[1] == 1:
        xy = np.column_stack([x[:, 0], np.zeros(len(x))])
    elif x.shape[1] == 2 and method == "pca":
        xy = x - x.mean(axis=0)
    else:
        xy = project(method, x, np.arange(len(x)), random_state=seed).coords
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy - (xy.max(axis=0) + xy.min(axis=0)) / 2.0
    half = float(np.abs(xy).max()) or 1.0
    return (xy / half).astype(np.float32)


def _columns(store: Any, rows: np.ndarray) -> list[dict[str, Any]]:
    """The colour-by and hover columns: every metadata column, then the factors."""
    out: list[dict[str, Any]] = []
    for name, col in store.columns.items():
        taken = col.take(rows)
        if taken.is_categorical:
            cats = [str(c) for c in (taken.categories or ())]
            codes = np.asarray(taken.values, dtype=np.int64)
            dtype = np.uint8 if len(cats) < 255 else np.uint16 if len(cats) < 65535 else np.int32
            stored = np.where(codes < 0, np.iinfo(dtype).max, codes).astype(dtype)
            out.append(
                {
                    "name": name,
                    "kind": "categorical",
                    "categories": cats,
                    "dtype": np.dtype(dtype).name,
                    "data": _b64(stored),
                    "colour": len(cats) <= _MAX_CATEGORIES,
                }
            )
        else:
            values = np.asarray(taken.values, dtype=np.float32)
            out.append(_numeric(name, values))
    if store.has_factors:
        factors = np.asarray(store.read("factors", rows), dtype=np.float32)
        names = list(store.factor_names or [f"factor {i}" for i in range(factors.shape[1])])
        for i, name in enumerate(names):
            out.append(_numeric(f"factor: {name}", factors[:, i]))
    return out


def _numeric(name: str, values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return {
        "name": name,
        "kind": "numeric",
        "dtype": "float32",
        "data": _b64(values.astype(np.float32)),
        "min": lo,
        "max": hi,
        "colour": True,
    }


def thumbnail(data: Any, item: int, row: int, n_data: int, size: int = THUMB) -> np.ndarray:
    """Item ``item`` of ``data`` as a (size, size, 3) uint8 thumbnail.

    Raises:
        DataError: ``item`` is not an item of DATA (the latents came from other data).
    """
    from PIL import Image

    if not 0 <= item < n_data:
        raise DataError(
            f"the latents file's row {row} comes from item {item} of its data, but DATA has "
            f"{n_data:,} items; give the DATA the file was embedded from."
        )
    img = np.asarray(data[item]["image"], dtype=np.float32)  # (C, H, W) in [0, 1]
    arr = np.clip(img, 0.0, 1.0)
    arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr[:3]
    pil = Image.fromarray((arr.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))


def _thumbnails(
    data: Any, item_index: np.ndarray, pick: np.ndarray, say: Callable[[str], None]
) -> tuple[list[str], np.ndarray]:
    """JPEG sprite sheets of the picked rows' images, and each drawn row's tile (-1: none)."""
    from PIL import Image

    tile_of = np.full(len(item_index), -1, dtype=np.int32)
    sheets: list[str] = []
    per_sheet = _SHEET * _SHEET
    n_data = len(data)
    for start in range(0, len(pick), per_sheet):
        chunk = pick[start : start + per_sheet]
        rows = -(-len(chunk) // _SHEET)
        canvas = np.full((rows * THUMB, _SHEET * THUMB, 3), 128, dtype=np.uint8)
        for j, r in enumerate(chunk):
            y0, x0 = divmod(j, _SHEET)
            tile = thumbnail(data, int(item_index[r]), int(r), n_data)
            canvas[y0 * THUMB : (y0 + 1) * THUMB, x0 * THUMB : (x0 + 1) * THUMB] = tile
            tile_of[r] = start + j
        buf = io.BytesIO()
        # JPEG: a third of PNG's size on textured images (noise does not compress losslessly).
        Image.fromarray(canvas).save(buf, format="JPEG", quality=88)
        sheets.append(base64.b64encode(buf.getvalue()).decode("ascii"))
        say(f"thumbnails: {min(start + per_sheet, len(pick)):,} of {len(pick):,}")
    return sheets, tile_of


def build_explorer(
    latents: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: Any = None,
    projection: str = "pca",
    max_points: int = DEFAULT_MAX_POINTS,
    thumbnails: int = DEFAULT_THUMBNAILS,
    seed: int = 0,
    label_key: str | None = None,
    batch_key: str | None = None,
    obsm: str | None = None,
    logvar_obsm: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExploreResult:
    """Write the explorer page of a latents file.

    Args:
        latents: A latents file or ``.h5ad``.
        out: The HTML file to write (atomically).
        data: The data the latents were embedded from (an opened data source), for thumbnails:
            row i shows ``data[index[i]]["image"]``.
        projection: ``pca`` (all rows) or ``umap`` (on the drawn rows).
        max_points: Rows drawn at most; above it a stratified sample by label.
        thumbnails: Rows with a thumbnail at most (a stratified sample of those drawn).
        seed: Seed of the samples and of UMAP.
        label_key, batch_key, obsm, logvar_obsm: As for every command that reads latents.
        progress: Told each step in one line.

    Returns:
        An :class:`ExploreResult`.

    Raises:
        ReportError: Bad options. StoreError: an unreadable file. DataError: DATA does not
            fit the file (vectors, or fewer items than the file's rows came from).
    """
    from latentdiag.report.projections import stratified_sample
    from latentdiag.store import open_latents

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    if projection not in _PROJECTIONS:
        raise ReportError(f"--projection must be pca or umap; got {projection!r}.")
    if max_points < 10 or thumbnails < 0:
        raise ReportError("--max-points must be at least 10 and --thumbnails at least 0.")
    if data is not None and getattr(data, "kind", "images") != "images":
        raise DataError(
            "--data gives thumbnails of images; this DATA holds vectors. Leave out --data "
            "for vector data (hover still shows each row's columns)."
        )
    target = Path(out)
    with open_latents(
        latents, label_key=label_key, batch_key=batch_key, obsm=obsm, logvar_obsm=logvar_obsm
    ) as store:
        n = store.n_samples
        labels = store.labels if store.has_labels else None
        rows = stratified_sample(n, max_points, labels=labels, random_state=seed)
        mu = store.mu
        spaces = {"z (all dimensions)": (0, mu.shape[1])}
        spaces.update({f"{k} [{a}, {b})": (a, b) for k, (a, b) in store.partitions.items()})
        coords = []
        for name, (a, b) in spaces.items():
            say(f"projecting {len(rows):,} rows of {name} ({projection.upper()})")
            xy = _quantised(_project(mu[rows, a:b], projection, seed))
            coords.append({"name": name, "xy": _b64(xy)})
        columns = _columns(store, rows)
        ids = store.sample_ids
        id_list = (
            [str(s) for s in np.asarray(ids)[rows]] if ids is not None else [str(r) for r in rows]
        )
        sheets: list[str] = []
        tile_of = np.full(len(rows), -1, dtype=np.int32)
        if data is not None and thumbnails > 0:
            index = store.index
            item_index = np.asarray(index)[rows] if index is not None else rows
            sub_labels = labels[rows] if labels is not None else None
            pick = stratified_sample(len(rows), thumbnails, labels=sub_labels, random_state=seed)
            sheets, tile_of = _thumbnails(data, item_index, pick, say)
        payload = {
            "title": Path(os.fspath(latents)).name,
            "n_rows": int(n),
            "n_points": len(rows),
            "rows": _b64(rows.astype(np.int32)),
            "ids": id_list,
            "spaces": coords,
            "projection": projection,
            "columns": columns,
            "default_colour": store.label_key if store.has_labels else None,
            "thumb": THUMB,
            "sheet": _SHEET,
            "sheets": sheets,
            "tile_of": _b64(tile_of),
        }
    say("writing the page")
    page = _page(payload)
    atomic_write_text(target, page)
    return ExploreResult(
        path=target,
        n_rows=int(n),
        n_points=len(rows),
        n_thumbnails=int((tile_of >= 0).sum()),
        spaces=list(spaces),
        projection=projection,
        bytes=target.stat().st_size,
        seconds=time.perf_counter() - t0,
    )


def _page(payload: dict[str, Any]) -> str:
    from latentdiag.report.explore_page import PAGE
    from latentdiag.report.palette import OKABE_ITO, TOL_MUTED

    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    palette = json.dumps([*OKABE_ITO, *TOL_MUTED])
    return (
        PAGE.replace("__TITLE__", _escape(str(payload["title"])))
        .replace("__PALETTE__", palette)
        .replace("__DATA__", data)
    )


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def explorer_summary(result: ExploreResult) -> Sequence[str]:
    """Lines for the command's output."""
    size = result.bytes / 1e6
    lines = [
        f"wrote {result.path} ({size:.1f} MB) in {result.seconds:.1f} s: {result.n_points:,} of "
        f"{result.n_rows:,} rows drawn ({result.projection.upper()}), "
        f"{result.n_thumbnails:,} thumbnails, spaces: {', '.join(result.spaces)}"
    ]
    if result.n_points < result.n_rows:
        lines.append(
            f"note: {result.n_rows:,} rows are more than --max-points; a stratified sample of "
            f"{result.n_points:,} is drawn (every label keeps its share)."
        )
    return lines
