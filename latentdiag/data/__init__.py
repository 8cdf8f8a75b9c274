"""Data sources: the built-in synthetic pseudo-modalities, digits, and loaders for image
folders, ``.npz`` (MedMNIST), ``.npy`` and HDF5 — all behind one :class:`ImageDataset`."""

from latentdiag.data.base import UNLABELED, ArrayDataset, ImageDataset, Subset

__all__ = ["UNLABELED", "ArrayDataset", "ImageDataset", "Subset"]
