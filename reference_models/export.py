"""Export a trained reference encoder to ONNX and check it against PyTorch.

The graph takes ``x`` (B, C, S, S) float32 in [0, 1] — or (B, F) float32, the values as the
data stores them, for a run trained on vectors (the input scaling is part of the graph) —
and, when the encoder is conditional, ``label`` (B,) int64; it returns ``mu`` and ``logvar``
(B, d). The batch axis is dynamic.

The legacy TorchScript exporter (``dynamo=False``) is used: it ships with torch and needs no
extra package, while the torch.export-based exporter that torch ≥ 2.9 uses by default requires
``onnxscript``. The model's IR version is set explicitly (default 8, the version of opset 17's
ONNX release) because the newest ``onnx`` writes IR versions that older onnxruntime releases
refuse.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from latentdiag.errors import ModelError

__all__ = ["DEFAULT_IR_VERSION", "DEFAULT_OPSET", "export_encoder"]

DEFAULT_OPSET = 17
DEFAULT_IR_VERSION = 8
_TOLERANCE = 1e-4


class _Conditional(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x, label)
        return mu, logvar


class _Unconditional(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x, None)
        return mu, logvar


def export_encoder(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    ir_version: int = DEFAULT_IR_VERSION,
    tolerance: float = _TOLERANCE,
) -> dict[str, Any]:
    """Write the encoder of ``run_dir`` as ONNX and compare it with PyTorch on held-out inputs.

    The comparison runs onnxruntime (CPU) and PyTorch on the held-out images (or rows) kept
    with the run
    (``preview.safetensors``), once as one batch and once as a batch of 3 (the batch axis is
    dynamic), and takes the largest absolute difference over ``mu`` and ``logvar``.

    Args:
        run_dir: A finished training run.
        out_path: Where to write the ``.onnx`` file.
        opset: ONNX opset version.
        ir_version: ONNX IR version written into the model (onnxruntime must read it).
        tolerance: Largest accepted absolute difference.

    Returns:
        ``{"path", "inputs", "outputs", "opset", "ir_version", "max_abs_diff", "n_checked",
        "tolerance", "model", "conditional"}``.

    Raises:
        ModelError: The run cannot be loaded, the file cannot be written or read back, or the
            ONNX outputs differ from PyTorch's by more than ``tolerance`` (the file is removed).
    """
    import onnx

    from reference_models import load_encoder
    from reference_models.checkpoint import load_preview

    out = Path(out_path)
    if not out.parent.exists():
        raise ModelError(f"cannot write {out}: folder {out.parent} does not exist.")
    encoder, info = load_encoder(run_dir)
    images, labels = load_preview(run_dir)
    conditional = bool(info["conditional"])
    wrapper: nn.Module = _Conditional(encoder) if conditional else _Unconditional(encoder)
    wrapper.eval()
    inputs = ["x", "label"] if conditional else ["x"]
    args: tuple[Tensor, ...] = (images[:2], labels[:2]) if conditional else (images[:2],)
    dynamic = {name: {0: "batch"} for name in [*inputs, "mu", "logvar"]}
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),
                input_names=inputs,
                output_names=["mu", "logvar"],
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        proto.ir_version = int(ir_version)
        proto.producer_name = "latentdiag"
        # Read back by `latentdiag embed`, so latents from the ONNX file keep the partitions.
        onnx.helper.set_model_props(
            proto,
            {
                "latentdiag.model": str(info["model"]),
                "latentdiag.partitions": json.dumps(info["partitions"]),
                "latentdiag.label_names": json.dumps(info["label_names"]),
            },
        )
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diff = _parity(str(tmp), wrapper, images, labels, conditional)
    except ModelError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # exporter / checker / runtime failures all say "cannot export"
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"exporting the encoder of {run_dir} to ONNX (opset {opset}, IR {ir_version}) "
            f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not diff <= tolerance:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"the ONNX encoder differs from PyTorch by {diff:.3g} (max abs over mu and logvar), "
            f"above the tolerance {tolerance:g}; the file was not written."
        )
    os.replace(tmp, out)
    return {
        "path": str(out),
        "model": info["model"],
        "conditional": conditional,
        "inputs": inputs,
        "outputs": ["mu", "logvar"],
        "opset": opset,
        "ir_version": int(ir_version),
        "max_abs_diff": diff,
        "n_checked": int(images.shape[0]) + min(3, int(images.shape[0])),
        "tolerance": tolerance,
    }


def _parity(
    path: str, wrapper: nn.Module, images: Tensor, labels: Tensor, conditional: bool
) -> float:
    """Largest |ONNX − PyTorch| over mu and logvar, on all preview images and on 3 of them."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = " ".join(str(exc).split())
        m = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
        if m:
            raise ModelError(
                f"the installed onnxruntime {ort.__version__} reads ONNX IR versions up to {m[2]}, "
                f"not {m[1]}; export with --ir-version {m[2]} or lower."
            ) from None
        raise ModelError(
            f"onnxruntime {ort.__version__} cannot load the exported model ({text[-200:]}); "
            "export with a lower IR version or opset (--ir-version, --opset)."
        ) from None
    worst = 0.0
    for n in (images.shape[0], min(3, images.shape[0])):
        x, y = images[:n].contiguous(), labels[:n].contiguous()
        feeds = {"x": x.numpy().astype(np.float32)}
        if conditional:
            feeds["label"] = y.numpy().astype(np.int64)
        got = session.run(["mu", "logvar"], feeds)
        with torch.no_grad():
            want = wrapper(x, y) if conditional else wrapper(x)
        for g, w in zip(got, want, strict=True):
            worst = max(worst, float(np.max(np.abs(g - w.numpy()))))
    return worst
