"""AnnData ``.h5ad`` files as latents: read them in place, write them losslessly.

Single-cell VAEs (scVI, scANVI, totalVI) keep their latents in AnnData: the embedding in
``adata.obsm["X_scVI"]``, the metadata in ``adata.obs``. :class:`AnnDataLatents` reads such a
file (or an ``AnnData`` object in memory) as a :class:`~latentdiag.store.base.LatentSource`, so
``metrics``, ``check``, ``report`` and ``inspect`` take it as they take a latents file.

:func:`write_h5ad` writes any latents source as AnnData, with these keys (docs/format.md)::

    obsm["X_latent"]          mu (n, d), a basis scanpy plots: sc.pl.embedding(adata, "X_latent")
    obsm["latent_logvar"]     logvar (n, d), when present
    obsm["latent_factors"]    ground-truth factors (n, f), when present
    obs[<column>]             every metadata column (categorical or numeric)
    obs["_latentdiag_index"]  each row's position in its data (/index), when present
    obs_names                 sample ids (or 0..n-1)
    uns["latentdiag"]         which keys hold what, partitions, factor names, the default
                              label, provenance (JSON), so the way back loses nothing

The ``anndata`` package (the scverse standard) does the reading and writing; it is imported
only when an ``.h5ad`` file is used, so ``latentdiag --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag import __version__
from latentdiag.columns import Column, column_from_values
from latentdiag.errors import ConfigError, StoreError
from latentdiag.partitions import check_partitions
from latentdiag.store._common import SAMPLE_IDS_FROM_INDEX, short_error, utcnow
from latentdiag.store.base import LatentSource

__all__ = [
    "DEFAULT_OBSM",
    "FACTORS_OBSM",
    "INDEX_COLUMN",
    "LOGVAR_OBSM",
    "UNS_KEY",
    "AnnDataLatents",
    "is_h5ad",
    "write_h5ad",
]

DEFAULT_OBSM = "X_latent"
LOGVAR_OBSM = "latent_logvar"
FACTORS_OBSM = "latent_factors"
INDEX_COLUMN = "_latentdiag_index"
UNS_KEY = "latentdiag"
# How obs_names relate to the latents' sample ids (uns["latentdiag"]["sample_ids"]).
_IDS_STORED = "obs_names"
_IDS_NONE = "none"


def _anndata() -> Any:
    try:
        import anndata
    except ImportError:  # pragma: no cover - anndata is a dependency
        raise StoreError(
            "reading or writing .h5ad files needs the anndata package: pip install anndata"
        ) from None
    return anndata


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """anndata warns about things a reader cannot change (string indices, old encodings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def is_h5ad(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an AnnData file: named ``.h5ad``, or HDF5 marked as anndata."""
    p = Path(path)
    if p.suffix.lower() == ".h5ad":
        return True
    try:
        if not p.is_file() or not h5py.is_hdf5(p):
            return False
        with h5py.File(p, "r") as f:
            kind = f.attrs.get("encoding-type")
    except OSError:
        return False
    if isinstance(kind, bytes):
        kind = kind.decode()
    return kind == "anndata"


def _x_info(path: Path) -> tuple[str | None, tuple[int, ...] | None]:
    """The kind of ``X`` (``csr_matrix``, ``csc_matrix``, ``array``) and its shape, read from
    the HDF5 attributes without loading it."""
    try:
        with h5py.File(path, "r") as f:
            if "X" not in f:
                return None, None
            x = f["X"]
            kind = x.attrs.get("encoding-type")
            if isinstance(kind, bytes):
                kind = kind.decode()
            if isinstance(x, h5py.Dataset):
                return str(kind or "array"), tuple(int(s) for s in x.shape)
            shape = x.attrs.get("shape", x.attrs.get("h5sparse_shape"))
            return str(kind or "sparse"), None if shape is None else tuple(int(s) for s in shape)
    except OSError:
        return None, None


def _shape(a: Any) -> str:
    shape = getattr(a, "shape", None)
    return " × ".join(f"{s:,}" for s in shape) if shape is not None else "?"


class AnnDataLatents(LatentSource):
    """An AnnData file (or object) read as latents: an obsm embedding with obs as columns.

    Args:
        source: A ``.h5ad`` path, or an ``anndata.AnnData`` object in memory.
        obsm: The obsm key of the embedding; default: the one latentdiag wrote, else the only
            ``X_*`` entry. ``"X"`` measures ``adata.X`` itself (when dense).
        logvar_obsm: The obsm key of posterior log-variances, if any.
        label_key: The obs column that should separate; default: the one latentdiag recorded.
        batch_key: The obs column that should mix.

    Raises:
        StoreError: The file is missing or not AnnData, no embedding can be chosen (none, or
            several), the embedding is not a 2-D float array, or logvar does not match it.
        ConfigError: ``label_key`` / ``batch_key`` name no obs column, or one unfit to group by.
    """

    file_format = "anndata"

    def __init__(
        self,
        source: Any,
        *,
        obsm: str | None = None,
        logvar_obsm: str | None = None,
        label_key: str | None = None,
        batch_key: str | None = None,
        pre_obsm: str | None = None,
    ) -> None:
        ad = _anndata()
        self._backed: Any = None
        if isinstance(source, ad.AnnData):
            adata = source
            self.path = Path(str(source.filename)) if source.isbacked else Path("<AnnData>")
            x_kind, x_shape = _memory_x(adata)
        else:
            p = Path(source)
            self.path = p
            _check_file(p)
            x_kind, x_shape = _x_info(p)
            try:
                with _quiet():
                    adata = ad.read_h5ad(p, backed="r")
            except Exception as exc:  # anndata and h5py raise many kinds for damaged files
                raise StoreError(
                    f"{p} cannot be read as AnnData ({short_error(exc)}); check that it is a "
                    "complete .h5ad file (anndata.read_h5ad must open it)."
                ) from None
            self._backed = adata
        try:
            self._load(adata, obsm, logvar_obsm, x_kind, x_shape)
            if pre_obsm is not None:
                self._load_pre(adata, pre_obsm)
            self._select(label_key, batch_key, default_from_file=False)
        except BaseException:
            self.close()
            raise

    # -- loading --------------------------------------------------------------------------
    def _load_pre(self, adata: Any, key: str) -> None:
        """The embedding before integration (``--pre-obsm``), for mixing.pcr_comparison."""
        p = self.path
        if key not in adata.obsm:
            raise StoreError(
                f"--pre-obsm {key}: {p} has no obsm entry {key!r}; its obsm keys: "
                f"{_list_obsm(adata, list(adata.obsm.keys()))}."
            )
        pre = _check_embedding(_as_array(adata.obsm[key]), f"{p}: obsm {key!r}")
        if pre.shape[0] != self.n_samples:
            raise StoreError(
                f"--pre-obsm {key}: obsm {key!r} has {pre.shape[0]:,} rows but the embedding "
                f"has {self.n_samples:,}."
            )
        self.pre_embedding = pre
        self.pre_obsm_key = str(key)

    def _load(
        self,
        adata: Any,
        obsm: str | None,
        logvar_obsm: str | None,
        x_kind: str | None,
        x_shape: tuple[int, ...] | None,
    ) -> None:
        p = self.path
        meta = _uns_meta(adata)
        self._meta = meta
        keys = list(adata.obsm.keys())
        key = obsm if obsm is not None else meta.get("mu")
        if key is None:
            key = _default_obsm(p, adata, keys, x_kind, x_shape)
        if key == "X":
            if x_kind is not None and x_kind != "array":
                raise StoreError(
                    f"--obsm X: the X of {p} is a sparse matrix ({x_kind}, "
                    f"{_shape_text(x_shape)}), not an embedding; embed it with a model first."
                )
            mu = np.asarray(adata.X[:] if adata.isbacked else adata.X)
        elif key not in adata.obsm:
            raise StoreError(
                f"--obsm {key}: {p} has no obsm entry {key!r}; its obsm keys: "
                f"{_list_obsm(adata, keys)}."
            )
        else:
            mu = _as_array(adata.obsm[key])
        self.obsm_key = str(key)
        mu = _check_embedding(mu, f"{p}: obsm {key!r}")
        self._arrays: dict[str, np.ndarray] = {"mu": mu}
        n, d = mu.shape
        self.n_samples, self.latent_dim = int(n), int(d)
        lv_key = logvar_obsm if logvar_obsm is not None else meta.get("logvar")
        self.logvar_obsm_key = None if lv_key is None else str(lv_key)
        if lv_key is not None:
            if lv_key not in adata.obsm:
                raise StoreError(
                    f"--logvar-obsm {lv_key}: {p} has no obsm entry {lv_key!r}; its obsm "
                    f"keys: {_list_obsm(adata, keys)}."
                )
            lv = _check_embedding(_as_array(adata.obsm[lv_key]), f"{p}: obsm {lv_key!r}")
            if lv.shape != mu.shape:
                raise StoreError(
                    f"--logvar-obsm {lv_key}: obsm {lv_key!r} has shape {lv.shape} but the "
                    f"embedding {key!r} has {mu.shape}; log-variances need one per latent value."
                )
            self._arrays["logvar"] = lv
        fac_key = meta.get("factors")
        self.factor_names = None
        if fac_key is not None and fac_key in adata.obsm:
            fac = _as_array(adata.obsm[fac_key]).astype(np.float32, copy=False)
            names = [str(x) for x in _as_list(meta.get("factor_names"))]
            if fac.ndim != 2 or len(names) != fac.shape[1]:
                raise StoreError(
                    f"{p}: obsm {fac_key!r} (factors) has shape {fac.shape} but "
                    f"uns['{UNS_KEY}']['factor_names'] names {len(names)}."
                )
            self._arrays["factors"] = fac
            self.factor_names = names
        raw_parts = meta.get("partitions") or {}
        parts = {str(k): _as_list(v) for k, v in dict(raw_parts).items()}
        self.partitions = dict(
            sorted(
                check_partitions(parts, d, error=StoreError, where=str(p)).items(),
                key=lambda kv: kv[1],
            )
        )
        self.provenance = _provenance(meta, p, self.obsm_key, self.logvar_obsm_key)
        self.created = meta.get("created")
        self.latentdiag_version = meta.get("latentdiag_version")
        self.format_version = int(meta.get("format_version", 2))
        self.complete = True
        # Columns: every obs column but the row index latentdiag keeps there.
        index_col = meta.get("index_column")
        cols: dict[str, Column] = {}
        for name in adata.obs.columns:
            if name == index_col:
                continue
            try:
                cols[str(name)] = column_from_values(str(name), adata.obs[name], where=str(p))
            except ConfigError as exc:
                raise StoreError(str(exc)) from None
        self._columns = cols
        if index_col is not None and index_col in adata.obs.columns:
            self._arrays["index"] = np.asarray(adata.obs[index_col]).astype(np.int64)
        ids_mode = meta.get("sample_ids", _IDS_STORED)
        if ids_mode == _IDS_STORED:
            self._arrays["sample_ids"] = np.asarray([str(s) for s in adata.obs_names])
        elif ids_mode == SAMPLE_IDS_FROM_INDEX:
            self.provenance.setdefault("sample_ids", SAMPLE_IDS_FROM_INDEX)
        label = meta.get("label_key")
        self.file_label_key = str(label) if label is not None and label in cols else None

    # -- LatentSource ---------------------------------------------------------------------
    @property
    def columns(self) -> dict[str, Column]:
        return self._columns

    def has(self, name: str) -> bool:
        if name == "labels":
            return self._groupings is not None and self._groupings.labels is not None
        return name in self._arrays

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        if name == "labels":
            arr = self.labels
            if arr is None:
                raise StoreError(f"{self.path} has no label column chosen.")
        elif name not in self._arrays:
            raise StoreError(f"{self.path} has no {name}.")
        else:
            arr = self._arrays[name]
        if rows is None:
            return arr
        if isinstance(rows, np.ndarray):
            rows = np.sort(rows)
        return arr[rows]

    def compression(self, name: str) -> str | None:
        return None

    def _dataset_info(self, name: str) -> dict[str, Any]:
        arr = self.read(name)
        where = {
            "mu": f"obsm[{self.obsm_key!r}]",
            "logvar": f"obsm[{self.logvar_obsm_key!r}]",
            "factors": f"obsm[{self._meta.get('factors')!r}]",
            "labels": f"obs[{self.label_key!r}]",
            "sample_ids": "obs_names",
            "index": f"obs[{INDEX_COLUMN!r}]",
        }[name]
        return {
            "shape": list(arr.shape),
            "dtype": "str" if name == "sample_ids" else str(arr.dtype),
            "compression": None,
            "anndata": where,
        }

    def close(self) -> None:
        if self._backed is not None:
            with contextlib.suppress(Exception):
                self._backed.file.close()
            self._backed = None


# -- helpers of the reader -------------------------------------------------------------------
def _check_file(p: Path) -> None:
    if not p.exists():
        from latentdiag.store._common import partial_path

        hint = ""
        if partial_path(p).exists():  # `embed -o x.h5ad` writes a latents .partial first
            hint = (
                f" An unfinished {partial_path(p).name} exists: the run that writes it was "
                "interrupted; run the same command again to resume it."
            )
        raise StoreError(f"{p} does not exist.{hint}")
    if p.is_dir():
        raise StoreError(f"{p} is a folder; expected an AnnData file (.h5ad).")
    try:
        ok = h5py.is_hdf5(p)
    except OSError as exc:
        raise StoreError(f"{p} cannot be read: {exc}.") from None
    if not ok:
        raise StoreError(
            f"{p} is not an HDF5 file, so not an AnnData .h5ad file; it may be damaged or "
            "of another format (a zarr store or a .loom file: convert it with anndata first)."
        )


def _memory_x(adata: Any) -> tuple[str | None, tuple[int, ...] | None]:
    x = adata.X
    if x is None:
        return None, None
    kind = "array" if isinstance(x, np.ndarray) else type(x).__name__
    return kind, tuple(int(s) for s in x.shape)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "unknown shape" if shape is None else " × ".join(f"{s:,}" for s in shape)


def _list_obsm(adata: Any, keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(f"{k} ({_shape(adata.obsm[k])})" for k in keys)


def _default_obsm(
    p: Path, adata: Any, keys: list[str], x_kind: str | None, x_shape: tuple[int, ...] | None
) -> str:
    """The only ``X_*`` obsm entry, or an error that says what to pass."""
    embeddings = [k for k in keys if str(k).startswith("X_")]
    if len(embeddings) == 1:
        return str(embeddings[0])
    if len(embeddings) > 1:
        raise StoreError(
            f"{p} has {len(embeddings)} embeddings in obsm ({_list_obsm(adata, embeddings)}); "
            "choose one with --obsm KEY."
        )
    if keys:
        raise StoreError(
            f"{p} has no X_* embedding in obsm (its obsm keys: {_list_obsm(adata, keys)}); "
            "name the one to measure with --obsm KEY."
        )
    if x_kind is not None and x_kind != "array":
        raise StoreError(
            f"{p} has no embedding in obsm, and its X is a sparse matrix ({x_kind}, "
            f"{_shape_text(x_shape)}): data, not latents. Embed it with a model first, or store "
            "your model's latents in adata.obsm['X_...'] (scVI: adata.obsm['X_scVI'] = "
            "model.get_latent_representation())."
        )
    if x_kind == "array":
        raise StoreError(
            f"{p} has no embedding in obsm; its X is a dense {_shape_text(x_shape)} array: pass "
            "--obsm X to measure X itself, or store the latents in adata.obsm['X_...']."
        )
    raise StoreError(f"{p} has no embedding: obsm is empty and there is no X.")


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "to_numpy"):  # a DataFrame in obsm
        return np.asarray(value.to_numpy())
    if hasattr(value, "toarray"):  # a sparse obsm entry
        return np.asarray(value.toarray())
    return np.asarray(value)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return [v.item() if isinstance(v, np.generic) else v for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_embedding(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim != 2:
        raise StoreError(f"{where} must be 2-D (n, d); found shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.floating):
        if np.issubdtype(arr.dtype, np.integer):
            return arr.astype(np.float32)
        raise StoreError(f"{where} must hold numbers; found dtype {arr.dtype}.")
    if arr.shape[1] < 1:
        raise StoreError(f"{where} has no dimensions (shape {arr.shape}).")
    return arr


def _uns_meta(adata: Any) -> dict[str, Any]:
    meta = adata.uns.get(UNS_KEY) if hasattr(adata.uns, "get") else None
    if meta is None or not hasattr(meta, "items"):
        return {}
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if (isinstance(v, np.ndarray) and v.ndim == 0) or isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        out[str(k)] = v
    return out


def _provenance(
    meta: dict[str, Any], path: Path, obsm: str, logvar_obsm: str | None
) -> dict[str, Any]:
    raw = meta.get("provenance")
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    # An AnnData file latentdiag did not write: say where the latents were read from.
    out: dict[str, Any] = {"kind": "anndata", "source": str(path), "obsm": obsm}
    if logvar_obsm is not None:
        out["logvar_obsm"] = logvar_obsm
    return out


# -- writing -----------------------------------------------------------------------------------
def _column_to_pandas(col: Column) -> Any:
    import pandas as pd

    if col.is_categorical:
        assert col.categories is not None
        return pd.Categorical.from_codes(
            col.values.astype(np.int64), categories=list(col.categories), ordered=col.ordered
        )
    return col.values


def write_h5ad(
    source: LatentSource,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    obsm_key: str | None = None,
) -> Path:
    """Write a latents source as an AnnData ``.h5ad`` file, losslessly (see the module doc).

    Args:
        source: An open latents source (a latents file, or another AnnData file).
        out: The ``.h5ad`` file to write; written under a temporary name and renamed when
            complete, so a failure never leaves a partial file under this name.
        overwrite: Replace an existing file.
        obsm_key: The obsm key of the embedding; default: the key it was read from when the
            source came from AnnData, else ``X_latent``.

    Returns:
        The path written.

    Raises:
        StoreError: ``out`` exists (without ``overwrite``), its folder is missing, or it cannot
            be written.
    """
    ad = _anndata()
    import pandas as pd

    out = Path(out)
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; choose another -o path or pass --overwrite.")
    if not out.parent.exists():
        raise StoreError(f"cannot write {out}: folder {out.parent} does not exist.")
    prov = dict(source.provenance)
    if obsm_key is None:
        obsm_key = getattr(source, "obsm_key", None) or (
            str(prov["obsm"]) if prov.get("kind") == "anndata" and prov.get("obsm") else None
        )
    mu_key = obsm_key or DEFAULT_OBSM
    n = source.n_samples
    stored = source.has("sample_ids")
    all_ids = source.sample_ids  # stored, or derived from /index, or None
    derived = not stored and all_ids is not None
    names = [str(i) for i in range(n)] if all_ids is None else [str(s) for s in all_ids]
    ids_mode = _IDS_STORED if stored else (SAMPLE_IDS_FROM_INDEX if derived else _IDS_NONE)
    obs = pd.DataFrame(index=pd.Index(names, dtype=object))
    for col in source.columns.values():
        obs[col.name] = _column_to_pandas(col)
    meta: dict[str, Any] = {
        "format": "latents",
        "format_version": 2,
        "latentdiag_version": __version__,
        "created": utcnow(),
        "mu": mu_key,
        "sample_ids": ids_mode,
        "provenance": json.dumps(prov, default=str),
        "partitions": {
            k: np.array([a, b], dtype=np.int64) for k, (a, b) in source.partitions.items()
        },
    }
    obsm: dict[str, np.ndarray] = {mu_key: np.asarray(source.read("mu"))}
    if source.has("logvar"):
        lv_key = getattr(source, "logvar_obsm_key", None) or LOGVAR_OBSM
        obsm[lv_key] = np.asarray(source.read("logvar"))
        meta["logvar"] = lv_key
    if source.has("factors"):
        obsm[FACTORS_OBSM] = np.asarray(source.read("factors"))
        meta["factors"] = FACTORS_OBSM
        meta["factor_names"] = list(source.factor_names or [])
    if source.has("index"):
        obs[INDEX_COLUMN] = np.asarray(source.read("index"), dtype=np.int64)
        meta["index_column"] = INDEX_COLUMN
    label = source.file_label_key
    if label is not None and label in source.columns:
        meta["label_key"] = label
    adata = ad.AnnData(obs=obs, obsm=obsm, uns={UNS_KEY: meta})
    from latentdiag.atomic import atomic_path

    try:
        with atomic_path(out, keep_suffix=True) as tmp, _quiet():
            adata.write_h5ad(tmp)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}.") from None
    return out
