"""Data sources: the built-in synthetic pseudo-modalities, digits, and loaders for image
folders, ``.npz`` (MedMNIST), ``.npy`` and HDF5 — all behind one :class:`ImageDataset`.

``open_dataset(source, ...)`` opens any of them; ``generate_synthetic`` makes the
pseudo-modality data as arrays; ``write_dataset`` stores arrays as ``.npz`` / ``.h5``;
``save_preview`` draws a labelled grid. Nothing heavy is imported here (Pillow, h5py,
matplotlib and scikit-learn load inside the functions that need them).
"""

from latentdiag.data._common import DataWarning
from latentdiag.data.base import UNLABELED, ArrayDataset, ImageDataset, Subset
from latentdiag.data.io import write_dataset
from latentdiag.data.preview import save_preview
from latentdiag.data.sources import open_dataset
from latentdiag.data.synthetic import SyntheticData, generate_synthetic
from latentdiag.data.vectors import VectorDataset

__all__ = [
    "UNLABELED",
    "ArrayDataset",
    "DataWarning",
    "ImageDataset",
    "Subset",
    "SyntheticData",
    "VectorDataset",
    "generate_synthetic",
    "open_dataset",
    "save_preview",
    "write_dataset",
]
