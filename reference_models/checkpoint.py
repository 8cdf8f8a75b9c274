"""Checkpoints and run directories, without pickle.

A run directory holds::

    config.json               the RunConfig (also a valid --config file)
    model.safetensors         the weights; metadata: config, data spec, format
    checkpoint.safetensors    everything --resume needs: weights, optimizer state, RNG states,
                              epoch / step, all as tensors + JSON metadata
    metrics.jsonl             one line per epoch of held-out evaluation
    latents.h5                the held-out latents (written when training ends)

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a run killed at any moment leaves the previous complete file. Loading reads
safetensors and JSON only: nothing in a run directory can run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from latentdiag.atomic import atomic_write_text, atomic_write_with
from latentdiag.errors import ModelError
from reference_models.base import DataSpec
from reference_models.config import RunConfig, config_from_dict

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "TrainState",
    "atomic_write_text",
    "load_checkpoint",
    "load_preview",
    "load_weights",
    "save_checkpoint",
    "save_preview",
    "save_weights",
]

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
LATENTS_FILE = "latents.h5"
_FORMAT = "latentdiag-reference-model"
_FORMAT_VERSION = "1"


@dataclass
class TrainState:
    """Where training stands: the loop resumes from here."""

    epoch: int = 0  # completed epochs; the next epoch to run
    step_in_epoch: int = 0  # optimizer steps done in the current (unfinished) epoch
    global_step: int = 0  # optimizer steps since the start of the run

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_RESUME_HINT = (
    "make room (or train into another --out) and run the same command with --resume: it "
    "continues from the last checkpoint written. Nothing of this file was written."
)


def _atomic(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` (a str: safetensors wants one) then move into place."""
    atomic_write_with(path, lambda tmp: write(str(tmp)))


def _save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], then: str
) -> None:
    """Write a safetensors file atomically, after checking that it fits: a full disk is one
    clear error before anything is written (``then`` says what the user does next)."""
    from latentdiag.store._common import check_room

    need = sum(t.numel() * t.element_size() for t in tensors.values())
    need += sum(len(k) + len(v) for k, v in meta.items()) + 64 * len(tensors)
    check_room(path, need, what=f"the {path.name}", then=then)
    meta = {**meta, _DIGEST_KEY: _digest(tensors)}
    _atomic(path, lambda tmp: save_file(dict(tensors), tmp, metadata=meta))


_DIGEST_KEY = "tensors_blake2b"


def _digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """BLAKE2b of every tensor's name, dtype, shape and bytes: safetensors has no checksum of
    its own, so a flipped bit in a weight would otherwise load as a slightly different model."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _verify(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str]) -> None:
    """Refuse tensors that do not match the checksum written with them (files written before
    the checksum existed have none, and are read as they are)."""
    expected = meta.get(_DIGEST_KEY)
    if expected is not None and _digest(tensors) != expected:
        raise ModelError(
            f"{path} is damaged: its tensors do not match the checksum written with them "
            "(a changed byte on disk or in a copy). Train again, or restore the file from a copy."
        )


def _contiguous(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def _meta(config: RunConfig, spec: DataSpec) -> dict[str, str]:
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "model": config.model.name,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
    }


def save_weights(
    run_dir: str | os.PathLike[str], model: torch.nn.Module, config: RunConfig, spec: DataSpec
) -> None:
    """Write ``model.safetensors`` (with config and spec as metadata) and ``config.json``."""
    run = Path(run_dir)
    tensors = _contiguous(model.state_dict())
    _save_tensors(run / MODEL_FILE, tensors, _meta(config, spec), then=_RESUME_HINT)
    atomic_write_text(run / CONFIG_FILE, config.to_json() + "\n")


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise ModelError(
            f"{path.parent} is not a reference run: {path.name} is missing; train one with "
            "`latentdiag train --model NAME --out DIR`."
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"{path} is not a readable safetensors file ({exc}); train again."
        ) from None
    _verify(path, tensors, meta)
    if meta.get("format") != _FORMAT:
        raise ModelError(
            f"{path} was not written by latentdiag's reference models (format "
            f"{meta.get('format')!r}); expected {_FORMAT!r}."
        )
    return tensors, meta


def _parse_meta(path: Path, meta: Mapping[str, str]) -> tuple[RunConfig, DataSpec]:
    try:
        config = config_from_dict(json.loads(meta["config"]), where=str(path))
        spec = DataSpec.from_dict(json.loads(meta["spec"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path} has damaged metadata ({exc}); train again.") from None
    return config, spec


def load_weights(
    run_dir: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], RunConfig, DataSpec]:
    """Read ``model.safetensors``: (state dict, config, data spec).

    Raises:
        ModelError: The file is missing, unreadable or not a reference model.
    """
    path = Path(run_dir) / MODEL_FILE
    tensors, meta = _read(path)
    config, spec = _parse_meta(path, meta)
    return tensors, config, spec


# -- full training state -------------------------------------------------------------------


def _optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(
    tensors: Mapping[str, torch.Tensor], layout: Mapping[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entries in layout.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": layout["param_groups"]}


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: RunConfig,
    spec: DataSpec,
    state: TrainState,
    torch_rng: torch.Tensor,
    cuda_rng: torch.Tensor | None = None,
) -> None:
    """Write ``checkpoint.safetensors``: weights, optimizer, RNG states and progress.

    Args:
        torch_rng: (world_size, n) uint8: every process's CPU RNG state, in rank order.
        cuda_rng: (world_size, m) uint8: every process's CUDA RNG state, or None.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_tensors, layout = _optimizer_to_tensors(optimizer)
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch_rng
    if cuda_rng is not None:
        tensors["rng.cuda"] = cuda_rng
    np_state: Any = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    meta = _meta(config, spec)
    meta["state"] = json.dumps(state.to_dict())
    meta["optimizer"] = json.dumps(layout)
    meta["rng"] = json.dumps(
        {
            "numpy": [str(np_state[0]), int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": _py_rng_to_json(random.getstate()),
        }
    )
    flat = _contiguous(tensors)
    _save_tensors(Path(run_dir) / CHECKPOINT_FILE, flat, meta, then=_RESUME_HINT)


@dataclass
class Checkpoint:
    """A checkpoint read back: everything needed to continue a run."""

    config: RunConfig
    spec: DataSpec
    state: TrainState
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    torch_rng: torch.Tensor  # (world_size, n) uint8
    cuda_rng: torch.Tensor | None
    numpy_rng: tuple[Any, ...]
    python_rng: tuple[Any, ...]


def load_checkpoint(run_dir: str | os.PathLike[str]) -> Checkpoint:
    """Read ``checkpoint.safetensors`` back.

    Raises:
        ModelError: The checkpoint is missing, unreadable, or not a reference-model checkpoint.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    tensors, meta = _read(path)
    config, spec = _parse_meta(path, meta)
    try:
        state = TrainState(**json.loads(meta["state"]))
        layout = json.loads(meta["optimizer"])
        rng = json.loads(meta["rng"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path} has damaged metadata ({exc}); train again.") from None
    np_name, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    np_keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    return Checkpoint(
        config=config,
        spec=spec,
        state=state,
        model_state={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        optimizer_state=_optimizer_from_tensors(tensors, layout),
        torch_rng=tensors["rng.torch"],
        cuda_rng=tensors.get("rng.cuda"),
        numpy_rng=(np_name, np_keys, np_pos, np_has_gauss, np_gauss),
        python_rng=_py_rng_from_json(rng["python"]),
    )


def _py_rng_to_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_rng_from_json(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = data
    return (int(version), tuple(int(v) for v in internal), gauss)


# -- held-out preview ------------------------------------------------------------------------

PREVIEW_FILE = "preview.safetensors"


def save_preview(
    run_dir: str | os.PathLike[str], images: torch.Tensor, labels: torch.Tensor
) -> None:
    """Keep a few held-out images (for export parity checks and reconstruction grids)."""
    tensors = _contiguous({"images": images, "labels": labels})
    meta = {"format": "latentdiag-reference-preview"}
    _save_tensors(Path(run_dir) / PREVIEW_FILE, tensors, meta, then=_RESUME_HINT)


def load_preview(run_dir: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, C, S, S) float in [0, 1], labels (n,) int64) kept by :func:`save_preview`.

    Raises:
        ModelError: The preview file is missing or unreadable.
    """
    path = Path(run_dir) / PREVIEW_FILE
    if not path.is_file():
        raise ModelError(
            f"{path.parent} has no {PREVIEW_FILE} (held-out images kept at the end of training); "
            "it is written when a run finishes — finish the run with `latentdiag train --resume`."
        )
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not readable ({exc}); train again.") from None
    _verify(path, tensors, meta)
    images = tensors["images"]
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    return images.float(), tensors["labels"].long()
