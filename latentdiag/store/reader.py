"""Reading latents files: :class:`LatentStore` validates on open and reads in blocks."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.errors import StoreError
from latentdiag.partitions import check_partitions
from latentdiag.store._common import (
    DEFAULT_BLOCK_ROWS,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROW_DATASETS,
    SAMPLE_IDS_FROM_INDEX,
    decode_attr,
    label_minmax,
    names_attr,
    partial_path,
    short_error,
)

__all__ = ["LatentStore", "StoreSummary"]


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
                f"{p} is damaged or truncated and cannot be opened as HDF5 ({short_error(exc)}); "
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
                f"{p} is damaged or truncated: reading it failed ({short_error(exc)}); "
                "write it again."
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
        self.provenance: dict[str, Any] = {}
        if "provenance" in f:
            self.provenance = {k: decode_attr(v) for k, v in f["provenance"].attrs.items()}
        created = f.attrs.get("created")
        self.created = decode_attr(created) if created is not None else None
        ver = f.attrs.get("latentdiag_version")
        self.latentdiag_version = decode_attr(ver) if ver is not None else None

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
                f"{self.path} is damaged or truncated: reading /{name} failed "
                f"({short_error(exc)}); write it again."
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
        """Each row's sample id: ``/sample_ids``, or ``"<data_source>[<index>]"`` when the
        provenance says the ids follow ``/index`` (files embedded from in-memory arrays)."""
        if self.has("sample_ids"):
            return self.read("sample_ids")
        source = self.provenance.get("data_source")
        if self.provenance.get("sample_ids") == SAMPLE_IDS_FROM_INDEX and self.has("index"):
            return np.asarray([f"{source}[{i}]" for i in self.read("index").tolist()])
        return None

    @property
    def index(self) -> np.ndarray | None:
        """Each row's position in the data it was embedded from (``/index``), if recorded."""
        return self.read("index").astype(np.int64, copy=False) if self.has("index") else None

    def iter_blocks(
        self, block_rows: int = DEFAULT_BLOCK_ROWS, names: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield consecutive row blocks as ``{name: array}`` for the datasets present."""
        wanted = [n for n in (names or ROW_DATASETS) if self.has(n)]
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
        for name in ROW_DATASETS:
            if self.has(name):
                ds = self._file[name]
                datasets[name] = {
                    "shape": [self.n_samples, *ds.shape[1:]],
                    "dtype": "str" if name == "sample_ids" else str(ds.dtype),
                    "compression": self.compression(name),
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
