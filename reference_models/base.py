"""What every reference model provides to the trainer, the exporter and the samplers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from reference_models.config import ModelConfig
from reference_models.likelihoods import Likelihood, make_likelihood, resolve_likelihood
from reference_models.mlp import FeatureInput, MLPDecoder, MLPEncoder, feature_stats
from reference_models.nets import ConvDecoder, ConvEncoder

__all__ = ["DataSpec", "EncoderModule", "ReferenceVAE"]


@dataclass(frozen=True)
class DataSpec:
    """The facts about the training data a model is built for (saved with its weights)."""

    channels: int  # C (0 for vectors)
    size: int  # S (images are S × S; 0 for vectors)
    label_names: tuple[str, ...]  # names of labels 0..K-1; empty when the data has none
    factor_names: tuple[str, ...] = ()  # ground-truth factors of the data, if any
    n_train: int = 0  # size of the training split (the TC estimator needs it)
    source: str = ""  # where the data came from
    kind: str = "images"  # "images" (conv nets) or "vectors" (MLP nets); older runs: images
    n_features: int = 0  # F of vector data; 0 for images
    counts: bool = False  # vectors: every training value is a non-negative integer

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
            kind=str(data.get("kind", "images")),
            n_features=int(data.get("n_features", 0)),
            counts=bool(data.get("counts", False)),
        )

    @property
    def is_vectors(self) -> bool:
        return self.kind == "vectors"

    def describe(self) -> str:
        """``32×32 images, 1 channel`` or ``vectors of 50 features``, for messages."""
        if self.is_vectors:
            return f"vectors of {self.n_features:,} features"
        return f"{self.size}×{self.size} images, {self.channels} channel(s)"


class ReferenceVAE(nn.Module):
    """Base of the reference models.

    A model implements :meth:`encode`, :meth:`decode`, :meth:`loss` and :meth:`sample_latents`;
    ``forward(batch)`` is ``loss(batch)`` so that DistributedDataParallel wraps the loss.

    ``loss(batch)`` takes ``{"image": (B, C, S, S) float in [0, 1], "label": (B,) int64}`` —
    for vector data ``"image"`` is (B, F), the values as stored — and returns a dict of
    scalars: ``"loss"`` (what is minimised) plus named parts that the progress bar and the logs
    show.

    The body follows the data (:meth:`make_encoder`, :meth:`make_decoder`): conv nets for
    images, MLPs for vectors, with the same conditioning arguments; the reconstruction term is
    ``self.likelihood`` (:mod:`reference_models.likelihoods`), chosen from the data and
    ``model.likelihood``. A model's own loss terms act on z and never depend on the body.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    needs_labels: ClassVar[bool] = False  # training needs a label per image

    def __init__(self, config: ModelConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        name = resolve_likelihood(
            config.likelihood, kind=spec.kind, counts=spec.counts, source=spec.source
        )
        # Parameterless for images, so image models keep their state dict and initialisation.
        self.likelihood: Likelihood = make_likelihood(name, spec.n_features)

    def make_encoder(
        self, *, n_labels: int = 0, embed_dim: int = 16, blind_dims: int = 0
    ) -> nn.Module:
        """The encoder body for this data: a ConvEncoder for images, an MLPEncoder for vectors.

        Both are called ``encoder(x, labels) -> (mu, logvar)``; the arguments mean the same
        for both (see :class:`~reference_models.nets.ConvEncoder`).
        """
        cond = dict(n_labels=n_labels, embed_dim=embed_dim, blind_dims=blind_dims)
        if not self.spec.is_vectors:
            return ConvEncoder(**self.net_args(**cond))
        return MLPEncoder(
            n_features=self.spec.n_features,
            latent_dim=self.config.latent_dim,
            hidden_dim=self.config.hidden_dim,
            hidden_layers=self.config.hidden_layers,
            counts=self.likelihood.name == "nb",
            **cond,
        )

    def make_decoder(
        self, *, n_labels: int = 0, embed_dim: int = 16, n_heads: int = 1
    ) -> nn.Module:
        """The decoder body for this data: a ConvDecoder for images, an MLPDecoder for vectors;
        its output is what ``self.likelihood`` reads."""
        cond = dict(n_labels=n_labels, embed_dim=embed_dim, n_heads=n_heads)
        if not self.spec.is_vectors:
            return ConvDecoder(**self.net_args(**cond))
        return MLPDecoder(
            n_features=self.spec.n_features,
            latent_dim=self.config.latent_dim,
            hidden_dim=self.config.hidden_dim,
            hidden_layers=self.config.hidden_layers,
            **cond,
        )

    def reconstruction(self, out: Tensor, x: Tensor) -> Tensor:
        """The reconstruction term of the batch: mean over rows of −log p(x | out), nats."""
        return self.likelihood.nll(out, x).mean()

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
        """x (B, C, S, S) in [0, 1] or (B, F) raw vectors -> (mu, logvar), each (B, d)."""
        raise NotImplementedError

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """z (B, d) -> the likelihood's parameters: logits (B, C, S, S), or (B, F)."""
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

    @property
    def needs_prepare(self) -> bool:
        """Whether :meth:`prepare` has statistics to fit (the vector nets' input scaling)."""
        return self.spec.is_vectors

    @torch.no_grad()
    def prepare(
        self,
        batches: Callable[[], Iterable[Tensor]],
        reduce: Callable[[Tensor], Tensor],
        *,
        device: torch.device,
    ) -> None:
        """Fit the statistics of the training split the body needs, once, before the first step
        of a new run: the encoder's input scaling and the Gaussian's per-feature location and
        scale (buffers, saved with the weights; a resumed run reads them back).

        Args:
            batches: Called once per pass over the training split; yields (B, F) raw rows.
            reduce: Sums a tensor over processes (identity in a single process).
            device: Where the rows are.
        """
        if not self.needs_prepare:
            return
        stats = feature_stats(batches, reduce, counts=self.likelihood.name == "nb", device=device)
        for module in self.modules():
            if isinstance(module, (FeatureInput, Likelihood)):
                module.fit(stats)

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
        """x decoded from the posterior means: (B, C, S, S) images in [0, 1], or (B, F) vectors
        in the data's units (the likelihood's mean)."""
        mu, _ = self.encode(x, labels)
        return self.likelihood.mean(self.decode(mu, labels), x)

    def encoder_module(self) -> EncoderModule:
        """A module ``(x, labels) -> (mu, logvar)`` for export and embedding."""
        return EncoderModule(self)


class EncoderModule(nn.Module):
    """The encoder of a reference model as a standalone module (it shares the weights).

    ``forward(x, labels)``: x (B, C, S, S) float in [0, 1] — or (B, F) float, the values as
    the data stores them, for a model trained on vectors — and labels (B,) int64 (ignored by an
    unconditional encoder) -> (mu, logvar), each (B, d).
    """

    def __init__(self, model: ReferenceVAE) -> None:
        super().__init__()
        self.model = model
        self.conditional = model.conditional

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.model.encode(x, labels if self.conditional else None)
