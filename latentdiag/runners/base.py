"""What every model runner offers: an input spec, a batch call, and a description of itself.

A runner wraps one encoder (an ONNX graph, a TorchScript or torch.export program, a module
built by a factory) behind one call::

    mu, logvar = runner.run(images, labels)   # images (B, C, H, W) float32, preprocessed

``images`` are NCHW float32 already resized, channel-converted and normalised to what the
model expects (see :mod:`latentdiag.runners.preprocess`); the runner does the rest: layout
(NHWC), rank (flattened inputs), dtype (float16), a fixed batch size in the graph (padding the
last batch, looping when the batch is 1), the label input of a conditional encoder, and
turning the outputs into ``mu`` (B, d) and ``logvar`` (B, d) or None, float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from latentdiag.errors import ModelError

Layout = Literal["NCHW", "NHWC", "NHW", "flat"]
LabelKind = Literal["index", "onehot"]

__all__ = ["InputSpec", "LabelKind", "Layout", "Runner", "reduce_spatial"]


@dataclass(frozen=True)
class InputSpec:
    """The image input a model expects, as far as the model says.

    Attributes:
        name: Name of the image input (``"x"`` where the model names none).
        layout: ``NCHW`` or ``NHWC`` for rank-4 inputs, ``NHW`` for rank-3 (one channel),
            ``flat`` for rank-2 inputs of C·H·W features.
        channels: C, or None when the model does not fix it.
        height: H, or None when the model does not fix it.
        width: W, or None when the model does not fix it.
        features: For ``flat`` inputs, C·H·W when fixed.
        batch: A batch size fixed in the graph, or None for a dynamic batch.
        dtype: Floating dtype of the input (``float32``, ``float16``, ``float64``).
        label_name: Name of the label input of a conditional encoder, or None.
        label_kind: ``index`` (integer labels) or ``onehot`` (float (B, K)).
        label_dtype: Dtype of the label input (``int64``, ``int32``, ``float32``, ...).
        label_rank: Rank of the label input: 1 for (B,), 2 for (B, 1) or (B, K).
        num_classes: K of a one-hot label input.
    """

    name: str = "x"
    layout: Layout = "NCHW"
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    features: int | None = None
    batch: int | None = None
    dtype: str = "float32"
    label_name: str | None = None
    label_kind: LabelKind | None = None
    label_dtype: str = "int64"
    label_rank: int = 1
    num_classes: int | None = None

    @property
    def conditional(self) -> bool:
        """Whether the model takes a label input."""
        return self.label_name is not None

    def shape_text(self) -> str:
        """The expected input shape as text, e.g. ``(B, 3, 64, 64) NCHW``."""
        b = "B" if self.batch is None else str(self.batch)

        def dim(v: int | None, sym: str) -> str:
            return sym if v is None else str(v)

        c, h, w = dim(self.channels, "C"), dim(self.height, "H"), dim(self.width, "W")
        if self.layout == "NCHW":
            return f"({b}, {c}, {h}, {w}) NCHW"
        if self.layout == "NHWC":
            return f"({b}, {h}, {w}, {c}) NHWC"
        if self.layout == "NHW":
            return f"({b}, {h}, {w})"
        return f"({b}, {dim(self.features, 'C·H·W')})"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class Runner(ABC):
    """A loaded encoder that maps image batches to posterior means and log-variances.

    Subclasses call ``super().__init__`` with what they found and implement :meth:`_forward`
    for one batch of the size the model accepts; :meth:`run` handles fixed batch sizes around
    it.

    Attributes:
        kind: ``onnx``, ``torchscript``, ``torch.export``, ``factory`` or ``module``.
        model: What was loaded (a path, or ``pkg.module:factory``).
        spec: The image input the model expects.
        device: The device or execution provider that actually runs the model, in words,
            e.g. ``onnxruntime CPUExecutionProvider`` or ``torch cuda:0 (NVIDIA H200)``.
        model_sha256: sha256 of the model's bytes (weights included), or None.
        partitions: Named latent subspaces the model declares, name -> (start, stop).
        outputs: How the outputs were read, for provenance (e.g. ``{"mu": "mean"}``).
        spatial: How spatial latents become vectors: ``flatten`` or ``mean``.
        label_names: The labels a conditional model was trained on, in order, when known.
    """

    def __init__(
        self,
        *,
        kind: str,
        model: str,
        spec: InputSpec,
        device: str,
        model_sha256: str | None = None,
        partitions: dict[str, tuple[int, int]] | None = None,
        outputs: dict[str, str] | None = None,
        spatial: str = "flatten",
    ) -> None:
        self.kind = kind
        self.model = model
        self.spec = spec
        self.device = device
        self.model_sha256 = model_sha256
        self.partitions: dict[str, tuple[int, int]] = dict(partitions or {})
        self.outputs: dict[str, str] = dict(outputs or {})
        self.spatial = spatial
        self.label_names: list[str] | None = None
        # What else decides the model, for the job identity (a factory's source, keyword
        # arguments, the files they name, its weights): see latentdiag.job.EmbedJob.
        self.identity: dict[str, Any] = {}
        # The input range the model was trained on, when it is known from the model itself
        # (diffusers' autoencoders: -1..1); used when --normalize is not given.
        self.default_normalize: str | None = None

    @abstractmethod
    def _forward(
        self, images: np.ndarray, labels: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One batch in the model's own layout rules; returns 2-D float32 (mu, logvar)."""

    def run(
        self, images: np.ndarray, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode a batch.

        Args:
            images: (B, C, H, W) float32, already preprocessed for this model.
            labels: (B,) int64 label indices; required when the model is conditional.

        Returns:
            ``(mu, logvar)``: (B, d) float32 each; ``logvar`` is None for a deterministic
            encoder.

        Raises:
            ModelError: The model is conditional and no labels were given.
        """
        if self.spec.conditional and labels is None:
            raise ModelError(
                f"the model has a label input {self.spec.label_name!r} (a conditional encoder) "
                "but the data has no labels; give data with labels."
            )
        fixed = self.spec.batch
        n = images.shape[0]
        if fixed is None or n == fixed:
            return self._forward(images, labels)
        mus: list[np.ndarray] = []
        logvars: list[np.ndarray] = []
        for start in range(0, n, fixed):
            stop = min(start + fixed, n)
            chunk = images[start:stop]
            lab = None if labels is None else labels[start:stop]
            short = fixed - (stop - start)
            if short:
                # The graph takes exactly `fixed` rows: repeat the last row, drop its outputs.
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
                if lab is not None:
                    lab = np.concatenate([lab, np.repeat(lab[-1:], short, axis=0)])
            mu, logvar = self._forward(chunk, lab)
            mus.append(mu[: stop - start])
            if logvar is not None:
                logvars.append(logvar[: stop - start])
        return np.concatenate(mus), (np.concatenate(logvars) if logvars else None)

    def describe(self) -> dict[str, Any]:
        """What provenance records about the model and where it ran."""
        return {
            "model": self.model,
            "model_kind": self.kind,
            "model_sha256": self.model_sha256,
            "device": self.device,
            "input": self.spec.to_dict(),
            "outputs": dict(self.outputs),
            "spatial": self.spatial,
        }

    def close(self) -> None:  # noqa: B027 - optional hook, most runners hold nothing to free
        """Free what the runner holds (sessions, GPU memory)."""


def reduce_spatial(x: np.ndarray, spatial: str, *, channels_last: bool = False) -> np.ndarray:
    """Turn a (B, C, H, W)-like latent into (B, d): flatten it, or average over positions.

    Args:
        x: (B, ...) array; 2-D arrays are returned as they are.
        spatial: ``flatten`` (d = C·H·W, channel-major) or ``mean`` (d = C).
        channels_last: The channel axis is the last one (NHWC models).

    Returns:
        (B, d) array.
    """
    if x.ndim <= 2:
        return x.reshape(x.shape[0], -1) if x.ndim == 1 else x
    if channels_last:
        x = np.moveaxis(x, -1, 1)  # (B, C, ...)
    if spatial == "mean":
        return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)
    return x.reshape(x.shape[0], -1)
