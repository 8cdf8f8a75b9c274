"""Writing image datasets to ``.npz`` or HDF5, in a layout :func:`open_dataset` reads back.

Images are stored channel-last like MedMNIST — ``(N, S, S)`` for one channel, ``(N, S, S, 3)``
for three — so other tools read the files too. Beside them: ``labels`` (int64), ``factors``
(float32) and the names: arrays ``label_names`` / ``factor_names`` in an ``.npz``, attributes
of the root group in HDF5. Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentdiag.data._common import atomic_output
from latentdiag.errors import DataError

__all__ = ["DATASET_SUFFIXES", "check_dataset_path", "write_dataset"]

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
    if labels is not None:
        lab = np.asarray(labels, dtype=np.int64)
        if lab.shape != (n,):
            raise DataError(f"expected {n} labels, one per image; got shape {lab.shape}.")
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

    with atomic_output(p) as tmp:
        if p.suffix.lower() == ".npz":
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        else:
            _write_h5(tmp, arrays)
    return p


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
