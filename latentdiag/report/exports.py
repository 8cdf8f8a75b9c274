"""Latents for the viewers people already use: Apple's embedding-atlas and TensorBoard's
Embedding Projector (``latentdiag explore --atlas FILE --projector DIR``).

* :func:`write_atlas`: one Parquet file with ``id``, ``projection_x`` / ``projection_y``,
  ``vector`` (the latent mean), every metadata column and factor, ``neighbors`` (the exact 15
  nearest rows as ``{"ids": [...], "distances": [...]}``, embedding-atlas' format) and, when
  DATA is images, ``image`` (PNG bytes in Hugging Face's ``{"bytes", "path"}`` form). Open it
  with ``embedding-atlas atlas.parquet --x projection_x --y projection_y --neighbors
  neighbors``.
* :func:`write_projector`: ``vectors.tsv``, ``metadata.tsv``, ``sprite.png`` (thumbnails, when
  DATA is images) and ``projector_config.pbtxt``, which TensorBoard reads from its log folder
  (``tensorboard --logdir DIR``). At most 100,000 rows (the Projector's own limit) and a sprite
  of at most 8,192 × 8,192 pixels.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.atomic import atomic_write_with
from latentdiag.errors import ReportError

__all__ = ["ATLAS_NEIGHBOURS", "PROJECTOR_ROWS", "write_atlas", "write_projector"]

#: Neighbours per row in the atlas' ``neighbors`` column.
ATLAS_NEIGHBOURS = 15
#: The Projector's limit on points.
PROJECTOR_ROWS = 100_000
_SPRITE_PX = 8192


def _rows(store: Any, max_points: int, seed: int) -> np.ndarray:
    from latentdiag.report.projections import stratified_sample

    labels = store.labels if store.has_labels else None
    return stratified_sample(store.n_samples, max_points, labels=labels, random_state=seed)


def _atomic(path: Path, write: Any) -> None:
    atomic_write_with(path, write)


def _png(tile: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(tile).save(buf, format="PNG")
    return buf.getvalue()


def write_atlas(
    store: Any,
    out: str | os.PathLike[str],
    *,
    data: Any = None,
    projection: str = "pca",
    max_points: int = 1_000_000,
    seed: int = 0,
    image_size: int = 64,
) -> Path:
    """Write an embedding-atlas Parquet file of an open latents file (see the module doc).

    Returns:
        The path written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latentdiag.metrics.knn_graph import exact_knn_graph
    from latentdiag.report.explore import _project, thumbnail

    rows = _rows(store, max_points, seed)
    mu = np.asarray(store.mu[rows], dtype=np.float32)
    xy = _project(mu, projection, seed)
    k = min(ATLAS_NEIGHBOURS, len(rows) - 1)
    if k < 1:
        raise ReportError("an atlas needs at least 2 rows.")
    graph = exact_knn_graph(mu, k)
    ids = store.sample_ids
    table: dict[str, Any] = {
        "id": pa.array(np.arange(len(rows), dtype=np.int64)),
        "row": pa.array(rows.astype(np.int64)),
        "sample_id": pa.array(
            [str(s) for s in np.asarray(ids)[rows]] if ids is not None else [str(r) for r in rows]
        ),
        "projection_x": pa.array(xy[:, 0]),
        "projection_y": pa.array(xy[:, 1]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(mu.reshape(-1)), mu.shape[1]),
    }
    for name, col in store.columns.items():
        taken = col.take(rows)
        if taken.is_categorical:
            cats = [str(c) for c in taken.categories or ()]
            codes = np.asarray(taken.values, dtype=np.int64)
            table[name] = pa.array([cats[c] if c >= 0 else None for c in codes])
        else:
            table[name] = pa.array(np.asarray(taken.values, dtype=np.float64))
    if store.has_factors:
        factors = np.asarray(store.read("factors", rows), dtype=np.float64)
        for i, name in enumerate(store.factor_names or []):
            table[f"factor_{name}"] = pa.array(factors[:, i])
    neighbour_type = pa.struct(
        [("ids", pa.list_(pa.int64())), ("distances", pa.list_(pa.float32()))]
    )
    table["neighbors"] = pa.array(
        [
            {
                "ids": graph.indices[i].tolist(),
                "distances": graph.distances[i].astype(float).tolist(),
            }
            for i in range(len(rows))
        ],
        type=neighbour_type,
    )
    if data is not None:
        index = store.index
        items = np.asarray(index)[rows] if index is not None else rows
        n_data = len(data)
        images = [
            {
                "bytes": _png(thumbnail(data, int(items[i]), int(rows[i]), n_data, image_size)),
                "path": None,
            }
            for i in range(len(rows))
        ]
        table["image"] = pa.array(
            images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        )
    target = Path(out)
    _atomic(target, lambda p: pq.write_table(pa.table(table), p))
    return target


_CONFIG = """embeddings {{
  tensor_name: "latents"
  tensor_path: "vectors.tsv"
  metadata_path: "metadata.tsv"{sprite}
}}
"""
_SPRITE = """
  sprite {{
    image_path: "sprite.png"
    single_image_dim: {size}
    single_image_dim: {size}
  }}"""


def write_projector(
    store: Any,
    out_dir: str | os.PathLike[str],
    *,
    data: Any = None,
    max_points: int = PROJECTOR_ROWS,
    seed: int = 0,
) -> list[Path]:
    """Write the Projector's files for an open latents file (see the module doc).

    Returns:
        The files written.
    """
    from PIL import Image

    from latentdiag.report.explore import thumbnail
    from latentdiag.report.projector import projector_tsv

    rows = _rows(store, min(max_points, PROJECTOR_ROWS), seed)
    vectors, meta = projector_tsv(
        store.mu,
        rows,
        labels=store.labels if store.has_labels else None,
        label_names=store.label_names,
        sample_ids=store.sample_ids,
        columns={k: c for k, c in store.columns.items() if k != store.label_key},
    )
    folder = Path(out_dir)
    written = []
    for name, text in (("vectors.tsv", vectors), ("metadata.tsv", meta)):
        _atomic(folder / name, lambda p, t=text: p.write_text(t, encoding="utf-8"))
        written.append(folder / name)
    sprite = ""
    if data is not None:
        per_side = int(np.ceil(np.sqrt(len(rows))))
        size = max(8, min(64, _SPRITE_PX // per_side))
        canvas = np.zeros((per_side * size, per_side * size, 3), dtype=np.uint8)
        index = store.index
        items = np.asarray(index)[rows] if index is not None else rows
        n_data = len(data)
        for j, r in enumerate(rows):
            y0, x0 = divmod(j, per_side)
            tile = thumbnail(data, int(items[j]), int(r), n_data, size)
            canvas[y0 * size : (y0 + 1) * size, x0 * size : (x0 + 1) * size] = tile
        _atomic(folder / "sprite.png", lambda p: Image.fromarray(canvas).save(p, format="PNG"))
        written.append(folder / "sprite.png")
        sprite = _SPRITE.format(size=size)
    config = _CONFIG.format(sprite=sprite)
    _atomic(folder / "projector_config.pbtxt", lambda p: p.write_text(config, encoding="utf-8"))
    written.append(folder / "projector_config.pbtxt")
    return written
