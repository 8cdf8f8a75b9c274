"""Where a model runs: the torch device, or the onnxruntime execution providers.

``auto`` means CUDA when a CUDA device really exists, else the CPU (Apple MPS for torch when
present). onnxruntime-gpu lists the CUDA provider as available even on machines without a GPU,
and asking for it there logs errors before falling back, so the decision is made from whether a
CUDA device exists, never from what onnxruntime lists. Under ``torchrun`` the local rank picks
the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from latentdiag.errors import ModelError

DEVICES = ("auto", "cpu", "cuda", "mps")

__all__ = [
    "DEVICES",
    "cuda_available",
    "local_rank",
    "mps_available",
    "onnx_providers",
    "resolve_torch_device",
    "torch_device_text",
]


def cuda_available() -> bool:
    """Whether a CUDA device exists (asks torch, which the project depends on)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    """Whether Apple's Metal device is usable by torch."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def local_rank() -> int:
    """The process's rank on its machine under torchrun (``LOCAL_RANK``), else 0."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise ModelError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}.")


def resolve_torch_device(device: str = "auto") -> str:
    """The torch device string to run on.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Returns:
        ``cpu``, ``mps`` or ``cuda:<local rank>``.

    Raises:
        ModelError: The device asked for does not exist here.
    """
    _check_device(device)
    if device == "auto":
        if cuda_available():
            return f"cuda:{local_rank()}"
        return "mps" if mps_available() else "cpu"
    if device == "cuda":
        if not cuda_available():
            raise ModelError(
                "--device cuda was asked for but no CUDA device is available here "
                "(torch.cuda.is_available() is False); use --device cpu or auto."
            )
        return f"cuda:{local_rank()}"
    if device == "mps" and not mps_available():
        raise ModelError(
            "--device mps was asked for but Apple's MPS device is not available here; "
            "use --device cpu or auto."
        )
    return device


def torch_device_text(device: str) -> str:
    """A torch device in words, e.g. ``torch cpu (2 threads)`` or ``torch cuda:0 (NVIDIA H200)``."""
    import torch

    if device.startswith("cuda"):
        return f"torch {device} ({torch.cuda.get_device_name(torch.device(device))})"
    if device == "cpu":
        return f"torch cpu ({torch.get_num_threads()} threads)"
    return f"torch {device}"


def onnx_providers(
    device: str = "auto", providers: Sequence[str] | None = None
) -> list[str | tuple[str, dict[str, Any]]]:
    """The onnxruntime execution providers to ask for, in order.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.
        providers: Providers named explicitly (e.g. ``TensorrtExecutionProvider``); they
            override ``device``. The CPU provider is appended as the fallback.

    Returns:
        Providers for ``InferenceSession(providers=...)``.

    Raises:
        ModelError: A named provider is not in this onnxruntime build, or ``cuda`` was asked
            for where no CUDA device exists.
    """
    import onnxruntime as ort

    _check_device(device)
    available = list(ort.get_available_providers())
    if providers:
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise ModelError(
                f"execution provider {unknown[0]!r} is not available in onnxruntime "
                f"{ort.__version__}; available: {', '.join(available)}."
            )
        out: list[str | tuple[str, dict[str, Any]]] = list(providers)
        if "CPUExecutionProvider" not in providers:
            out.append("CPUExecutionProvider")
        return out
    if device == "mps":
        raise ModelError(
            "onnxruntime has no MPS device; use --device cpu, or name a provider of your "
            "onnxruntime build with --providers (e.g. CoreMLExecutionProvider)."
        )
    want_cuda = device == "cuda" or (device == "auto" and cuda_available())
    if device == "cuda" and not cuda_available():
        raise ModelError(
            "--device cuda was asked for but no CUDA device is available here "
            "(torch.cuda.is_available() is False); use --device cpu or auto."
        )
    if want_cuda:
        if "CUDAExecutionProvider" not in available:
            if device == "cuda":
                raise ModelError(
                    f"--device cuda needs onnxruntime's CUDAExecutionProvider, which "
                    f"onnxruntime {ort.__version__} here lacks (available: "
                    f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu."
                )
            return ["CPUExecutionProvider"]
        return [("CUDAExecutionProvider", {"device_id": local_rank()}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
