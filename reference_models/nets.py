"""Convolutional encoder and decoder shared by every reference model.

Images are square, S = 16..256 pixels (a power of two), 1 or 3 channels. The encoder halves the
resolution with stride-2 convolutions until 4 × 4, the decoder mirrors it with transposed
convolutions. Both can be conditioned on a label through a learned label embedding: the encoder
concatenates it to the flattened features, the decoder to z.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvDecoder", "ConvEncoder", "stage_channels"]


def stage_channels(size: int, base: int, cap: int) -> list[int]:
    """Channels after each stride-2 stage: base, 2·base, ... (capped), down to 4 × 4."""
    n_stages = int(math.log2(size // 4))
    return [min(base * 2**i, cap) for i in range(n_stages)]


class LatentHeads:
    """The read-out shared by every encoder body: features [+ label embedding] -> (mu, logvar).

    A mixin rather than a submodule, so the parameters keep the names checkpoints use
    (``embed``, ``head``, ``blind_head``). The last ``blind_dims`` dimensions come from a head
    that sees the features alone, never the label.
    """

    embed: nn.Embedding | None
    head: nn.Sequential
    blind_head: nn.Sequential | None

    def build_heads(
        self,
        flat: int,
        *,
        latent_dim: int,
        n_labels: int,
        embed_dim: int,
        blind_dims: int,
        hidden: Callable[[int], list[nn.Module]],
        hidden_dim: int,
    ) -> None:
        self.conditional = n_labels > 0
        self.embed = nn.Embedding(n_labels, embed_dim) if self.conditional else None
        head_in = flat + (embed_dim if self.conditional else 0)
        assert 0 <= blind_dims < latent_dim or (blind_dims == latent_dim and not self.conditional)
        self.blind_dims = blind_dims if self.conditional else 0
        seen = latent_dim - self.blind_dims
        self.head = nn.Sequential(*hidden(head_in), nn.Linear(hidden_dim, 2 * seen))
        self.blind_head = (
            nn.Sequential(*hidden(flat), nn.Linear(hidden_dim, 2 * self.blind_dims))
            if self.blind_dims
            else None
        )
        self.latent_dim = latent_dim

    def read_out(self, feats: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        h = feats
        if self.embed is not None:
            assert labels is not None, "a conditional encoder needs labels"
            h = torch.cat([feats, self.embed(labels)], dim=1)  # (B, flat + e)
        mu, logvar = self.head(h).chunk(2, dim=1)  # (B, d − blind) each
        if self.blind_head is not None:
            mu_b, logvar_b = self.blind_head(feats).chunk(2, dim=1)  # (B, blind) each
            mu, logvar = torch.cat([mu, mu_b], dim=1), torch.cat([logvar, logvar_b], dim=1)
        return mu, logvar


class ConvEncoder(LatentHeads, nn.Module):
    """x (B, C, S, S) in [0, 1] [+ labels (B,)] -> (mu, logvar), each (B, latent_dim).

    Args:
        channels: C.
        size: S.
        latent_dim: d.
        base_channels: Channels of the first stage.
        max_channels: Cap on the channels of deeper stages.
        n_labels: Number of labels to condition on; 0 for an unconditional encoder.
        embed_dim: Size of the label embedding.
        blind_dims: The last ``blind_dims`` latent dimensions come from a head that sees the
            image alone, never the label (so whatever they say about the label is read from
            the image, not copied from the input).
    """

    def __init__(
        self,
        *,
        channels: int,
        size: int,
        latent_dim: int,
        base_channels: int,
        max_channels: int,
        n_labels: int = 0,
        embed_dim: int = 16,
        blind_dims: int = 0,
    ) -> None:
        super().__init__()
        chans = stage_channels(size, base_channels, max_channels)
        layers: list[nn.Module] = []
        c_in = channels
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.build_heads(
            c_in * 4 * 4,
            latent_dim=latent_dim,
            n_labels=n_labels,
            embed_dim=embed_dim,
            blind_dims=blind_dims,
            hidden=lambda n_in: [nn.Linear(n_in, 256), nn.SiLU()],
            hidden_dim=256,
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feats = self.features(x * 2.0 - 1.0)  # (B, flat); inputs centred on 0
        return self.read_out(feats, labels)


class ConvDecoder(nn.Module):
    """z (B, d) [+ labels (B,)] -> logits (B, C, S, S); sigmoid(logits) is the image.

    Args:
        channels: C.
        size: S.
        latent_dim: d.
        base_channels: Channels of the last (largest) stage.
        max_channels: Cap on the channels of the first stages.
        n_labels: Number of labels to condition on; 0 for an unconditional decoder.
        embed_dim: Size of the label embedding.
        n_heads: Number of output heads; with ``n_heads == n_labels`` each label has its own
            last layer (a modality-specific head) and ``labels`` choose it.
    """

    def __init__(
        self,
        *,
        channels: int,
        size: int,
        latent_dim: int,
        base_channels: int,
        max_channels: int,
        n_labels: int = 0,
        embed_dim: int = 16,
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        chans = list(reversed(stage_channels(size, base_channels, max_channels)))
        self.conditional = n_labels > 0
        self.embed = nn.Embedding(n_labels, embed_dim) if self.conditional else None
        z_in = latent_dim + (embed_dim if self.conditional else 0)
        self.c0 = chans[0]
        self.fc = nn.Sequential(nn.Linear(z_in, 256), nn.SiLU(), nn.Linear(256, chans[0] * 16))
        layers: list[nn.Module] = [nn.SiLU()]
        # All but the last stage are shared; the last upsampling is the output head.
        for c_in, c_out in itertools.pairwise(chans):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.trunk = nn.Sequential(*layers)
        self.n_heads = n_heads
        self.heads = nn.ModuleList(
            nn.ConvTranspose2d(chans[-1], channels, 4, stride=2, padding=1) for _ in range(n_heads)
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional decoder needs labels"
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, d + e)
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)  # (B, c0, 4, 4)
        h = self.trunk(h)  # (B, c_last, S/2, S/2)
        if self.n_heads == 1:
            return self.heads[0](h)
        assert labels is not None, "modality-specific heads need labels"
        # Every head runs on the whole batch and each row keeps its own: the graph stays
        # static, so DDP and ONNX see every parameter every step. The K heads run as one
        # transposed convolution with K·C output channels (their weights side by side): the
        # same outputs, bit for bit, 2.5-3× faster on a CPU than K convolutions with C each.
        heads: list[nn.ConvTranspose2d] = list(self.heads)  # type: ignore[arg-type]
        weight = torch.cat([head.weight for head in heads], dim=1)  # (c_last, K·C, 4, 4)
        bias = torch.cat([head.bias for head in heads if head.bias is not None])  # (K·C,)
        out = F.conv_transpose2d(h, weight, bias, stride=2, padding=1)  # (B, K·C, S, S)
        out = out.view(out.shape[0], self.n_heads, -1, *out.shape[2:])  # (B, K, C, S, S)
        index = labels.view(-1, 1, 1, 1, 1).expand(-1, 1, *out.shape[2:])
        return out.gather(1, index).squeeze(1)  # (B, C, S, S)
