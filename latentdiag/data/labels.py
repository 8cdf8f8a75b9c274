"""Labels: reading a labels file and checking label arrays against the images they name.

Rules, the same for every array source:

* one label per image: a length that differs is an error;
* ``(N,)`` or ``(N, 1)``; a multi-label ``(N, k)`` array is dropped with a warning (latentdiag
  groups by one label per image);
* integer values, or strings (which become label names, sorted naturally);
* with label names, values must lie in 0..k-1; without, any integers are mapped to 0..k-1 in
  sorted order (with a warning unless they already are 0..k-1), the names keeping the values.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentdiag.data._common import examples, natural_sorted, warn
from latentdiag.errors import DataError

__all__ = ["check_labels", "read_labels_file"]

_HEADER_NAMES = {"label", "labels", "class", "classes", "target", "y", "category", "modality"}


def read_labels_file(path: str) -> np.ndarray:
    """Read labels from a ``.npy`` array or a ``.csv`` / ``.txt`` file.

    A CSV holds one label per line, or several columns of which the last is the label (e.g.
    ``filename,label``); a first line whose last field is a name such as ``label`` or
    ``class`` is a header. Labels may be integers or strings.

    Returns:
        The raw labels: an integer array, or a string array.

    Raises:
        DataError: The file is missing, of another kind, or empty.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file {path} does not exist; expected a .npy or .csv file.")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            return np.asarray(np.load(p, allow_pickle=False))
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read labels file {path} as .npy: {exc}.") from exc
    if suffix not in (".csv", ".txt", ".tsv"):
        raise DataError(
            f"labels file {path} has suffix {suffix or '(none)'}; expected .npy, .csv or .txt."
        )
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels file {path}: {exc}.") from exc
    delimiter = "\t" if suffix == ".tsv" or ("\t" in text and "," not in text) else ","
    rows = [
        r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(f.strip() for f in r)
    ]
    values = [r[-1].strip() for r in rows]
    if values and values[0].lower() in _HEADER_NAMES:
        values = values[1:]
    if not values:
        raise DataError(f"labels file {path} holds no labels; expected one label per line.")
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        pass
    try:
        as_float = np.array([float(v) for v in values])
    except ValueError:
        return np.array(values, dtype=str)
    return as_float


def check_labels(
    raw: np.ndarray,
    *,
    n_images: int,
    label_names: Sequence[str] | None,
    where: str,
) -> tuple[np.ndarray | None, list[str] | None]:
    """Validate labels for ``n_images`` images and settle their names.

    Args:
        raw: The labels as stored.
        n_images: Number of images they must match.
        label_names: Names stored with the labels, or None.
        where: The source, for messages.

    Returns:
        (int64 labels in 0..k-1, k label names), or (None, None) when the labels are
        multi-label and were dropped.

    Raises:
        DataError: Wrong length, non-integer numbers, or values outside the named range.
    """
    arr = np.asarray(raw)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2 and arr.shape[0] == n_images and arr.shape[1] > 1:
        warn(
            f"{where}: labels of shape {arr.shape} are multi-label; latentdiag needs one label "
            "per image, so the data is read without labels (pass a labels file to add some)."
        )
        return None, None
    if arr.ndim != 1:
        raise DataError(
            f"{where}: expected labels of shape ({n_images},); found shape {arr.shape}."
        )
    if arr.shape[0] != n_images:
        raise DataError(
            f"{where}: {arr.shape[0]:,} labels for {n_images:,} images; expected one label per "
            "image; check that the labels belong to these images."
        )
    if arr.dtype.kind in "US":
        names = natural_sorted({str(v) for v in arr.tolist()})
        lookup = {name: i for i, name in enumerate(names)}
        return np.array([lookup[str(v)] for v in arr.tolist()], dtype=np.int64), names
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][:3]
            raise DataError(
                f"{where}: labels must be integers; found values such as "
                f"{', '.join(f'{v:g}' for v in bad)}."
            )
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers or strings; found dtype {arr.dtype}.")
    labels = arr.astype(np.int64)
    if label_names is not None:
        names = [str(n) for n in label_names]
        k = len(names)
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise DataError(
                f"{where}: label values must lie in 0..{k - 1} for the {k} label names; found "
                f"{int(labels.min())}..{int(labels.max())}; fix the labels or the label names."
            )
        return labels, names
    values = np.unique(labels)
    if values.size and (values[0] != 0 or values[-1] != values.size - 1):
        shown = examples([str(v) for v in values.tolist()], k=6)
        warn(
            f"{where}: label values are not 0..k-1 (found {shown}); mapped to "
            f"0..{values.size - 1} in sorted order, the label names keeping the values."
        )
        return np.searchsorted(values, labels).astype(np.int64), [str(v) for v in values]
    return labels, [str(v) for v in values.tolist()]
