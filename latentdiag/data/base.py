"""The one dataset interface every data source implements.

A dataset is map-style (``len`` and integer indexing), so ``torch.utils.data.DataLoader`` can
batch it and decode in worker processes, but this module never imports torch.

Every item is a dict with the same keys whatever the source, so the default collate works:

``image``      the model input: float32 (C, H, W) in [0, 1] for images; for vector data
               (``kind == "vectors"``, :mod:`latentdiag.data.vectors`) a float32 (F,) vector
``label``      int, 0..len(label_names)-1, or -1 when the source has no labels
``factors``    float32 array (f,), ground-truth factors; shape (0,) when the source has none
``sample_id``  str, where the item came from (a file path, ``name.npz:train[12]``, ...)
``index``      int, the item's position in the dataset (stable; used by shards and resume)

Per-row metadata beyond the one label (site, patient, scanner, a folder level...) is not in the
items: a dataset holds it whole in :attr:`ImageDataset.columns`, indexed by ``item["index"]``,
so ``embed`` writes every column into the latents file without collating strings per batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from latentdiag.columns import Column

UNLABELED = -1

__all__ = ["UNLABELED", "ArrayDataset", "ImageDataset", "Subset"]


class ImageDataset(ABC):
    """Base class of all data sources.

    Attributes:
        label_names: Names of labels 0..k-1, or None when the source has no labels.
        factor_names: Names of the ground-truth factors, or None.
        channels: C of every image.
        size: H == W of every image (sources resize to a square size).
        source: A short description of where the data came from (recorded in provenance).
        kind: ``"images"``, or ``"vectors"`` for feature vectors
            (:class:`~latentdiag.data.vectors.VectorDataset`).
        columns: Per-row metadata columns by name (:class:`~latentdiag.columns.Column`), each
            with one value per item, indexed by ``item["index"]``; None when the source has
            none beyond the label.
        label_key: The column the labels come from (its codes are the labels, its categories
            the label names), or None.
    """

    kind: str = "images"
    label_names: list[str] | None = None
    factor_names: list[str] | None = None
    columns: dict[str, Column] | None = None
    label_key: str | None = None
    channels: int
    size: int
    source: str = ""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @property
    def has_labels(self) -> bool:
        return self.label_names is not None

    @property
    def has_factors(self) -> bool:
        return self.factor_names is not None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Subset:
        """A view on some items, in the order given (for held-out splits and shards)."""
        return Subset(self, np.asarray(indices, dtype=np.int64))


class Subset(ImageDataset):
    """Items ``indices`` of ``parent``; ``index`` keys keep the parent's positions."""

    def __init__(self, parent: ImageDataset, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = indices
        self.label_names = parent.label_names
        self.factor_names = parent.factor_names
        # Items keep the parent's ``index``, so the parent's columns stay valid as they are.
        self.columns = parent.columns
        self.label_key = parent.label_key
        self.kind = parent.kind
        self.channels = parent.channels
        self.size = parent.size
        self.source = parent.source

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.parent.image_shape

    @property
    def n_features(self) -> int | None:
        """F of a vector parent (None for images)."""
        return getattr(self.parent, "n_features", None)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.parent[int(self.indices[index])]


class ArrayDataset(ImageDataset):
    """Images already in memory (or memory-mapped): the base of the npz, npy, HDF5, digits and
    synthetic sources, and handy in tests.

    Args:
        images: (N, C, H, W) with H == W; uint8 (0..255) or float (already in [0, 1]).
        labels: (N,) ints in 0..k-1, or None.
        label_names: Names of labels 0..k-1 (required with labels).
        factors: (N, f) floats, or None.
        factor_names: Names of the factors (default f0, f1, ...).
        sample_ids: (N,) strings, or None for ``"{source}[{i}]"``.
        source: Description for provenance.
        columns: Per-row metadata columns by name, each of N values, or None.
        label_key: The column of ``columns`` the labels come from, or None.
    """

    def __init__(
        self,
        images: np.ndarray,
        *,
        labels: np.ndarray | None = None,
        label_names: Sequence[str] | None = None,
        factors: np.ndarray | None = None,
        factor_names: Sequence[str] | None = None,
        sample_ids: Sequence[str] | None = None,
        source: str = "arrays",
        columns: Mapping[str, Column] | None = None,
        label_key: str | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must be (N, C, S, S); got {images.shape}")
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None:
            if label_names is None:
                label_names = [str(i) for i in range(int(self.labels.max(initial=-1)) + 1)]
            self.label_names = [str(n) for n in label_names]
        self.factors = None if factors is None else np.asarray(factors, dtype=np.float32)
        if self.factors is not None:
            names = factor_names or [f"f{i}" for i in range(self.factors.shape[1])]
            self.factor_names = [str(n) for n in names]
        self.sample_ids = sample_ids
        if columns is not None:
            wrong = [c.name for c in columns.values() if len(c) != images.shape[0]]
            if wrong:
                raise ValueError(f"columns {wrong} do not have one value per image")
            self.columns = dict(columns)
        if label_key is not None and (self.columns is None or label_key not in self.columns):
            raise ValueError(f"label_key {label_key!r} is not one of the columns")
        self.label_key = label_key
        self.channels = int(images.shape[1])
        self.size = int(images.shape[2])
        self.source = source
        self._no_factors = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = np.asarray(self.images[index])
        if img.dtype == np.uint8:
            img = np.divide(img, np.float32(255), dtype=np.float32)
        else:
            img = img.astype(np.float32, copy=False)
        return {
            "image": img,
            "label": UNLABELED if self.labels is None else int(self.labels[index]),
            "factors": self._no_factors if self.factors is None else self.factors[index],
            "sample_id": (
                f"{self.source}[{index}]" if self.sample_ids is None else self.sample_ids[index]
            ),
            "index": int(index),
        }
