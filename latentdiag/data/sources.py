"""``open_dataset``: the one entry point for every data source."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latentdiag.columns import categorical_column, describe_columns
from latentdiag.data._common import Options, count
from latentdiag.data.anndata_source import is_anndata_file, open_h5ad
from latentdiag.data.arrays import build_array_dataset, open_hdf5, open_npy, open_npz
from latentdiag.data.base import ArrayDataset, ImageDataset
from latentdiag.data.folder import open_folder
from latentdiag.data.labels import check_column_exists
from latentdiag.data.tables import open_table
from latentdiag.data.vector_arrays import build_vector_dataset
from latentdiag.errors import DataError

__all__ = [
    "BUILTIN_SOURCES",
    "SYNTHETIC_DEFAULT_N",
    "VECTOR_BUILTINS",
    "describe",
    "open_dataset",
]

VECTOR_BUILTINS = ("synthetic-vectors", "synthetic-counts")
BUILTIN_SOURCES = ("synthetic", "digits", *VECTOR_BUILTINS)
SYNTHETIC_DEFAULT_N = 4000  # 1,000 per modality: enough for a CPU training run and the metrics
_SUFFIX_KIND = {
    ".npz": "npz",
    ".npy": "npy",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".h5ad": "h5ad",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_MAGIC_KIND = {
    b"PK\x03\x04": "npz",
    b"\x93NUMPY": "npy",
    b"\x89HDF\r\n\x1a\n": "hdf5",
    b"PAR1": "parquet",
}
_KIND_TEXT = {
    "npz": "an .npz file",
    "npy": "an .npy array",
    "hdf5": "an HDF5 file",
    "h5ad": "an AnnData file",
    "csv": "a CSV table",
    "parquet": "a Parquet table",
    "folder": "an image folder",
}


def open_dataset(
    source: str,
    *,
    size: int | None = None,
    channels: int | None = None,
    split: str = "train",
    labels: str | None = None,
    images_key: str | None = None,
    labels_key: str | None = None,
    n: int | None = None,
    seed: int = 0,
    strict: bool = False,
    label_key: str | None = None,
    layer: str | None = None,
    feature_columns: str | Sequence[str] | None = None,
    meta_columns: str | Sequence[str] | None = None,
    standardize: bool = False,
) -> ImageDataset:
    """Open any data source as an :class:`~latentdiag.data.base.ImageDataset`.

    Image sources: a folder of images (one subfolder per label), an ``.npz`` (MedMNIST layout
    or ``images`` / ``labels``), an ``.npy`` image stack, an HDF5 file, or the built-in names
    ``synthetic`` and ``digits``. Vector sources (a
    :class:`~latentdiag.data.vectors.VectorDataset`, ``kind == "vectors"``): an (N, F) array in
    an ``.npy``, ``.npz`` or HDF5 file, a CSV / TSV / Parquet table, an AnnData ``.h5ad``, or
    the built-in ``synthetic-vectors`` and ``synthetic-counts``. A file or folder that exists
    wins over a built-in name.

    Args:
        source: Path or built-in name.
        size: Side of the square images to produce; None keeps the source's own (synthetic: 32).
        channels: 1 or 3; None keeps the source's own (synthetic: 1).
        split: MedMNIST split to read from an ``.npz`` / HDF5 (``train``, ``val``, ``test``).
        labels: A labels file (``.npy`` or ``.csv``) for array sources; replaces stored labels.
        images_key: Name of the images or vectors array (``.npz`` key or HDF5 dataset path).
        labels_key: Name of the labels array.
        n: Synthetic: how many images to generate (default 4,000). Other sources: a random
            subset of ``n`` images chosen with ``seed``, kept in source order.
        seed: Seed of the synthetic data or of the subset.
        strict: Folders: an unreadable image is an error instead of being skipped.
        label_key: The metadata column that is the label: a column of a CSV labels file
            (default: the one named ``label``, ``class``... or else the last), a folder level
            (``label``, ``level2``...; default ``label``); ``modality`` (synthetic), ``digit``
            (digits), ``label`` (stored labels). The dataset's ``labels``, ``label_names`` and
            ``label_key`` then follow that column; a numeric one is grouped by value. Tables
            and AnnData: any metadata column (default: the first named like a label, such as
            ``cell_type``); ``synthetic-vectors``: ``modality`` (default) or ``batch``.
        layer: AnnData: the layer to read instead of ``X`` (``counts``).
        feature_columns: Tables: the feature columns, names or glob patterns (``gene_*``), a
            list or one comma-separated string; default every numeric column.
        meta_columns: Tables: numeric columns that are metadata, not features (``batch``).
        standardize: Vector data: feed each feature standardized by its mean and standard
            deviation over the data (computed in one pass). Images refuse it.

    Returns:
        A dataset whose items follow the :mod:`latentdiag.data.base` contract; picklable, so a
        ``torch.utils.data.DataLoader`` can use worker processes.

    Raises:
        DataError: The source is missing, of an unknown kind, or inconsistent; the message
            says what was expected and what was found. ``label_key`` names no column (the
            message lists the columns there are), a column with missing values, or a numeric
            one with more than 50 distinct values.
    """
    if size is not None and not 1 <= size <= 4096:
        raise DataError(f"image size must be 1 … 4096 pixels; got {size}.")
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels}.")
    if n is not None and n < 1:
        raise DataError(f"the number of images must be at least 1; got {n}.")
    if seed < 0:
        raise DataError(f"the seed must be a non-negative integer; got {seed}.")
    opts = Options(size=size, channels=channels, n=n, seed=seed, standardize=standardize)
    src = str(source)
    path = Path(src).expanduser()
    asked = {
        "--layer": layer is not None,
        "--feature-columns": feature_columns is not None,
        "--meta-columns": meta_columns is not None,
    }

    if not path.exists() and src.lower() in BUILTIN_SOURCES:
        name = src.lower()
        _only_for_files(name, labels=labels, images_key=images_key, labels_key=labels_key)
        _check_applies(asked, kind="builtin", what=f"the built-in {name} data")
        if name in VECTOR_BUILTINS:
            return _synthetic_vectors(opts, counts=name == "synthetic-counts", label_key=label_key)
        _refuse_standardize(opts, src)
        if name == "synthetic":
            return _synthetic(opts, label_key=label_key)
        return _digits(opts, label_key=label_key)
    if not path.exists():
        raise DataError(
            f"data source {src} does not exist; expected an image folder, an .npz, .npy, .h5, "
            f".h5ad, .csv or .parquet file, or a built-in name ({', '.join(BUILTIN_SOURCES)})."
        )
    if path.is_dir():
        _check_applies(asked, kind="folder", what=f"{src} is {_KIND_TEXT['folder']}")
        _refuse_standardize(opts, src)
        if labels is not None or images_key is not None or labels_key is not None:
            raise DataError(
                f"{src} is a folder: its labels come from its subfolder names; --labels, "
                "--images-key and --labels-key apply to .npz, .npy and HDF5 files."
            )
        return open_folder(
            str(path),
            size=size,
            channels=channels,
            n=n,
            seed=seed,
            strict=strict,
            label_key=label_key,
        )

    kind = _SUFFIX_KIND.get(path.suffix.lower()) or _sniff(path)
    if kind == "hdf5" and is_anndata_file(path):
        kind = "h5ad"
    _check_applies(asked, kind=kind, what=f"{src} is {_KIND_TEXT.get(kind or '', 'a file')}")
    if kind in ("h5ad", "csv", "parquet"):
        if labels is not None or images_key is not None or labels_key is not None:
            raise DataError(
                f"{src} is {_KIND_TEXT[kind]}: its labels are among its columns (choose one "
                "with --label-key); --labels, --data-key and --labels-key apply to .npz, .npy "
                "and HDF5 files."
            )
        if kind == "h5ad":
            return open_h5ad(str(path), opts=opts, layer=layer, label_key=label_key)
        return open_table(
            str(path),
            kind=kind,
            opts=opts,
            label_key=label_key,
            feature_columns=feature_columns,
            meta_columns=meta_columns,
        )
    if kind == "npz":
        return open_npz(
            str(path),
            opts=opts,
            split=split,
            images_key=images_key,
            labels_key=labels_key,
            labels_file=labels,
            label_key=label_key,
        )
    if kind == "npy":
        if images_key is not None or labels_key is not None:
            raise DataError(
                f"{src} is a single .npy array: --images-key / --labels-key apply to .npz and "
                "HDF5; give labels with --labels FILE."
            )
        return open_npy(str(path), opts=opts, labels_file=labels, label_key=label_key)
    if kind == "hdf5":
        return open_hdf5(
            str(path),
            opts=opts,
            split=split,
            images_key=images_key,
            labels_key=labels_key,
            labels_file=labels,
            label_key=label_key,
        )
    raise DataError(
        f"cannot tell what kind of data {src} is (suffix {path.suffix or 'none'}); expected an "
        "image folder or a .npz, .npy, .h5 / .hdf5 file (or, for vectors, .h5ad, .csv, .tsv, "
        ".parquet)."
    )


def _check_applies(asked: dict[str, bool], *, kind: str | None, what: str) -> None:
    """Refuse the vector options a source does not take (``what``: ``x.npy is an .npy
    array``)."""
    if asked["--layer"] and kind != "h5ad":
        raise DataError(f"--layer applies to AnnData .h5ad files; {what}.")
    if (asked["--feature-columns"] or asked["--meta-columns"]) and kind not in ("csv", "parquet"):
        which = "--feature-columns" if asked["--feature-columns"] else "--meta-columns"
        raise DataError(f"{which} applies to CSV and Parquet tables; {what}.")


def _refuse_standardize(opts: Options, src: str) -> None:
    if opts.standardize:
        raise DataError(
            f"{src}: holds images; --standardize applies to vector data (N × F features); "
            "to scale images for a model use embed --normalize."
        )


def _only_for_files(
    name: str, *, labels: str | None, images_key: str | None, labels_key: str | None
) -> None:
    if labels is not None or images_key is not None or labels_key is not None:
        raise DataError(
            f"the built-in {name} data has its own labels; --labels, --images-key and "
            "--labels-key apply to .npz, .npy and HDF5 files."
        )


def _sniff(path: Path) -> str | None:
    """The kind of an array file from its first bytes, whatever its suffix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}.") from exc
    return next((kind for magic, kind in _MAGIC_KIND.items() if head.startswith(magic)), None)


def _synthetic(opts: Options, *, label_key: str | None) -> ImageDataset:
    """The pseudo-modalities; one column, ``modality``, the label."""
    from latentdiag.data.synthetic import generate_synthetic

    n = opts.n or SYNTHETIC_DEFAULT_N
    size = opts.size or 32
    channels = opts.channels or 1
    source = f"synthetic(n={n}, size={size}, channels={channels}, seed={opts.seed})"
    data = generate_synthetic(n, size=size, channels=channels, seed=opts.seed)
    columns = {"modality": categorical_column("modality", data.labels, data.label_names)}
    if label_key is not None:
        check_column_exists(columns, label_key, where="the synthetic data")
    return ArrayDataset(
        data.images,
        labels=data.labels,
        label_names=data.label_names,
        factors=data.factors,
        factor_names=data.factor_names,
        source=source,
        columns=columns,
        label_key="modality",
    )


def _synthetic_vectors(opts: Options, *, counts: bool, label_key: str | None) -> ImageDataset:
    """The synthetic vector data; columns ``modality`` (the label) and ``batch``."""
    from latentdiag.data.synthetic_vectors import BATCH_NAMES, generate_synthetic_vectors

    n = opts.n or SYNTHETIC_DEFAULT_N
    name = "synthetic-counts" if counts else "synthetic-vectors"
    data = generate_synthetic_vectors(n, seed=opts.seed, counts=counts)
    n_features = data.vectors.shape[1]
    return build_vector_dataset(
        data.vectors,
        opts=Options(opts.size, opts.channels, None, opts.seed, opts.standardize),
        where=name,
        id_prefix=name,
        source=f"{name}(n={n}, features={n_features}, seed={opts.seed})",
        labels=data.labels,
        label_names=data.label_names,
        factors=data.factors,
        factor_names=data.factor_names,
        columns={"batch": categorical_column("batch", data.batch, BATCH_NAMES)},
        label_key=label_key,
        label_column="modality",
        feature_names=data.feature_names,
    )


def _digits(opts: Options, *, label_key: str | None) -> ImageDataset:
    """scikit-learn's 8×8 handwritten digits (1,797 images, values 0..16), shipped with it;
    one column, ``digit``, the label."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).clip(0.0, 1.0)  # (N, 8, 8)
    return build_array_dataset(
        images,
        opts=opts,
        where="digits",
        id_prefix="digits",
        source="digits",
        labels=np.asarray(bunch.target, dtype=np.int64),
        label_names=[str(int(t)) for t in bunch.target_names],
        label_column="digit",
        label_key=label_key,
    )


def describe(ds: ImageDataset) -> str:
    """One line about a dataset: count, shape (``vectors: N × F`` for vector data), labels,
    factors, and its columns (name, kind, categories: ``columns: label (categorical, 2),
    level2 (categorical, 3)``)."""
    if ds.kind == "vectors":
        parts = [_describe_vectors(ds)]
    else:
        parts = [f"{count(len(ds), 'image')} {ds.channels}×{ds.size}×{ds.size}"]
    if ds.label_names is not None:
        names = ", ".join(ds.label_names[:6]) + (", …" if len(ds.label_names) > 6 else "")
        parts.append(f"{count(len(ds.label_names), 'label')} ({names})")
    if ds.factor_names is not None:
        parts.append(count(len(ds.factor_names), "factor"))
    text = ", ".join(parts)
    if ds.columns:
        label = f"; label: {ds.label_key}" if ds.label_key else ""
        text += f"; columns: {describe_columns(ds.columns)}{label}"
    return text


def _describe_vectors(ds: ImageDataset) -> str:
    """``vectors: 4,000 × 50 (float32, standardized)``."""
    from latentdiag.data.base import Subset
    from latentdiag.data.vectors import VectorDataset, is_sparse

    base = ds.parent if isinstance(ds, Subset) else ds
    n_features = int(ds.image_shape[0])
    notes = []
    if isinstance(base, VectorDataset):
        notes.append(str(base.dtype))
        if is_sparse(base.vectors):
            notes.append("sparse")
        if base.standardize is not None:
            notes.append("standardized")
    detail = f" ({', '.join(notes)})" if notes else ""
    return f"vectors: {len(ds):,} × {n_features:,}{detail}"
