"""MLP encoder and decoder for vector data (tables, single-cell counts), and their input scaling.

The counterparts of :mod:`reference_models.nets` for items whose ``image`` is a (F,) feature
vector (``kind == "vectors"``). They take the same conditioning arguments as the conv nets —
a label embedding, ``blind_dims`` latent dimensions read from the input alone, one output head
per label — so every model wires them exactly as it wires the conv nets.

The encoder takes the values as the data stores them and scales them itself
(:class:`FeatureInput`, statistics of the training split fitted once before training), so the
exported encoder, ``latentdiag embed`` and ``load_encoder`` all take raw rows:

- continuous features are standardized per feature;
- counts are log-normalized first, ``log1p(x / library · mean library)`` (each row scaled to
  the training split's mean library size, as scanpy's ``normalize_total`` + ``log1p``), then
  standardized per feature. The library size itself reaches the decoder's likelihood from the
  observed counts (see :class:`reference_models.likelihoods.NegativeBinomial`), so z need not
  carry it.

LayerNorm, not BatchNorm: an encoder whose output depends on the rest of the batch would give
another row's latents different values in another batch, and eval-mode statistics would differ
from training ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from reference_models.nets import LatentHeads

__all__ = [
    "FeatureInput",
    "FeatureStats",
    "MLPDecoder",
    "MLPEncoder",
    "feature_stats",
    "library_size",
]


def library_size(x: Tensor) -> Tensor:
    """Total counts per row, at least 1 (an empty row keeps finite logarithms); (B, 1)."""
    return x.sum(1, keepdim=True).clamp(min=1.0)


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature statistics of a training split, what the scaling modules are fitted to."""

    mean: Tensor  # (F,) raw mean
    std: Tensor  # (F,) raw standard deviation (1 for constant features)
    library: Tensor  # () mean library size (total counts per row); 0 unless counts
    log_mean: Tensor | None  # (F,) mean of the log-normalized counts; None unless counts
    log_std: Tensor | None  # (F,) their standard deviation


def _moments(
    batches: Iterable[Tensor], reduce: Callable[[Tensor], Tensor], acc: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(mean, std) per feature over all rows of ``batches`` (summed over processes)."""
    total: Tensor | None = None
    shift: Tensor | None = None
    for x in batches:
        x = x.to(acc)
        if shift is None:
            # Sums around a first estimate of the mean (the same on every process): no
            # cancellation for features with a large mean.
            one = torch.ones((), dtype=acc, device=x.device)
            shift = reduce(x.mean(0)) / reduce(one)  # (F,)
        d = x - shift  # (B, F)
        rows = torch.full((1,), float(x.shape[0]), dtype=acc, device=x.device)
        part = torch.cat([d.sum(0), d.pow(2).sum(0), rows])  # (2F + 1,)
        total = part if total is None else total + part
    assert total is not None and shift is not None, "no rows to fit the input statistics on"
    total = reduce(total)
    f = shift.shape[0]
    n = total[-1]
    mean_d = total[:f] / n
    var = (total[f : 2 * f] / n - mean_d.pow(2)).clamp(min=0.0)
    mean = shift + mean_d
    std = var.sqrt()
    # Constant features get 1, so scaling leaves them at 0.
    std = torch.where(std > 1e-6 * mean.abs().clamp(min=1.0), std, torch.ones_like(std))
    return mean, std


@torch.no_grad()
def feature_stats(
    batches: Callable[[], Iterable[Tensor]],
    reduce: Callable[[Tensor], Tensor],
    *,
    counts: bool,
    device: torch.device,
) -> FeatureStats:
    """Per-feature statistics of the rows that ``batches()`` yields (one pass; three for counts).

    Args:
        batches: Called once per pass; yields (B, F) float tensors on ``device``.
        reduce: Sums a tensor over processes (identity in a single process).
        counts: Also compute the mean library size and the log-normalized statistics.
        device: Where the rows are.
    """
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    mean, std = _moments(batches(), reduce, acc)
    library = torch.zeros(())
    log_mean = log_std = None
    if counts:
        sums = torch.zeros(2, dtype=acc, device=device)
        for x in batches():
            sums[0] += x.to(acc).sum()
            sums[1] += x.shape[0]
        sums = reduce(sums)
        library = (sums[0] / sums[1]).clamp(min=1.0).float()
        log_mean, log_std = _moments(
            (torch.log1p(x.float() / library_size(x.float()) * library) for x in batches()),
            reduce,
            acc,
        )
        log_mean, log_std = log_mean.float().cpu(), log_std.float().cpu()
    return FeatureStats(
        mean=mean.float().cpu(),
        std=std.float().cpu(),
        library=library.cpu(),
        log_mean=log_mean,
        log_std=log_std,
    )


class FeatureInput(nn.Module):
    """Raw rows (B, F) -> the encoder's input (B, F): standardized, log-normalized for counts.

    The statistics are buffers, saved with the weights; :meth:`fit` sets them.
    """

    mean: Tensor
    inv_std: Tensor
    library: Tensor

    def __init__(self, n_features: int, *, counts: bool) -> None:
        super().__init__()
        self.counts = counts
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("inv_std", torch.ones(n_features))
        self.register_buffer("library", torch.ones(()))

    def fit(self, stats: FeatureStats) -> None:
        if self.counts:
            assert stats.log_mean is not None and stats.log_std is not None
            self.mean.copy_(stats.log_mean)
            self.inv_std.copy_(1.0 / stats.log_std)
            self.library.copy_(stats.library)
        else:
            self.mean.copy_(stats.mean)
            self.inv_std.copy_(1.0 / stats.std)

    def forward(self, x: Tensor) -> Tensor:
        x = x.float()
        if self.counts:
            x = torch.log1p(x / library_size(x) * self.library)  # (B, F) log-normalized
        return (x - self.mean) * self.inv_std


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.SiLU()]


def _stack(n_in: int, hidden: int, layers: int) -> tuple[nn.Sequential, int]:
    """``layers`` × (Linear, LayerNorm, SiLU) and the width that comes out."""
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += _block(width, hidden)
        width = hidden
    return nn.Sequential(*mods), width


class MLPEncoder(LatentHeads, nn.Module):
    """x (B, F) raw features [+ labels (B,)] -> (mu, logvar), each (B, latent_dim).

    ``hidden_layers − 1`` shared hidden layers read the scaled input; each head adds one more
    hidden layer, so every path from input to mu has ``hidden_layers`` hidden layers. The label
    embedding joins the shared features at the head, as in
    :class:`~reference_models.nets.ConvEncoder`.

    Args:
        n_features: F.
        latent_dim: d.
        hidden_dim: Width of every hidden layer.
        hidden_layers: Hidden layers between input and output (at least 1).
        counts: The input holds counts (log-normalized before standardizing).
        n_labels: Number of labels to condition on; 0 for an unconditional encoder.
        embed_dim: Size of the label embedding.
        blind_dims: The last ``blind_dims`` latent dimensions come from a head that sees the
            features alone, never the label.
    """

    def __init__(
        self,
        *,
        n_features: int,
        latent_dim: int,
        hidden_dim: int,
        hidden_layers: int,
        counts: bool,
        n_labels: int = 0,
        embed_dim: int = 16,
        blind_dims: int = 0,
    ) -> None:
        super().__init__()
        self.input = FeatureInput(n_features, counts=counts)
        self.features, flat = _stack(n_features, hidden_dim, hidden_layers - 1)
        self.build_heads(
            flat,
            latent_dim=latent_dim,
            n_labels=n_labels,
            embed_dim=embed_dim,
            blind_dims=blind_dims,
            hidden=lambda n_in: _block(n_in, hidden_dim),
            hidden_dim=hidden_dim,
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feats = self.features(self.input(x))  # (B, h)
        return self.read_out(feats, labels)


class MLPDecoder(nn.Module):
    """z (B, d) [+ labels (B,)] -> (B, F), the likelihood's parameters per feature.

    What the output means is the likelihood's business: the standardized mean for the Gaussian,
    the logits of each feature's share of the library for the negative binomial
    (:mod:`reference_models.likelihoods`).

    Args:
        n_features: F.
        latent_dim: d.
        hidden_dim: Width of every hidden layer.
        hidden_layers: Hidden layers between z and the output (at least 1).
        n_labels: Number of labels to condition on; 0 for an unconditional decoder.
        embed_dim: Size of the label embedding.
        n_heads: Number of output layers; with ``n_heads == n_labels`` each label has its own
            (a modality-specific head) and ``labels`` choose it.
    """

    def __init__(
        self,
        *,
        n_features: int,
        latent_dim: int,
        hidden_dim: int,
        hidden_layers: int,
        n_labels: int = 0,
        embed_dim: int = 16,
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        self.conditional = n_labels > 0
        self.embed = nn.Embedding(n_labels, embed_dim) if self.conditional else None
        z_in = latent_dim + (embed_dim if self.conditional else 0)
        self.trunk, width = _stack(z_in, hidden_dim, hidden_layers)
        self.n_heads = n_heads
        self.heads = nn.ModuleList(nn.Linear(width, n_features) for _ in range(n_heads))

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional decoder needs labels"
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, d + e)
        h = self.trunk(z)  # (B, h)
        if self.n_heads == 1:
            return self.heads[0](h)
        assert labels is not None, "modality-specific heads need labels"
        # Every head runs on the whole batch and each row keeps its own (a static graph, as in
        # ConvDecoder: DDP and ONNX see every parameter every step).
        out = torch.stack([head(h) for head in self.heads], dim=1)  # (B, K, F)
        index = labels.view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return out.gather(1, index).squeeze(1)  # (B, F)
