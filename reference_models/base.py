"""What every reference model provides to the trainer, the exporter and the samplers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_models.config import ModelConfig

__all__ = ["DataSpec", "EncoderModule", "ReferenceVAE"]


@dataclass(frozen=True)
class DataSpec:
    """The facts about the training data a model is built for (saved with its weights)."""

    channels: int  # C
    size: int  # S (images are S × S)
    label_names: tuple[str, ...]  # names of labels 0..K-1; empty when the data has none
    factor_names: tuple[str, ...] = ()  # ground-truth factors of the data, if any
    n_train: int = 0  # size of the training split (the TC estimator needs it)
    source: str = ""  # where the data came from

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["label_names"] = list(self.label_names)
        out["factor_names"] = list(self.factor_names)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        return cls(
            channels=int(data["channels"]),
            size=int(data["size"]),
            label_names=tuple(str(n) for n in data.get("label_names", ())),
            factor_names=tuple(str(n) for n in data.get("factor_names", ())),
            n_train=int(data.get("n_train", 0)),
            source=str(data.get("source", "")),
        )


class ReferenceVAE(nn.Module):
    """Base of the reference models.

    A model implements :meth:`encode`, :meth:`decode`, :meth:`loss` and :meth:`sample_latents`;
    ``forward(batch)`` is ``loss(batch)`` so that DistributedDataParallel wraps the loss.

    ``loss(batch)`` takes ``{"image": (B, C, S, S) float in [0, 1], "label": (B,) int64}`` and
    returns a dict of scalars: ``"loss"`` (what is minimised) plus named parts that the
    progress bar and the logs show.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    needs_labels: ClassVar[bool] = False  # training needs a label per image

    def __init__(self, config: ModelConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec

    def net_args(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments of the shared ConvEncoder / ConvDecoder for this config and data."""
        return dict(
            channels=self.spec.channels,
            size=self.spec.size,
            latent_dim=self.config.latent_dim,
            base_channels=self.config.base_channels,
            max_channels=self.config.max_channels,
            **extra,
        )

    # -- what a model defines -----------------------------------------------------------
    @property
    def conditional(self) -> bool:
        """Whether the encoder takes the label as an input."""
        raise NotImplementedError

    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, C, S, S) in [0, 1] -> (mu, logvar), each (B, d)."""
        raise NotImplementedError

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (B, d) -> logits (B, C, S, S)."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError

    def sample_latents(self, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
        """n draws of z from the prior (conditioned on ``labels`` where the prior is)."""
        raise NotImplementedError

    def calibrate(
        self, batches: Iterable[dict[str, Tensor]], reduce: Callable[[Tensor], Tensor]
    ) -> None:
        """Recompute statistics kept in buffers from a pass over the training split.

        Called by the trainer after every epoch, before evaluation. ``reduce`` sums a tensor
        over processes (identity in a single process). The default does nothing.
        """

    def partitions(self) -> dict[str, tuple[int, int]]:
        """Named latent subspaces ``{name: (start, stop)}``; empty when z is one block."""
        return {}

    # -- shared ---------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups; ``lr_scale`` multiplies the run's learning rate."""
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.loss(batch)

    @property
    def latent_dim(self) -> int:
        return int(self.config.latent_dim)

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images decoded from the posterior means; (B, C, S, S) in [0, 1]."""
        mu, _ = self.encode(x, labels)
        return torch.sigmoid(self.decode(mu, labels).float())

    def encoder_module(self) -> EncoderModule:
        """A module ``(x, labels) -> (mu, logvar)`` for export and embedding."""
        return EncoderModule(self)


class EncoderModule(nn.Module):
    """The encoder of a reference model as a standalone module (it shares the weights).

    ``forward(x, labels)``: x (B, C, S, S) float in [0, 1], labels (B,) int64 (ignored by an
    unconditional encoder) -> (mu, logvar), each (B, d).
    """

    def __init__(self, model: ReferenceVAE) -> None:
        super().__init__()
        self.model = model
        self.conditional = model.conditional

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.model.encode(x, labels if self.conditional else None)
