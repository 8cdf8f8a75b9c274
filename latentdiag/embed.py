"""``embed``: run an encoder over a dataset and stream its latents into a latents file.

The loop reads top to bottom: pick the rows (all, or one shard), resume a matching unfinished
file if there is one, then for each batch — decoded and preprocessed ahead of time in DataLoader
workers, or in a prefetch thread for in-memory arrays — run the model and append the rows to
the file in blocks. Memory holds a few batches and one block, whatever n is.

Resuming: the file is written as ``<out>.partial`` and committed block by block (see
:class:`~latentdiag.store.LatentWriter`). Its provenance holds the identity of the job (model
sha256, data, options, shard); the same job started again continues after the last committed
block, with the same batch boundaries, so the finished file equals an uninterrupted run's. A
``.partial`` file written by another job is refused.

Sharding: shard ``K/N`` (0-based, 0 <= K < N) takes the rows ``i`` with ``i % N == K``. Every
row records its position in the data in ``/index``, so :func:`latentdiag.merge.merge_latents`
can put shards back together and check that each sample is there exactly once. Under
``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) :func:`shard_from_env` gives each rank its shard
and :func:`shard_path` its own output name.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag import __version__
from latentdiag.data.base import ImageDataset, Subset
from latentdiag.errors import ConfigError, DataError, ModelError, StoreError
from latentdiag.job import EmbedJob, changed_fields, data_fingerprint
from latentdiag.pipeline import BlockSink, Rows, ids_follow_index, open_batches
from latentdiag.runners.base import Runner
from latentdiag.runners.preprocess import (
    Preprocess,
    VectorPreprocess,
    plan_preprocess,
    plan_vector_preprocess,
)
from latentdiag.store import SAMPLE_IDS_FROM_INDEX, LatentStore, LatentWriter, partial_path

__all__ = [
    "EmbedResult",
    "embed",
    "parse_shard",
    "shard_from_env",
    "shard_path",
    "unfinished_rows",
]

ProgressFn = Callable[[int, int], None]
_BLOCK_ROWS = 16384  # rows per committed block (the store's chunk length)


@dataclass
class EmbedResult:
    """What :func:`embed` did.

    Attributes:
        path: The latents file written.
        n_rows: Rows in it.
        latent_dim: d.
        has_logvar: Whether it holds log-variances.
        device: The device or provider that ran the model.
        resumed_rows: Rows that were already in an unfinished file and were kept (0 for a
            fresh run).
        seconds: Wall time of this call's loop.
        shard: ``(K, N)`` or None.
        nonfinite: Non-finite values written, per dataset (``mu``, ``logvar``).
    """

    path: Path
    n_rows: int
    latent_dim: int
    has_logvar: bool
    device: str
    resumed_rows: int = 0
    seconds: float = 0.0
    shard: tuple[int, int] | None = None
    nonfinite: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        done = self.n_rows - self.resumed_rows
        return done / self.seconds if self.seconds > 0 else float("nan")


# -- shards --------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """Read ``K/N`` (0-based: 0 <= K < N).

    Raises:
        ConfigError: Not of that form or out of range.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--shard must be K/N, e.g. 0/4 (0-based); got {text!r}.")
    k, n = int(m[1]), int(m[2])
    if n < 1 or not 0 <= k < n:
        raise ConfigError(
            f"--shard {text}: K must lie in 0..N-1 (shards are numbered from 0); got K={k}, N={n}."
        )
    return k, n


def parse_partitions(items: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Read ``NAME=START:STOP`` items (``--partition shared=0:8``) into name -> (start, stop).

    Raises:
        ConfigError: An item is not of that form.
    """
    out: dict[str, tuple[int, int]] = {}
    for item in items:
        m = re.fullmatch(r"\s*([A-Za-z_][\w.-]*)\s*=\s*(\d+)\s*:\s*(\d+)\s*", item)
        if not m or int(m[2]) >= int(m[3]):
            raise ConfigError(
                f"--partition must be NAME=START:STOP with START < STOP, e.g. shared=0:8; "
                f"got {item!r}."
            )
        out[m[1]] = (int(m[2]), int(m[3]))
    return out


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """The shard of this process under torchrun: (``RANK``, ``WORLD_SIZE``), or None."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except ValueError:
        raise ConfigError(
            f"RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} must be integers."
        ) from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} must lie in 0..WORLD_SIZE-1 = 0..{world - 1}.")
    return rank, world


def shard_path(out: str | os.PathLike[str], shard: tuple[int, int]) -> Path:
    """``latents.h5`` → ``latents.shard0-of-4.h5``: each torchrun rank's own file."""
    p = Path(out)
    k, n = shard
    return p.with_name(f"{p.stem}.shard{k}-of-{n}{p.suffix}")


# -- the job -------------------------------------------------------------------------------
def _job(
    runner: Runner,
    dataset: ImageDataset,
    preprocess: Preprocess | VectorPreprocess,
    shard: tuple[int, int] | None,
    batch_size: int,
) -> EmbedJob:
    """The job of this run: every decision that shapes its latents (see latentdiag.job)."""
    described = runner.describe()
    device = str(described["device"]).split(" (")[0]
    device = re.sub(r"cuda:\d+", "cuda", device)
    outputs = {k: v for k, v in described["outputs"].items() if k != "adapter"}
    ident = runner.identity
    factory = runner.kind == "factory"
    return EmbedJob(
        model=described["model"],
        model_kind=described["model_kind"],
        # A factory's weights are weights_sha256; its model is its name, source and kwargs.
        model_sha256=None if factory else described["model_sha256"],
        factory_source_sha256=ident.get("factory_source_sha256"),
        model_kwargs=ident.get("model_kwargs") or {},
        kwargs_files=ident.get("kwargs_files") or {},
        weights_sha256=ident.get("weights_sha256"),
        input=described["input"],
        outputs=outputs,
        spatial=described["spatial"],
        device=device,
        data=data_fingerprint(dataset),
        shard=None if shard is None else f"{shard[0]}/{shard[1]}",
        batch_size=batch_size,
        preprocessing=preprocess.describe(),
        label_key=dataset.label_key,
    )


def plan_input(
    runner: Runner,
    dataset: ImageDataset,
    *,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    normalize: str | None = None,
) -> Preprocess | VectorPreprocess:
    """How the data reaches the model: images converted to its input, vectors as they are.

    A PyTorch module declares no input shape; given vector data it is fed (B, F) rows, and its
    spec says so from then on (provenance, the job identity).

    Raises:
        ModelError: The data cannot be made to fit the model's input.
        ConfigError: Options that do not apply (``--normalize`` for vectors, ``--size`` or
            ``--channels`` for vectors).
    """
    if dataset.kind != "vectors":
        return plan_preprocess(
            runner.spec,
            data_channels=dataset.channels,
            data_size=dataset.size,
            channels=channels,
            size=size,
            normalize=normalize if normalize is not None else runner.default_normalize,
        )
    if channels is not None or size is not None:
        raise ConfigError(
            "--size and --channels apply to images; this data holds feature vectors, which "
            "reach the model as they are."
        )
    features = int(dataset.image_shape[0])
    spec = runner.spec
    undeclared = spec.channels is None and spec.height is None and spec.width is None
    if runner.kind in _TORCH_KINDS and spec.layout != "flat" and undeclared:
        runner.spec = replace(spec, layout="flat", features=features)
    root: Any = dataset
    while isinstance(root, Subset):
        root = root.parent
    standardized = getattr(root, "standardize", None) is not None
    dtype = str(getattr(root, "dtype", "float32"))
    return plan_vector_preprocess(
        runner.spec,
        features=features,
        standardized=standardized,
        dtype=dtype,
        normalize=normalize,
    )


# Runners whose models declare no input shape until they run (the spec is a layout only).
_TORCH_KINDS = ("factory", "module", "torchscript", "reference", "diffusers", "pythae")


def _unopenable(partial: Path) -> str | None:
    """Why ``partial`` cannot be opened as HDF5 at all (None: it opens, or another process
    holds it, which the resume check reports)."""
    import h5py

    from latentdiag.store.reader import is_locked

    try:
        h5py.File(partial, "r").close()
    except OSError as exc:
        return None if is_locked(exc) else " ".join(str(exc).split())[:160]
    return None


def _check_resumable(partial: Path, job: EmbedJob) -> dict[str, Any]:
    """The provenance of a .partial file, when it was written by this same job."""
    try:
        with LatentStore(partial, allow_incomplete=True) as store:
            prov = dict(store.provenance)
    except StoreError as exc:
        if "being written by another process" in str(exc):
            raise  # a running job's file: never suggest deleting it
        raise StoreError(
            f"cannot resume {partial}: {exc} Delete it, or run again with --overwrite."
        ) from None
    theirs = prov.get("job")
    if not isinstance(theirs, dict):
        raise StoreError(
            f"{partial} was not written by `latentdiag embed` (it records no job); delete it "
            "or run again with --overwrite."
        )
    differ = changed_fields(theirs, job)
    if differ:
        mine = job.to_dict()
        details = "; ".join(
            f"{k}: {_short(theirs.get(k, '(not recorded)'))} there, {_short(mine[k])} now"
            for k in differ[:3]
        )
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise StoreError(
            f"{partial} is an unfinished run of a different job ({details}{more}); resuming "
            "would mix the latents of two jobs in one file: run the same command as before, "
            "delete it, or run again with --overwrite to start over."
        )
    return prov


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _versions(runner: Runner) -> dict[str, Any]:
    out: dict[str, Any] = {
        "latentdiag_version": __version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
    described = runner.describe()
    for key in ("torch_version", "onnxruntime_version", "onnx_ir_version", "onnx_opsets"):
        if key in described:
            out[key] = described[key]
    if "torch_version" not in out:
        try:
            import torch

            out["torch_version"] = str(torch.__version__)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    return out


def _rows(dataset: ImageDataset, shard: tuple[int, int] | None) -> Rows:
    """The rows a run covers: all of them, or shard K/N's."""
    n_data = len(dataset)
    if n_data == 0:
        raise DataError(f"the data ({dataset.source or 'dataset'}) holds no images.")
    if shard is None:
        return Rows(0, 1, n_data)
    k, n = shard
    if not 0 <= k < n:
        raise ConfigError(f"shard {k}/{n}: K must lie in 0..{n - 1}.")
    rows = Rows(k, n, len(range(k, n_data, n)))
    if rows.count == 0:
        raise DataError(
            f"shard {k}/{n} of the data ({n_data} images) is empty; use at most {n_data} shards."
        )
    return rows


def _resume(
    out: Path, job: EmbedJob, batch_size: int, rows: Rows, overwrite: bool
) -> tuple[LatentWriter | None, dict[str, int]]:
    """Reopen ``<out>.partial`` when this job wrote it (and ``overwrite`` is off).

    Returns:
        The reopened writer or None, and the non-finite counts of its committed rows.
    """
    nonfinite = {"mu": 0, "logvar": 0, "rows": 0}
    partial = partial_path(out)
    if not partial.exists():
        return None, nonfinite
    if overwrite:
        partial.unlink()
        return None, nonfinite
    unreadable = _unopenable(partial)
    if unreadable:
        from latentdiag.data._common import warn

        warn(
            f"{partial.name} cannot be opened ({unreadable}), so none of its rows can be "
            "kept (a run killed while HDF5 wrote its metadata can leave such a file); "
            "starting again from row 0."
        )
        partial.unlink()
        return None, nonfinite
    prov = _check_resumable(partial, job)
    writer = LatentWriter.resume(out)
    if writer.n_rows % batch_size and writer.n_rows != rows.count:
        writer.close()
        raise StoreError(
            f"{partial} stopped at row {writer.n_rows}, which is not a batch boundary; delete it."
        )
    saved = prov.get("nonfinite")
    if isinstance(saved, dict):
        nonfinite.update({k: int(v) for k, v in saved.items() if k in nonfinite})
    return writer, nonfinite


def embed(
    runner: Runner,
    dataset: ImageDataset,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    preprocess: Preprocess | VectorPreprocess | None = None,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    normalize: str | None = None,
    shard: tuple[int, int] | None = None,
    workers: int | None = None,
    block_rows: int | None = None,
    overwrite: bool = False,
    allow_nonfinite: bool = False,
    compress_latents: bool = False,
    command: Sequence[str] | str | None = None,
    progress: ProgressFn | None = None,
) -> EmbedResult:
    """Run ``runner`` over ``dataset`` and write a latents file.

    Args:
        runner: The model (see :func:`latentdiag.runners.open_runner`).
        dataset: The images (and labels, factors).
        out: The latents file to write; a name ending in ``.h5ad`` writes AnnData instead
            (see :func:`~latentdiag.store.h5ad.write_h5ad`). An unfinished ``<out>.partial``
            (always a latents file) of the same job is resumed.
        batch_size: Rows per model call.
        preprocess: How images become model input; planned from the model, the data and
            ``channels`` / ``size`` / ``normalize`` when None.
        channels: Channel count for models that do not fix it.
        size: Image size for models that do not fix it.
        normalize: ``0..1``, ``-1..1``, ``imagenet`` or ``MEAN:STD``.
        shard: ``(K, N)``: take rows i with i % N == K.
        workers: DataLoader worker processes; None picks (0 for in-memory arrays, which are
            read in a prefetch thread).
        block_rows: Rows per committed block (a multiple of ``batch_size``); resuming
            continues after the last committed block.
        overwrite: Replace an existing file and discard an unfinished one.
        allow_nonfinite: Write NaN / inf outputs instead of refusing them.
        compress_latents: gzip ``/mu`` and ``/logvar`` too (see
            :class:`~latentdiag.store.LatentWriter`); a resumed file keeps its own setting.
        command: The command line, for provenance.
        progress: Called as ``progress(rows_done, rows_total)`` after each batch.

    Returns:
        What was written.

    Raises:
        DataError: The data (or the shard) is empty.
        ModelError: The model does not fit the data, is conditional and the data has no
            labels, or produced non-finite values (the rows are kept in the ``.partial``
            file; run again with ``allow_nonfinite`` to finish it).
        StoreError: ``out`` exists, or an unfinished file belongs to another job.
        ConfigError: Bad batch size, block size or worker count.
    """
    out = Path(out)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1; got {batch_size}.")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers must be 0 or more; got {workers}.")
    if block_rows is None:
        # Blocks of ~16k rows fill whole HDF5 chunks: each is compressed once.
        block_rows = max(1, _BLOCK_ROWS // batch_size) * batch_size
    elif block_rows < batch_size or block_rows % batch_size:
        raise ConfigError(
            f"block_rows ({block_rows}) must be a multiple of the batch size ({batch_size})."
        )
    rows = _rows(dataset, shard)
    if runner.spec.conditional and not dataset.has_labels:
        raise ModelError(
            f"the model takes labels (input {runner.spec.label_name!r}: a conditional encoder) "
            "but the data has none; give data with labels."
        )
    known = runner.label_names
    if runner.spec.conditional and known is not None and dataset.label_names != known:
        raise ModelError(
            f"the model was trained on the labels {', '.join(known)}, but the data's labels are "
            f"{', '.join(dataset.label_names or [])}; a conditional encoder needs the same "
            "labels in the same order."
        )
    if preprocess is None:
        preprocess = plan_input(runner, dataset, channels=channels, size=size, normalize=normalize)
    job = _job(runner, dataset, preprocess, shard, batch_size)
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; choose another -o path or pass --overwrite.")
    # An unfinished file of this same job is continued; one of another job is refused.
    writer, nonfinite = _resume(out, job, batch_size, rows, overwrite)
    first = 0 if writer is None else writer.n_rows
    # Arrays with no ids of their own: "<source>[<index>]" is derived from /index on reading
    # (storing 100,000 such strings costs a small model several per cent of its speed).
    derived_ids = ids_follow_index(dataset) and (writer is None or not writer.has_sample_ids)
    provenance: dict[str, Any] = {
        **{k: v for k, v in runner.describe().items() if not k.endswith("_version")},
        "data_source": dataset.source,
        "n_data": len(dataset),
        "n_rows": rows.count,
        "shard": job.shard,
        "batch_size": batch_size,
        "preprocessing": preprocess.describe(),
        "command": list(command) if isinstance(command, (list, tuple)) else command,
        **_versions(runner),
        "job": job.to_dict(),
        "job_id": job.digest,
    }
    if derived_ids:
        provenance["sample_ids"] = SAMPLE_IDS_FROM_INDEX

    batches, stop_reading = open_batches(
        dataset, rows, first, batch_size, preprocess, workers, ids=not derived_ids
    )

    def new_writer(latent_dim: int, has_logvar: bool) -> LatentWriter:
        return LatentWriter(
            out,
            latent_dim=latent_dim,
            has_logvar=has_logvar,
            label_names=dataset.label_names if dataset.has_labels else None,
            factor_names=dataset.factor_names if dataset.has_factors else None,
            sample_ids=not derived_ids,
            index=True,
            partitions=runner.partitions,
            provenance={**provenance, "outputs": runner.outputs},
            overwrite=overwrite,
            compress_latents=compress_latents,
            columns=list(columns.values()),
            label_key=dataset.label_key if dataset.label_key in columns else None,
        )

    columns = dict(dataset.columns or {})
    sink = BlockSink(
        new_writer, writer, block_rows=block_rows, nonfinite=nonfinite, columns=columns
    )
    done = first
    t0 = time.perf_counter()
    try:
        if progress is not None:
            progress(done, rows.count)
        for batch in batches:
            mu, logvar = runner.run(batch.images, batch.labels)
            sink.add(mu, logvar, batch)
            done += mu.shape[0]
            if progress is not None:
                progress(done, rows.count)
        summary = sink.finish(allow_nonfinite=allow_nonfinite, total=rows.count)
    finally:
        stop_reading()
        sink.close()
    return EmbedResult(
        path=out,
        n_rows=summary["n_rows"],
        latent_dim=summary["latent_dim"],
        has_logvar=summary["has_logvar"],
        device=runner.device,
        resumed_rows=first,
        seconds=time.perf_counter() - t0,
        shard=shard,
        nonfinite={"mu": nonfinite["mu"], "logvar": nonfinite["logvar"]},
    )


def unfinished_rows(out: str | os.PathLike[str]) -> int | None:
    """Rows committed in ``<out>.partial``, or None when there is no readable one."""
    partial = partial_path(out)
    if not partial.exists():
        return None
    try:
        with LatentStore(partial, allow_incomplete=True) as store:
            return store.n_samples
    except StoreError:
        return None
