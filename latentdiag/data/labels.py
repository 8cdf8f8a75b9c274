"""Labels: reading a labels file and checking label arrays against the images they name.

Rules, the same for every array source:

* one label per image: a length that differs is an error;
* ``(N,)`` or ``(N, 1)``; a multi-label ``(N, k)`` array is dropped with a warning (latentdiag
  groups by one label per image);
* integer values, or strings (which become label names, sorted naturally);
* with label names, values must lie in 0..k-1; without, any integers are mapped to 0..k-1 in
  sorted order (with a warning unless they already are 0..k-1), the names keeping the values.

A CSV / TSV labels file may hold several columns (``filename,label,site,age``): every column is
read (:class:`LabelTable`) and becomes a metadata column of the dataset; one of them is the label
(:func:`settle_labels`), the one ``label_key`` names or else the default one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentdiag.columns import (
    Column,
    categorical_column,
    check_column_name,
    column_from_values,
    select_groupings,
)
from latentdiag.data._common import count, examples, natural_sorted, warn
from latentdiag.errors import ConfigError, DataError

__all__ = [
    "LabelTable",
    "SettledLabels",
    "check_column_exists",
    "check_labels",
    "choose_label_column",
    "is_label_name",
    "read_labels_file",
    "settle_labels",
]

_HEADER_NAMES = {
    "label",
    "labels",
    "class",
    "classes",
    "target",
    "y",
    "category",
    "modality",
    "cell_type",
    "celltype",
}
_SNIFF_ROWS = 21  # rows csv.Sniffer looks at: the header candidate and 20 below it


@dataclass(frozen=True)
class LabelTable:
    """The columns of a CSV / TSV labels file.

    Attributes:
        columns: Every column by name, in file order, one value per data row (strings are
            categorical, integers and floats numeric; an empty field is a missing value).
        default: The column that is the label unless ``label_key`` names another: the first
            column named like a label (``label``, ``class``, ``target``...), else the last.
        n_rows: The number of data rows (lines without the header and blank lines).
    """

    columns: dict[str, Column]
    default: str
    n_rows: int


@dataclass(frozen=True)
class SettledLabels:
    """The labels of a dataset with the columns they come from.

    Attributes:
        labels: (N,) int64 in 0..k-1, or None.
        label_names: The k names, or None.
        columns: Every metadata column, the label's as a categorical column of exactly
            ``labels`` / ``label_names``; None when there are none.
        label_key: The column the labels come from, or None.
    """

    labels: np.ndarray | None
    label_names: list[str] | None
    columns: dict[str, Column] | None
    label_key: str | None


def read_labels_file(path: str) -> np.ndarray | LabelTable:
    """Read labels from a ``.npy`` array or a ``.csv`` / ``.tsv`` / ``.txt`` file.

    A CSV holds one label per line, or several columns (``filename,label,site``), all of
    which are read. The first line is a header when one of its fields is a name such as
    ``label`` or ``class``, or (several columns) when :class:`csv.Sniffer` finds it one and
    its names are distinct and non-empty; otherwise the columns are ``column1``,
    ``column2``... (a single column: ``label``). Values may be integers, floats or strings.

    Returns:
        The raw labels of a ``.npy`` file (any array), or the :class:`LabelTable` of a CSV.

    Raises:
        DataError: The file is missing, of another kind, empty, or its lines differ in their
            number of fields.
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
    return _read_table(text, delimiter=delimiter, path=path)


def _read_table(text: str, *, delimiter: str, path: str) -> LabelTable:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        rows = [(reader.line_num, r) for r in reader if any(f.strip() for f in r)]
    except csv.Error as exc:
        raise DataError(f"cannot read labels file {path} as CSV: {exc}.") from exc
    if not rows:
        raise DataError(f"labels file {path} holds no labels; expected one label per line.")
    first = [f.strip() for f in rows[0][1]]
    width = len(first)
    header = _is_header(first, [r for _, r in rows[:_SNIFF_ROWS]], delimiter)
    if header:
        names = _header_names(first, path)
    else:
        names = ["label"] if width == 1 else [f"column{i + 1}" for i in range(width)]
    body = rows[1:] if header else rows
    if not body:
        raise DataError(
            f"labels file {path} holds only a header line; expected one label per line."
        )
    for line, r in body:
        if len(r) != width:
            raise DataError(
                f"labels file {path}: line {line} has {count(len(r), 'field')} but line "
                f"{rows[0][0]} has {width}; every line needs the same columns (quote fields "
                f"that hold {'a tab' if delimiter == chr(9) else 'a comma'})."
            )
    fields = [[r[j].strip() for _, r in body] for j in range(width)]
    columns = {
        name: _parse_column(name, values) for name, values in zip(names, fields, strict=True)
    }
    default = next((n for n in names if n.lower() in _HEADER_NAMES), names[-1])
    return LabelTable(columns=columns, default=default, n_rows=len(body))


class _KnownDelimiterSniffer(csv.Sniffer):
    """``csv.Sniffer`` that asks only about the header: the delimiter is known already."""

    def __init__(self, delimiter: str) -> None:
        super().__init__()
        self._delimiter = delimiter

    def sniff(self, sample: str, delimiters: str | None = None) -> type[csv.Dialect]:
        class Dialect(csv.excel):
            delimiter = self._delimiter

        return Dialect


def _is_header(first: list[str], rows: list[list[str]], delimiter: str) -> bool:
    """Whether the first row names the columns (see :func:`read_labels_file`)."""
    if any(f.lower() in _HEADER_NAMES for f in first):
        return True
    # One column: only a known name makes a header (as always), since a sniffer would take the
    # first of labels such as "normal", "tumor", "tumor" for a header by its length alone.
    if len(first) < 2 or not all(first) or len(set(first)) != len(first):
        return False
    sample = io.StringIO()
    csv.writer(sample, delimiter=delimiter, lineterminator="\n").writerows(rows)
    try:
        return bool(_KnownDelimiterSniffer(delimiter).has_header(sample.getvalue()))
    except csv.Error:
        return False


def _header_names(first: list[str], path: str) -> list[str]:
    """The header's names; an empty one (a pandas index column) is ``column{i}``."""
    names = [f or f"column{i + 1}" for i, f in enumerate(first)]
    for name in names:
        try:
            check_column_name(name, where=f"labels file {path}")
        except ConfigError as exc:
            raise DataError(str(exc)) from None
    twice = natural_sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(
            f"labels file {path}: its header names column {twice[0]!r} more than once; give "
            "each column a distinct name."
        )
    return names


def _parse_column(name: str, values: list[str]) -> Column:
    """Integers (float with NaN when some are empty), floats, else categorical strings."""
    present = [v for v in values if v]
    try:
        ints = np.array([int(v) for v in present], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    else:
        if len(present) == len(values):
            return Column(name, ints)
    try:
        [float(v) for v in present]
    except ValueError:
        text = np.array([v or None for v in values], dtype=object)
        return column_from_values(name, text)
    return Column(name, np.array([float(v) if v else np.nan for v in values], dtype=np.float64))


def check_labels(
    raw: np.ndarray,
    *,
    n_images: int,
    label_names: Sequence[str] | None,
    where: str,
    noun: str = "image",
) -> tuple[np.ndarray | None, list[str] | None]:
    """Validate labels for ``n_images`` images and settle their names.

    Args:
        raw: The labels as stored.
        n_images: Number of images they must match.
        label_names: Names stored with the labels, or None.
        where: The source, for messages.
        noun: What the labels belong to, for messages (``"image"``, ``"row"``).

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
            f"per {noun}, so the data is read without labels (pass a labels file to add some)."
        )
        return None, None
    if arr.ndim != 1:
        raise DataError(
            f"{where}: expected labels of shape ({n_images},); found shape {arr.shape}."
        )
    if arr.shape[0] != n_images:
        raise DataError(
            f"{where}: {arr.shape[0]:,} labels for {n_images:,} {noun}s; expected one label per "
            f"{noun}; check that the labels belong to these {noun}s."
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


def settle_labels(
    raw: np.ndarray | LabelTable | None,
    *,
    n_images: int,
    label_names: Sequence[str] | None,
    where: str,
    label_key: str | None = None,
    label_column: str = "label",
    noun: str = "image",
) -> SettledLabels:
    """The labels and metadata columns of ``n_images`` images.

    Args:
        raw: Labels as stored (checked by :func:`check_labels`; they become one column named
            ``label_column``), a :class:`LabelTable` read from a CSV, or None.
        n_images: Number of images they must match.
        label_names: Names stored with raw labels, or None.
        where: The source, for messages.
        label_key: The column to take the labels from; None for the table's default (a
            numeric column named here is grouped by value, see
            :func:`~latentdiag.columns.as_grouping`).
        label_column: The name of the column raw labels become.
        noun: What the labels belong to, for messages (``"image"``, ``"row"``).

    Raises:
        DataError: A table of another length, an unknown ``label_key`` (the message lists the
            columns there are), a label column with missing values, bad labels.
    """
    if isinstance(raw, LabelTable):
        return _settle_table(raw, n_images=n_images, where=where, label_key=label_key, noun=noun)
    labels = names = None
    if raw is not None:
        labels, names = check_labels(
            raw, n_images=n_images, label_names=label_names, where=where, noun=noun
        )
    columns = None
    if labels is not None and names is not None:
        columns = {label_column: categorical_column(label_column, labels, names)}
    if label_key is not None:
        check_column_exists(columns or {}, label_key, where=where)
    return SettledLabels(labels, names, columns, None if columns is None else label_column)


def _settle_table(
    table: LabelTable, *, n_images: int, where: str, label_key: str | None, noun: str = "image"
) -> SettledLabels:
    if table.n_rows != n_images:
        raise DataError(
            f"{where}: {table.n_rows:,} labels for {n_images:,} {noun}s; expected one label per "
            f"{noun}; check that the labels belong to these {noun}s."
        )
    columns = dict(table.columns)
    if label_key is None:
        key = table.default
        col = columns[key]
        if col.n_missing:
            raise DataError(
                f"{where}: {col.n_missing:,} of {len(col):,} {noun}s have no label (an empty field "
                f"in column {key!r}); give every {noun} a label, or choose another column as the "
                "label (--label-key)."
            )
        raw = (
            np.asarray(col.categories, dtype=str)[col.values] if col.is_categorical else col.values
        )
        labels, names = check_labels(
            raw, n_images=n_images, label_names=None, where=where, noun=noun
        )
        assert labels is not None and names is not None  # a column is 1-D
    else:
        key = label_key
        labels, names = choose_label_column(columns, key, where=where)
    columns[key] = categorical_column(key, labels, names)
    return SettledLabels(labels, names, columns, key)


def choose_label_column(
    columns: Mapping[str, Column], key: str, *, where: str
) -> tuple[np.ndarray, list[str]]:
    """The labels of the column ``key``: its categories, or a numeric column's values as groups.

    Returns:
        (int64 labels in 0..k-1, k label names).

    Raises:
        DataError: No such column (the message lists the columns there are), rows with no
            value, or a numeric column with more than 50 distinct values.
    """
    try:
        chosen = select_groupings(columns, default_label=None, label_key=key, where=where)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    assert chosen.labels is not None and chosen.label_names is not None
    return chosen.labels, chosen.label_names


def check_column_exists(columns: Mapping[str, Column], key: str, *, where: str) -> None:
    """Raise the unknown-column :class:`DataError` (listing the columns) unless ``key`` is one."""
    if key not in columns:
        choose_label_column(columns, key, where=where)  # raises: no such column


def is_label_name(name: str) -> bool:
    """Whether a column name says it is a label (``label``, ``class``, ``modality``,
    ``cell_type``…; case-insensitive): the default label of tables and AnnData, and the
    header names of a labels file."""
    return name.lower() in _HEADER_NAMES
