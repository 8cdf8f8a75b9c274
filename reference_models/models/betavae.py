"""``beta-vae`` and ``beta-tcvae``: unconditional VAEs with the classic disentangling objectives.

They are here to compare against: neither sees the label, so any label structure in their
latents is what the objective found on its own.

- β-VAE (Higgins et al. 2017): ``recon + beta · KL(q(z|x) || N(0, I))``.
- β-TCVAE (Chen et al. 2018): the KL split into index-code mutual information, total
  correlation and dimension-wise KL, estimated by minibatch-weighted sampling;
  ``recon + alpha · MI + beta · TC + gamma · dim-KL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from latentdiag.errors import ConfigError
from reference_models.base import DataSpec, ReferenceVAE
from reference_models.config import ModelConfig
from reference_models.losses import kl_normal, reparameterize, tc_decomposition

__all__ = ["BetaTCVAE", "BetaTCVAEConfig", "BetaVAE", "BetaVAEConfig"]


@dataclass(frozen=True)
class BetaVAEConfig(ModelConfig):
    """Configuration of the β-VAE."""

    name: str = "beta-vae"  # the model this config is for
    beta: float = 4.0  # weight of the KL term; > 1 trades reconstruction for disentanglement

    def check(self) -> None:
        if self.beta < 0:
            raise ConfigError(f"model.beta must be >= 0; got {self.beta}.")


@dataclass(frozen=True)
class BetaTCVAEConfig(ModelConfig):
    """Configuration of the β-TCVAE."""

    name: str = "beta-tcvae"  # the model this config is for
    alpha: float = 1.0  # weight of the index-code mutual information
    beta: float = 6.0  # weight of the total correlation
    gamma: float = 1.0  # weight of the dimension-wise KL

    def check(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0; got {getattr(self, name)}.")


class BetaVAE(ReferenceVAE):
    """Unconditional VAE with a weighted KL term."""

    name = "beta-vae"
    config_class: ClassVar[type[ModelConfig]] = BetaVAEConfig

    def __init__(self, config: ModelConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        self.encoder = self.make_encoder()
        self.decoder = self.make_decoder()

    @property
    def conditional(self) -> bool:
        return False

    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.encoder(x)

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.decoder(z)

    def _encode_sample(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        mu, logvar = mu.float(), logvar.float()  # losses in float32 under autocast
        z = reparameterize(mu, logvar)  # (B, d)
        recon = self.reconstruction(self.decode(z), x)
        return mu, logvar, z, recon

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        assert isinstance(self.config, BetaVAEConfig)
        mu, logvar, _, recon = self._encode_sample(batch["image"])
        kl = kl_normal(mu, logvar).sum(1).mean()
        return {"loss": recon + self.config.beta * kl, "recon": recon, "kl": kl}

    def sample_latents(self, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator).to(device)


class BetaTCVAE(BetaVAE):
    """Unconditional VAE with the KL decomposed and its total correlation weighted."""

    name = "beta-tcvae"
    config_class = BetaTCVAEConfig

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.config
        assert isinstance(cfg, BetaTCVAEConfig)
        mu, logvar, z, recon = self._encode_sample(batch["image"])
        n_train = max(self.spec.n_train, z.shape[0])
        parts = tc_decomposition(z, mu, logvar, dataset_size=n_train)
        loss = (
            recon + cfg.alpha * parts["mi"] + cfg.beta * parts["tc"] + cfg.gamma * parts["dim_kl"]
        )
        kl = kl_normal(mu, logvar).sum(1).mean().detach()  # the analytic KL, for the logs
        return {"loss": loss, "recon": recon, "kl": kl, **parts}
