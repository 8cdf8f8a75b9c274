"""Writing image and vector datasets to ``.npz`` or HDF5, in a layout :func:`open_dataset`
reads back.

Images are stored channel-last like MedMNIST — ``(N, S, S)`` for one channel, ``(N, S, S, 3)``
for three — so other tools read the files too. Beside them: ``labels`` (int64), ``factors``
(float32) and the names: arrays ``label_names`` / ``factor_names`` in an ``.npz``, attributes
of the root group in HDF5. Files are written under a temporary name and renamed when complete.

Vectors (:func:`write_vector_dataset`) are stored as ``vectors`` (N, F) in their own dtype,
with ``feature_names``, the name of the label's column (``label_key``) and further metadata
columns: ``columns/<name>`` (codes or numbers), ``column_categories/<name>`` in an ``.npz``
or a ``categories`` attribute in HDF5.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from latentdiag.columns import Column
from latentdiag.data._common import atomic_output
from latentdiag.data.vector_arrays import CATEGORIES_PREFIX, COLUMNS_GROUP
from latentdiag.errors import DataError

__all__ = ["DATASET_SUFFIXES", "check_dataset_path", "write_dataset", "write_vector_dataset"]

DATASET_SUFFIXES = (".npz", ".h5", ".hdf5")


def check_dataset_path(path: str | os.PathLike[str]) -> Path:
    """The output path, checked for a suffix :func:`write_dataset` can write.

    Raises:
        DataError: Another suffix, or a folder of that name exists.
    """
    p = Path(path)
    if p.suffix.lower() not in DATASET_SUFFIXES:
        raise DataError(
            f"cannot write a dataset to {p}: expected a name ending in .npz or .h5 (.hdf5); "
            f"found {p.suffix or 'no suffix'}."
        )
    if p.is_dir():
        raise DataError(f"cannot write a dataset to {p}: a folder of that name exists.")
    return p


def write_dataset(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    factors: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
) -> Path:
    """Write images with their labels and factors to ``path`` (``.npz`` or ``.h5``).

    Args:
        path: Output file; the suffix chooses the format.
        images: (N, C, S, S) uint8 (0..255) or float in [0, 1] (stored as float32).
        labels: (N,) integer labels in 0..k-1, or None.
        label_names: The k names (required with labels).
        factors: (N, f) ground-truth factors, or None.
        factor_names: The f names (default ``f0, f1, ...``).

    Returns:
        The path written.

    Raises:
        DataError: Bad suffix, or arrays whose shapes or lengths disagree.
    """
    p = check_dataset_path(path)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
        raise DataError(f"expected images of shape (N, 1 or 3, S, S); got {images.shape}.")
    n = images.shape[0]
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    stored = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    arrays: dict[str, np.ndarray] = {"images": np.ascontiguousarray(stored)}
    arrays.update(_names_and_factors(n, labels, label_names, factors, factor_names, "image"))
    _check_room(p, arrays)
    with atomic_output(p) as tmp:
        if p.suffix.lower() == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        else:
            _write_h5(tmp, arrays)
    return p


def _check_room(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """The arrays' uncompressed bytes must fit (an upper bound of the file): checked first."""
    from latentdiag.store._common import check_room

    check_room(path, sum(int(a.nbytes) for a in arrays.values()), what="the data")


def _names_and_factors(
    n: int,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    factors: np.ndarray | None,
    factor_names: Sequence[str] | None,
    noun: str,
) -> dict[str, np.ndarray]:
    """``labels``, ``label_names``, ``factors``, ``factor_names``, checked."""
    arrays: dict[str, np.ndarray] = {}
    if labels is not None:
        lab = np.asarray(labels, dtype=np.int64)
        if lab.shape != (n,):
            raise DataError(f"expected {n} labels, one per {noun}; got shape {lab.shape}.")
        if label_names is None:
            label_names = [str(i) for i in range(int(lab.max(initial=-1)) + 1)]
        if lab.size and (lab.min() < 0 or lab.max() >= len(label_names)):
            raise DataError(
                f"label values must lie in 0..{len(label_names) - 1}; found "
                f"{int(lab.min())}..{int(lab.max())}."
            )
        arrays["labels"] = lab
        arrays["label_names"] = np.array([str(s) for s in label_names], dtype=str)
    if factors is not None:
        fac = np.asarray(factors, dtype=np.float32)
        if fac.ndim != 2 or fac.shape[0] != n:
            raise DataError(f"expected factors of shape ({n}, f); got {fac.shape}.")
        names = list(factor_names) if factor_names is not None else None
        names = names or [f"f{i}" for i in range(fac.shape[1])]
        if len(names) != fac.shape[1]:
            raise DataError(f"{len(names)} factor names for {fac.shape[1]} factor columns.")
        arrays["factors"] = fac
        arrays["factor_names"] = np.array(names, dtype=str)
    return arrays


def write_vector_dataset(
    path: str | os.PathLike[str],
    vectors: np.ndarray,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    factors: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    *,
    feature_names: Sequence[str] | None = None,
    label_key: str | None = None,
    columns: Mapping[str, Column] | None = None,
) -> Path:
    """Write (N, F) vectors with their labels, factors and metadata columns to ``path``.

    Args:
        path: Output file (``.npz`` or ``.h5``); the suffix chooses the format.
        vectors: (N, F) numbers, stored in their own dtype.
        labels: (N,) integer labels in 0..k-1, or None.
        label_names: The k names (required with labels).
        factors: (N, f) ground-truth factors, or None.
        factor_names: The f names (default ``f0, f1, ...``).
        feature_names: The F feature names, or None.
        label_key: The name of the labels' column when read back (``modality``; default
            ``label``).
        columns: Further metadata columns, one value per row (not the label's).

    Returns:
        The path written.

    Raises:
        DataError: Bad suffix, or arrays whose shapes or lengths disagree.
    """
    p = check_dataset_path(path)
    vec = np.asarray(vectors)
    if vec.ndim != 2 or vec.dtype.kind not in "biuf":
        raise DataError(f"expected vectors of shape (N, F) holding numbers; got {vec.shape}.")
    n, f = vec.shape
    arrays: dict[str, np.ndarray] = {"vectors": np.ascontiguousarray(vec)}
    arrays.update(_names_and_factors(n, labels, label_names, factors, factor_names, "row"))
    if feature_names is not None:
        if len(feature_names) != f:
            raise DataError(f"{len(feature_names)} feature names for {f} features.")
        arrays["feature_names"] = np.array([str(s) for s in feature_names], dtype=str)
    if label_key is not None:
        arrays["label_key"] = np.array([label_key], dtype=str)
    for col in (columns or {}).values():
        if len(col) != n:
            raise DataError(f"column {col.name!r} has {len(col)} values for {n} rows.")
        arrays[f"{COLUMNS_GROUP}/{col.name}"] = col.values
        if col.categories is not None:
            arrays[f"{CATEGORIES_PREFIX}/{col.name}"] = np.array(col.categories, dtype=str)
    _check_room(p, arrays)
    with atomic_output(p) as tmp:
        if p.suffix.lower() == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        else:
            _write_vectors_h5(tmp, arrays)
    return p


def _write_vectors_h5(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    from latentdiag import __version__

    with h5py.File(tmp, "w") as f:
        f.attrs["latentdiag_format"] = "vectors"
        f.attrs["latentdiag_version"] = __version__
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for key in ("label_names", "factor_names"):
            if key in arrays:
                f.attrs[key] = [str(s) for s in arrays[key]]
        if "label_key" in arrays:
            f.attrs["label_key"] = str(arrays["label_key"][0])
        vectors = arrays["vectors"]
        f.create_dataset(
            "vectors",
            data=vectors,
            chunks=(min(1024, vectors.shape[0]), vectors.shape[1]),
            compression="gzip",
            shuffle=True,
        )
        for key in ("labels", "factors"):
            if key in arrays:
                f.create_dataset(key, data=arrays[key], compression="gzip")
        if "feature_names" in arrays:
            f.create_dataset("feature_names", data=arrays["feature_names"].astype(object),
                             dtype=h5py.string_dtype())  # fmt: skip
        prefix = f"{COLUMNS_GROUP}/"
        names = [k[len(prefix) :] for k in arrays if k.startswith(prefix)]
        if names:
            group = f.create_group(COLUMNS_GROUP)
            group.attrs["order"] = names
            for name in names:
                dset = group.create_dataset(name, data=arrays[prefix + name])
                cats = arrays.get(f"{CATEGORIES_PREFIX}/{name}")
                if cats is not None:
                    dset.attrs["categories"] = [str(c) for c in cats]


def _write_h5(tmp: Path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    from latentdiag import __version__

    with h5py.File(tmp, "w") as f:
        f.attrs["latentdiag_format"] = "images"
        f.attrs["latentdiag_version"] = __version__
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for key in ("label_names", "factor_names"):
            if key in arrays:
                f.attrs[key] = [str(s) for s in arrays[key]]
        images = arrays["images"]
        f.create_dataset(
            "images",
            data=images,
            chunks=(min(256, images.shape[0]), *images.shape[1:]),
            compression="gzip",
            shuffle=True,
        )
        for key in ("labels", "factors"):
            if key in arrays:
                f.create_dataset(key, data=arrays[key], compression="gzip")
