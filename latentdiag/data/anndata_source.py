"""AnnData ``.h5ad`` files as vector data: ``X`` (or a layer) with ``obs`` as metadata columns.

Single-cell data lives in AnnData: counts or normalized expression in ``X`` (dense, or a sparse
CSR / CSC matrix), raw counts often in a layer (``layers["counts"]``), cell metadata in ``obs``
(cell type, batch, donor…), gene names in ``var_names``. :func:`open_h5ad` reads one as a
:class:`~latentdiag.data.vectors.VectorDataset`:

* the matrix: ``X``, or ``layers[layer]``; sparse stays sparse (as CSR); dense is read whole
  up to 2 GiB, bigger dense data is read from the file as it is needed;
* every ``obs`` column is a metadata column (categoricals keep their categories), the default
  label the first named like a label (``cell_type``, ``label``, ``class``…);
* ``obs_names`` are the sample ids, ``var_names`` the feature names.

Each element is read with anndata's own element readers (``read_elem``, ``sparse_dataset``),
so only what is asked for is loaded: ``anndata.read_h5ad(backed="r")`` would leave ``X`` on
disk but load every layer, ``obsm`` and ``obsp`` into memory. ``anndata`` is imported only here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.columns import Column, column_from_values
from latentdiag.data._common import Options
from latentdiag.data.labels import is_label_name
from latentdiag.data.vector_arrays import IN_MEMORY_BYTES, H5Matrix, build_vector_dataset
from latentdiag.data.vectors import VectorDataset
from latentdiag.errors import ConfigError, DataError

__all__ = ["is_anndata_file", "open_h5ad"]


def is_anndata_file(path: Path) -> bool:
    """Whether ``path`` is an AnnData file: named ``.h5ad``, or HDF5 marked as anndata."""
    if path.suffix.lower() == ".h5ad":
        return True
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("encoding-type")
    except OSError:
        return False
    return (kind.decode() if isinstance(kind, bytes) else kind) == "anndata"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """anndata warns about things a reader cannot change (old encodings, string indices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _readers() -> tuple[Any, Any]:
    """anndata's ``read_elem`` and ``sparse_dataset`` (``anndata.io`` from 0.11, before that
    ``anndata.experimental``)."""
    try:
        import anndata
    except ImportError:  # pragma: no cover - anndata is a dependency
        raise DataError(
            "reading .h5ad files needs the anndata package: pip install anndata"
        ) from None
    io = getattr(anndata, "io", None)
    if io is not None and hasattr(io, "read_elem") and hasattr(io, "sparse_dataset"):
        return io.read_elem, io.sparse_dataset
    from anndata import experimental

    return experimental.read_elem, experimental.sparse_dataset


def _encoding(elem: Any) -> str:
    kind = elem.attrs.get("encoding-type", "")
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def _matrix(elem: Any, path: Path, key: str, read_elem: Any, sparse_dataset: Any) -> Any:
    """The matrix at ``key``: a scipy CSR matrix, an ndarray, or an :class:`H5Matrix`."""
    import h5py

    if isinstance(elem, h5py.Dataset):
        shape = tuple(int(s) for s in elem.shape)
        if len(shape) != 2:
            raise DataError(f"{path}: {key} has shape {shape}; expected a (cells, genes) matrix.")
        if shape[0] * shape[1] * elem.dtype.itemsize <= IN_MEMORY_BYTES:
            return np.asarray(elem[...])
        return H5Matrix(str(path.resolve()), key)
    if _encoding(elem) in ("csr_matrix", "csc_matrix"):
        matrix = sparse_dataset(elem).to_memory()
    else:
        matrix = read_elem(elem)
    if hasattr(matrix, "tocsr"):
        return matrix.tocsr()
    arr = np.asarray(matrix)
    if arr.ndim != 2:
        raise DataError(f"{path}: {key} has shape {arr.shape}; expected a (cells, genes) matrix.")
    return arr


def open_h5ad(
    path: str, *, opts: Options, layer: str | None = None, label_key: str | None = None
) -> VectorDataset:
    """Open an AnnData file as vector data (see the module docstring).

    Args:
        path: The ``.h5ad`` file.
        opts: Subset, seed and ``standardize``.
        layer: The layer to read instead of ``X`` (``counts``), or None.
        label_key: The ``obs`` column that is the label; None for the default.

    Raises:
        DataError: The file cannot be read as AnnData, has no ``X`` (the message lists its
            layers), no layer ``layer`` (likewise), an obs column that cannot be a column,
            values that are not finite, an unknown or unfit label column.
    """
    import h5py

    p = Path(path)
    read_elem, sparse_dataset = _readers()
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"cannot read {path} as AnnData (.h5ad): {exc}.") from None
    with f, _quiet():
        layers = list(f["layers"].keys()) if "layers" in f else []
        have = ", ".join(layers) or "none"
        if layer is not None:
            if layer not in layers:
                raise DataError(
                    f"--layer {layer}: {path} has no layer {layer!r}; its layers: {have}."
                )
            key = f"layers/{layer}"
        elif "X" not in f:
            raise DataError(
                f"{path} has no X (the AnnData was saved without one); its layers: {have}; "
                "choose one with --layer NAME."
            )
        else:
            key = "X"
        try:
            obs = read_elem(f["obs"])
            var = read_elem(f["var"])
            matrix = _matrix(f[key], p, key, read_elem, sparse_dataset)
        except DataError:
            raise
        except Exception as exc:  # anndata and h5py raise many kinds for damaged files
            text = " ".join(str(exc).split())[:200]
            raise DataError(
                f"cannot read {path} as AnnData (.h5ad): {text}; check that anndata.read_h5ad "
                "opens it."
            ) from None
    columns: dict[str, Column] = {}
    for name in obs.columns:
        try:
            columns[str(name)] = column_from_values(str(name), obs[name], where=str(path))
        except ConfigError as exc:
            raise DataError(str(exc)) from None
    where = p.name if layer is None else f"{p.name}:layers/{layer}"
    default = next((n for n in columns if is_label_name(n)), None)
    return build_vector_dataset(
        matrix,
        opts=opts,
        where=where,
        id_prefix=where,
        source=str(path) if layer is None else f"{path}:layers/{layer}",
        columns=columns,
        default_label=default,
        label_key=label_key,
        feature_names=[str(v) for v in var.index],
        sample_ids=[str(v) for v in obs.index],
    )
