"""What every reader of latents offers, whatever the file: :class:`LatentSource`.

A latents file (:class:`~latentdiag.store.LatentStore`) and an AnnData ``.h5ad`` file
(:class:`~latentdiag.store.h5ad.AnnDataLatents`) both open as a ``LatentSource``: the metrics,
the report, ``check`` and ``inspect`` read through this interface only, so they take either.

A subclass provides the rows (:meth:`has`, :meth:`read`, :meth:`compression`), the metadata
columns (:attr:`columns`) and the attributes set in its constructor; this class adds the
typed accessors, block iteration, the label / batch choice and the summary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.columns import Column, Groupings, select_groupings
from latentdiag.store._common import DEFAULT_BLOCK_ROWS, ROW_DATASETS, SAMPLE_IDS_FROM_INDEX

__all__ = ["LatentSource", "StoreSummary"]


@dataclass
class StoreSummary:
    """What a latents file holds: the content of ``latentdiag inspect``."""

    path: str
    n_samples: int
    latent_dim: int
    complete: bool
    format_version: int
    created: str | None
    latentdiag_version: str | None
    datasets: dict[str, dict[str, Any]]
    label_names: list[str] | None
    label_counts: dict[str, int] | None
    factor_names: list[str] | None
    partitions: dict[str, list[int]]
    provenance: dict[str, Any]
    nonfinite: dict[str, int] = field(default_factory=dict)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_key: str | None = None
    batch_key: str | None = None
    batch_names: list[str] | None = None
    batch_counts: dict[str, int] | None = None
    file_format: str = "latents"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LatentSource:
    """Latent rows with their metadata, read-only.

    Attributes:
        path: The file.
        n_samples: n, rows.
        latent_dim: d, latent dimensions.
        complete: Whether every row was written.
        format_version: Version of the file's layout.
        label_names: Names of the chosen label's groups, or None.
        factor_names: Names of the ground-truth factors, or None.
        partitions: Named latent subspaces, name -> (start, stop).
        provenance: How the file was made.
        file_label_key: The column that is the file's default label, or None.
        label_key: The column chosen as label (the default unless ``label_key`` was given).
        batch_key: The column chosen as batch, or None.
        batch_names: Names of the batch groups, or None.
    """

    path: Path
    n_samples: int
    latent_dim: int
    complete: bool = True
    format_version: int
    created: str | None = None
    latentdiag_version: str | None = None
    label_names: list[str] | None = None
    factor_names: list[str] | None = None
    partitions: dict[str, tuple[int, int]]
    provenance: dict[str, Any]
    file_label_key: str | None = None
    file_format: str = "latents"
    _groupings: Groupings | None = None
    label_key: str | None = None
    batch_key: str | None = None
    batch_names: list[str] | None = None
    # AnnData only: the embedding before integration (--pre-obsm), for mixing.pcr_comparison.
    pre_embedding: np.ndarray | None = None
    pre_obsm_key: str | None = None

    # -- what a subclass provides ---------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the file holds the row dataset ``name`` (mu, logvar, labels, ...)."""
        raise NotImplementedError

    def read(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Read a row dataset, whole or a row selection (a slice or sorted index array)."""
        raise NotImplementedError

    def compression(self, name: str) -> str | None:
        """The filter that compresses row dataset ``name`` ("gzip", ...), or None."""
        raise NotImplementedError

    @property
    def columns(self) -> dict[str, Column]:
        """Every per-row metadata column by name."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def _dataset_info(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    # -- the label and the batch ----------------------------------------------------------
    def _select(
        self, label_key: str | None, batch_key: str | None, *, default_from_file: bool
    ) -> None:
        """Settle which columns play label and batch (``--label-key`` / ``--batch-key``).

        Args:
            label_key: The label column asked for, or None for the default.
            batch_key: The batch column asked for, or None.
            default_from_file: The default label can be read from ``/labels`` as it is, so
                nothing needs choosing when no key is given.
        """
        self._groupings = None
        self.label_key = self.file_label_key
        self.batch_key = None
        self.batch_names = None
        if label_key is None and batch_key is None and default_from_file:
            return
        if label_key is None and batch_key is None and self.file_label_key is None:
            return
        g = select_groupings(
            self.columns,
            default_label=self.file_label_key,
            label_key=label_key,
            batch_key=batch_key,
            where=str(self.path),
        )
        self._groupings = g
        self.label_key = g.label_key
        self.label_names = g.label_names
        self.batch_key = g.batch_key
        self.batch_names = g.batch_names

    @property
    def has_labels(self) -> bool:
        """Whether the rows carry the chosen label (the default one, or ``label_key``'s)."""
        if self._groupings is not None:
            return self._groupings.labels is not None
        return self.has("labels")

    @property
    def has_batch(self) -> bool:
        """Whether a batch column was chosen (``batch_key``)."""
        return self._groupings is not None and self._groupings.batch is not None

    @property
    def labels(self) -> np.ndarray | None:
        """(n,) int64 codes of the chosen label, or None."""
        if self._groupings is not None:
            return self._groupings.labels
        return self.read("labels").astype(np.int64, copy=False) if self.has_labels else None

    @property
    def batch(self) -> np.ndarray | None:
        """(n,) int64 codes of the batch column (``batch_key``), or None."""
        return None if self._groupings is None else self._groupings.batch

    # -- rows -----------------------------------------------------------------------------
    @property
    def has_logvar(self) -> bool:
        return self.has("logvar")

    @property
    def has_factors(self) -> bool:
        return self.has("factors")

    @property
    def mu(self) -> np.ndarray:
        return self.read("mu").astype(np.float32, copy=False)

    @property
    def logvar(self) -> np.ndarray | None:
        return self.read("logvar").astype(np.float32, copy=False) if self.has_logvar else None

    @property
    def factors(self) -> np.ndarray | None:
        return self.read("factors").astype(np.float32, copy=False) if self.has_factors else None

    @property
    def sample_ids(self) -> np.ndarray | None:
        """Each row's sample id: ``/sample_ids``, or ``"<data_source>[<index>]"`` when the
        provenance says the ids follow ``/index`` (files embedded from in-memory arrays)."""
        if self.has("sample_ids"):
            return self.read("sample_ids")
        source = self.provenance.get("data_source")
        if self.provenance.get("sample_ids") == SAMPLE_IDS_FROM_INDEX and self.has("index"):
            return np.asarray([f"{source}[{i}]" for i in self.read("index").tolist()])
        return None

    @property
    def index(self) -> np.ndarray | None:
        """Each row's position in the data it was embedded from (``/index``), if recorded."""
        return self.read("index").astype(np.int64, copy=False) if self.has("index") else None

    def iter_blocks(
        self, block_rows: int = DEFAULT_BLOCK_ROWS, names: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield consecutive row blocks as ``{name: array}`` for the datasets present."""
        wanted = [n for n in (names or ROW_DATASETS) if self.has(n)]
        for start in range(0, self.n_samples, block_rows):
            sl = slice(start, min(start + block_rows, self.n_samples))
            yield {name: self.read(name, sl) for name in wanted}

    def nonfinite_counts(self, block_rows: int = DEFAULT_BLOCK_ROWS) -> dict[str, int]:
        """Number of NaN or infinite values in each float dataset (read in blocks)."""
        counts = {name: 0 for name in ("mu", "logvar", "factors") if self.has(name)}
        for block in self.iter_blocks(block_rows, names=list(counts)):
            for name, arr in block.items():
                counts[name] += int(arr.size - np.count_nonzero(np.isfinite(arr)))
        return counts

    def label_counts(self) -> dict[str, int] | None:
        """How many rows carry each label name (in label order)."""
        if not self.has_labels or self.label_names is None:
            return None
        if self._groupings is not None and self._groupings.labels is not None:
            return _counts(self._groupings.labels, self.label_names)
        counts = np.zeros(len(self.label_names), dtype=np.int64)
        for block in self.iter_blocks(names=["labels"]):
            counts += np.bincount(block["labels"], minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}

    def batch_counts(self) -> dict[str, int] | None:
        """How many rows carry each batch name (in order), or None without a batch."""
        batch = self.batch
        if batch is None or self.batch_names is None:
            return None
        return _counts(batch, self.batch_names)

    def summary(self) -> StoreSummary:
        """Everything ``latentdiag inspect`` shows."""
        datasets = {name: self._dataset_info(name) for name in ROW_DATASETS if self.has(name)}
        return StoreSummary(
            path=str(self.path),
            n_samples=self.n_samples,
            latent_dim=self.latent_dim,
            complete=self.complete,
            format_version=self.format_version,
            created=self.created,
            latentdiag_version=self.latentdiag_version,
            datasets=datasets,
            label_names=self.label_names if self.has_labels else None,
            label_counts=self.label_counts(),
            factor_names=self.factor_names if self.has_factors else None,
            partitions={k: [a, b] for k, (a, b) in self.partitions.items()},
            provenance=self.provenance,
            nonfinite=self.nonfinite_counts(),
            columns={name: col.describe() for name, col in self.columns.items()},
            label_key=self.label_key if self.has_labels else None,
            batch_key=self.batch_key,
            batch_names=self.batch_names,
            batch_counts=self.batch_counts(),
            file_format=self.file_format,
        )

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, n_samples={self.n_samples}, "
            f"latent_dim={self.latent_dim})"
        )


def _counts(codes: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts, strict=True)}
