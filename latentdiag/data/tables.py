"""CSV and Parquet tables as vector data: numeric columns are features, the rest metadata.

A table (``cells.csv``, ``cells.parquet``; pandas reads it, pyarrow the Parquet) is split into

* **sample ids**: a column named ``id``, ``sample_id``, ``cell_id``, ``barcode``, ``index``
  (or ``Unnamed: 0``, what pandas writes for its index), else the first string column whose
  values are all distinct, else a Parquet file's own index when it is not 0..N-1;
* **features**: the numeric columns (integers and floats), or those ``feature_columns`` names;
* **metadata columns**: everything else — strings, categoricals, bools, the numeric columns
  ``meta_columns`` names, integer columns named like a label (``label``, ``class``,
  ``cell_type``…) and, with ``feature_columns``, the numeric columns it leaves out.

The default label is the first metadata column named like a label; ``label_key`` chooses
another (a numeric column it names is metadata, not a feature).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.columns import MAX_NUMERIC_GROUPS, Column, column_from_values, describe_columns
from latentdiag.data._common import Options, warn
from latentdiag.data.labels import is_label_name
from latentdiag.data.vector_arrays import build_vector_dataset
from latentdiag.data.vectors import VectorDataset
from latentdiag.errors import ConfigError, DataError

__all__ = ["ID_COLUMNS", "TABLE_SUFFIXES", "open_table", "parse_column_list"]

ID_COLUMNS = ("id", "sample_id", "cell_id", "barcode", "index", "Unnamed: 0")
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_GLOB = set("*?[")
_LISTED = 20  # columns an error message lists


def parse_column_list(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b, gene_*"`` (or a list of such strings) as names and patterns; None for None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    names = [part.strip() for item in items for part in str(item).split(",")]
    return [n for n in names if n]


def _read_frame(path: Path, kind: str) -> Any:
    import pandas as pd

    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return pd.read_csv(path, sep=sep)
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise DataError(f"reading {path} needs pyarrow: pip install pyarrow ({exc}).") from None
    except Exception as exc:  # pandas and pyarrow raise many kinds for damaged files
        what = "Parquet" if kind == "parquet" else "CSV"
        text = " ".join(str(exc).split())[:200]
        raise DataError(f"cannot read {path} as {what}: {text}.") from None


def _listing(frame: Any) -> str:
    """``g1 (numeric), cell_type (categorical, 3)``: the table's columns (the first 20)."""
    cols: dict[str, Column] = {}
    names = [str(n) for n in frame.columns]
    for name in names[:_LISTED]:
        try:
            cols[name] = column_from_values(name, frame[name])
        except ConfigError:
            cols[name] = Column(name, np.zeros(0), ("?",))
    more = f" and {len(names) - _LISTED:,} more" if len(names) > _LISTED else ""
    return describe_columns(cols) + more


def _is_numeric(series: Any) -> bool:
    """Integers and floats (pandas' nullable ones too); bools are not numeric here."""
    import pandas as pd

    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _is_label_code(series: Any, name: str) -> bool:
    """An integer column named like a label with at most 50 values: label codes, not a
    feature (so a ``label`` column of 0..3 never leaks into the features)."""
    import pandas as pd

    return bool(
        is_label_name(name)
        and pd.api.types.is_integer_dtype(series.dtype)
        and series.nunique() <= MAX_NUMERIC_GROUPS
    )


def _match(patterns: list[str], names: list[str], option: str, where: str, frame: Any) -> list[str]:
    """The columns ``patterns`` name (exact names or globs), in the table's order."""
    chosen: set[str] = set()
    for pattern in patterns:
        if _GLOB & set(pattern):
            hits = fnmatch.filter(names, pattern)
        else:
            hits = [pattern] if pattern in names else []
        if not hits:
            what = "no column matching" if _GLOB & set(pattern) else "no column"
            raise DataError(
                f"{option} {pattern}: {where} has {what} {pattern!r}; its columns: "
                f"{_listing(frame)}."
            )
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _id_column(frame: Any, names: list[str], excluded: set[str]) -> str | None:
    """The column that holds the sample ids, or None (see the module docstring)."""
    lower = {n.lower(): n for n in names if n not in excluded}
    for candidate in ID_COLUMNS:
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    for name in names:
        series = frame[name]
        if name in excluded or is_label_name(name) or _is_numeric(series):
            continue
        if str(series.dtype) in ("bool", "category", "boolean"):
            continue
        if not series.isna().any() and series.nunique() == len(series) and len(series) > 1:
            return name
    return None


def open_table(
    path: str,
    *,
    kind: str,
    opts: Options,
    label_key: str | None = None,
    feature_columns: str | Sequence[str] | None = None,
    meta_columns: str | Sequence[str] | None = None,
) -> VectorDataset:
    """Open a CSV / TSV or Parquet table as vector data (see the module docstring).

    Args:
        path: The table.
        kind: ``"csv"`` or ``"parquet"``.
        opts: Subset, seed and ``standardize``.
        label_key: The metadata column that is the label; None for the default.
        feature_columns: The feature columns: names and glob patterns (``gene_*``), as a
            list or one comma-separated string; None for every numeric column.
        meta_columns: Numeric columns to keep as metadata instead of features.

    Raises:
        DataError: The file cannot be read, has no rows or no numeric column, an option
            names a column the table lacks (the message lists its columns), a feature column
            that is not numeric, a column asked for as both feature and metadata, features
            with NaN (the message counts the rows), an unknown or unfit label column.
    """
    p = Path(path)
    frame = _read_frame(p, kind)
    where = p.name
    index_ids = _index_ids(frame)
    names = [str(c) for c in frame.columns]
    frame.columns = names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{where}: column {twice[0]!r} appears more than once; rename one.")
    features_asked = parse_column_list(feature_columns)
    meta_asked = parse_column_list(meta_columns)
    meta = set(_match(meta_asked, names, "--meta-columns", where, frame) if meta_asked else [])
    if label_key is not None and label_key in names:
        meta.add(label_key)
    if features_asked:
        features = _match(features_asked, names, "--feature-columns", where, frame)
        for name in features:
            if not _is_numeric(frame[name]):
                what = "bool" if str(frame[name].dtype) == "bool" else "text or categorical"
                raise DataError(
                    f"--feature-columns: column {name!r} of {where} is {what}, not numeric; "
                    "features must be numbers: leave it out, or encode it as numbers first."
                )
        both = [n for n in features if n in meta]
        if both:
            raise DataError(
                f"column {both[0]!r} of {where} is asked for as a feature (--feature-columns) "
                "and as metadata (--meta-columns or --label-key); choose one."
            )
    if len(frame) == 0:
        raise DataError(f"{where} holds no rows; expected one row per sample.")
    id_col = _id_column(frame, names, excluded=meta | set(features if features_asked else []))
    if not features_asked:
        features = [n for n in names if n != id_col and n not in meta and _is_numeric(frame[n])]
        features = [n for n in features if not _is_label_code(frame[n], n)]
    if not features:
        raise DataError(
            f"{where} has no numeric column to use as features; its columns: {_listing(frame)}."
        )
    columns: dict[str, Column] = {}
    for name in names:
        if name == id_col or name in features:
            continue
        try:
            columns[name] = column_from_values(name, frame[name], where=where)
        except ConfigError as exc:
            raise DataError(str(exc)) from None
    ids: list[str] | None = None
    if id_col is not None:
        ids = [str(v) for v in frame[id_col].tolist()]
    elif index_ids is not None:
        ids = index_ids
    if ids is not None and len(set(ids)) != len(ids):
        warn(f"{where}: the sample ids (column {id_col or 'index'!r}) are not all distinct.")
    matrix = _feature_matrix(frame[features])
    default = next((n for n in columns if is_label_name(n)), None)
    return build_vector_dataset(
        matrix,
        opts=opts,
        where=where,
        id_prefix=where,
        source=str(path),
        columns=columns,
        default_label=default,
        label_key=label_key,
        feature_names=features,
        sample_ids=ids,
    )


def _index_ids(frame: Any) -> list[str] | None:
    """A Parquet file's own index as sample ids, unless it is the default 0..N-1."""
    import pandas as pd

    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return None
    return [str(v) for v in index.tolist()]


def _feature_matrix(frame: Any) -> np.ndarray:
    """The (N, F) features in their common dtype; missing values (empty fields, pandas' NA)
    become NaN, which the dataset check then counts."""
    if bool(frame.isna().to_numpy().any()):
        return np.asarray(frame.to_numpy(dtype=np.float64, na_value=np.nan))
    dtypes = [np.dtype(str(frame[c].dtype).lower()) for c in frame.columns]
    return np.ascontiguousarray(frame.to_numpy(dtype=np.result_type(*dtypes)))
