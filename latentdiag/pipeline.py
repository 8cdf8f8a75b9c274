"""The two ends of the embed loop: batches in, blocks out.

Batches in: the rows a run covers are preprocessed and handed over as :class:`Batch`
objects — by DataLoader worker processes for data that is decoded item by item (image folders,
files on disk), and for arrays a batch at a time: in line when they are in memory and need no
resizing (microseconds a batch), else by a prefetch thread that reads ahead of the model. The
bytes are identical whichever way.

Blocks out: :class:`BlockSink` gathers model outputs into blocks and a writer thread appends
them to the latents file, so compression and I/O overlap with the model. Memory holds a few
batches and one block, whatever n is.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from latentdiag.columns import Column
from latentdiag.data.base import ArrayDataset, ImageDataset, Subset
from latentdiag.data.vectors import VectorDataset
from latentdiag.errors import ModelError
from latentdiag.runners.preprocess import Preprocess, VectorPreprocess
from latentdiag.store import LatentWriter

__all__ = ["Batch", "BlockSink", "Rows", "open_batches"]


@dataclass(frozen=True)
class Rows:
    """The data positions a run covers: start, start + step, ... (count of them)."""

    start: int
    step: int
    count: int

    def positions(self, lo: int, hi: int) -> np.ndarray:
        """Positions of rows lo..hi-1 of this run."""
        return np.arange(self.start + lo * self.step, self.start + hi * self.step, self.step)


# -- batches in ----------------------------------------------------------------------------------
@dataclass
class Batch:
    images: np.ndarray  # (B, C, H, W) float32, preprocessed; (B, F) for vector data
    labels: np.ndarray | None  # (B,) int64
    factors: np.ndarray | None  # (B, f) float32
    sample_ids: list[str] | None  # None where the ids follow the index (see ids_follow_index)
    index: np.ndarray  # (B,) int64, positions in the data


NO_IMAGES = np.zeros((0, 0, 0, 0), dtype=np.float32)


def _array_view(
    dataset: ImageDataset,
) -> tuple[ArrayDataset | VectorDataset, np.ndarray | None] | None:
    """The arrays behind a dataset, when items are plain slices of them (images in memory or
    memory-mapped; vectors dense, memory-mapped, in HDF5 or sparse)."""
    mapping: np.ndarray | None = None
    ds: ImageDataset = dataset
    while isinstance(ds, Subset):
        mapping = ds.indices if mapping is None else ds.indices[mapping]
        ds = ds.parent
    if isinstance(ds, ArrayDataset) and type(ds).__getitem__ is ArrayDataset.__getitem__:
        return ds, mapping
    if isinstance(ds, VectorDataset) and type(ds).__getitem__ is VectorDataset.__getitem__:
        return ds, mapping
    return None


def ids_follow_index(dataset: ImageDataset) -> bool:
    """Whether every sample id is ``"<dataset.source>[<index>]"`` (arrays with no ids of their
    own), so that ``/index`` and the data source say it all and no strings need storing."""
    view = _array_view(dataset)
    return view is not None and view[1] is None and view[0].sample_ids is None


def _take(arr: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (increasing) of a numpy, memory-mapped or h5py array."""
    if isinstance(arr, np.ndarray):
        if idx.size and idx[-1] - idx[0] == idx.size - 1:
            return np.asarray(arr[int(idx[0]) : int(idx[-1]) + 1])
        return np.asarray(arr[idx])
    if idx.size > 1 and np.all(np.diff(idx) == idx[1] - idx[0]) and idx[1] > idx[0]:
        step = int(idx[1] - idx[0])
        return np.asarray(arr[int(idx[0]) : int(idx[-1]) + 1 : step])
    if idx.size == 1:
        return np.asarray(arr[int(idx[0]) : int(idx[0]) + 1])
    return np.asarray(arr[list(map(int, idx))])


def _array_batches(
    ds: ArrayDataset | VectorDataset,
    mapping: np.ndarray | None,
    rows: Rows,
    first: int,
    batch_size: int,
    preprocess: Preprocess | VectorPreprocess,
    ids: bool,
) -> Iterator[Batch]:
    for lo in range(first, rows.count, batch_size):
        pos = rows.positions(lo, min(lo + batch_size, rows.count))
        src = pos if mapping is None else mapping[pos]
        if isinstance(ds, VectorDataset):
            yield Batch(
                images=preprocess(ds.rows(src)),
                labels=None if ds.labels is None else ds.labels[src].astype(np.int64),
                factors=None if ds.factors is None else ds.factors[src].astype(np.float32),
                sample_ids=_ids(ds, src) if ids else None,
                index=pos.astype(np.int64),
            )
            continue
        order = None
        if src.size > 1 and np.any(np.diff(src) <= 0):
            order = np.argsort(src, kind="stable")
            src_sorted = src[order]
        else:
            src_sorted = src
        raw = _take(ds.images, src_sorted)
        if order is not None:
            raw = raw[np.argsort(order, kind="stable")]
        # The same arithmetic as ArrayDataset.__getitem__, so both paths give identical bytes.
        if raw.dtype == np.uint8:
            # One pass, no temporary; the same bytes as astype(float32) / 255.
            images = np.divide(raw, np.float32(255), dtype=np.float32)
        else:
            images = raw.astype(np.float32, copy=False)
        yield Batch(
            images=preprocess(images),
            labels=None if ds.labels is None else ds.labels[src].astype(np.int64),
            factors=None if ds.factors is None else ds.factors[src].astype(np.float32),
            sample_ids=_ids(ds, src) if ids else None,
            index=pos.astype(np.int64),
        )


def _ids(ds: ArrayDataset | VectorDataset, src: np.ndarray) -> list[str]:
    if ds.sample_ids is None:
        return [f"{ds.source}[{i}]" for i in src.tolist()]
    return [str(ds.sample_ids[i]) for i in src.tolist()]


class _PositionView:
    """Map-style view of the rows a run covers (for the DataLoader)."""

    def __init__(self, dataset: ImageDataset, rows: Rows, first: int) -> None:
        self.dataset = dataset
        self.rows = rows
        self.first = first

    def __len__(self) -> int:
        return self.rows.count - self.first

    def __getitem__(self, j: int) -> tuple[int, dict[str, Any]]:
        pos = self.rows.start + (self.first + j) * self.rows.step
        return pos, self.dataset[pos]


class _Collate:
    """Stacks items and preprocesses the batch (in the worker process)."""

    def __init__(
        self, preprocess: Preprocess | VectorPreprocess, has_labels: bool, has_factors: bool
    ) -> None:
        self.preprocess = preprocess
        self.has_labels = has_labels
        self.has_factors = has_factors

    def __call__(self, items: list[tuple[int, dict[str, Any]]]) -> Batch:
        images = np.stack([np.asarray(it["image"], dtype=np.float32) for _, it in items])
        return Batch(
            images=self.preprocess(images),
            labels=(
                np.asarray([int(it["label"]) for _, it in items], dtype=np.int64)
                if self.has_labels
                else None
            ),
            factors=(
                np.stack([np.asarray(it["factors"], dtype=np.float32) for _, it in items])
                if self.has_factors
                else None
            ),
            sample_ids=[str(it["sample_id"]) for _, it in items],
            index=np.asarray([pos for pos, _ in items], dtype=np.int64),
        )


def worker_context() -> Any:
    """How DataLoader workers start: never by a bare fork of a threaded process.

    A fork copies every lock as it is at that moment; a thread of the parent (a writer, a
    prefetch or a progress thread, numba's or BLAS's pools) holding one — the import lock, a
    logging or linecache lock — leaves the child waiting on it forever. ``forkserver`` forks
    workers from a clean single-threaded server instead (``spawn`` where there is none), at the
    cost of pickling the dataset (every dataset here is picklable) and of each worker importing
    what it needs once.
    """
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers decode; the model gets the cores


def _loader_batches(
    dataset: ImageDataset,
    rows: Rows,
    first: int,
    batch_size: int,
    preprocess: Preprocess | VectorPreprocess,
    workers: int,
) -> Iterator[Batch]:
    from torch.utils.data import DataLoader

    loader: Any = DataLoader(
        _PositionView(dataset, rows, first),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_Collate(preprocess, dataset.has_labels, dataset.has_factors),
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        multiprocessing_context=worker_context() if workers else None,
    )
    yield from loader


class _Prefetch:
    """Runs a batch iterator in a thread, ``depth`` batches ahead of the consumer."""

    _DONE = object()

    def __init__(self, it: Iterator[Batch], depth: int = 3) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(it,), daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, it: Iterator[Batch]) -> None:
        try:
            for batch in it:
                if not self._put(batch):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            return
        self._put(self._DONE)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5)


def _default_workers(fast: bool) -> int:
    if fast:
        return 0
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1)) if cores > 1 else 0


def open_batches(
    dataset: ImageDataset,
    rows: Rows,
    first: int,
    batch_size: int,
    preprocess: Preprocess | VectorPreprocess,
    workers: int | None,
    *,
    ids: bool = True,
) -> tuple[Iterator[Batch], Callable[[], None]]:
    """Batches of rows ``first..rows.count-1``, and a function that stops reading.

    Args:
        dataset: The data.
        rows: The rows the run covers.
        first: The first row to read (after a resumed run's committed rows).
        batch_size: Rows per batch.
        preprocess: Applied to each batch where it is read.
        workers: DataLoader worker processes; None picks: 0 for in-memory arrays, else up to
            4, leaving a core to the model. Without workers, arrays in memory that need no
            resizing are read in line; other data is read ahead by a prefetch thread.
        ids: Whether batches need sample id strings (False: the ids follow the index; only
            the in-memory array path skips making them).
    """
    fast = _array_view(dataset)
    n_workers = _default_workers(fast is not None) if workers is None else workers
    if n_workers > 0:
        return _loader_batches(dataset, rows, first, batch_size, preprocess, n_workers), _nothing
    if fast is not None:
        source = _array_batches(fast[0], fast[1], rows, first, batch_size, preprocess, ids)
        data = fast[0].vectors if isinstance(fast[0], VectorDataset) else fast[0].images
        if type(data) is np.ndarray and not preprocess.resizes:
            # Slicing and scaling an array in memory takes microseconds a batch: done in line,
            # it costs less than a thread that would compete with the model for the cores.
            return source, _nothing
    else:
        source = _loader_batches(dataset, rows, first, batch_size, preprocess, 0)
    prefetch = _Prefetch(source)
    return iter(prefetch), prefetch.close


def _nothing() -> None:
    return None


# -- blocks out ----------------------------------------------------------------------------
class BlockSink:
    """Collects model outputs into blocks and appends them to the latents file.

    The file is created on the first batch (its latent dimension is known only then). Blocks
    are appended by a writer thread, so compression and I/O overlap with the model; a block
    is committed (and can be resumed from) once its append returns. Non-finite values are
    counted as rows arrive and saved with each block, so a resumed run keeps the count.
    """

    def __init__(
        self,
        new_writer: Callable[[int, bool], LatentWriter],
        writer: LatentWriter | None,
        *,
        block_rows: int,
        nonfinite: dict[str, int],
        columns: Mapping[str, Column] | None = None,
    ) -> None:
        self._new_writer = new_writer
        # Metadata columns are looked up by each row's index, not collated per batch.
        self._columns = dict(columns or {})
        self.writer = writer
        self.block_rows = block_rows
        self.nonfinite = nonfinite
        self._pending: list[tuple[np.ndarray, np.ndarray | None, Batch]] = []
        self._pending_rows = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._shape = None if writer is None else (writer.latent_dim, writer.has_logvar)
        if writer is not None:
            self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        assert self.writer is not None
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self._error is not None:
                continue  # a write failed: drain without writing
            try:
                self.writer.set_provenance(nonfinite=block.pop("nonfinite"))
                self.writer.append(**block)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def add(self, mu: np.ndarray, logvar: np.ndarray | None, batch: Batch) -> None:
        if mu.ndim != 2 or mu.shape[0] != batch.images.shape[0]:
            raise ModelError(
                f"the model returned mu of shape {tuple(mu.shape)} for a batch of "
                f"{batch.images.shape[0]} images; it must return one latent vector per image."
            )
        # A sum is finite only when every term is (an overflowing sum just takes the long way).
        with np.errstate(over="ignore", invalid="ignore"):
            suspect = not np.isfinite(np.add.reduce(mu, axis=None)) or (
                logvar is not None and not np.isfinite(np.add.reduce(logvar, axis=None))
            )
        if suspect:
            self._count_nonfinite(mu, logvar)
        shape = (int(mu.shape[1]), logvar is not None)
        if self._shape is None:
            self.writer = self._new_writer(*shape)
            self._shape = shape
            self._start()
        elif shape != self._shape:
            raise ModelError(
                f"the model's output changed: {shape[0]} latent dims (logvar: {shape[1]}) now, "
                f"{self._shape[0]} (logvar: {self._shape[1]}) in the file being written."
            )
        # Keep the rows' outputs and metadata, never the images: memory stays one block.
        self._pending.append((mu, logvar, replace(batch, images=NO_IMAGES)))
        self._pending_rows += mu.shape[0]
        if self._pending_rows >= self.block_rows:
            self._flush()

    def _count_nonfinite(self, mu: np.ndarray, logvar: np.ndarray | None) -> None:
        bad = ~np.isfinite(mu)
        self.nonfinite["mu"] += int(bad.sum())
        bad_rows = bad.any(axis=1)
        if logvar is not None:
            bad_lv = ~np.isfinite(logvar)
            self.nonfinite["logvar"] += int(bad_lv.sum())
            bad_rows |= bad_lv.any(axis=1)
        self.nonfinite["rows"] += int(bad_rows.sum())

    def _flush(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._pending:
            return
        batches = [p[2] for p in self._pending]
        lvs = [p[1] for p in self._pending if p[1] is not None]
        labels = [b.labels for b in batches if b.labels is not None]
        factors = [b.factors for b in batches if b.factors is not None]
        block: dict[str, Any] = {
            "mu": np.concatenate([p[0] for p in self._pending]),
            "logvar": np.concatenate(lvs) if lvs else None,
            "labels": np.concatenate(labels) if labels else None,
            "factors": np.concatenate(factors) if factors else None,
            "sample_ids": (
                [s for b in batches for s in (b.sample_ids or ())]
                if self.writer is not None and self.writer.has_sample_ids
                else None
            ),
            "index": np.concatenate([b.index for b in batches]),
            "nonfinite": dict(self.nonfinite),
        }
        if self._columns:
            index = block["index"]
            block["columns"] = {name: col.values[index] for name, col in self._columns.items()}
            if self.writer is not None and self.writer.label_key is not None:
                block["labels"] = None  # the writer takes them from the label column
        self._pending, self._pending_rows = [], 0
        self._queue.put(block)

    def _join(self, *, raise_error: bool = True) -> None:
        """Let the writer thread write every queued block, then stop it."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._thread = None
        if self._error is not None and raise_error:
            error, self._error = self._error, None
            raise error

    def finish(self, *, allow_nonfinite: bool, total: int) -> dict[str, Any]:
        """Write what is left and finalize the file, unless it holds non-finite values."""
        self._flush()
        self._join()
        writer = self.writer
        assert writer is not None  # total > 0: a batch ran, or a partial was resumed
        writer.set_provenance(nonfinite=dict(self.nonfinite))
        nf = self.nonfinite
        if (nf["mu"] or nf["logvar"]) and not allow_nonfinite:
            raise ModelError(
                f"the model produced {nf['mu'] + nf['logvar']:,} non-finite values (NaN or inf: "
                f"{nf['mu']:,} in mu, {nf['logvar']:,} in logvar) in {nf['rows']:,} of "
                f"{total:,} rows; they are kept in {writer.partial}: run the same command with "
                "--allow-nonfinite to finish the file with them, or fix the model or its input "
                "(--normalize)."
            )
        summary = {
            "n_rows": writer.n_rows,
            "latent_dim": writer.latent_dim,
            "has_logvar": writer.has_logvar,
        }
        writer.finalize()
        return summary

    def close(self) -> None:
        """On any exit: commit what was queued (an interrupted run keeps it), close the file."""
        try:
            self._join(raise_error=False)  # finish() raised any write error already
        finally:
            if self.writer is not None:
                self.writer.close()
