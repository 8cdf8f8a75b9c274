"""``baseline``: a conditional VAE, encoder and decoder both conditioned on the label.

This is the model of the seed note's "before" picture: because the decoder is told the label,
the ELBO gives the encoder no reason to put the label into z, so the labels (modalities)
overlap in latent space (low silhouette by label).

Loss: ``recon + kl_weight · KL(q(z|x, y) || N(0, I))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentdiag.errors import ConfigError
from reference_models.base import DataSpec, ReferenceVAE
from reference_models.config import ModelConfig
from reference_models.losses import kl_normal, reparameterize

__all__ = ["BaselineConfig", "ConditionalVAE"]


@dataclass(frozen=True)
class BaselineConfig(ModelConfig):
    """Configuration of the baseline conditional VAE."""

    name: str = "baseline"  # the model this config is for
    embed_dim: int = 16  # size of the label embedding given to encoder and decoder
    kl_weight: float = 1.0  # weight of the KL term (1 = the ELBO)

    def check(self) -> None:
        if self.kl_weight < 0:
            raise ConfigError(f"model.kl_weight must be >= 0; got {self.kl_weight}.")


class ConditionalVAE(ReferenceVAE):
    """Conditional VAE: q(z | x, y), p(x | z, y), p(z) = N(0, I)."""

    name = "baseline"
    config_class = BaselineConfig
    needs_labels = True
    config: BaselineConfig

    def __init__(self, config: BaselineConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        common = dict(n_labels=spec.n_labels, embed_dim=config.embed_dim)
        self.encoder = self.make_encoder(**common)
        self.decoder = self.make_decoder(**common)

    @property
    def conditional(self) -> bool:
        return True

    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.encoder(x, labels)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.decoder(z, labels)

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x, y = batch["image"], batch["label"]
        mu, logvar = self.encode(x, y)
        mu, logvar = mu.float(), logvar.float()  # losses in float32 under autocast
        z = reparameterize(mu, logvar)  # (B, d)
        recon = self.reconstruction(self.decode(z, y), x)
        kl = kl_normal(mu, logvar).sum(1).mean()
        return {"loss": recon + self.config.kl_weight * kl, "recon": recon, "kl": kl}

    def sample_latents(self, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator).to(device)
