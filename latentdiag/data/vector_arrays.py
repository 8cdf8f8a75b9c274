"""Vector data from arrays: the checks and conversions every vector source shares.

An (N, F) matrix — an ``.npy`` (memory-mapped), an ``.npz`` entry, an HDF5 dataset, a table's
numeric columns, an AnnData ``X`` or layer (dense, or scipy CSR kept sparse) — becomes a
:class:`~latentdiag.data.vectors.VectorDataset` through :func:`build_vector_dataset`, which
checks the values (numbers, all finite), takes the ``--n`` subset, settles labels and
metadata columns, and computes the ``--standardize`` statistics. Values are never rescaled
and keep their dtype; nothing is resized or reshaped.

Files written by ``data synth --vectors`` (:func:`latentdiag.data.io.write_vector_dataset`)
also carry metadata columns beyond the label: :func:`read_npz_columns` and
:func:`read_h5_columns` read them back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from latentdiag.columns import Column, categorical_column, check_column_name
from latentdiag.data._common import Options, RowIds, SelectedIds, choose_rows, count, warn
from latentdiag.data.labels import LabelTable, SettledLabels, choose_label_column, settle_labels
from latentdiag.data.vectors import VectorDataset, feature_stats, is_sparse
from latentdiag.errors import ConfigError, DataError

__all__ = [
    "CATEGORIES_PREFIX",
    "COLUMNS_GROUP",
    "IN_MEMORY_BYTES",
    "VECTOR_KEYS",
    "H5Matrix",
    "build_vector_dataset",
    "check_finite",
    "read_h5_columns",
    "read_npz_columns",
]

# Names a vector array goes by in an .npz or HDF5 file, tried in this order.
VECTOR_KEYS = ("x", "X", "features", "data", "vectors")
# Metadata columns in files written by ``data synth --vectors``: ``columns/<name>`` holds the
# values (categorical codes or numbers); a categorical column's names are
# ``column_categories/<name>`` in an .npz, the ``categories`` attribute in HDF5.
COLUMNS_GROUP = "columns"
CATEGORIES_PREFIX = "column_categories"
IN_MEMORY_BYTES = 2 * 2**30  # dense vectors on disk up to this size are read whole
_PASS_ROWS = 8192  # rows checked at a time on data read lazily


class H5Matrix:
    """An (N, F) HDF5 dataset read on demand.

    Picklable: the open file is not part of the pickled state, and each process opens its own
    on first access, so DataLoader workers can read it.

    Args:
        path: The HDF5 file.
        key: The dataset's path inside it.
    """

    def __init__(self, path: str, key: str) -> None:
        import h5py

        self.path = path
        self.key = key
        with h5py.File(path, "r") as f:
            dset = f[key]
            self.shape = tuple(int(s) for s in dset.shape)
            self.dtype = np.dtype(dset.dtype)
        self._dset: Any = None
        self._handle: Any = None
        self._pid = -1

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_dset=None, _handle=None, _pid=-1)
        return state

    def _dataset(self) -> Any:
        if self._dset is None or self._pid != os.getpid():
            import h5py

            self._handle = h5py.File(self.path, "r")
            self._dset = self._handle[self.key]
            self._pid = os.getpid()
        return self._dset

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self._dataset()[index])


def check_finite(matrix: Any, where: str) -> None:
    """Refuse NaN and infinite values, naming how many rows hold them.

    Dense data on disk is checked in blocks of rows; sparse data by its stored values.

    Raises:
        DataError: Some rows hold a NaN or an infinity.
    """
    if np.dtype(matrix.dtype).kind != "f":
        return
    n = int(matrix.shape[0])
    if is_sparse(matrix):
        bad_values = ~np.isfinite(matrix.data)
        if not bad_values.any():
            return
        row_of_value = np.repeat(np.arange(n), np.diff(matrix.indptr))
        bad = int(np.unique(row_of_value[bad_values]).size)
    elif isinstance(matrix, np.ndarray) and not isinstance(matrix, np.memmap):
        bad = int((~np.isfinite(matrix)).any(axis=1).sum())
    else:
        bad = 0
        for start in range(0, n, _PASS_ROWS):
            block = np.asarray(matrix[start : min(start + _PASS_ROWS, n)])
            bad += int((~np.isfinite(block)).any(axis=1).sum())
    if bad:
        raise DataError(
            f"{where}: {bad:,} of {count(n, 'row')} hold NaN or infinite values; expected "
            "finite features; drop or impute those rows."
        )


def _load(matrix: Any, rows: np.ndarray | None) -> Any:
    """The matrix to keep: sparse as CSR; dense in memory up to ``IN_MEMORY_BYTES`` (or when
    a subset is taken), else the memory map or :class:`H5Matrix` itself."""
    if is_sparse(matrix):
        csr = matrix if hasattr(matrix, "indptr") and matrix.format == "csr" else matrix.tocsr()
        return csr if rows is None else csr[rows]
    if isinstance(matrix, np.ndarray) and not isinstance(matrix, np.memmap):
        return matrix if rows is None else matrix[rows]
    if rows is not None:
        return np.asarray(matrix[rows])  # rows are sorted, as HDF5 wants them
    n, f = (int(s) for s in matrix.shape)
    if n * f * np.dtype(matrix.dtype).itemsize <= IN_MEMORY_BYTES:
        return np.array(matrix[...])
    return matrix


def _check_factors(
    factors: np.ndarray | None, factor_names: Sequence[str] | None, total: int, where: str
) -> np.ndarray | None:
    if factors is None:
        return None
    fac = np.asarray(factors, dtype=np.float32)
    if fac.ndim == 1:
        fac = fac[:, None]
    if fac.ndim != 2 or fac.shape[0] != total:
        raise DataError(
            f"{where}: factors of shape {fac.shape} do not match {count(total, 'row')}; "
            f"expected ({total}, f)."
        )
    if factor_names is not None and len(factor_names) != fac.shape[1]:
        raise DataError(
            f"{where}: {len(factor_names)} factor names for {fac.shape[1]} factor columns."
        )
    return fac


def _settle(
    raw: np.ndarray | LabelTable | None,
    *,
    total: int,
    label_names: Sequence[str] | None,
    columns: Mapping[str, Column] | None,
    default_label: str | None,
    label_key: str | None,
    label_column: str,
    where: str,
) -> SettledLabels:
    """Labels and columns: stored labels (or a labels file) plus the source's own columns."""
    if not columns:
        return settle_labels(
            raw,
            n_images=total,
            label_names=label_names,
            where=where,
            label_key=label_key,
            label_column=label_column,
            noun="row",
        )
    assert not isinstance(raw, LabelTable)  # a labels file replaces a file's own columns
    base = settle_labels(
        raw,
        n_images=total,
        label_names=label_names,
        where=where,
        label_column=label_column,
        noun="row",
    )
    merged = {**(base.columns or {}), **columns}
    key = label_key
    if key is None:
        if base.label_key is not None:
            return SettledLabels(base.labels, base.label_names, merged, base.label_key)
        key = default_label
        if key is None:
            return SettledLabels(None, None, merged, None)
        missing = merged[key].n_missing
        if missing:
            warn(
                f"{where}: column {key!r}, the default label, has no value on "
                f"{count(missing, 'row')}; the data is read without a label (choose one with "
                "--label-key)."
            )
            return SettledLabels(None, None, merged, None)
    labels, names = choose_label_column(merged, key, where=where)
    merged[key] = categorical_column(key, labels, names)
    return SettledLabels(labels, names, merged, key)


def build_vector_dataset(
    matrix: Any,
    *,
    opts: Options,
    where: str,
    id_prefix: str,
    source: str,
    labels: np.ndarray | LabelTable | None = None,
    label_names: Sequence[str] | None = None,
    factors: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    columns: Mapping[str, Column] | None = None,
    default_label: str | None = None,
    label_key: str | None = None,
    label_column: str = "label",
    feature_names: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> VectorDataset:
    """Check an (N, F) matrix with its labels, factors and columns and make a dataset of it.

    Args:
        matrix: An ndarray, a memory map, an :class:`H5Matrix` or a scipy sparse matrix.
        opts: The subset and ``standardize`` asked for (``size`` / ``channels`` are refused).
        where: The source for messages (``"x.npz:features"``).
        id_prefix: Prefix of the sample ids made when ``sample_ids`` is None.
        source: Description recorded in provenance.
        labels: Labels as stored, a labels table read from a CSV, or None.
        label_names: Names stored with them, or None.
        factors: (N, f) ground-truth factors, or None.
        factor_names: Their names, or None.
        columns: The source's own metadata columns (a table's, AnnData's ``obs``), or None.
        default_label: The column of ``columns`` that is the label unless ``label_key`` names
            another (None: no label); a default with missing values gives no label, with a
            warning.
        label_key: The column the labels come from; None for the default.
        label_column: The name of the column stored labels become.
        feature_names: The F feature names, or None.
        sample_ids: The N sample ids, or None for ``"{id_prefix}[{row}]"``.

    Raises:
        DataError: Anything about the data a user must fix: no rows or features, values that
            are not numbers or not finite (the message counts the rows), ``--size`` /
            ``--channels`` given, labels, factors or names that do not match.
    """
    shape = tuple(int(s) for s in matrix.shape)
    assert len(shape) == 2
    total, n_features = shape
    if opts.size is not None or opts.channels is not None:
        raise DataError(
            f"{where}: holds vectors ({total:,} × {n_features:,} features), not images; "
            "--size and --channels apply to images only."
        )
    if total == 0:
        raise DataError(f"{where}: holds no rows (shape {shape}); expected at least one.")
    if n_features == 0:
        raise DataError(f"{where}: vectors of shape {shape} have no features.")
    kind = np.dtype(matrix.dtype).kind
    if kind not in "biuf":
        raise DataError(
            f"{where}: vectors must hold numbers (integers or floats); found dtype "
            f"{np.dtype(matrix.dtype)}."
        )
    if feature_names is not None and len(feature_names) != n_features:
        raise DataError(
            f"{where}: {len(feature_names):,} feature names for {n_features:,} features."
        )
    settled = _settle(
        labels,
        total=total,
        label_names=label_names,
        columns=columns,
        default_label=default_label,
        label_key=label_key,
        label_column=label_column,
        where=where,
    )
    fac = _check_factors(factors, factor_names, total, where)

    rows = choose_rows(total, opts.n, opts.seed, where, noun="rows")
    data = _load(matrix, rows)
    check_finite(data, where)
    stats = feature_stats(data) if opts.standardize else None
    n_rows = total if rows is None else int(rows.size)
    lab = settled.labels
    cols = settled.columns
    if rows is not None:
        lab = None if lab is None else lab[rows]
        cols = None if cols is None else {k: c.take(rows) for k, c in cols.items()}
        fac = None if fac is None else fac[rows]
    picked = None if rows is None else rows.tolist()
    ids: Sequence[str]
    if sample_ids is None:
        ids = RowIds(id_prefix, picked, n_rows)
    else:  # ``ids.rows`` says which source rows a subset holds, as RowIds does
        ids = SelectedIds([str(s) for s in sample_ids], picked)
    return VectorDataset(
        data,
        labels=lab,
        label_names=settled.label_names,
        factors=fac,
        factor_names=factor_names,
        sample_ids=ids,
        source=source,
        columns=cols,
        label_key=settled.label_key,
        feature_names=feature_names,
        standardize=stats,
    )


# --------------------------------------------------------------------------- stored columns


def _stored_column(name: str, values: np.ndarray, categories: Any, where: str) -> Column:
    try:
        check_column_name(name, where=where)
        if categories is None:
            if values.ndim != 1 or values.dtype.kind not in "biuf":
                raise DataError(
                    f"{where}: column {name!r} must be 1-D numbers or categories; found "
                    f"shape {values.shape}, dtype {values.dtype}."
                )
            return Column(name, values)
        cats = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(categories)]
        return categorical_column(name, values, cats, where=where)
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def read_npz_columns(
    keys: Sequence[str], get: Callable[[str], np.ndarray], where: str
) -> dict[str, Column]:
    """The metadata columns stored in an ``.npz`` (``columns/<name>``), in file order."""
    prefix = f"{COLUMNS_GROUP}/"
    out: dict[str, Column] = {}
    for key in keys:
        if key.startswith(prefix):
            name = key[len(prefix) :]
            cat_key = f"{CATEGORIES_PREFIX}/{name}"
            cats = get(cat_key) if cat_key in keys else None
            out[name] = _stored_column(name, get(key), cats, where)
    return out


def read_h5_columns(f: Any, where: str) -> dict[str, Column]:
    """The metadata columns stored in an HDF5 file's ``/columns`` group, in creation order."""
    group = f.get(COLUMNS_GROUP)
    if group is None or not hasattr(group, "keys"):
        return {}
    out: dict[str, Column] = {}
    order = group.attrs.get("order")
    names = [str(n) for n in order] if order is not None else list(group.keys())
    for name in names:
        dset = group[name]
        out[name] = _stored_column(name, np.asarray(dset[...]), dset.attrs.get("categories"), where)
    return out
