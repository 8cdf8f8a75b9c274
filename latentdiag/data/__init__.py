"""Data sources: the built-in synthetic pseudo-modalities, digits, and loaders for image
folders, ``.npz`` (MedMNIST), ``.npy`` and HDF5 — all behind one :class:`ImageDataset` — and
vector data (:class:`VectorDataset`: (N, F) arrays, CSV / Parquet tables, AnnData ``.h5ad``,
the built-in ``synthetic-vectors`` / ``synthetic-counts``).

``open_dataset(source, ...)`` opens any of them; ``generate_synthetic`` and
``generate_synthetic_vectors`` make the synthetic data as arrays; ``write_dataset`` and
``write_vector_dataset`` store arrays as ``.npz`` / ``.h5``; ``save_preview`` draws a labelled
grid (vectors: a feature heatmap and a PCA scatter). Nothing heavy is imported here (Pillow,
pandas, anndata, matplotlib and scikit-learn load inside the functions that need them).
"""

from latentdiag.data._common import DataWarning
from latentdiag.data.base import UNLABELED, ArrayDataset, ImageDataset, Subset
from latentdiag.data.io import write_dataset, write_vector_dataset
from latentdiag.data.preview import save_preview
from latentdiag.data.sources import open_dataset
from latentdiag.data.synthetic import SyntheticData, generate_synthetic
from latentdiag.data.synthetic_vectors import SyntheticVectors, generate_synthetic_vectors
from latentdiag.data.vectors import VectorDataset

__all__ = [
    "UNLABELED",
    "ArrayDataset",
    "DataWarning",
    "ImageDataset",
    "Subset",
    "SyntheticData",
    "SyntheticVectors",
    "VectorDataset",
    "generate_synthetic",
    "generate_synthetic_vectors",
    "open_dataset",
    "save_preview",
    "write_dataset",
    "write_vector_dataset",
]
