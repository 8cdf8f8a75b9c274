"""Where training runs: device choice, CPU threads, autocast, seeding."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from latentdiag.errors import ConfigError

__all__ = ["autocast", "pick_device", "seed_everything", "set_threads"]


def pick_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA (this process's GPU under torchrun), then Apple MPS, then CPU.

    Raises:
        ConfigError: An explicitly requested device is not available, or the name is unknown.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for but no CUDA GPU is available; use auto.")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps was asked for but Apple MPS is not available; use auto.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {name!r}; expected auto, cpu, cuda, cuda:N or mps.")
    return device


def set_threads(num_threads: int, *, local_world_size: int = 1) -> int:
    """Set torch's CPU threads: ``num_threads``, or the cores shared by the local processes."""
    if num_threads <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        num_threads = max(1, (cores or 1) // max(1, local_world_size))
    torch.set_num_threads(num_threads)
    return num_threads


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """bf16 autocast on CUDA when enabled; a no-op elsewhere (CPU and MPS train in float32)."""
    if enabled and device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
