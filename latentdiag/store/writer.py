"""Writing latents files block by block: :class:`LatentWriter` and :func:`write_latents`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.errors import StoreError
from latentdiag.partitions import check_partitions
from latentdiag.store._common import (
    CHUNK_ROWS,
    DEFAULT_BLOCK_ROWS,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROW_DATASETS,
    STR_DTYPE,
    check_names,
    encode_attr,
    names_attr,
    partial_path,
    utcnow,
)

__all__ = ["LatentWriter", "write_latents"]

LATENT_DATASETS = ("mu", "logvar")  # stored uncompressed unless compress_latents


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
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        if int(latent_dim) < 1:
            raise StoreError(f"latent_dim must be at least 1; got {latent_dim}.")
        if self.path.exists() and not overwrite:
            raise StoreError(
                f"{self.path} already exists; choose another output path, remove it, or "
                "overwrite it (--overwrite)."
            )
        if not self.path.parent.exists():
            raise StoreError(f"cannot write {self.path}: folder {self.path.parent} does not exist.")
        self.latent_dim = int(latent_dim)
        self.label_names = check_names(label_names, "label names")
        self.factor_names = check_names(factor_names, "factor names")
        self.partitions = check_partitions(
            partitions, self.latent_dim, error=StoreError, where=str(self.path)
        )
        self._file = h5py.File(self.partial, "w")
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
            self._create("sample_ids", (), STR_DTYPE)
        if index:
            self._create("index", (), np.int64)
        g = f.create_group("partitions")
        for name, (start, stop) in self.partitions.items():
            g.attrs[name] = np.array([start, stop], dtype=np.int64)
        pg = f.create_group("provenance")
        for key, value in (provenance or {}).items():
            pg.attrs[str(key)] = encode_attr(value)
        f.flush()

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
        self._compress_latents = f["mu"].compression is not None
        self.n_rows = int(f.attrs.get("n_rows", 0))
        self.latent_dim = int(f["mu"].shape[1])
        self.label_names = names_attr(f, "label_names")
        self.factor_names = names_attr(f, "factor_names")
        self.partitions = {
            str(k): (int(v[0]), int(v[1])) for k, v in f.get("partitions", {}).attrs.items()
        }
        for name in ROW_DATASETS:
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
            pg.attrs[key] = encode_attr(value)

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
    compress_latents: bool = False,
) -> Path:
    """Write whole arrays as a complete latents file (a convenience over :class:`LatentWriter`).

    When ``labels`` is given without ``label_names`` the names are the label values as strings
    and the values are mapped to 0..k-1; likewise ``factor_names`` default to f0, f1, ...
    ``compress_latents`` is as for :class:`LatentWriter`.
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
        compress_latents=compress_latents,
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
