"""The one training loop of every reference model.

It reads top to bottom — machine, run directory, data, model, optimizer, loop, evaluation,
checkpoint — and knows nothing model-specific: each model's ``loss(batch)`` returns a dict
with ``"loss"`` and the named parts shown in the progress bar and logged.

Run unchanged under ``torchrun --nproc_per_node=N``: the model is wrapped in
DistributedDataParallel, each process takes its share of every batch, evaluation splits the
held-out set without overlap, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentdiag import __version__
from latentdiag.data import ImageDataset
from latentdiag.errors import ConfigError
from reference_models import distributed
from reference_models.base import ReferenceVAE
from reference_models.checkpoint import (
    CHECKPOINT_FILE,
    LATENTS_FILE,
    METRICS_FILE,
    TrainState,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
    save_preview,
    save_weights,
)
from reference_models.config import RunConfig, check_resume
from reference_models.data import (
    TrainingData,
    batch_plan,
    check_batch_size,
    open_training_data,
)
from reference_models.device import autocast, pick_device, seed_everything, set_threads
from reference_models.evaluate import HeldoutResult, evaluate_heldout, write_heldout_latents
from reference_models.progress import Reporter
from reference_models.registry import get_model_class

__all__ = ["TrainResult", "train"]

_LOG_EVERY = 10  # steps between progress-bar updates


@dataclass
class TrainResult:
    """What a training call produced (complete on rank 0; other ranks get the metrics too)."""

    run_dir: Path
    config: RunConfig
    completed: bool  # False when stopped early by ``stop_after_steps``
    epochs_done: int
    global_step: int
    metrics: dict[str, Any] = field(default_factory=dict)  # last epoch's metrics line
    latents: Path | None = None
    device: str = "cpu"
    images_per_s: float = 0.0  # training throughput of this call, over all processes
    is_main: bool = True  # this process is rank 0 (the one that writes and reports)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (what ``latentdiag train --json`` prints)."""
        return {
            "run_dir": str(self.run_dir),
            "model": self.config.model.name,
            "completed": self.completed,
            "epochs": self.epochs_done,
            "steps": self.global_step,
            "device": self.device,
            "images_per_s": round(self.images_per_s, 1),
            "latents": None if self.latents is None else str(self.latents),
            "metrics": {k: v for k, v in self.metrics.items() if k not in ("epoch", "step")},
        }


def train(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    dataset: ImageDataset | None = None,
    reporter: Reporter | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Train a reference model into ``out_dir``.

    Args:
        config: The run configuration (on resume: the checkpoint's, with at most the
            :data:`~reference_models.config.RESUMABLE_FIELDS` changed).
        out_dir: The run directory; created if missing.
        resume: Continue the run in ``out_dir`` from its checkpoint.
        dataset: Train on this dataset instead of opening ``config.data.source``.
        reporter: Progress display (rank 0 only); None shows nothing.
        stop_after_steps: Stop (after checkpointing) once this many optimizer steps of the
            whole run are done, as if interrupted; ``--resume`` continues from there.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: The run directory already holds a run (without ``resume``), the resumed
            config changes a fixed field, or training diverges.
        ModelError: ``resume`` without a readable checkpoint.
        DataError: The data cannot be used with this model.
    """
    info = distributed.from_env()
    device = pick_device(config.train.device, local_rank=info.local_rank)
    set_threads(config.train.num_threads, local_world_size=info.local_world_size)
    distributed.setup(info, device)
    try:
        return _train(
            config, Path(out_dir), info, device, resume, dataset, reporter, stop_after_steps
        )
    finally:
        if reporter is not None:
            reporter.close()
        distributed.cleanup()


def _train(
    config: RunConfig,
    run_dir: Path,
    info: distributed.DistInfo,
    device: torch.device,
    resume: bool,
    dataset: ImageDataset | None,
    reporter: Reporter | None,
    stop_after_steps: int | None,
) -> TrainResult:
    tc = config.train
    main = info.is_main
    report = reporter if (reporter is not None and main) else Reporter()

    # -- run directory ------------------------------------------------------------------
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir)
        check_resume(ckpt.config, config)
    elif (run_dir / CHECKPOINT_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a training run; pass --resume to continue it, or choose "
            "another --out."
        )
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()

    # -- data ---------------------------------------------------------------------------
    seed_everything(tc.seed)
    model_cls = get_model_class(config.model.name)
    data = open_training_data(
        config.data,
        seed=tc.seed,
        needs_labels=model_cls.needs_labels,
        dataset=dataset,
        num_workers=tc.num_workers,
    )
    if ckpt is not None and tuple(ckpt.spec.label_names) != data.spec.label_names:
        raise ConfigError(
            f"the data's labels {list(data.spec.label_names)} differ from those the run was "
            f"started with {list(ckpt.spec.label_names)}; resume with the same data."
        )
    check_batch_size(tc.batch_size, info.world_size, int(data.train_idx.size))
    data.to(device)

    # -- model and optimizer ------------------------------------------------------------
    model: ReferenceVAE = model_cls(config.model, data.spec).to(device)
    if data.spec.kind == "images":
        # Channels-last convolutions: measured 10-25 % faster per step on a 2-core CPU (oneDNN)
        # and the layout CUDA's tensor cores want; the weights are the same numbers.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.AdamW(model.param_groups(), lr=tc.lr, weight_decay=tc.weight_decay)
    state = TrainState()
    if ckpt is not None:
        model.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ckpt.optimizer_state)
        state = ckpt.state
        _restore_rng(ckpt, info, device)
    else:
        _prepare(model, data, tc, info, device)
        if info.enabled:
            # Same initial weights everywhere (seeded above); a different noise stream per
            # process.
            torch.manual_seed(tc.seed * 1009 + info.rank + 1)
    net: torch.nn.Module = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    tracker = None
    if main:
        _trim_metrics(run_dir / METRICS_FILE, keep_epochs=state.epoch)
        tracker = _tracker(run_dir, model, data, tc, keep_epochs=state.epoch)

    def evaluate() -> HeldoutResult:
        return evaluate_heldout(
            model,
            data,
            device=device,
            batch_size=tc.eval_batch_size,
            bf16=tc.bf16,
            rank=info.rank,
            world_size=info.world_size,
            seed=tc.seed,
        )

    # -- loop -----------------------------------------------------------------------------
    n_train = int(data.train_idx.size)
    steps_per_epoch = len(
        batch_plan(
            n_train, batch_size=tc.batch_size, seed=tc.seed, epoch=0, world_size=info.world_size
        )
    )
    report.start(
        epochs=tc.epochs,
        steps_per_epoch=steps_per_epoch,
        epoch=state.epoch,
        step=state.step_in_epoch,
    )
    last: dict[str, Any] = {}
    result: HeldoutResult | None = None
    images_seen, train_time = 0, 0.0
    stopped = False
    while state.epoch < tc.epochs and not stopped:
        plan = batch_plan(
            n_train,
            batch_size=tc.batch_size,
            seed=tc.seed,
            epoch=state.epoch,
            rank=info.rank,
            world_size=info.world_size,
        )[state.step_in_epoch :]
        net.train()
        sums: dict[str, torch.Tensor] = {}
        n_logged, t_epoch, t_log, seen_log = 0, time.perf_counter(), time.perf_counter(), 0
        for batch in data.batches([data.train_idx[p] for p in plan], device):
            lr = tc.lr * min(1.0, (state.global_step + 1) / max(1, tc.warmup_steps))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with autocast(device, tc.bf16):
                parts = net(batch)
            loss = parts["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            state.global_step += 1
            state.step_in_epoch += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float()
            n_logged += 1
            seen_log += batch["image"].shape[0] * info.world_size
            images_seen += batch["image"].shape[0] * info.world_size
            if state.step_in_epoch % _LOG_EVERY == 0 or state.step_in_epoch == steps_per_epoch:
                means = {k: float(v) / n_logged for k, v in sums.items()}
                if not np.isfinite(means["loss"]):
                    raise ConfigError(
                        f"training diverged: the loss is {means['loss']} at step "
                        f"{state.global_step}; lower train.lr (now {tc.lr}) or the loss weights."
                    )
                now = time.perf_counter()
                report.step(
                    epoch=state.epoch,
                    step=state.step_in_epoch,
                    parts=means,
                    images_per_s=seen_log / max(now - t_log, 1e-9),
                )
                t_log, seen_log = now, 0
            if tc.checkpoint_every and state.global_step % tc.checkpoint_every == 0:
                _checkpoint(run_dir, model, optimizer, config, data, state, info, device)
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                stopped = True
                break
        epoch_s = time.perf_counter() - t_epoch
        train_time += epoch_s
        if stopped and state.step_in_epoch < steps_per_epoch:
            _checkpoint(run_dir, model, optimizer, config, data, state, info, device)
            break

        # -- end of epoch: evaluate, log, checkpoint --------------------------------------
        state.epoch += 1
        state.step_in_epoch = 0
        _calibrate(model, data, tc, info, device)
        result = evaluate()
        train_means = {k: float(v) / max(n_logged, 1) for k, v in sums.items()}
        last = {
            "epoch": state.epoch,
            "step": state.global_step,
            **result.metrics,
            "train": train_means,
            "images_per_s": len(plan) * tc.batch_size / max(epoch_s, 1e-9),
            "epoch_s": epoch_s,
        }
        if main:
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(last, allow_nan=True) + "\n")
            if tracker is not None and tracker.due(state.epoch):
                extra = {f"train.{k}": v for k, v in train_means.items()}
                extra.update({f"heldout.{k}": v for k, v in result.metrics.items()})
                tracker.log(
                    state.epoch, result.mu, logvar=result.logvar, step=state.global_step,
                    extra={k: v for k, v in extra.items() if isinstance(v, (int, float))},
                )  # fmt: skip
            save_weights(run_dir, model, config, data.spec)
        _checkpoint(run_dir, model, optimizer, config, data, state, info, device)
        report.epoch_end(epoch=state.epoch - 1, metrics=result.metrics)

    completed = state.epoch >= tc.epochs
    latents = None
    if completed:
        if result is None:  # resumed a finished run: evaluate once more to write the latents
            result = evaluate()
            last = _last_metrics(run_dir / METRICS_FILE) if main else dict(result.metrics)
        if main:
            save_weights(run_dir, model, config, data.spec)
            _save_preview(run_dir, data)
            latents = write_heldout_latents(
                run_dir / LATENTS_FILE,
                result,
                data,
                model,
                provenance=_provenance(run_dir, config, data.spec.source, device, state),
            )
        distributed.barrier()
    return TrainResult(
        run_dir=run_dir,
        config=config,
        completed=completed,
        epochs_done=state.epoch,
        global_step=state.global_step,
        metrics=last,
        latents=latents,
        device=str(device),
        images_per_s=images_seen / train_time if train_time > 0 else 0.0,
        is_main=main,
    )


def _checkpoint(
    run_dir: Path,
    model: ReferenceVAE,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    data: TrainingData,
    state: TrainState,
    info: distributed.DistInfo,
    device: torch.device,
) -> None:
    """Collective: every process contributes its RNG state; rank 0 writes the file."""
    torch_rng = torch.stack(distributed.all_gather_tensors(torch.get_rng_state()))
    cuda_rng = None
    if device.type == "cuda":
        cuda_rng = torch.stack(distributed.all_gather_tensors(torch.cuda.get_rng_state(device)))
    if info.is_main:
        save_checkpoint(
            run_dir,
            model=model,
            optimizer=optimizer,
            config=config,
            spec=data.spec,
            state=state,
            torch_rng=torch_rng,
            cuda_rng=cuda_rng,
        )
    distributed.barrier()


def _restore_rng(ckpt: Any, info: distributed.DistInfo, device: torch.device) -> None:
    """Put back every RNG as it was when the checkpoint was written."""
    random.setstate(ckpt.python_rng)
    np.random.set_state(ckpt.numpy_rng)
    rows = ckpt.torch_rng
    if rows.shape[0] == info.world_size:
        torch.set_rng_state(rows[info.rank].clone())
    else:
        # Another number of processes than before: exact continuation is impossible anyway;
        # give each process a fresh, distinct stream.
        torch.manual_seed(ckpt.config.train.seed * 7919 + ckpt.state.global_step + info.rank)
    if (
        device.type == "cuda"
        and ckpt.cuda_rng is not None
        and ckpt.cuda_rng.shape[0] == info.world_size
    ):
        torch.cuda.set_rng_state(ckpt.cuda_rng[info.rank].clone(), device)


def _share(data: TrainingData, tc: Any, info: distributed.DistInfo) -> list[np.ndarray]:
    """This process's share of the training split, in chunks of ``eval_batch_size``."""
    n = int(data.train_idx.size)
    mine = np.arange(info.rank, n, info.world_size)
    return [
        data.train_idx[mine[i : i + tc.eval_batch_size]]
        for i in range(0, mine.size, tc.eval_batch_size)
    ]


def _prepare(
    model: ReferenceVAE,
    data: TrainingData,
    tc: Any,
    info: distributed.DistInfo,
    device: torch.device,
) -> None:
    """Let a new model fit the statistics of the training split it needs before its first step
    (the vector nets' input scaling), summed over processes."""
    if not model.needs_prepare:
        return  # images: nothing to fit, no pass over the data
    chunks = _share(data, tc, info)

    def rows() -> Any:
        return (batch["image"] for batch in data.batches(chunks, device))

    model.prepare(rows, distributed.all_reduce_sum, device=device)


def _calibrate(
    model: ReferenceVAE,
    data: TrainingData,
    tc: Any,
    info: distributed.DistInfo,
    device: torch.device,
) -> None:
    """Let the model recompute its buffer statistics over this process's share of the
    training split (summed over processes by ``reduce``)."""
    if type(model).calibrate is ReferenceVAE.calibrate:
        return  # the model keeps no statistics: skip the pass over the data
    chunks = _share(data, tc, info)
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast(device, tc.bf16):
        model.calibrate(data.batches(chunks, device), distributed.all_reduce_sum)
    model.train(was_training)


def _save_preview(run_dir: Path, data: TrainingData, per_label: int = 8) -> None:
    """Keep up to ``per_label`` held-out images (or rows) of each label (64 at most)."""
    labels = data.labels[data.heldout_idx]
    picks = [np.flatnonzero(labels == v)[:per_label] for v in np.unique(labels)]
    positions = np.sort(np.concatenate(picks))[:64]
    idx = data.heldout_idx[positions]
    if data.images is not None and data.images.dtype == torch.uint8:
        images = data.images.index_select(0, torch.from_numpy(idx).to(data.images.device)).cpu()
    else:
        images = next(data.batches([idx], torch.device("cpu")))["image"]
    save_preview(run_dir, images, torch.from_numpy(data.labels[idx]))


#: What the run's tracker computes on the held-out latents after each epoch (milliseconds).
TRACK_METRICS = (
    "separation.silhouette",
    "separation.centroid_distance",
    "information.active_units",
)


def _tracker(
    run_dir: Path, model: Any, data: Any, tc: Any, *, keep_epochs: int
) -> Any:  # latentdiag.track.Tracker | None
    """The run's latentdiag.track tracker (run_dir/track.jsonl), or None when it is off."""
    if not tc.track_every:
        return None
    from latentdiag.track import Tracker

    labels = data.labels[data.heldout_idx] if data.labels is not None else None
    tracker = Tracker(
        None,
        labels=labels if labels is not None and np.unique(labels).size > 1 else None,
        label_names=list(data.spec.label_names) or None,
        partitions=model.partitions(),
        metrics=TRACK_METRICS,
        every=int(tc.track_every),
        log_dir=run_dir,
        tensorboard=False,
        mlflow="auto",
        seed=int(tc.seed),
    )
    tracker.rewind(keep_epochs)
    return tracker


def _trim_metrics(path: Path, *, keep_epochs: int) -> None:
    """Drop metric lines of epochs after the checkpoint (a run killed after logging them)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= keep_epochs]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(ln + "\n" for ln in kept))


def _last_metrics(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return dict(json.loads(lines[-1])) if lines else {}


def _provenance(
    run_dir: Path, config: RunConfig, source: str, device: torch.device, state: TrainState
) -> dict[str, Any]:
    return {
        "kind": "reference-run",
        "run_dir": str(run_dir.resolve()),
        "model": config.model.name,
        "config": config.to_dict(),
        "data_source": source,
        "split": "heldout",
        "device": str(device),
        "seed": config.train.seed,
        "epochs": state.epoch,
        "global_step": state.global_step,
        "latentdiag_version": __version__,
        "torch_version": str(torch.__version__),
    }
