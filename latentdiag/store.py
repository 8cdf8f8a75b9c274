"""The latents file: an HDF5 file of posterior means, log-variances, labels and factors.

Format version 1 (see ``docs/format.md``)::

    /            attrs: latentdiag_format="latents", format_version=1, created, latentdiag_version,
                        complete, n_rows, label_names?, factor_names?
    /mu          float32 (n, d)    posterior means or deterministic embedding
    /logvar      float32 (n, d)    optional posterior log-variances
    /labels      int64 (n,)        optional group labels, 0..len(label_names)-1
    /factors     float32 (n, f)    optional ground-truth generative factors
    /sample_ids  UTF-8 str (n,)    optional origin of each row
    /index       int64 (n,)        optional position of each row's sample in its data (shards)
    /partitions  group; attrs name -> [start, stop)
    /provenance  group; attrs: how the file was made (dicts and lists stored as JSON strings)

Writing goes through :class:`LatentWriter`: rows are appended block by block to
``<name>.partial`` (chunked, gzip-compressed, resizable along rows) and the file is renamed to
its final name only by :meth:`LatentWriter.finalize`, which sets ``complete=True``. A writer
that dies leaves a ``.partial`` file that says how many rows it committed (``n_rows``), so the
same run can resume it with :meth:`LatentWriter.resume`.

Reading goes through :class:`LatentStore`, which validates the file on open and raises
:class:`~latentdiag.errors.StoreError` naming the file and what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.errors import StoreError

FORMAT_NAME = "latents"
FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"
DEFAULT_BLOCK_ROWS = 65536
# Row chunks of ~16k rows: big enough for gzip to pay off, small enough to read in blocks.
_CHUNK_ROWS = 16384
_ROW_DATASETS = ("mu", "logvar", "labels", "factors", "sample_ids", "index")
_STR_DTYPE = h5py.string_dtype(encoding="utf-8")

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "FORMAT_VERSION",
    "LatentStore",
    "LatentWriter",
    "StoreSummary",
    "partial_path",
    "write_latents",
]


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The in-progress name of a latents file: ``<name>.partial``."""
    p = Path(path)
    return p.with_name(p.name + PARTIAL_SUFFIX)


def _utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _encode_attr(value: Any) -> Any:
    """HDF5 attributes hold scalars, strings and flat arrays; anything richer goes as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_decode_attr(v) for v in value.tolist()]
    if isinstance(value, str) and (value == "null" or value[:1] in ("[", "{")):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, TypeError):
            return value
    return value


def _check_names(names: Sequence[str] | None, what: str) -> list[str] | None:
    if names is None:
        return None
    out = [str(n) for n in names]
    if len(set(out)) != len(out):
        raise StoreError(f"{what} must be unique; got {out}.")
    return out


def _check_partitions(
    partitions: Mapping[str, Sequence[int]] | None, latent_dim: int, where: str
) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for name, bounds in (partitions or {}).items():
        try:
            start, stop = (int(b) for b in bounds)
        except (TypeError, ValueError):
            raise StoreError(
                f"{where}: partition {name!r} must be [start, stop); got {bounds!r}."
            ) from None
        if not 0 <= start < stop <= latent_dim:
            raise StoreError(
                f"{where}: partition {name!r} = [{start}, {stop}) is out of range for "
                f"latent dimension {latent_dim}; expected 0 <= start < stop <= {latent_dim}."
            )
        out[str(name)] = (start, stop)
    return out


class LatentWriter:
    """Writes a latents file row block by row block; memory stays flat whatever n is.

    Use it as a context manager, or call :meth:`finalize` yourself::

        with LatentWriter("latents.h5", latent_dim=16, label_names=["a", "b"]) as w:
            for mu, labels in blocks:
                w.append(mu, labels=labels)
        # latents.h5 now exists with complete=True

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
        overwrite: Replace an existing final file instead of refusing.
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
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        if int(latent_dim) < 1:
            raise StoreError(f"latent_dim must be at least 1; got {latent_dim}.")
        if self.path.exists() and not overwrite:
            raise StoreError(
                f"{self.path} already exists; choose another output path or remove it first."
            )
        if not self.path.parent.exists():
            raise StoreError(f"cannot write {self.path}: folder {self.path.parent} does not exist.")
        self.latent_dim = int(latent_dim)
        self.label_names = _check_names(label_names, "label names")
        self.factor_names = _check_names(factor_names, "factor names")
        self.partitions = _check_partitions(partitions, self.latent_dim, str(self.path))
        self._file = h5py.File(self.partial, "w")
        self._finalized = False
        self.n_rows = 0
        f = self._file
        f.attrs["latentdiag_format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["created"] = _utcnow()
        f.attrs["latentdiag_version"] = __version__
        f.attrs["complete"] = False
        f.attrs["n_rows"] = 0
        self._create("mu", (self.latent_dim,), np.float32)
        if has_logvar:
            self._create("logvar", (self.latent_dim,), np.float32)
        if self.label_names is not None:
            f.attrs["label_names"] = self.label_names
            self._create("labels", (), np.int64)
        if self.factor_names is not None:
            f.attrs["factor_names"] = self.factor_names
            self._create("factors", (len(self.factor_names),), np.float32)
        if sample_ids:
            self._create("sample_ids", (), _STR_DTYPE)
        if index:
            self._create("index", (), np.int64)
        g = f.create_group("partitions")
        for name, (start, stop) in self.partitions.items():
            g.attrs[name] = np.array([start, stop], dtype=np.int64)
        pg = f.create_group("provenance")
        for key, value in (provenance or {}).items():
            pg.attrs[str(key)] = _encode_attr(value)
        f.flush()

    # -- construction helpers -------------------------------------------------------------
    def _create(self, name: str, row_shape: tuple[int, ...], dtype: Any) -> None:
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * 8 or 8
        chunk_rows = max(1, min(_CHUNK_ROWS, (1 << 20) // row_bytes))
        self._file.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=(chunk_rows, *row_shape),
            compression="gzip",
            compression_opts=4,
            shuffle=name != "sample_ids",
        )

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
        try:
            f = h5py.File(partial, "r+")
        except OSError as exc:
            raise StoreError(
                f"{partial} is damaged and cannot be resumed ({exc}); delete it and start again."
            ) from None
        if f.attrs.get("latentdiag_format") != FORMAT_NAME or "mu" not in f:
            f.close()
            raise StoreError(f"{partial} is not a latents file being written; delete it.")
        self = cls.__new__(cls)
        self.path = final
        self.partial = partial
        self._file = f
        self._finalized = False
        self.n_rows = int(f.attrs.get("n_rows", 0))
        self.latent_dim = int(f["mu"].shape[1])
        self.label_names = _names_attr(f, "label_names")
        self.factor_names = _names_attr(f, "factor_names")
        self.partitions = {
            str(k): (int(v[0]), int(v[1])) for k, v in f.get("partitions", {}).attrs.items()
        }
        for name in _ROW_DATASETS:
            if name in f and f[name].shape[0] != self.n_rows:
                f[name].resize(self.n_rows, axis=0)
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
    ) -> None:
        """Append a block of rows. Every dataset the file was created with must be given.

        Raises:
            StoreError: A block has the wrong shape, a missing or unexpected part, or a label
                outside 0..k-1.
        """
        if self._finalized:
            raise StoreError(f"{self.path} is already finalized; no more rows can be added.")
        mu = np.asarray(mu, dtype=np.float32)
        if mu.ndim != 2 or mu.shape[1] != self.latent_dim:
            raise StoreError(f"mu block must have shape (rows, {self.latent_dim}); got {mu.shape}.")
        rows = mu.shape[0]
        parts: dict[str, np.ndarray] = {"mu": mu}
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
                arr = np.asarray([str(s) for s in value], dtype=object)
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
                arr = np.asarray(value, dtype=np.float32)
            expected_shape = (rows, *self._file[name].shape[1:])
            if arr.shape != expected_shape:
                raise StoreError(
                    f"{name} block must have shape {expected_shape} to match mu; got {arr.shape}."
                )
            parts[name] = arr
        start, stop = self.n_rows, self.n_rows + rows
        for name, arr in parts.items():
            ds = self._file[name]
            ds.resize(stop, axis=0)
            ds[start:stop] = arr
        # n_rows is the commit point: a resumed writer trusts rows below it and no others.
        self.n_rows = stop
        self._file.attrs["n_rows"] = stop
        self._file.flush()

    def set_provenance(self, **values: Any) -> None:
        """Add or replace provenance entries (e.g. the device that actually ran)."""
        pg = self._file["provenance"]
        for key, value in values.items():
            pg.attrs[key] = _encode_attr(value)

    def finalize(self) -> Path:
        """Mark the file complete and move it to its final name; returns that path."""
        if self._finalized:
            return self.path
        self._file.attrs["complete"] = True
        self._file.attrs["n_rows"] = self.n_rows
        self._file.close()
        os.replace(self.partial, self.path)
        self._finalized = True
        return self.path

    def close(self) -> None:
        """Close without finalizing: the ``.partial`` file stays, marked incomplete."""
        if not self._finalized and self._file.id.valid:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> LatentWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.close()


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
    partitions: Mapping[str, Sequence[int]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> Path:
    """Write whole arrays as a complete latents file (a convenience over :class:`LatentWriter`).

    When ``labels`` is given without ``label_names`` the names are the label values as strings
    and the values are mapped to 0..k-1; likewise ``factor_names`` default to f0, f1, ...
    """
    mu = np.asarray(mu)
    if mu.ndim != 2:
        raise StoreError(f"mu must be 2-D (n_samples, latent_dim); got shape {mu.shape}.")
    if labels is not None and label_names is None:
        values, labels = np.unique(np.asarray(labels), return_inverse=True)
        label_names = [str(v) for v in values]
    if factors is not None and factor_names is None:
        factor_names = [f"f{i}" for i in range(np.asarray(factors).shape[1])]
    n = mu.shape[0]
    with LatentWriter(
        path,
        latent_dim=mu.shape[1],
        has_logvar=logvar is not None,
        label_names=label_names,
        factor_names=factor_names,
        sample_ids=sample_ids is not None,
        partitions=partitions,
        provenance=provenance,
        overwrite=overwrite,
    ) as w:
        for start in range(0, max(n, 1), block_rows):
            sl = slice(start, min(start + block_rows, n))
            w.append(
                mu[sl],
                logvar=None if logvar is None else logvar[sl],
                labels=None if labels is None else np.asarray(labels)[sl],
                factors=None if factors is None else factors[sl],
                sample_ids=None if sample_ids is None else list(sample_ids[sl]),
            )
    return Path(path)


def _names_attr(f: h5py.File, key: str) -> list[str] | None:
    if key not in f.attrs:
        return None
    raw = f.attrs[key]
    values = raw.tolist() if isinstance(raw, np.ndarray) else [raw]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


@dataclass
class StoreSummary:
    """What a latents file holds: the content of ``latentdiag inspect``."""

    path: str
    n_samples: int
    latent_dim: int
    complete: bool
    format_version: int
    created: str | None
    latentdiag_version: str | None
    datasets: dict[str, dict[str, Any]]
    label_names: list[str] | None
    label_counts: dict[str, int] | None
    factor_names: list[str] | None
    partitions: dict[str, list[int]]
    provenance: dict[str, Any]
    nonfinite: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LatentStore:
    """A validated, read-only latents file.

    Opening checks everything that later code relies on, so that a bad file fails here with a
    message naming the file and the problem rather than deep inside a metric::

        with LatentStore("latents.h5") as store:
            mu = store.mu           # (n, d) float32
            for block in store.iter_blocks(65536):
                ...

    Args:
        path: The latents file.
        allow_incomplete: Open a file whose writer did not finish (for ``inspect`` on a
            ``.partial`` file); only the committed rows are exposed.

    Raises:
        StoreError: The file is missing, not HDF5, truncated, not a latents file, of a newer
            format version, incomplete, missing ``/mu``, or inconsistent.
    """

    def __init__(self, path: str | os.PathLike[str], *, allow_incomplete: bool = False) -> None:
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
            raise StoreError(
                f"{p} is damaged or truncated and cannot be opened as HDF5 ({_short(exc)}); "
                "write it again."
            ) from None
        try:
            self._validate(allow_incomplete)
        except StoreError:
            self._file.close()
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self._file.close()
            raise StoreError(
                f"{p} is damaged or truncated: reading it failed ({_short(exc)}); write it again."
            ) from None

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
            raise StoreError(f"{p}: format_version {version} is not valid; expected 1.")
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
        self.label_names = _names_attr(f, "label_names")
        self.factor_names = _names_attr(f, "factor_names")
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
            lo, hi = _minmax(labels_ds, n)
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
            checked = _check_partitions(raw, d, str(p))
            # HDF5 lists attributes alphabetically; latent order reads better.
            self.partitions = dict(sorted(checked.items(), key=lambda kv: kv[1]))
        self.provenance: dict[str, Any] = {}
        if "provenance" in f:
            self.provenance = {k: _decode_attr(v) for k, v in f["provenance"].attrs.items()}
        created = f.attrs.get("created")
        self.created = _decode_attr(created) if created is not None else None
        ver = f.attrs.get("latentdiag_version")
        self.latentdiag_version = _decode_attr(ver) if ver is not None else None

    # -- access ---------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the file holds the row dataset ``name`` (mu, logvar, labels, ...)."""
        return name in self._file and name in _ROW_DATASETS

    @property
    def has_logvar(self) -> bool:
        return self.has("logvar")

    @property
    def has_labels(self) -> bool:
        return self.has("labels")

    @property
    def has_factors(self) -> bool:
        return self.has("factors")

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
                f"{self.path} is damaged or truncated: reading /{name} failed ({_short(exc)}); "
                "write it again."
            ) from None
        if name == "sample_ids":
            return np.asarray([s.decode("utf-8") if isinstance(s, bytes) else s for s in out])
        return np.asarray(out)

    @property
    def mu(self) -> np.ndarray:
        return self.read("mu").astype(np.float32, copy=False)

    @property
    def logvar(self) -> np.ndarray | None:
        return self.read("logvar").astype(np.float32, copy=False) if self.has_logvar else None

    @property
    def labels(self) -> np.ndarray | None:
        return self.read("labels").astype(np.int64, copy=False) if self.has_labels else None

    @property
    def factors(self) -> np.ndarray | None:
        return self.read("factors").astype(np.float32, copy=False) if self.has_factors else None

    @property
    def sample_ids(self) -> np.ndarray | None:
        return self.read("sample_ids") if self.has("sample_ids") else None

    @property
    def index(self) -> np.ndarray | None:
        """Each row's position in the data it was embedded from (``/index``), if recorded."""
        return self.read("index").astype(np.int64, copy=False) if self.has("index") else None

    def iter_blocks(
        self, block_rows: int = DEFAULT_BLOCK_ROWS, names: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield consecutive row blocks as ``{name: array}`` for the datasets present."""
        wanted = [n for n in (names or _ROW_DATASETS) if self.has(n)]
        for start in range(0, self.n_samples, block_rows):
            sl = slice(start, min(start + block_rows, self.n_samples))
            yield {name: self.read(name, sl) for name in wanted}

    def nonfinite_counts(self, block_rows: int = DEFAULT_BLOCK_ROWS) -> dict[str, int]:
        """Number of NaN or infinite values in each float dataset (read in blocks)."""
        counts = {name: 0 for name in ("mu", "logvar", "factors") if self.has(name)}
        for block in self.iter_blocks(block_rows, names=list(counts)):
            for name, arr in block.items():
                counts[name] += int(arr.size - np.count_nonzero(np.isfinite(arr)))
        return counts

    def label_counts(self) -> dict[str, int] | None:
        """How many rows carry each label name (in label order)."""
        if not self.has_labels or self.label_names is None:
            return None
        counts = np.zeros(len(self.label_names), dtype=np.int64)
        for block in self.iter_blocks(names=["labels"]):
            counts += np.bincount(block["labels"], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}

    def summary(self) -> StoreSummary:
        """Everything ``latentdiag inspect`` shows."""
        datasets = {}
        for name in _ROW_DATASETS:
            if self.has(name):
                ds = self._file[name]
                datasets[name] = {
                    "shape": [self.n_samples, *ds.shape[1:]],
                    "dtype": "str" if name == "sample_ids" else str(ds.dtype),
                    "compression": ds.compression,
                }
        return StoreSummary(
            path=str(self.path),
            n_samples=self.n_samples,
            latent_dim=self.latent_dim,
            complete=self.complete,
            format_version=self.format_version,
            created=self.created,
            latentdiag_version=self.latentdiag_version,
            datasets=datasets,
            label_names=self.label_names,
            label_counts=self.label_counts(),
            factor_names=self.factor_names if self.has_factors else None,
            partitions={k: [a, b] for k, (a, b) in self.partitions.items()},
            provenance=self.provenance,
            nonfinite=self.nonfinite_counts(),
        )

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> LatentStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LatentStore({str(self.path)!r}, n_samples={self.n_samples}, "
            f"latent_dim={self.latent_dim})"
        )


def _minmax(ds: h5py.Dataset, n: int, block_rows: int = DEFAULT_BLOCK_ROWS * 4) -> tuple[int, int]:
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for start in range(0, n, block_rows):
        block = ds[start : min(start + block_rows, n)]
        if block.size:
            lo, hi = min(lo, int(block.min())), max(hi, int(block.max()))
    return lo, hi


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]
