"""Per-row metadata columns, and choosing which of them play label and batch.

A latents file (format 2), an AnnData ``obs`` table and the data sources all carry any number
of named per-row columns. A column is either

* **categorical**: integer codes ``0..k-1`` with ``k`` category names, ``-1`` for a row with
  no value (pandas' convention for a categorical NaN); or
* **numeric**: any numpy number or bool dtype, NaN for a missing float.

Two questions are asked of a latent space at once: does it *separate* what it should (the
**label**: cell type, modality, class) and does it *mix* what it should (the **batch**: site,
scanner, donor). :func:`select_groupings` turns ``--label-key`` / ``--batch-key`` into the
integer groupings the metrics take, with one clear error for every way a column can be unfit
for the role (unknown name, missing values, a numeric column with too many distinct values).

This module imports only numpy: every layer (data, store, metrics) may use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import ConfigError

__all__ = [
    "MAX_NUMERIC_GROUPS",
    "Column",
    "ColumnSpec",
    "Groupings",
    "as_grouping",
    "categorical_column",
    "check_column_name",
    "column_from_values",
    "columns_dict",
    "describe_columns",
    "select_groupings",
]

# A numeric column with at most this many distinct values may act as a label or batch (each
# value a group: 0..9 digit codes, a 1/2/3 scanner number); beyond it, it must be binned.
MAX_NUMERIC_GROUPS = 50
_CATEGORICAL = "categorical"
_NUMERIC = "numeric"


@dataclass(frozen=True)
class ColumnSpec:
    """What a writer needs to know of a column before its rows arrive.

    Attributes:
        name: Column name.
        categories: Category names of a categorical column; None for numeric.
        dtype: numpy dtype of a numeric column (``float64``, ``int64``, ``bool``...).
        ordered: Whether the categories have an order.
    """

    name: str
    categories: tuple[str, ...] | None = None
    dtype: str = "float64"
    ordered: bool = False

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None


@dataclass(frozen=True, eq=False)
class Column:
    """One named per-row metadata column.

    Attributes:
        name: Column name (no ``/``: it names an HDF5 object).
        values: (n,) categorical codes (int32, ``-1`` = missing) or numeric values.
        categories: The category names of a categorical column; None for a numeric one.
        ordered: Whether the categories have an order (pandas' ``ordered`` flag; kept so a
            round trip through AnnData loses nothing).
    """

    name: str
    values: np.ndarray
    categories: tuple[str, ...] | None = None
    ordered: bool = False

    @property
    def kind(self) -> str:
        """``"categorical"`` or ``"numeric"``."""
        return _CATEGORICAL if self.categories is not None else _NUMERIC

    @property
    def is_categorical(self) -> bool:
        return self.categories is not None

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def missing(self) -> np.ndarray:
        """(n,) bool: rows with no value."""
        if self.is_categorical:
            return np.asarray(self.values < 0)
        if self.values.dtype.kind == "f":
            return np.isnan(self.values)
        return np.zeros(len(self), dtype=bool)

    @property
    def n_missing(self) -> int:
        return int(self.missing.sum())

    @property
    def spec(self) -> ColumnSpec:
        """The column without its rows: what a writer creates it from."""
        return ColumnSpec(self.name, self.categories, str(self.values.dtype), self.ordered)

    def take(self, rows: np.ndarray | slice) -> Column:
        """The column restricted to some rows (in the order given)."""
        return Column(self.name, self.values[rows], self.categories, self.ordered)

    def counts(self) -> dict[str, int]:
        """Rows per category (categorical) or per distinct value (numeric), in order."""
        if self.is_categorical:
            assert self.categories is not None
            present = self.values[self.values >= 0]
            counts = np.bincount(present.astype(np.int64), minlength=len(self.categories))
            return {c: int(k) for c, k in zip(self.categories, counts, strict=True)}
        ok = self.values[~self.missing]
        values, counts = np.unique(ok, return_counts=True)
        return {_fmt_value(v): int(k) for v, k in zip(values.tolist(), counts, strict=True)}

    def describe(self, *, max_categories: int = 50) -> dict[str, Any]:
        """What ``inspect`` shows: kind, dtype, categories with counts, missing, range."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "dtype": "category" if self.is_categorical else str(self.values.dtype),
            "n_missing": self.n_missing,
        }
        if self.is_categorical:
            assert self.categories is not None
            counts = self.counts()
            out["n_categories"] = len(self.categories)
            out["ordered"] = self.ordered
            shown = list(counts.items())[:max_categories]
            out["counts"] = dict(shown)
            if len(counts) > max_categories:
                out["counts_truncated"] = True
        else:
            ok = self.values[~self.missing]
            distinct = np.unique(ok)
            out["n_distinct"] = int(distinct.size)
            if ok.size:
                out["min"] = _scalar(ok.min())
                out["max"] = _scalar(ok.max())
                out["mean"] = float(np.mean(ok, dtype=np.float64))
        return out


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _fmt_value(v: Any) -> str:
    """A numeric group's name: ``3`` for 3.0, ``0.5``, ``True``."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


_BAD_NAME = re.compile(r"[/\x00]")


def check_column_name(name: Any, *, where: str = "") -> str:
    """A column name: a non-empty string without ``/`` (it names an HDF5 object).

    Raises:
        ConfigError: The name is empty, not a string, or holds ``/``.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{prefix}column names must be non-empty strings; got {name!r}.")
    if _BAD_NAME.search(name) or name in (".", ".."):
        raise ConfigError(
            f"{prefix}column name {name!r} holds '/' (or is '.' / '..'), which an HDF5 name "
            "cannot; rename the column."
        )
    return name


def _natural_key(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", text) if t]


def column_from_values(name: str, values: Any, *, where: str = "") -> Column:
    """Build a column from any array-like: pandas Categorical, strings, bools or numbers.

    Strings (and objects) become a categorical column with the distinct values as categories,
    sorted naturally (``"2"`` before ``"10"``); ``None`` and NaN among them are missing.
    Numbers and bools stay numeric, in their own dtype.

    Raises:
        ConfigError: A bad name, or values that are not 1-D.
    """
    check_column_name(name, where=where)
    cat = getattr(values, "cat", None)  # a pandas Series of categories
    if cat is not None:
        values = values.array if hasattr(values, "array") else values
    if hasattr(values, "codes") and hasattr(values, "categories"):  # pandas.Categorical
        codes = np.asarray(values.codes, dtype=np.int32)
        cats = tuple(str(c) for c in list(values.categories))
        _check_unique_categories(name, cats, where)
        return Column(name, codes, cats, bool(getattr(values, "ordered", False)))
    if hasattr(values, "to_numpy") and getattr(values, "dtype", None) is not None:
        values = _pandas_to_numpy(values)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(
            f"{where + ': ' if where else ''}column {name!r} must be 1-D (one value per row); "
            f"found shape {arr.shape}."
        )
    if arr.dtype.kind in "biuf":
        return Column(name, arr)
    # Strings, bytes and objects: categorical, missing for None / NaN.
    items = arr.tolist()
    text: list[str | None] = []
    for v in items:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            text.append(None)
        elif isinstance(v, bytes):
            text.append(v.decode("utf-8", "replace"))
        else:
            text.append(str(v))
    cats = tuple(sorted({t for t in text if t is not None}, key=_natural_key))
    lookup = {c: i for i, c in enumerate(cats)}
    codes = np.fromiter(
        (-1 if t is None else lookup[t] for t in text), dtype=np.int32, count=len(text)
    )
    return Column(name, codes, cats)


def _pandas_to_numpy(values: Any) -> np.ndarray:
    """A pandas array as numpy: nullable ints / bools with NA become float with NaN."""
    dtype = values.dtype
    kind = getattr(dtype, "kind", "O")
    has_na = bool(values.isna().any()) if hasattr(values, "isna") else False
    name = str(dtype)
    if name in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        if has_na:
            return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))
        return np.asarray(values.to_numpy(dtype=name.lower()))
    if name in ("boolean",):
        if has_na:
            return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan))
        return np.asarray(values.to_numpy(dtype=bool))
    if name in ("Float32", "Float64"):
        return np.asarray(values.to_numpy(dtype=name.lower(), na_value=np.nan))
    if kind in "biuf":
        return np.asarray(values.to_numpy())
    return np.asarray(values.to_numpy(dtype=object))


def _check_unique_categories(name: str, cats: Sequence[str], where: str) -> None:
    if len(set(cats)) != len(cats):
        raise ConfigError(
            f"{where + ': ' if where else ''}column {name!r} has categories that are equal as "
            "text; give each category a distinct name."
        )


def categorical_column(
    name: str,
    codes: Any,
    categories: Sequence[Any],
    *,
    ordered: bool = False,
    where: str = "",
) -> Column:
    """A categorical column from codes and names, checked.

    Raises:
        ConfigError: Codes that are not integers, or lie outside ``-1..k-1``.
    """
    check_column_name(name, where=where)
    arr = np.asarray(codes)
    prefix = f"{where}: " if where else ""
    if arr.ndim != 1:
        raise ConfigError(f"{prefix}column {name!r} must be 1-D; found shape {arr.shape}.")
    if arr.size and arr.dtype.kind not in "iu":
        raise ConfigError(f"{prefix}column {name!r}: codes must be integers; found {arr.dtype}.")
    cats = tuple(str(c) for c in categories)
    _check_unique_categories(name, cats, where)
    if arr.size and (int(arr.min()) < -1 or int(arr.max()) >= len(cats)):
        raise ConfigError(
            f"{prefix}column {name!r}: codes range from {int(arr.min())} to {int(arr.max())} but "
            f"there are {len(cats)} categories (codes 0..{len(cats) - 1}, -1 for missing)."
        )
    return Column(name, arr.astype(np.int32, copy=False), cats, ordered)


def describe_columns(columns: Mapping[str, Column]) -> str:
    """``cell_type (categorical, 8), batch (categorical, 4), n_counts (numeric)``."""
    parts = []
    for col in columns.values():
        detail = f"categorical, {len(col.categories or ())}" if col.is_categorical else "numeric"
        parts.append(f"{col.name} ({detail})")
    return ", ".join(parts) if parts else "none"


@dataclass(frozen=True)
class Groupings:
    """The label and batch groupings chosen from a file's columns.

    Attributes:
        label_key: The column that should separate (None: no label).
        labels: (n,) int64 codes 0..k-1, or None.
        label_names: The k names, or None.
        batch_key: The column that should mix (None: no batch).
        batch: (n,) int64 codes 0..b-1, or None.
        batch_names: The b names, or None.
    """

    label_key: str | None = None
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    batch_key: str | None = None
    batch: np.ndarray | None = None
    batch_names: list[str] | None = None


def as_grouping(column: Column, *, option: str, where: str) -> tuple[np.ndarray, list[str]]:
    """A column as integer groups ``0..k-1`` and their names.

    Args:
        column: The column.
        option: The option that asked for it (``--label-key``), for messages.
        where: The file, for messages.

    Raises:
        ConfigError: Rows with no value, or a numeric column with more than
            :data:`MAX_NUMERIC_GROUPS` distinct values.
    """
    n_missing = column.n_missing
    if n_missing:
        raise ConfigError(
            f"{option} {column.name}: {n_missing:,} of {len(column):,} rows of {where} have no "
            f"value (NaN) in column {column.name!r}; a grouping needs a value on every row: fill "
            "them (e.g. with a category 'unknown') or drop those rows."
        )
    if column.is_categorical:
        assert column.categories is not None
        return column.values.astype(np.int64), list(column.categories)
    values = column.values
    distinct, codes = np.unique(values, return_inverse=True)
    if distinct.size > MAX_NUMERIC_GROUPS:
        raise ConfigError(
            f"{option} {column.name}: column {column.name!r} of {where} is numeric with "
            f"{distinct.size:,} distinct values, too many to group by (at most "
            f"{MAX_NUMERIC_GROUPS}); bin it into a few classes first (e.g. pandas.cut) or choose "
            "a categorical column."
        )
    return codes.astype(np.int64).ravel(), [_fmt_value(v) for v in distinct.tolist()]


def _lookup(columns: Mapping[str, Column], key: str, option: str, where: str) -> Column:
    if key in columns:
        return columns[key]
    close = [c for c in columns if c.lower() == key.lower()]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{option} {key}: {where} has no column {key!r}.{hint} Its columns: "
        f"{describe_columns(columns)}."
    )


def select_groupings(
    columns: Mapping[str, Column],
    *,
    default_label: str | None,
    label_key: str | None = None,
    batch_key: str | None = None,
    where: str,
) -> Groupings:
    """Choose the label (what should separate) and batch (what should mix) columns.

    Args:
        columns: The file's columns by name.
        default_label: The column that is the file's default label, or None.
        label_key: ``--label-key``; None for the default label.
        batch_key: ``--batch-key``; None for no batch.
        where: The file, for messages.

    Returns:
        The chosen :class:`Groupings`.

    Raises:
        ConfigError: An unknown column (the message lists the columns there are), a column
            unfit for grouping (see :func:`as_grouping`), or the same column asked for both.
    """
    if label_key is not None and batch_key is not None and label_key == batch_key:
        raise ConfigError(
            f"--label-key and --batch-key both name column {label_key!r}; the label is what "
            "should separate and the batch what should mix: choose two different columns."
        )
    chosen_label = label_key if label_key is not None else default_label
    labels = label_names = batch = batch_names = None
    if chosen_label is not None:
        col = _lookup(columns, chosen_label, "--label-key", where)
        labels, label_names = as_grouping(col, option="--label-key", where=where)
    if batch_key is not None:
        col = _lookup(columns, batch_key, "--batch-key", where)
        batch, batch_names = as_grouping(col, option="--batch-key", where=where)
        if chosen_label == batch_key:  # the default label asked for as batch
            labels = label_names = None
            chosen_label = None
    return Groupings(
        label_key=chosen_label,
        labels=labels,
        label_names=label_names,
        batch_key=batch_key,
        batch=batch,
        batch_names=batch_names,
    )


def columns_dict(columns: Iterable[Column]) -> dict[str, Column]:
    """Columns by name, refusing two of one name."""
    out: dict[str, Column] = {}
    for col in columns:
        if col.name in out:
            raise ConfigError(f"two columns are named {col.name!r}; column names must be unique.")
        out[col.name] = col
    return out
