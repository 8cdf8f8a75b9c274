"""Array sources: ``.npz`` (MedMNIST layout or plain ``images`` / ``labels``), ``.npy`` with an
optional labels file, and HDF5 datasets.

An array of rank 3 or 4 is images; one of rank 2, (N, F), is vector data and goes to
:func:`latentdiag.data.vector_arrays.build_vector_dataset` (never reshaped or rescaled).

Data that fits in memory (every ``.npz``; ``.npy`` and HDF5 up to :data:`IN_MEMORY_BYTES`) is
converted once to the size and channels asked and served as an
:class:`~latentdiag.data.base.ArrayDataset`. Bigger ``.npy`` / HDF5 data is read row by row
(:class:`LazyArrayDataset`), each process opening the file itself, so DataLoader workers work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.columns import Column
from latentdiag.data._common import Options, RowIds, choose_rows
from latentdiag.data.base import UNLABELED, ArrayDataset, ImageDataset
from latentdiag.data.convert import (
    ValueScale,
    convert_batch,
    detect_layout,
    native_channels,
    native_size,
    value_scale,
)
from latentdiag.data.labels import LabelTable, read_labels_file, settle_labels
from latentdiag.data.vector_arrays import (
    CATEGORIES_PREFIX,
    COLUMNS_GROUP,
    VECTOR_KEYS,
    H5Matrix,
    build_vector_dataset,
    read_h5_columns,
    read_npz_columns,
)
from latentdiag.errors import DataError

__all__ = ["IN_MEMORY_BYTES", "LazyArrayDataset", "open_hdf5", "open_npy", "open_npz"]

IN_MEMORY_BYTES = 2 * 2**30  # .npy / HDF5 images up to this size are read whole
_CONVERT_BLOCK = 4096  # rows converted at a time (bounds the float temporaries)
_SCALE_SAMPLE = 256  # rows a lazy source inspects to decide its value range


def build_array_dataset(
    images: Any,
    *,
    opts: Options,
    where: str,
    id_prefix: str,
    source: str,
    labels: np.ndarray | LabelTable | None = None,
    label_names: Sequence[str] | None = None,
    factors: np.ndarray | None = None,
    factor_names: Sequence[str] | None = None,
    reopen: ArrayRef | None = None,
    label_key: str | None = None,
    label_column: str = "label",
) -> ImageDataset:
    """Check an image stack with its labels and factors and make a dataset of it.

    Args:
        images: An ndarray, a memory map or an ``h5py.Dataset`` of shape (N, ...).
        opts: Size, channels, subset and seed asked for.
        where: The source for messages (``"x.npz:train_images"``).
        id_prefix: Prefix of sample ids.
        source: Description recorded in provenance.
        labels: Labels as stored (checked here), a labels table read from a CSV, or None.
        label_names: Names stored with them, or None.
        factors: (N, f) factors, or None.
        factor_names: Their names, or None.
        reopen: How to open ``images`` again in another process; None when ``images`` is in
            memory. With it, data bigger than :data:`IN_MEMORY_BYTES` is read row by row.
        label_key: The column the labels come from (see
            :func:`~latentdiag.data.labels.settle_labels`); None for the default.
        label_column: The name of the column stored labels become (``label``, ``digit``).

    Raises:
        DataError: Anything about the arrays a user must fix.
    """
    shape = tuple(int(s) for s in images.shape)
    layout = detect_layout(shape, where)
    if opts.standardize:
        raise DataError(
            f"{where}: holds images; --standardize applies to vector data (N × F features); "
            "to scale images for a model use embed --normalize."
        )
    total = shape[0]
    if total == 0:
        raise DataError(f"{where}: holds no images (shape {shape}); expected at least one.")
    if min(shape[1:3] if layout != "NCHW" else shape[2:4]) < 1:
        raise DataError(f"{where}: images of shape {shape} are empty.")
    settled = settle_labels(
        labels,
        n_images=total,
        label_names=label_names,
        where=where,
        label_key=label_key,
        label_column=label_column,
    )
    names = settled.label_names
    fac: np.ndarray | None = None
    if factors is not None:
        fac = np.asarray(factors, dtype=np.float32)
        if fac.ndim == 1:
            fac = fac[:, None]
        if fac.ndim != 2 or fac.shape[0] != total:
            raise DataError(
                f"{where}: factors of shape {fac.shape} do not match {total:,} images; expected "
                f"({total}, f)."
            )
        if factor_names is not None and len(factor_names) != fac.shape[1]:
            raise DataError(
                f"{where}: {len(factor_names)} factor names for {fac.shape[1]} factor columns."
            )

    size = opts.size or native_size(shape, layout)
    channels = opts.channels or native_channels(shape, layout)
    rows = choose_rows(total, opts.n, opts.seed, where)
    n_rows = total if rows is None else int(rows.size)
    row_bytes = int(np.prod(shape[1:])) * np.dtype(images.dtype).itemsize
    lab = settled.labels
    sel_labels = None if lab is None else (lab if rows is None else lab[rows])
    columns = settled.columns
    if columns is not None and rows is not None:
        columns = {name: col.take(rows) for name, col in columns.items()}
    sel_factors = None if fac is None else (fac if rows is None else fac[rows])
    ids = RowIds(id_prefix, None if rows is None else rows.tolist(), n_rows)

    if reopen is None or total * row_bytes <= IN_MEMORY_BYTES:
        # Read whole, then pick rows: one sequential read beats HDF5 point selections.
        raw = np.asarray(images[...])
        if rows is not None:
            raw = raw[rows]
        scale = value_scale(raw.dtype, raw, where)
        blocks = [
            convert_batch(
                raw[i : i + _CONVERT_BLOCK],
                layout=layout,
                scale=scale,
                channels=channels,
                size=size,
            )
            for i in range(0, n_rows, _CONVERT_BLOCK)
        ]
        converted = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return ArrayDataset(
            converted,
            labels=sel_labels,
            label_names=names,
            factors=sel_factors,
            factor_names=factor_names,
            sample_ids=ids,
            source=source,
            columns=columns,
            label_key=settled.label_key,
        )
    first = rows[:_SCALE_SAMPLE] if rows is not None else slice(0, _SCALE_SAMPLE)
    scale = value_scale(images.dtype, np.asarray(images[first]), where)
    return LazyArrayDataset(
        reopen,
        layout=layout,
        scale=scale,
        rows=rows,
        n_rows=n_rows,
        labels=sel_labels,
        label_names=names,
        factors=sel_factors,
        factor_names=None if fac is None else list(factor_names or []) or None,
        sample_ids=ids,
        channels=channels,
        size=size,
        source=source,
        columns=columns,
        label_key=settled.label_key,
    )


@dataclass(frozen=True)
class ArrayRef:
    """Where an on-disk image array lives, so each process can open it itself."""

    kind: str  # "npy" or "hdf5"
    path: str
    key: str = ""

    def open(self) -> tuple[Any, Any]:
        """(the array, a handle to keep open) in this process."""
        if self.kind == "npy":
            return np.load(self.path, mmap_mode="r", allow_pickle=False), None
        import h5py

        f = h5py.File(self.path, "r")
        return f[self.key], f


class LazyArrayDataset(ImageDataset):
    """An on-disk image array read one row per item (``.npy`` memory map or HDF5 dataset).

    Picklable: the open file is not part of the pickled state, and each process opens its own
    on first access.
    """

    def __init__(
        self,
        ref: ArrayRef,
        *,
        layout: str,
        scale: ValueScale,
        rows: np.ndarray | None,
        n_rows: int,
        labels: np.ndarray | None,
        label_names: list[str] | None,
        factors: np.ndarray | None,
        factor_names: list[str] | None,
        sample_ids: Sequence[str],
        channels: int,
        size: int,
        source: str,
        columns: dict[str, Column] | None = None,
        label_key: str | None = None,
    ) -> None:
        self.ref = ref
        self.layout = layout
        self.scale = scale
        self.rows = rows
        self.n_rows = n_rows
        self.labels = labels
        self.label_names = label_names
        self.factors = factors
        if factors is not None:
            self.factor_names = factor_names or [f"f{i}" for i in range(factors.shape[1])]
        self.sample_ids = sample_ids
        self.channels = channels
        self.size = size
        self.source = source
        self.columns = columns
        self.label_key = label_key
        self._array: Any = None
        self._handle: Any = None
        self._pid = -1
        self._no_factors = np.zeros(0, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_array=None, _handle=None, _pid=-1)
        return state

    def __len__(self) -> int:
        return self.n_rows

    def _data(self) -> Any:
        if self._array is None or self._pid != os.getpid():
            self._array, self._handle = self.ref.open()
            self._pid = os.getpid()
        return self._array

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.n_rows <= index < self.n_rows:
            raise IndexError(index)
        index = int(index) % self.n_rows
        row = index if self.rows is None else int(self.rows[index])
        raw = np.asarray(self._data()[row : row + 1])
        img = convert_batch(
            raw, layout=self.layout, scale=self.scale, channels=self.channels, size=self.size
        )[0]
        image = img.astype(np.float32) * np.float32(1 / 255) if img.dtype == np.uint8 else img
        return {
            "image": image,
            "label": UNLABELED if self.labels is None else int(self.labels[index]),
            "factors": self._no_factors if self.factors is None else self.factors[index],
            "sample_id": self.sample_ids[index],
            "index": index,
        }


# --------------------------------------------------------------------------- .npz


def _str_list(arr: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(arr).tolist()]


def open_npz(
    path: str,
    *,
    opts: Options,
    split: str,
    images_key: str | None,
    labels_key: str | None,
    labels_file: str | None,
    label_key: str | None = None,
) -> ImageDataset:
    """Open an ``.npz``: MedMNIST's ``{split}_images`` / ``{split}_labels``, plain
    ``images`` / ``labels`` (plus ``label_names``, ``factors``, ``factor_names`` when present, as
    ``latentdiag data synth`` writes them), or vectors: an (N, F) array named ``x``, ``X``,
    ``features``, ``data`` or ``vectors``, or the only 2-D array (``images_key`` names another).

    Raises:
        DataError: Not an npz, keys missing (the message lists the keys it has), bad arrays.
    """
    import zipfile
    import zlib

    name = Path(path).name
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as .npz: {exc}.") from exc
    if not hasattr(npz, "files"):
        raise DataError(f"{path} is a single .npy array, not an .npz archive; rename it to .npy.")
    with npz:
        keys = list(npz.files)
        have = ", ".join(keys) or "none"
        prefix = ""
        if images_key is not None:
            if images_key not in keys:
                raise DataError(f"{path} has no array {images_key!r}; it has: {have}.")
            img_key = images_key
        elif f"{split}_images" in keys:
            img_key, prefix = f"{split}_images", f"{split}_"
        elif "images" in keys:
            img_key = "images"
        else:
            splits = sorted(k[: -len("_images")] for k in keys if k.endswith("_images"))
            if splits:
                raise DataError(
                    f"{path} has no split {split!r} (no {split}_images); it has splits "
                    f"{', '.join(splits)}; choose one with --split."
                )
            found = _npz_vector_key(npz, keys, path)
            if found is None:
                raise DataError(
                    f"{path} has no images: expected 'images' (and 'labels') or the MedMNIST "
                    "layout 'train_images', 'train_labels', ..., or vectors: an (N, F) array "
                    f"'x', 'X', 'features', 'data' or 'vectors'; it has: {have}; name the array "
                    "with --data-key."
                )
            img_key = found
        lab_key = labels_key or f"{prefix}labels"
        if labels_key is not None and labels_key not in keys:
            raise DataError(f"{path} has no array {labels_key!r}; it has: {have}.")

        def get(key: str) -> np.ndarray:
            try:
                return np.asarray(npz[key])
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise DataError(
                    f"{path} is damaged or truncated: reading {key!r} failed ({exc}); write "
                    "it again."
                ) from None
            except ValueError as exc:  # object arrays need pickle, which we never allow
                raise DataError(
                    f"cannot read {path}:{key}: {exc}; save it as a numeric or string array."
                ) from exc

        images = get(img_key)
        labels: np.ndarray | LabelTable | None = get(lab_key) if lab_key in keys else None
        names = _str_list(get("label_names")) if "label_names" in keys else None
        fac_key = f"{prefix}factors" if f"{prefix}factors" in keys else None
        factors = get(fac_key) if fac_key else None
        fnames = (
            _str_list(get("factor_names"))
            if factors is not None and "factor_names" in keys
            else None
        )
        vectors = images.ndim == 2
        where = f"{name}:{img_key}"
        columns = read_npz_columns(keys, get, where) if vectors else {}
        stored_key = _str_list(get("label_key"))[0] if vectors and "label_key" in keys else None
        features = _str_list(get("feature_names")) if vectors and "feature_names" in keys else None
    split_tag = f":{split}" if prefix else ""
    if labels_file is not None:
        labels, names, columns, stored_key = read_labels_file(labels_file), None, {}, None
        where = f"{name}:{img_key} with labels {Path(labels_file).name}"
    if vectors:
        return build_vector_dataset(
            images,
            opts=opts,
            where=where,
            id_prefix=name,
            source=str(path),
            labels=labels,
            label_names=names,
            factors=factors,
            factor_names=fnames,
            columns=columns,
            label_key=label_key,
            label_column=stored_key or "label",
            feature_names=features,
        )
    return build_array_dataset(
        images,
        opts=opts,
        where=where,
        id_prefix=f"{name}{split_tag}",
        source=str(path) + split_tag,
        labels=labels,
        label_names=names,
        factors=factors,
        factor_names=fnames,
        label_key=label_key,
    )


# Arrays that describe the data rather than hold it: never taken for the vectors.
_NOT_DATA = ("labels", "factors", "label_names", "factor_names", "feature_names", "label_key")


def _is_data_name(key: str) -> bool:
    stem = key.rsplit("/", 1)[-1]
    return not (
        key.startswith((f"{COLUMNS_GROUP}/", f"{CATEGORIES_PREFIX}/"))
        or stem in _NOT_DATA
        or stem.endswith(("_labels", "_factors"))
    )


def _npz_shape(npz: Any, key: str) -> tuple[int, ...]:
    """The shape of an ``.npz`` entry from its header, without reading the array."""
    try:
        with npz.zip.open(f"{key}.npy") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape = read(fh)[0]
    except (AttributeError, KeyError, OSError, ValueError):
        import zipfile
        import zlib

        try:
            shape = np.asarray(npz[key]).shape
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
            raise DataError(
                f"the .npz is damaged or truncated: reading {key!r} failed ({exc}); write it again."
            ) from None
    return tuple(int(x) for x in shape)


def _npz_vector_key(npz: Any, keys: list[str], path: str) -> str | None:
    """The vectors of an ``.npz`` without images: a 2-D array with one of the
    :data:`VECTOR_KEYS` names, else the only 2-D array holding data; None when there is none.

    Raises:
        DataError: Several 2-D arrays could be the vectors (the message lists them).
    """
    shapes = {k: _npz_shape(npz, k) for k in keys}
    named = [k for k in VECTOR_KEYS if k in shapes and len(shapes[k]) == 2]
    if named:
        return named[0]
    matrices = [k for k in keys if len(shapes[k]) == 2 and _is_data_name(k)]
    if len(matrices) > 1:
        listing = ", ".join(f"{k} {shapes[k]}" for k in matrices)
        raise DataError(
            f"{path} has several arrays that could be the vectors ({listing}); name one with "
            "--data-key."
        )
    return matrices[0] if matrices else None


# --------------------------------------------------------------------------- .npy


def open_npy(
    path: str, *, opts: Options, labels_file: str | None, label_key: str | None = None
) -> ImageDataset:
    """Open an ``.npy`` image stack, or (N, F) vectors, memory-mapped, with an optional labels
    file.

    Raises:
        DataError: Not an npy, bad shape, labels that do not match.
    """
    name = Path(path).name
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as .npy: {exc}.") from exc
    labels = None if labels_file is None else read_labels_file(labels_file)
    where = name if labels_file is None else f"{name} with labels {Path(labels_file).name}"
    if images.ndim == 2:
        return build_vector_dataset(
            images,
            opts=opts,
            where=where,
            id_prefix=name,
            source=str(path),
            labels=labels,
            label_key=label_key,
        )
    return build_array_dataset(
        images,
        opts=opts,
        where=where,
        id_prefix=name,
        source=str(path),
        labels=labels,
        reopen=ArrayRef("npy", str(Path(path).resolve())),
        label_key=label_key,
    )


# --------------------------------------------------------------------------- HDF5


def open_hdf5(
    path: str,
    *,
    opts: Options,
    split: str,
    images_key: str | None,
    labels_key: str | None,
    labels_file: str | None,
    label_key: str | None = None,
) -> ImageDataset:
    """Open images or vectors (and labels, factors) from an HDF5 file.

    Without ``images_key`` the images are ``/images``, ``/{split}_images``, or the only dataset
    of 3 or 4 dimensions; failing those, the vectors are a 2-D dataset named ``x``, ``X``,
    ``features``, ``data`` or ``vectors``, or the only 2-D dataset holding data. Labels are
    ``labels`` beside the images (or ``{split}_labels``). Label and factor names come from a
    ``label_names`` / ``factor_names`` attribute of the file's root or of the dataset; vectors
    also take ``feature_names`` (a dataset or attribute) and the ``/columns`` group.

    Raises:
        DataError: Not HDF5, no or ambiguous images dataset (the message lists them).
    """
    import h5py

    name = Path(path).name
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot read {path} as HDF5: {exc}.") from exc
    with f:
        datasets: dict[str, tuple[int, ...]] = {}
        f.visititems(
            lambda k, obj: (
                datasets.__setitem__(k, obj.shape) if isinstance(obj, h5py.Dataset) else None
            )
        )
        listing = ", ".join(f"/{k} {v}" for k, v in datasets.items()) or "no datasets"
        if images_key is not None:
            img_key = images_key.strip("/")
            if img_key not in datasets:
                raise DataError(f"{path} has no dataset /{img_key}; it has: {listing}.")
        elif "images" in datasets:
            img_key = "images"
        elif f"{split}_images" in datasets:
            img_key = f"{split}_images"
        else:
            stacks = [k for k, s in datasets.items() if len(s) in (3, 4)]
            if len(stacks) > 1:
                raise DataError(
                    f"{path} has several datasets that could be images ({listing}); name one "
                    "with --images-key."
                )
            img_key = stacks[0] if stacks else _h5_vector_key(datasets, path, listing)
        parent = img_key.rsplit("/", 1)[0] + "/" if "/" in img_key else ""
        stem = img_key.rsplit("/", 1)[-1]
        tag = stem[: -len("images")] if stem.endswith("images") else ""
        if labels_key is not None:
            lab_key: str | None = labels_key.strip("/")
            if lab_key not in datasets:
                raise DataError(f"{path} has no dataset /{lab_key}; it has: {listing}.")
        else:
            lab_key = next(
                (k for k in (f"{parent}{tag}labels", f"{parent}labels") if k in datasets), None
            )
        fac_key = next(
            (k for k in (f"{parent}{tag}factors", f"{parent}factors") if k in datasets),
            None,
        )
        dset = f[img_key]
        if len(dset.shape) == 2:
            return _hdf5_vectors(
                f,
                path,
                img_key,
                lab_key=lab_key,
                fac_key=fac_key,
                opts=opts,
                labels_file=labels_file,
                label_key=label_key,
            )
        stored = None if lab_key is None else np.asarray(f[lab_key][...])
        if stored is not None and stored.dtype.kind in "SO":
            stored = np.array(_str_list(stored))
        labels: np.ndarray | LabelTable | None = stored
        names = _attr_list(f, dset, "label_names", lab_key)
        factors = None if fac_key is None else np.asarray(f[fac_key][...])
        fnames = _attr_list(f, dset, "factor_names", fac_key)
        where = f"{name}:/{img_key}"
        if labels_file is not None:
            labels, names = read_labels_file(labels_file), None
            where += f" with labels {Path(labels_file).name}"
        return build_array_dataset(
            dset,
            opts=opts,
            where=where,
            id_prefix=f"{name}:/{img_key}",
            source=f"{path}:/{img_key}",
            labels=labels,
            label_names=names,
            factors=factors,
            factor_names=fnames,
            reopen=ArrayRef("hdf5", str(Path(path).resolve()), img_key),
            label_key=label_key,
        )


def _h5_vector_key(datasets: dict[str, tuple[int, ...]], path: str, listing: str) -> str:
    """The vectors of an HDF5 file without images (see :func:`open_hdf5`).

    Raises:
        DataError: No dataset, or several, could be the vectors (the message lists them).
    """
    named = [k for k in VECTOR_KEYS if k in datasets and len(datasets[k]) == 2]
    if named:
        return named[0]
    matrices = [k for k, s in datasets.items() if len(s) == 2 and _is_data_name(k)]
    if len(matrices) == 1:
        return matrices[0]
    if matrices:
        shown = ", ".join(f"/{k} {datasets[k]}" for k in matrices)
        raise DataError(
            f"{path} has several datasets that could be the vectors ({shown}); name one with "
            "--data-key."
        )
    raise DataError(
        f"{path} has no datasets that could be images or vectors ({listing}); name one with "
        "--data-key."
    )


def _hdf5_vectors(
    f: Any,
    path: str,
    key: str,
    *,
    lab_key: str | None,
    fac_key: str | None,
    opts: Options,
    labels_file: str | None,
    label_key: str | None,
) -> ImageDataset:
    """The (N, F) dataset ``key`` of an open HDF5 file, with what the file stores beside it."""
    name = Path(path).name
    dset = f[key]
    where = f"{name}:/{key}"
    stored = None if lab_key is None else np.asarray(f[lab_key][...])
    if stored is not None and stored.dtype.kind in "SO":
        stored = np.array(_str_list(stored))
    labels: np.ndarray | LabelTable | None = stored
    names = _attr_list(f, dset, "label_names", lab_key)
    factors = None if fac_key is None else np.asarray(f[fac_key][...])
    fnames = _attr_list(f, dset, "factor_names", fac_key)
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    feature_key = f"{parent}feature_names"
    if feature_key in f and hasattr(f[feature_key], "shape"):
        features: list[str] | None = _str_list(f[feature_key][...])
    else:
        features = _attr_list(f, dset, "feature_names", None)
    columns = read_h5_columns(f, where)
    stored_key = f.attrs.get("label_key")
    stored_key = stored_key.decode() if isinstance(stored_key, bytes) else stored_key
    if labels_file is not None:
        labels, names, columns, stored_key = read_labels_file(labels_file), None, {}, None
        where += f" with labels {Path(labels_file).name}"
    return build_vector_dataset(
        H5Matrix(str(Path(path).resolve()), key),
        opts=opts,
        where=where,
        id_prefix=f"{name}:/{key}",
        source=f"{path}:/{key}",
        labels=labels,
        label_names=names,
        factors=factors,
        factor_names=fnames,
        columns=columns,
        label_key=label_key,
        label_column=str(stored_key) if stored_key else "label",
        feature_names=features,
    )


def _attr_list(f: Any, dset: Any, attr: str, other_key: str | None) -> list[str] | None:
    """A list-of-names attribute from the root, the images dataset or the named dataset."""
    for obj in (f, dset, None if other_key is None else f[other_key]):
        if obj is not None and attr in obj.attrs:
            return _str_list(np.atleast_1d(obj.attrs[attr]))
    return None
