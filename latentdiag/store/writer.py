"""Writing latents files block by block: :class:`LatentWriter` and :func:`write_latents`."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.columns import Column, ColumnSpec, check_column_name
from latentdiag.errors import ConfigError, StoreError
from latentdiag.partitions import check_partitions
from latentdiag.store._common import (
    CHUNK_ROWS,
    COLUMNS_GROUP,
    DEFAULT_BLOCK_ROWS,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROOM_SLACK,
    ROW_DATASETS,
    STR_DTYPE,
    check_names,
    column_row_datasets,
    encode_attr,
    free_bytes,
    mib,
    names_attr,
    partial_path,
    utcnow,
)

__all__ = ["LatentWriter", "write_latents"]

LATENT_DATASETS = ("mu", "logvar")  # stored uncompressed unless compress_latents


def _room_error(path: Path, need: int, free: int | None, rows: int, resume_at: int) -> StoreError:
    have = "no" if not free else mib(free)
    return StoreError(
        f"not enough room for {path.name} in {path.parent}: {have} free, the next block of "
        f"{rows:,} rows needs about {mib(need)}. Make room (or give -o on another disk) and "
        f"run the same command again: it resumes from row {resume_at:,}, the last one committed."
    )


class LatentWriter:
    """Writes a latents file row block by row block; memory stays flat whatever n is.

    Use it as a context manager, or call :meth:`finalize` yourself::

        with LatentWriter("latents.h5", latent_dim=16, label_names=["a", "b"]) as w:
            for mu, labels in blocks:
                w.append(mu, labels=labels)
        # latents.h5 now exists with complete=True

    A path ending in ``.h5ad`` gets an AnnData file (written from the finished ``.partial``,
    which is a latents file like any other).

    Rows go to ``latents.h5.partial``. If the block raises, the partial file is closed and kept
    (with ``complete=False`` and the count of committed rows) so the run can be resumed with
    :meth:`resume`; it is never renamed to the final name.

    Args:
        path: Final path of the latents file.
        latent_dim: d, the number of latent dimensions.
        has_logvar: Whether rows carry posterior log-variances.
        label_names: Names of the labels 0..k-1; given means every row carries a label.
        factor_names: Names of the ground-truth factors; given means every row carries factors.
        sample_ids: Whether every row carries a sample id string.
        index: Whether every row carries its sample's position in the data (``/index``,
            written by ``latentdiag embed`` so that shards can be merged).
        partitions: Named latent subspaces, name -> (start, stop).
        provenance: How the file was made; values may be scalars, lists or dicts.
        columns: Per-row metadata columns (:class:`~latentdiag.columns.ColumnSpec`, or a
            :class:`~latentdiag.columns.Column` whose rows are ignored): every ``append``
            then gives ``columns={name: block}``.
        label_key: The categorical column that is the file's default label. ``/labels`` and
            ``label_names`` then mirror it (so readers of format 1 keep working), and
            ``append`` takes no ``labels=``: they come from the column.
        latent_dtype: ``float32`` (the default) or ``float64`` for ``/mu`` and ``/logvar``
            (``convert`` keeps a float64 embedding as it is).
        overwrite: Replace an existing final file instead of refusing.
        compress_latents: gzip ``/mu`` and ``/logvar`` as well. Off by default: float latents
            compress to only about 0.86 of their size, and deflating them costs more CPU than
            a small encoder does per row. The other row datasets (labels, factors, sample ids,
            index) are always gzip-compressed; they shrink several-fold for next to nothing.
            Every numeric dataset carries a Fletcher-32 checksum per chunk, so a damaged file
            fails to read rather than returning wrong numbers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        latent_dim: int,
        has_logvar: bool = False,
        label_names: Sequence[str] | None = None,
        factor_names: Sequence[str] | None = None,
        sample_ids: bool = False,
        partitions: Mapping[str, Sequence[int]] | None = None,
        provenance: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        index: bool = False,
        compress_latents: bool = False,
        columns: Sequence[ColumnSpec | Column] | None = None,
        label_key: str | None = None,
        latent_dtype: str = "float32",
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        if int(latent_dim) < 1:
            raise StoreError(f"latent_dim must be at least 1; got {latent_dim}.")
        if latent_dtype not in ("float32", "float64"):
            raise StoreError(f"latent_dtype must be float32 or float64; got {latent_dtype!r}.")
        if self.path.exists() and not overwrite:
            raise StoreError(
                f"{self.path} already exists; choose another output path, remove it, or "
                "overwrite it (--overwrite)."
            )
        if not self.path.parent.exists():
            raise StoreError(f"cannot write {self.path}: folder {self.path.parent} does not exist.")
        self.latent_dim = int(latent_dim)
        self.columns = _check_specs(columns)
        self.label_key = label_key
        if label_key is not None:
            spec = self.columns.get(label_key)
            if spec is None or spec.categories is None:
                raise StoreError(
                    f"label_key {label_key!r} must name a categorical column of the file; "
                    f"columns: {', '.join(self.columns) or 'none'}."
                )
            if label_names is not None and list(label_names) != list(spec.categories):
                raise StoreError(
                    f"label_names {list(label_names)} differ from the categories of the label "
                    f"column {label_key!r}; give one or the other."
                )
            label_names = spec.categories
        self.label_names = check_names(label_names, "label names")
        self.factor_names = check_names(factor_names, "factor names")
        self.partitions = check_partitions(
            partitions, self.latent_dim, error=StoreError, where=str(self.path)
        )
        # Built under a temporary name and linked into place complete: a process killed while
        # creating the file leaves no .partial that cannot be opened (a kill test found one
        # of 96 bytes), only a temporary that the next write removes.
        from latentdiag.atomic import sweep_stale_temps, temp_path

        sweep_stale_temps(self.partial.parent, self.partial.name)
        self._building = temp_path(self.partial)
        self._file = h5py.File(self._building, "w")
        try:
            self._finalized = False
            self._compress_latents = bool(compress_latents)
            self.n_rows = 0
            f = self._file
            f.attrs["latentdiag_format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["created"] = utcnow()
            f.attrs["latentdiag_version"] = __version__
            f.attrs["complete"] = False
            f.attrs["n_rows"] = 0
            self._create("mu", (self.latent_dim,), np.dtype(latent_dtype))
            if has_logvar:
                self._create("logvar", (self.latent_dim,), np.dtype(latent_dtype))
            if self.label_names is not None:
                f.attrs["label_names"] = self.label_names
                self._create("labels", (), np.int64)
            if self.factor_names is not None:
                f.attrs["factor_names"] = self.factor_names
                self._create("factors", (len(self.factor_names),), np.float32)
            if sample_ids:
                self._create("sample_ids", (), STR_DTYPE)
            if index:
                self._create("index", (), np.int64)
            if self.label_key is not None:
                f.attrs["label_key"] = self.label_key
            cg = f.create_group(COLUMNS_GROUP)
            cg.attrs["names"] = list(self.columns)
            for spec in self.columns.values():
                self._create_column(cg, spec)
            g = f.create_group("partitions")
            for name, (start, stop) in self.partitions.items():
                g.attrs[name] = np.array([start, stop], dtype=np.int64)
            pg = f.create_group("provenance")
            for key, value in (provenance or {}).items():
                pg.attrs[str(key)] = encode_attr(value)
            f.flush()
        except BaseException:
            self._file.close()
            self._building.unlink(missing_ok=True)
            raise
        self._link_into_place()

    def _link_into_place(self) -> None:
        """Give the file built under a temporary name its .partial name: a stale .partial (of
        a run that ended) is replaced, as opening it for writing would have; one that another
        process is writing is not."""
        from latentdiag.store.reader import is_locked, locked_message

        tmp = self._building
        try:
            os.link(tmp, self.partial)  # exclusive: fails where a .partial exists
        except FileExistsError:
            try:
                h5py.File(self.partial, "r").close()
            except OSError as exc:
                if is_locked(exc):
                    self._file.close()
                    tmp.unlink(missing_ok=True)
                    raise StoreError(locked_message(self.partial)) from None
            os.replace(tmp, self.partial)
            return
        except OSError:  # a file system without hard links: a plain rename
            os.replace(tmp, self.partial)
            return
        tmp.unlink()

    # -- construction helpers -------------------------------------------------------------
    def _create(self, name: str, row_shape: tuple[int, ...], dtype: Any) -> None:
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * 8 or 8
        chunk_rows = max(1, min(CHUNK_ROWS, (1 << 20) // row_bytes))
        gzip = self._compress_latents or name not in LATENT_DATASETS
        self._file.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=(chunk_rows, *row_shape),
            compression="gzip" if gzip else None,
            compression_opts=1 if gzip else None,  # level 1 compresses floats as well as 4
            shuffle=gzip and name != "sample_ids",
            # A checksum per chunk: a damaged chunk fails to read instead of reading as zeros.
            fletcher32=name != "sample_ids",
        )

    def _create_column(self, group: h5py.Group, spec: ColumnSpec) -> None:
        common = {"chunks": (CHUNK_ROWS,), "compression": "gzip", "compression_opts": 1}
        if spec.categories is not None:
            g = group.create_group(spec.name)
            g.attrs["kind"] = "categorical"
            g.attrs["ordered"] = bool(spec.ordered)
            g.create_dataset(
                "categories", data=np.array(spec.categories, dtype=object), dtype=STR_DTYPE
            )
            g.create_dataset(
                "codes", shape=(0,), maxshape=(None,), dtype=np.int32, fletcher32=True, **common
            )
        else:
            ds = group.create_dataset(
                spec.name,
                shape=(0,),
                maxshape=(None,),
                dtype=np.dtype(spec.dtype),
                fletcher32=True,
                **common,
            )
            ds.attrs["kind"] = "numeric"

    @classmethod
    def resume(cls, path: str | os.PathLike[str]) -> LatentWriter:
        """Reopen the ``.partial`` file of an interrupted writer to append the remaining rows.

        Rows past the last committed block (``n_rows``) are dropped, so a run killed in the
        middle of a block resumes exactly where its last complete block ended.

        Raises:
            StoreError: There is no partial file, or it is not a latents file being written.
        """
        final = Path(path)
        partial = partial_path(final)
        if not partial.exists():
            raise StoreError(f"no interrupted run to resume: {partial} does not exist.")
        _rewrite_committed(partial)
        f = _open_partial(partial, "r+")
        self = cls.__new__(cls)
        self.path = final
        self.partial = partial
        self._file = f
        self._finalized = False
        self._compress_latents = f["mu"].compression is not None
        self.n_rows = int(f.attrs.get("n_rows", 0))
        self.latent_dim = int(f["mu"].shape[1])
        self.label_names = names_attr(f, "label_names")
        self.factor_names = names_attr(f, "factor_names")
        self.partitions = {
            str(k): (int(v[0]), int(v[1])) for k, v in f.get("partitions", {}).attrs.items()
        }
        self.columns = _read_specs(f)
        key = f.attrs.get("label_key")
        self.label_key = None if key is None else str(key)
        for name in ROW_DATASETS:
            if name in f and f[name].shape[0] != self.n_rows:
                f[name].resize(self.n_rows, axis=0)
        for ds in column_row_datasets(f):
            if ds.shape[0] != self.n_rows:
                ds.resize(self.n_rows, axis=0)
        return self

    # -- writing --------------------------------------------------------------------------
    @property
    def has_logvar(self) -> bool:
        return "logvar" in self._file

    @property
    def has_sample_ids(self) -> bool:
        return "sample_ids" in self._file

    def append(
        self,
        mu: np.ndarray,
        *,
        logvar: np.ndarray | None = None,
        labels: np.ndarray | Sequence[int] | None = None,
        factors: np.ndarray | None = None,
        sample_ids: Sequence[str] | None = None,
        index: np.ndarray | Sequence[int] | None = None,
        columns: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a block of rows. Every dataset the file was created with must be given.

        Raises:
            StoreError: A block has the wrong shape, a missing or unexpected part, a label
                outside 0..k-1, or a column block that does not fit its column.
        """
        if self._finalized:
            raise StoreError(f"{self.path} is already finalized; no more rows can be added.")
        mu = np.asarray(mu, dtype=self._file["mu"].dtype)
        if mu.ndim != 2 or mu.shape[1] != self.latent_dim:
            raise StoreError(f"mu block must have shape (rows, {self.latent_dim}); got {mu.shape}.")
        rows = mu.shape[0]
        parts: dict[str, np.ndarray] = {"mu": mu}
        column_parts = self._column_blocks(columns, rows)
        if self.label_key is not None:
            if labels is not None:
                raise StoreError(
                    f"this latents file takes its labels from column {self.label_key!r}; "
                    "append() needs no labels=."
                )
            codes = column_parts[self.label_key]
            if codes.size and codes.min() < 0:
                raise StoreError(
                    f"column {self.label_key!r} is the default label, so every row needs a "
                    f"value; {int((codes < 0).sum()):,} rows of this block have none."
                )
            labels = codes
        given = {
            "logvar": logvar,
            "labels": labels,
            "factors": factors,
            "sample_ids": sample_ids,
            "index": index,
        }
        for name, value in given.items():
            expected = name in self._file
            if expected and value is None:
                raise StoreError(f"this latents file has /{name}; append() needs {name}= too.")
            if not expected and value is not None:
                raise StoreError(
                    f"this latents file was created without /{name}; got {name}= in append()."
                )
            if value is None:
                continue
            if name == "sample_ids":
                arr = np.empty(len(value), dtype=object)
                arr[:] = value if all(type(s) is str for s in value) else [str(s) for s in value]
            elif name == "index":
                arr = np.asarray(value).astype(np.int64)
            elif name == "labels":
                arr = np.asarray(value)
                integral = np.issubdtype(arr.dtype, np.integer) or np.all(np.mod(arr, 1) == 0)
                if arr.size and not integral:
                    raise StoreError("labels must be integers.")
                arr = arr.astype(np.int64)
                assert self.label_names is not None
                if arr.size and (arr.min() < 0 or arr.max() >= len(self.label_names)):
                    raise StoreError(
                        f"labels must lie in 0..{len(self.label_names) - 1} "
                        f"(one per label name); got values from {arr.min()} to {arr.max()}."
                    )
            else:
                arr = np.asarray(value, dtype=self._file[name].dtype)
            expected_shape = (rows, *self._file[name].shape[1:])
            if arr.shape != expected_shape:
                raise StoreError(
                    f"{name} block must have shape {expected_shape} to match mu; got {arr.shape}."
                )
            parts[name] = arr
        start, stop = self.n_rows, self.n_rows + rows
        # Room first: HDF5 is not journaled, and a write that fails half-way (ENOSPC) can
        # leave its metadata unreadable, losing every committed row. Checking before the
        # block is written keeps the file at its last commit, so the run resumes once there
        # is room. The bytes are the block's uncompressed size: an upper bound.
        need = ROOM_SLACK + sum(_block_bytes(a) for a in (*parts.values(), *column_parts.values()))
        free = free_bytes(self.partial.parent)
        if free is not None and free < need:
            raise _room_error(self.path, need, free, rows, start)
        try:
            for name, arr in parts.items():
                ds = self._file[name]
                ds.resize(stop, axis=0)
                ds[start:stop] = arr
            for name, arr in column_parts.items():
                obj = self._file[COLUMNS_GROUP][name]
                ds = obj["codes"] if isinstance(obj, h5py.Group) else obj
                ds.resize(stop, axis=0)
                ds[start:stop] = arr
            # n_rows is the commit point: a resumed writer trusts rows below it and no others.
            self._file.attrs["n_rows"] = stop
            self._file.flush()
        except (OSError, RuntimeError) as exc:
            self._broken = True
            raise _write_error(self.partial, exc, start, need) from None
        self.n_rows = stop

    def _column_blocks(self, given: Mapping[str, Any] | None, rows: int) -> dict[str, np.ndarray]:
        given = dict(given or {})
        missing = [n for n in self.columns if n not in given]
        extra = [n for n in given if n not in self.columns]
        if missing:
            raise StoreError(
                f"this latents file has the columns {', '.join(self.columns)}; append() needs "
                f"columns= for {', '.join(missing)} too."
            )
        if extra:
            raise StoreError(
                f"this latents file was created without the column(s) {', '.join(extra)}; got "
                "them in append(columns=...)."
            )
        out: dict[str, np.ndarray] = {}
        for name, spec in self.columns.items():
            arr = np.asarray(given[name])
            if arr.shape != (rows,):
                raise StoreError(
                    f"column {name!r} block must have shape ({rows},) to match mu; got {arr.shape}."
                )
            if spec.categories is not None:
                if arr.size and arr.dtype.kind not in "iu":
                    raise StoreError(
                        f"column {name!r} is categorical: its block must hold integer codes; "
                        f"got {arr.dtype}."
                    )
                k = len(spec.categories)
                if arr.size and (arr.min() < -1 or arr.max() >= k):
                    raise StoreError(
                        f"column {name!r} codes must lie in -1..{k - 1} (-1 for missing); got "
                        f"values from {arr.min()} to {arr.max()}."
                    )
                out[name] = arr.astype(np.int32)
            else:
                try:
                    out[name] = arr.astype(np.dtype(spec.dtype), casting="same_kind")
                except TypeError:
                    raise StoreError(
                        f"column {name!r} holds {spec.dtype}; got a block of {arr.dtype}."
                    ) from None
        return out

    def set_provenance(self, **values: Any) -> None:
        """Add or replace provenance entries (e.g. the device that actually ran)."""
        pg = self._file["provenance"]
        for key, value in values.items():
            pg.attrs[key] = encode_attr(value)

    def finalize(self) -> Path:
        """Mark the file complete and move it to its final name; returns that path."""
        if self._finalized:
            return self.path
        self._file.attrs["complete"] = True
        self._file.attrs["n_rows"] = self.n_rows
        self._file.close()
        if self.path.suffix.lower() == ".h5ad":
            # AnnData out: the .partial (a latents file, resumable) becomes the .h5ad at the end.
            from latentdiag.store.h5ad import write_h5ad
            from latentdiag.store.reader import LatentStore

            with LatentStore(self.partial) as done:
                write_h5ad(done, self.path, overwrite=True)
            self.partial.unlink()
        else:
            os.replace(self.partial, self.path)
        self._finalized = True
        return self.path

    def close(self) -> None:
        """Close without finalizing: the ``.partial`` file stays, marked incomplete."""
        if not self._finalized and self._file.id.valid:
            try:
                if not getattr(self, "_broken", False):
                    self._file.flush()
                self._file.close()
            except (OSError, RuntimeError):
                pass  # the write error that broke the file has been reported already

    def __enter__(self) -> LatentWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.close()


def _open_partial(partial: Path, mode: str) -> h5py.File:
    """Open an interrupted run's ``.partial`` (``"r"`` or ``"r+"``).

    Raises:
        StoreError: Another process is writing it, it cannot be opened, or it is not a
            latents file being written.
    """
    try:
        f = h5py.File(partial, mode)
    except OSError as exc:
        from latentdiag.store.reader import is_locked, locked_message

        if is_locked(exc):
            raise StoreError(locked_message(partial)) from None
        raise StoreError(
            f"{partial} is damaged and cannot be resumed ({exc}); delete it and start again."
        ) from None
    if f.attrs.get("latentdiag_format") != FORMAT_NAME or "mu" not in f:
        f.close()
        raise StoreError(f"{partial} is not a latents file being written; delete it.")
    return f


def _rewrite_committed(partial: Path) -> None:
    """Copy the committed rows of an interrupted ``.partial`` into a fresh file, in its place.

    A process killed while HDF5 flushes can leave a file whose metadata is only partly on disk:
    the root still says the last commit, but a chunk index, or the end-of-allocation mark, is
    from the unfinished block. Reading it is safe (and checked: every chunk carries a
    Fletcher-32 checksum), but writing on into it can let new allocations overwrite metadata
    the committed rows depend on (a kill test found a resumed file whose /mu failed its
    checksum). So a resume never appends to the killed file: it reads the committed rows —
    up to the first chunk that fails to read, if one does — and writes them, with every
    attribute and creation property, to a new file written in one session.

    Raises:
        StoreError: The file cannot be opened, or is not a latents file being written.
    """
    from latentdiag.atomic import atomic_path

    with _open_partial(partial, "r") as old:
        n_rows = _readable_rows(old, int(old.attrs.get("n_rows", 0)))
        from latentdiag.store._common import check_room

        check_room(partial, partial.stat().st_size, what="a fresh copy of its committed rows")
        try:
            with atomic_path(partial) as tmp, h5py.File(tmp, "w") as new:
                _copy_group(old, new, n_rows)
                new.attrs["n_rows"] = n_rows
        except OSError as exc:
            raise _write_error(partial, exc, n_rows, 0) from None


def _grows(ds: h5py.Dataset) -> bool:
    """A per-row dataset: extensible along its first axis."""
    return bool(ds.maxshape) and ds.maxshape[0] is None


def _row_datasets(group: h5py.Group) -> list[h5py.Dataset]:
    out: list[h5py.Dataset] = []
    group.visititems(
        lambda _, obj: out.append(obj) if isinstance(obj, h5py.Dataset) and _grows(obj) else None
    )
    return out


def _readable_rows(f: h5py.File, n_rows: int) -> int:
    """The committed rows every growing dataset reads back whole, chunk by chunk (the first
    damaged chunk ends them)."""
    for ds in _row_datasets(f):
        step = ds.chunks[0] if ds.chunks else CHUNK_ROWS
        rows = min(n_rows, ds.shape[0])
        for start in range(0, rows, step):
            try:
                ds[start : min(start + step, rows)]
            except (OSError, RuntimeError):
                rows = start
                break
        n_rows = min(n_rows, rows)
    return n_rows


def _copy_group(src: h5py.Group, dst: h5py.Group, n_rows: int) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            _copy_group(obj, dst.create_group(name), n_rows)
            continue
        if not _grows(obj):
            src.copy(obj, dst, name=name)
            continue
        ds = dst.create_dataset(
            name,
            shape=(n_rows, *obj.shape[1:]),
            maxshape=obj.maxshape,
            dtype=obj.dtype,
            chunks=obj.chunks,
            compression=obj.compression,
            compression_opts=obj.compression_opts,
            shuffle=obj.shuffle,
            fletcher32=obj.fletcher32,
        )
        step = obj.chunks[0] if obj.chunks else CHUNK_ROWS
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            ds[start:stop] = obj[start:stop]
        for key, value in obj.attrs.items():
            ds.attrs[key] = value


def _block_bytes(arr: np.ndarray) -> int:
    if arr.dtype == object:  # variable-length strings: their characters, plus a heap entry
        return int(sum(len(str(s).encode()) + 16 for s in arr))
    return int(arr.nbytes)


def _write_error(path: Path, exc: BaseException, start: int, need: int) -> StoreError:
    """A failed write (a full disk or quota the room check could not see, an I/O error)."""
    text = " ".join(str(exc).split())
    no_room = "errno = 28" in text or "errno = 122" in text or "No space left" in text
    no_room = no_room or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    if no_room:
        return StoreError(
            f"the disk (or quota) holding {path} filled up while writing rows from {start:,} "
            f"(about {mib(need)} were needed); make room and run the same command again "
            "with --overwrite if it cannot resume."
        )
    return StoreError(f"writing {path} failed at row {start:,}: {text[:200]}")


def _check_specs(columns: Sequence[ColumnSpec | Column] | None) -> dict[str, ColumnSpec]:
    out: dict[str, ColumnSpec] = {}
    for item in columns or ():
        spec = item.spec if isinstance(item, Column) else item
        try:
            check_column_name(spec.name)
        except ConfigError as exc:
            raise StoreError(str(exc)) from None
        if spec.name in out:
            raise StoreError(f"two columns are named {spec.name!r}; column names must be unique.")
        if spec.categories is None and np.dtype(spec.dtype).kind not in "biuf":
            raise StoreError(
                f"column {spec.name!r}: a numeric column needs a number or bool dtype; got "
                f"{spec.dtype}."
            )
        if spec.categories is not None and len(set(spec.categories)) != len(spec.categories):
            raise StoreError(f"column {spec.name!r}: its categories must be unique.")
        out[spec.name] = spec
    return out


def _read_specs(f: h5py.File) -> dict[str, ColumnSpec]:
    """The column specs of an open file (for resuming it)."""
    if COLUMNS_GROUP not in f:
        return {}
    group = f[COLUMNS_GROUP]
    order = names_attr(group, "names") or sorted(group)
    out: dict[str, ColumnSpec] = {}
    for name in order:
        obj = group[name]
        if isinstance(obj, h5py.Group):
            cats = tuple(
                c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in obj["categories"][()]
            )
            out[name] = ColumnSpec(name, cats, "int32", bool(obj.attrs.get("ordered", False)))
        else:
            out[name] = ColumnSpec(name, None, str(obj.dtype))
    return out


def write_latents(
    path: str | os.PathLike[str],
    mu: np.ndarray,
    *,
    logvar: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
    factors: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
    index: np.ndarray | Sequence[int] | None = None,
    columns: Mapping[str, Any] | Sequence[Column] | None = None,
    label_key: str | None = None,
    partitions: Mapping[str, Sequence[int]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    compress_latents: bool = False,
) -> Path:
    """Write whole arrays as a complete latents file (a convenience over :class:`LatentWriter`).

    When ``labels`` is given without ``label_names`` the names are the label values as strings
    and the values are mapped to 0..k-1; likewise ``factor_names`` default to f0, f1, ...
    ``compress_latents`` is as for :class:`LatentWriter`.

    ``columns`` are per-row metadata: a mapping name -> values (strings, bools and pandas
    categoricals become categorical columns, numbers stay numeric; see
    :func:`~latentdiag.columns.column_from_values`) or a list of
    :class:`~latentdiag.columns.Column`. ``label_key`` names the one that is the default label
    (instead of ``labels``).
    """
    from latentdiag.columns import column_from_values

    mu = np.asarray(mu)
    if mu.ndim != 2:
        raise StoreError(f"mu must be 2-D (n_samples, latent_dim); got shape {mu.shape}.")
    n = mu.shape[0]
    cols: list[Column] = []
    try:
        if isinstance(columns, Mapping):
            cols = [column_from_values(str(k), v) for k, v in columns.items()]
        elif columns is not None:
            cols = list(columns)
    except ConfigError as exc:
        raise StoreError(str(exc)) from None
    for col in cols:
        if len(col) != n:
            raise StoreError(
                f"column {col.name!r} has {len(col):,} values but mu has {n:,} rows; give one "
                "value per row."
            )
    if label_key is not None and labels is not None:
        raise StoreError("give labels= or label_key=, not both: label_key names a column.")
    if labels is not None and label_names is None:
        values, labels = np.unique(np.asarray(labels), return_inverse=True)
        label_names = [str(v) for v in values]
    if factors is not None and factor_names is None:
        factor_names = [f"f{i}" for i in range(np.asarray(factors).shape[1])]
    with LatentWriter(
        path,
        latent_dim=mu.shape[1],
        has_logvar=logvar is not None,
        label_names=label_names,
        factor_names=factor_names,
        sample_ids=sample_ids is not None,
        index=index is not None,
        partitions=partitions,
        provenance=provenance,
        overwrite=overwrite,
        compress_latents=compress_latents,
        columns=cols,
        label_key=label_key,
    ) as w:
        for start in range(0, max(n, 1), block_rows):
            sl = slice(start, min(start + block_rows, n))
            w.append(
                mu[sl],
                logvar=None if logvar is None else logvar[sl],
                labels=None if labels is None else np.asarray(labels)[sl],
                factors=None if factors is None else factors[sl],
                sample_ids=None if sample_ids is None else list(sample_ids[sl]),
                index=None if index is None else np.asarray(index)[sl],
                columns={c.name: c.values[sl] for c in cols},
            )
    return Path(path)
