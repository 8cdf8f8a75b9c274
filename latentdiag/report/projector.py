"""TensorBoard Projector files: a vectors TSV and a metadata TSV for interactive exploration.

Load the pair at https://projector.tensorflow.org ("Load" → choose both files) or point
TensorBoard's projector plugin at them. The vectors file has one tab-separated row of floats per
sample and no header; the metadata file has a header row (``label``, ``sample_id``, ``row``, then
one entry per metadata column of the file) and one row per sample, in the same order.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

from latentdiag.columns import Column

__all__ = ["DEFAULT_PROJECTOR_ROWS", "projector_tsv"]

# The Projector itself samples 10,000 points for t-SNE and UMAP; more only slows the browser.
DEFAULT_PROJECTOR_ROWS = 10_000


def _cell(value: object) -> str:
    # Tabs and newlines would break the TSV; the Projector has no quoting.
    return " ".join(str(value).replace("\t", " ").split())


def projector_tsv(
    mu: np.ndarray,
    rows: np.ndarray,
    *,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    sample_ids: np.ndarray | None,
    columns: Mapping[str, Column] | None = None,
) -> tuple[str, str]:
    """The two Projector files for the chosen rows, as text.

    Args:
        mu: ``(n, d)`` latents.
        rows: Indices of the rows to export.
        labels: ``(n,)`` label codes, or ``None``.
        label_names: Names of the label codes.
        sample_ids: ``(n,)`` sample ids, or ``None``.
        columns: Metadata columns, each written as one more metadata column (the Projector
            colours by any of them).

    Returns:
        ``(vectors_tsv, metadata_tsv)``.
    """
    vec = io.StringIO()
    np.savetxt(vec, np.asarray(mu[rows], dtype=np.float32), delimiter="\t", fmt="%.6g")
    meta = io.StringIO()
    extra = list((columns or {}).values())
    header = ["label", "sample_id", "row", *(c.name for c in extra)]
    meta.write("\t".join(_cell(h) for h in header) + "\n")
    for i in rows.tolist():
        label = ""
        if labels is not None:
            code = int(labels[i])
            label = label_names[code] if label_names is not None else str(code)
        sid = sample_ids[i] if sample_ids is not None else ""
        cells = [_cell(label), _cell(sid), str(i), *(_cell(_value(c, i)) for c in extra)]
        meta.write("\t".join(cells) + "\n")
    return vec.getvalue(), meta.getvalue()


def _value(col: Column, i: int) -> str:
    """One row's value of a column as Projector text ("" for a missing one)."""
    v = col.values[i]
    if col.categories is not None:
        return "" if v < 0 else col.categories[int(v)]
    if col.values.dtype.kind == "f" and np.isnan(v):
        return ""
    return str(v.item() if hasattr(v, "item") else v)
