"""Reading latents files: :class:`LatentStore` validates on open and reads in blocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.columns import Column
from latentdiag.errors import LatentDiagError, StoreError
from latentdiag.partitions import check_partitions
from latentdiag.store._common import (
    COLUMNS_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROW_DATASETS,
    decode_attr,
    label_minmax,
    names_attr,
    partial_path,
    short_error,
)
from latentdiag.store.base import LatentSource, StoreSummary

__all__ = ["LatentStore", "StoreSummary"]


class LatentStore(LatentSource):
    """A validated, read-only latents file.

    Opening checks everything that later code relies on, so that a bad file fails here with a
    message naming the file and the problem rather than deep inside a metric::

        with LatentStore("latents.h5") as store:
            mu = store.mu           # (n, d) float32
            for block in store.iter_blocks(65536):
                ...

    Metadata columns (format 2) are in :attr:`columns`. The file's default label is what
    :attr:`labels` gives unless ``label_key`` names another column; ``batch_key`` names the
    column that should mix (:attr:`batch`)::

        with LatentStore("cells.h5", label_key="cell_type", batch_key="donor") as store:
            store.labels, store.label_names, store.batch, store.batch_names

    Args:
        path: The latents file.
        allow_incomplete: Open a file whose writer did not finish (for ``inspect`` on a
            ``.partial`` file); only the committed rows are exposed.
        label_key: The column whose groups should separate; None for the file's default label.
        batch_key: The column whose groups should mix; None for none.

    Raises:
        StoreError: The file is missing, not HDF5, truncated, not a latents file, of a newer
            format version, incomplete, missing ``/mu``, or inconsistent.
        ConfigError: ``label_key`` or ``batch_key`` names no column, or a column unfit to
            group by (missing values, a numeric column with too many distinct values).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        allow_incomplete: bool = False,
        label_key: str | None = None,
        batch_key: str | None = None,
    ) -> None:
        self.path = Path(path)
        p = self.path
        if not p.exists():
            hint = ""
            if partial_path(p).exists():
                hint = (
                    f" An unfinished {partial_path(p).name} exists: the run that writes it was "
                    "interrupted; run the same command again to resume it."
                )
            raise StoreError(f"{p} does not exist.{hint}")
        if p.is_dir():
            raise StoreError(f"{p} is a folder; expected a latents file (.h5).")
        try:
            is_hdf5 = h5py.is_hdf5(p)
        except OSError as exc:
            raise StoreError(f"{p} cannot be read: {exc}.") from None
        if not is_hdf5:
            raise StoreError(
                f"{p} is not an HDF5 file; expected a latents file written by latentdiag "
                "(`latentdiag embed`) or by h5py as described in docs/format.md."
            )
        try:
            self._file = h5py.File(p, "r")
        except OSError as exc:
            if is_locked(exc):
                raise StoreError(locked_message(p)) from None
            raise StoreError(
                f"{p} is damaged or truncated and cannot be opened as HDF5 ({short_error(exc)}); "
                "write it again."
            ) from None
        try:
            self._validate(allow_incomplete)
            self._select(label_key, batch_key, default_from_file=True)
        except LatentDiagError:
            self._file.close()
            raise
        except Exception as exc:  # h5py raises OSError, RuntimeError, KeyError, ... on damage
            self._file.close()
            raise StoreError(
                f"{p} is damaged or truncated: reading it failed ({short_error(exc)}); "
                "write it again."
            ) from None
        except BaseException:
            self._file.close()  # a file left open would be reused, stale, by the next open
            raise

    # -- validation -----------------------------------------------------------------------
    def _validate(self, allow_incomplete: bool) -> None:
        f, p = self._file, self.path
        fmt = f.attrs.get("latentdiag_format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME:
            raise StoreError(
                f"{p} is HDF5 but not a latents file: the root attribute "
                f"latentdiag_format={FORMAT_NAME!r} is missing (found {fmt!r}); see "
                "docs/format.md for the layout."
            )
        version = f.attrs.get("format_version")
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise StoreError(f"{p}: format_version is missing or not an integer.") from None
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{p} has latents format version {version}, newer than this latentdiag "
                f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade latentdiag."
            )
        if version < 1:
            raise StoreError(
                f"{p}: format_version {version} is not valid; expected 1..{FORMAT_VERSION}."
            )
        self.format_version = version
        self.complete = bool(f.attrs.get("complete", False))
        if not self.complete and not allow_incomplete:
            raise StoreError(
                f"{p} is incomplete (complete=false): the run that wrote it did not finish; "
                "run it again to resume or rewrite it."
            )
        if "mu" not in f or not isinstance(f["mu"], h5py.Dataset):
            raise StoreError(f"{p} has no /mu dataset; a latents file needs /mu (n, d).")
        mu = f["mu"]
        if mu.ndim != 2:
            raise StoreError(f"{p}: /mu must be 2-D (n, d); found shape {mu.shape}.")
        if not np.issubdtype(mu.dtype, np.floating):
            raise StoreError(f"{p}: /mu must hold floats; found dtype {mu.dtype}.")
        n, d = (int(s) for s in mu.shape)
        if not self.complete:
            n = min(n, int(f.attrs.get("n_rows", n)))
        self.n_samples, self.latent_dim = n, d
        if d < 1:
            raise StoreError(f"{p}: /mu has no latent dimensions (shape {mu.shape}).")

        def check_rows(name: str, row_shape: tuple[int, ...] | None) -> None:
            if name not in f:
                return
            ds = f[name]
            if not isinstance(ds, h5py.Dataset):
                raise StoreError(f"{p}: /{name} must be a dataset.")
            if ds.shape[0] < n or (self.complete and ds.shape[0] != n):
                raise StoreError(
                    f"{p}: /{name} has {ds.shape[0]} rows but /mu has {n}; every row dataset "
                    "must have one row per latent vector."
                )
            if row_shape is not None and tuple(ds.shape[1:]) != row_shape:
                raise StoreError(
                    f"{p}: /{name} must have shape ({n}, {', '.join(map(str, row_shape))}) "
                    f"to match /mu; found {ds.shape}."
                )

        check_rows("logvar", (d,))
        check_rows("labels", ())
        check_rows("sample_ids", ())
        check_rows("index", ())
        if "index" in f and not np.issubdtype(f["index"].dtype, np.integer):
            raise StoreError(f"{p}: /index must hold integers; found {f['index'].dtype}.")
        self.label_names = names_attr(f, "label_names")
        self.factor_names = names_attr(f, "factor_names")
        if "factors" in f:
            fac = f["factors"]
            if fac.ndim != 2:
                raise StoreError(f"{p}: /factors must be 2-D (n, f); found shape {fac.shape}.")
            check_rows("factors", None)
            if self.factor_names is None:
                self.factor_names = [f"f{i}" for i in range(fac.shape[1])]
            elif len(self.factor_names) != fac.shape[1]:
                raise StoreError(
                    f"{p}: factor_names has {len(self.factor_names)} names but /factors has "
                    f"{fac.shape[1]} columns."
                )
        if "labels" in f:
            labels_ds = f["labels"]
            if not np.issubdtype(labels_ds.dtype, np.integer):
                raise StoreError(f"{p}: /labels must hold integers; found {labels_ds.dtype}.")
            lo, hi = label_minmax(labels_ds, n)
            if self.label_names is None:
                raise StoreError(
                    f"{p}: /labels has values but the root attribute label_names is missing; "
                    "every label value needs a name."
                )
            if n and (lo < 0 or hi >= len(self.label_names)):
                raise StoreError(
                    f"{p}: /labels has values from {lo} to {hi} but label_names names only "
                    f"{len(self.label_names)} (0..{len(self.label_names) - 1}); every label "
                    "value needs a name."
                )
        self.partitions: dict[str, tuple[int, int]] = {}
        if "partitions" in f:
            raw = {k: np.asarray(v).ravel().tolist() for k, v in f["partitions"].attrs.items()}
            checked = check_partitions(raw, d, error=StoreError, where=str(p))
            # HDF5 lists attributes alphabetically; latent order reads better.
            self.partitions = dict(sorted(checked.items(), key=lambda kv: kv[1]))
        self._columns: dict[str, Column] | None = None
        self._validate_columns(n)
        self.provenance: dict[str, Any] = {}
        if "provenance" in f:
            self.provenance = {k: decode_attr(v) for k, v in f["provenance"].attrs.items()}
        created = f.attrs.get("created")
        self.created = decode_attr(created) if created is not None else None
        ver = f.attrs.get("latentdiag_version")
        self.latentdiag_version = decode_attr(ver) if ver is not None else None

    def _validate_columns(self, n: int) -> None:
        """Check /columns and the root attribute label_key (format 2)."""
        f, p = self._file, self.path
        self._column_order: list[str] = []
        if COLUMNS_GROUP in f:
            group = f[COLUMNS_GROUP]
            if not isinstance(group, h5py.Group):
                raise StoreError(f"{p}: /{COLUMNS_GROUP} must be a group.")
            listed = names_attr(group, "names")
            order = listed if listed is not None else sorted(group)
            if sorted(order) != sorted(group):
                raise StoreError(
                    f"{p}: /{COLUMNS_GROUP} attribute names lists {order} but the group holds "
                    f"{sorted(group)}."
                )
            for name in order:
                obj = group[name]
                if isinstance(obj, h5py.Group):
                    if "codes" not in obj or "categories" not in obj:
                        raise StoreError(
                            f"{p}: column /{COLUMNS_GROUP}/{name} is a group, so it must hold "
                            "codes and categories (a categorical column)."
                        )
                    ds = obj["codes"]
                    if not np.issubdtype(ds.dtype, np.integer):
                        raise StoreError(
                            f"{p}: /{COLUMNS_GROUP}/{name}/codes must hold integers; found "
                            f"{ds.dtype}."
                        )
                    if obj["categories"].ndim != 1:
                        raise StoreError(f"{p}: /{COLUMNS_GROUP}/{name}/categories must be 1-D.")
                else:
                    ds = obj
                    if ds.dtype.kind not in "biuf":
                        raise StoreError(
                            f"{p}: column /{COLUMNS_GROUP}/{name} must hold numbers (or be a "
                            f"categorical group of codes and categories); found {ds.dtype}."
                        )
                if ds.ndim != 1 or ds.shape[0] < n or (self.complete and ds.shape[0] != n):
                    raise StoreError(
                        f"{p}: column {name!r} has shape {ds.shape} but /mu has {n:,} rows; "
                        "every column needs one value per row."
                    )
            self._column_order = list(order)
        key = f.attrs.get("label_key")
        self.file_label_key: str | None = None
        if key is not None:
            key = decode_attr(key)
            if key not in self._column_order:
                raise StoreError(
                    f"{p}: the root attribute label_key names column {key!r}, which "
                    f"/{COLUMNS_GROUP} does not hold."
                )
            if "labels" not in f:
                raise StoreError(
                    f"{p}: label_key is {key!r} but there is no /labels; /labels mirrors the "
                    "default label column."
                )
            self.file_label_key = str(key)
        elif "labels" in f:
            self.file_label_key = self._label_column_name()

    @property
    def stored_columns(self) -> list[str]:
        """The columns held in ``/columns`` (without the ``label`` column a file that has only
        ``/labels`` shows)."""
        return list(self._column_order)

    def _label_column_name(self) -> str:
        """The name under which /labels of a file without label_key shows as a column."""
        name = "label"
        while name in self._column_order:
            name += "_"
        return name

    @property
    def columns(self) -> dict[str, Column]:
        """Every per-row metadata column by name (read on first use).

        A file with ``/labels`` but no ``label_key`` (every format-1 file) shows them as the
        categorical column ``label``.
        """
        if self._columns is not None:
            return self._columns
        out: dict[str, Column] = {}
        n = self.n_samples
        if self._column_order:
            group = self._file[COLUMNS_GROUP]
            for name in self._column_order:
                obj = group[name]
                try:
                    if isinstance(obj, h5py.Group):
                        cats = tuple(
                            c.decode("utf-8") if isinstance(c, bytes) else str(c)
                            for c in obj["categories"][()]
                        )
                        codes = np.asarray(obj["codes"][:n]).astype(np.int32, copy=False)
                        if codes.size and (codes.min() < -1 or codes.max() >= len(cats)):
                            raise StoreError(
                                f"{self.path}: column {name!r} has codes from {codes.min()} to "
                                f"{codes.max()} but {len(cats)} categories; every code needs "
                                "a category (-1 for missing)."
                            )
                        ordered = bool(obj.attrs.get("ordered", False))
                        out[name] = Column(name, codes, cats, ordered)
                    else:
                        out[name] = Column(name, np.asarray(obj[:n]))
                except OSError as exc:
                    raise StoreError(
                        f"{self.path} is damaged or truncated: reading column {name!r} failed "
                        f"({short_error(exc)}); write it again."
                    ) from None
        if "labels" in self._file and self._file.attrs.get("label_key") is None:
            assert self.file_label_key is not None
            names = names_attr(self._file, "label_names") or []
            codes = self.read("labels").astype(np.int32)
            out[self.file_label_key] = Column(self.file_label_key, codes, tuple(names))
        self._columns = out
        return out

    # -- access ---------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the file holds the row dataset ``name`` (mu, logvar, labels, ...)."""
        return name in self._file and name in ROW_DATASETS

    def compression(self, name: str) -> str | None:
        """The HDF5 filter that compresses row dataset ``name`` ("gzip", ...), or None."""
        if not self.has(name):
            raise StoreError(f"{self.path} has no /{name}.")
        comp = self._file[name].compression
        return None if comp is None else str(comp)

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Read a row dataset, whole or a row selection (a slice or sorted index array)."""
        if not self.has(name):
            raise StoreError(f"{self.path} has no /{name} dataset.")
        ds = self._file[name]
        sel: Any = slice(0, self.n_samples) if rows is None else rows
        if isinstance(sel, np.ndarray):
            sel = np.sort(sel)
        try:
            out = ds[sel]
        except OSError as exc:  # a chunk that lies past the end of a truncated file
            raise StoreError(
                f"{self.path} is damaged or truncated: reading /{name} failed "
                f"({short_error(exc)}); write it again."
            ) from None
        if name == "sample_ids":
            return np.asarray([s.decode("utf-8") if isinstance(s, bytes) else s for s in out])
        return np.asarray(out)

    def _dataset_info(self, name: str) -> dict[str, Any]:
        ds = self._file[name]
        return {
            "shape": [self.n_samples, *ds.shape[1:]],
            "dtype": "str" if name == "sample_ids" else str(ds.dtype),
            "compression": self.compression(name),
        }

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


def is_locked(exc: BaseException) -> bool:
    """Whether h5py failed to open a file because another process holds its lock."""
    text = str(exc)
    return "unable to lock file" in text or "errno = 11" in text


def locked_message(path: Path) -> str:
    return (
        f"{path} is being written by another process (HDF5 holds a lock on it); wait for that "
        "run to finish, or write to another -o. Nothing was changed."
    )
