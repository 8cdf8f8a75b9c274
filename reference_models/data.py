"""Training data: open the source, split off the held-out set, and serve batches.

Images (C, S, S) and feature vectors (F,) (``kind == "vectors"``: tables, AnnData, an (N, F)
array, ``synthetic-vectors``) go through the same code; only the opening differs (vectors are
never resized) and the facts recorded in the :class:`DataSpec`.

Two ways to serve batches, chosen by size:

- *in memory*: when the dataset fits in ``data.in_memory_gb``, every image is decoded once into
  one tensor (uint8 when the source is uint8; vectors as float32 rows) and batches are index
  lookups — at 32 × 32 on a CPU this is many times faster than a DataLoader that collates item
  by item;
- *streaming*: otherwise a DataLoader with worker processes decodes each batch.

Both follow the same batch plan, a pure function of (seed, epoch, rank, world size): that is
what makes a resumed run and a distributed run see exactly the batches they should.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentdiag.data import ArrayDataset, ImageDataset, VectorDataset
from latentdiag.errors import ConfigError, DataError
from latentdiag.pipeline import worker_context
from reference_models.base import DataSpec
from reference_models.config import DataConfig

SYNTHETIC_N = 10000  # samples generated for the built-in synthetic sources when data.n is 0
# Built-in sources that generate their data (data.n = 0 means SYNTHETIC_N of them).
_GENERATED = ("synthetic", "synthetic-vectors", "synthetic-counts")
_VECTOR_BUILTINS = ("synthetic-vectors", "synthetic-counts")
# Files that only ever hold vectors; .npy / .npz / HDF5 hold either.
_VECTOR_SUFFIXES = (".h5ad", ".csv", ".tsv", ".parquet", ".pq")
# Rows checked for integer values when the vectors are streamed (all of them when in memory).
_COUNTS_CHECK_ROWS = 20000

__all__ = [
    "TrainingData",
    "batch_plan",
    "heldout_split",
    "open_training_data",
]


def open_source(cfg: DataConfig, *, seed: int) -> ImageDataset:
    """Open ``cfg.source`` with latentdiag's data loaders: images at the configured size and
    channels, vectors as stored.

    A source that may hold either (``.npy``, ``.npz``, HDF5) is opened as images first, the
    call training has always made; when that fails it is opened again without a size, and
    kept if it holds vectors.

    Raises:
        DataError: The source cannot be opened (the loader's own message).
    """
    from latentdiag.data import open_dataset

    source = cfg.source
    common: dict[str, Any] = dict(
        n=cfg.n or (SYNTHETIC_N if source in _GENERATED else None),
        seed=seed,
        split=cfg.split,
        labels=cfg.labels or None,
        images_key=cfg.images_key or None,
        labels_key=cfg.labels_key or None,
        label_key=cfg.label_key or None,
    )
    path = Path(source).expanduser()
    if path.exists() and path.is_dir():
        return open_dataset(source, size=cfg.size, channels=cfg.channels, **common)
    if path.suffix.lower() in _VECTOR_SUFFIXES or (
        not path.exists() and source.lower() in _VECTOR_BUILTINS
    ):
        return open_dataset(source, **common)
    try:
        return open_dataset(source, size=cfg.size, channels=cfg.channels, **common)
    except DataError as as_images:
        if not path.is_file():
            raise
        # A vector file refuses a size before anything else, so its real problem, if any,
        # is what the second opening says.
        ds = open_dataset(source, **common)
        if ds.kind != "vectors":
            raise as_images from None
        return ds


def heldout_split(
    labels: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions 0..N-1 into (train, held-out), stratified by label, both sorted.

    Each label contributes ``round(fraction · count)`` items (at least one when it has two or
    more) to the held-out set, chosen by a generator seeded with ``seed``.
    """
    rng = np.random.default_rng([seed, 0x4E1D])
    held: list[np.ndarray] = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        k = round(fraction * idx.size)
        if idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        held.append(rng.permutation(idx)[:k])
    heldout = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(labels.size), heldout)
    return train.astype(np.int64), heldout.astype(np.int64)


def batch_plan(
    n_train: int, *, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[np.ndarray]:
    """The batches (positions into the training split) one process sees in one epoch.

    The epoch's order is a permutation seeded by (seed, epoch), the same on every process; each
    process takes every ``world_size``-th item from its ``rank``, and the last incomplete batch
    is dropped so every process runs the same number of steps.
    """
    per_rank_batch = batch_size // world_size
    order = np.random.default_rng([seed, epoch, 0xB47C]).permutation(n_train)
    mine = order[: (n_train // world_size) * world_size][rank::world_size]
    steps = mine.size // per_rank_batch
    return [mine[i * per_rank_batch : (i + 1) * per_rank_batch] for i in range(steps)]


@dataclass
class TrainingData:
    """The opened dataset, its split, and a way to fetch batches as tensors.

    Attributes:
        dataset: The whole dataset (train and held-out).
        train_idx: Dataset indices of the training split.
        heldout_idx: Dataset indices of the held-out split.
        spec: Facts the model is built from.
        images: All images in memory (N, C, S, S), uint8 or float32 — or all vectors, (N, F)
            float32; None when streaming.
        labels: (N,) int64 labels (−1 when the source has none).
    """

    dataset: ImageDataset
    train_idx: np.ndarray
    heldout_idx: np.ndarray
    spec: DataSpec
    images: Tensor | None
    labels: np.ndarray
    num_workers: int = 0

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def to(self, device: torch.device) -> None:
        """Move in-memory images to ``device`` when they are small (one copy, no per-batch)."""
        if self.images is not None and device.type == "cuda" and self.images.numel() < 2**30:
            self.images = self.images.to(device)

    def batches(
        self, dataset_indices: Sequence[np.ndarray], device: torch.device
    ) -> Iterator[dict[str, Tensor]]:
        """Yield ``{"image": (B, C, S, S) float in [0, 1] or (B, F), "label": (B,) int64}`` on
        device."""
        if self.images is not None:
            for idx in dataset_indices:
                sel = torch.from_numpy(idx).to(self.images.device)
                yield {
                    "image": _channels_last(_to_float(self.images.index_select(0, sel).to(device))),
                    "label": torch.from_numpy(self.labels[idx]).to(device),
                }
            return
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_sampler=[list(map(int, idx)) for idx in dataset_indices],
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            # Workers start from a clean server process, never from a fork of this threaded
            # one (see latentdiag.pipeline.worker_context).
            multiprocessing_context=worker_context() if self.num_workers else None,
            # Its own generator: a DataLoader draws its workers' base seed from the one it is
            # given, and must not consume the global RNG that the training noise comes from.
            generator=torch.Generator().manual_seed(0),
        )
        for item in loader:
            yield {
                "image": _channels_last(item["image"].to(device, non_blocking=True)),
                "label": item["label"].to(device, non_blocking=True),
            }

    def heldout_meta(self, positions: np.ndarray) -> dict[str, Any]:
        """Labels, factors and sample ids of held-out rows ``positions`` (into heldout_idx)."""
        idx = self.heldout_idx[positions]
        ds = self.dataset
        factors = None
        sample_ids: list[str]
        if isinstance(ds, (ArrayDataset, VectorDataset)):
            factors = None if ds.factors is None else ds.factors[idx]
            if ds.sample_ids is None:
                sample_ids = [f"{ds.source}[{i}]" for i in idx]
            else:
                sample_ids = [str(ds.sample_ids[i]) for i in idx]
        else:
            items = [ds[int(i)] for i in idx]
            sample_ids = [str(it["sample_id"]) for it in items]
            if ds.has_factors:
                factors = np.stack([np.asarray(it["factors"], np.float32) for it in items])
        return {"labels": self.labels[idx], "factors": factors, "sample_ids": sample_ids}


def _channels_last(x: Tensor) -> Tensor:
    """Images (B, C, H, W) in channels-last memory order, as the conv nets train fastest."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _to_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def open_training_data(
    cfg: DataConfig,
    *,
    seed: int,
    needs_labels: bool,
    dataset: ImageDataset | None = None,
    num_workers: int = 0,
) -> TrainingData:
    """Open the data, check it suits the model, split it, and load it into memory if it fits.

    Args:
        cfg: The data section of the run config.
        seed: The run's seed (the split and synthetic data depend on it).
        needs_labels: Whether the model trains on labels.
        dataset: Use this dataset instead of opening ``cfg.source`` (the Python API).
        num_workers: DataLoader workers when streaming.

    Raises:
        DataError: The data has no labels for a conditional model, too few images, or images
            of another size or channel count than configured.
    """
    ds = dataset if dataset is not None else open_source(cfg, seed=seed)
    vectors = ds.kind == "vectors"
    if not vectors and (ds.channels != cfg.channels or ds.size != cfg.size):
        raise DataError(
            f"the data has {ds.channels}-channel {ds.size}×{ds.size} images but the config asks "
            f"for {cfg.channels}-channel {cfg.size}×{cfg.size}; set data.channels / data.size "
            "to match (or --channels / --size)."
        )
    n = len(ds)
    noun = "rows" if vectors else "images"
    if n < 8:
        raise DataError(f"training needs at least 8 {noun}; {ds.source or 'the data'} has {n}.")
    images, labels = _materialize(ds, cfg.in_memory_gb)
    if needs_labels and (ds.label_names is None or (labels < 0).any()):
        raise DataError(
            f"this model is conditioned on labels but {ds.source or 'the data'} has none; use "
            "labelled data (one subfolder per label, or a labels array) or an unconditional "
            "model (beta-vae, beta-tcvae)."
        )
    if ds.label_names is not None and len(ds.label_names) < 2 and needs_labels:
        raise DataError(
            f"this model separates labels but {ds.source or 'the data'} has only one label "
            f"({ds.label_names}); it needs at least two."
        )
    train_idx, heldout_idx = heldout_split(labels, fraction=cfg.heldout, seed=seed)
    spec = DataSpec(
        channels=0 if vectors else ds.channels,
        size=0 if vectors else ds.size,
        label_names=tuple(ds.label_names or ()),
        factor_names=tuple(ds.factor_names or ()),
        n_train=int(train_idx.size),
        source=ds.source or cfg.source,
        **(_vector_facts(ds, images) if vectors else {}),
    )
    return TrainingData(
        dataset=ds,
        train_idx=train_idx,
        heldout_idx=heldout_idx,
        spec=spec,
        images=images,
        labels=labels,
        num_workers=num_workers,
    )


def _vector_rows(ds: ImageDataset, index: np.ndarray | slice) -> np.ndarray:
    """Rows of a vector dataset (or of a subset of one) as (len, F) float32."""
    if isinstance(ds, VectorDataset):
        return ds.rows(index)
    parent = getattr(ds, "parent", None)
    if isinstance(parent, VectorDataset):
        positions = np.asarray(ds.indices)[index]  # type: ignore[attr-defined]
        return parent.rows(positions)
    idx = np.arange(len(ds))[index]
    return np.stack([np.asarray(ds[int(i)]["image"], np.float32) for i in idx])


def _vector_facts(ds: ImageDataset, rows: Tensor | None) -> dict[str, Any]:
    """``n_features`` and whether the values are counts (non-negative integers) for DataSpec.

    Every row is checked when the vectors are in memory, the first 20,000 when streamed.
    Standardized data (``--standardize``) is never counts.
    """
    if rows is None:
        rows = torch.from_numpy(_vector_rows(ds, slice(0, min(len(ds), _COUNTS_CHECK_ROWS))))
    base = getattr(ds, "parent", ds)
    standardized = getattr(base, "standardize", None) is not None
    counts = not standardized and bool((rows >= 0).all() and (rows == rows.round()).all())
    return {"kind": "vectors", "n_features": int(rows.shape[1]), "counts": counts}


def _materialize(ds: ImageDataset, budget_gb: float) -> tuple[Tensor | None, np.ndarray]:
    """(all images — or vectors — as one tensor, or None when over budget; all labels)."""
    n = len(ds)
    if ds.kind == "vectors":
        n_features = int(_vector_rows(ds, slice(0, 1)).shape[1])
        labels_attr = getattr(ds, "labels", None)
        parent = getattr(ds, "parent", None)
        if labels_attr is not None:
            labels = np.asarray(labels_attr, dtype=np.int64)
        elif isinstance(parent, VectorDataset) and parent.labels is not None:
            labels = parent.labels[np.asarray(ds.indices)]  # type: ignore[attr-defined]
        elif ds.label_names is None:
            labels = np.full(n, -1, dtype=np.int64)
        else:
            labels = np.array([int(ds[i]["label"]) for i in range(n)], dtype=np.int64)
        if n * n_features * 4 > budget_gb * 2**30:
            return None, labels
        return torch.from_numpy(_vector_rows(ds, slice(None))), labels
    if isinstance(ds, ArrayDataset):
        arr = np.asarray(ds.images)
        labels = ds.labels if ds.labels is not None else np.full(n, -1, dtype=np.int64)
        if arr.nbytes <= budget_gb * 2**30:
            t = torch.from_numpy(np.array(arr, copy=not arr.flags.writeable, order="C"))
            if t.dtype != torch.uint8:
                t = t.float()
            return t, np.asarray(labels, dtype=np.int64)
        return None, np.asarray(labels, dtype=np.int64)
    c, s = ds.channels, ds.size
    fits = n * c * s * s * 4 <= budget_gb * 2**30
    if not fits:
        # Labels only: one pass over the items would decode every image, so ask the dataset
        # for its label array when it has one.
        labels_attr = getattr(ds, "labels", None)
        if labels_attr is not None:
            return None, np.asarray(labels_attr, dtype=np.int64)
        return None, np.array([int(ds[i]["label"]) for i in range(n)], dtype=np.int64)
    images = torch.empty((n, c, s, s), dtype=torch.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        item = ds[i]
        images[i] = torch.from_numpy(np.asarray(item["image"], dtype=np.float32))
        labels[i] = int(item["label"])
    return images, labels


def check_batch_size(batch_size: int, world_size: int, n_train: int) -> None:
    """Raise ConfigError when the global batch does not split over processes or data."""
    if batch_size % world_size:
        raise ConfigError(
            f"train.batch_size ({batch_size}) must be a multiple of the number of processes "
            f"({world_size}) so that each process gets the same share."
        )
    if n_train // world_size < batch_size // world_size:
        raise ConfigError(
            f"train.batch_size ({batch_size}) is larger than the training split ({n_train} "
            "images); lower --batch-size or use more data."
        )
