"""Loss terms of the reference models; pure functions of tensors, one per idea.

Conventions: a batch of B samples, latents (B, d). Per-sample terms are summed over pixels,
features or dimensions and averaged over the batch, so the reconstruction and KL terms keep
their ELBO scale (nats per sample) whatever the image size or number of features.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "bce_reconstruction",
    "between_label_share",
    "gaussian_nll",
    "grad_reverse",
    "kl_normal",
    "negative_binomial_nll",
    "reparameterize",
    "separation_hinge",
    "supervised_contrastive",
    "tc_decomposition",
]

_LOG_2PI = math.log(2.0 * math.pi)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + sigma · eps, eps ~ N(0, I); (B, d)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def bce_reconstruction(logits: Tensor, x: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood of x in [0, 1], summed over pixels; (B,).

    Bernoulli likelihood on grey levels is the usual choice for [0, 1] images (it is a proper
    cross-entropy for soft targets, minimised at logits = logit(x)).
    """
    return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)


def gaussian_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Gaussian negative log-likelihood of x, summed over features; (B,).

    Per feature: ½·log 2π + log σ + ½·((x − m) / σ)², with σ = exp(log_scale).

    Args:
        x: (B, F) observed values.
        mean: (B, F) means.
        log_scale: (F,) or (B, F) log standard deviations.
    """
    z = (x - mean) * torch.exp(-log_scale)
    return (0.5 * _LOG_2PI + log_scale + 0.5 * z.pow(2)).sum(-1)


def negative_binomial_nll(x: Tensor, log_mean: Tensor, log_theta: Tensor) -> Tensor:
    """Negative binomial negative log-likelihood of counts x, summed over features; (B,).

    The mean / inverse-dispersion parameterisation of scVI (Lopez et al. 2018): mean μ,
    variance μ + μ²/θ. Per feature::

        −log p(x) = −[lgamma(x + θ) − lgamma(θ) − lgamma(x + 1)
                      + θ·(log θ − log(θ + μ)) + x·(log μ − log(θ + μ))]

    which is ``torch.distributions.NegativeBinomial(total_count=θ, logits=log μ − log θ)``.

    Args:
        x: (B, F) non-negative counts (as floats).
        log_mean: (B, F) log μ.
        log_theta: (F,) or (B, F) log θ (θ → ∞ is the Poisson limit).
    """
    theta = torch.exp(log_theta)
    log_theta_mu = torch.logaddexp(log_theta, log_mean)  # log(θ + μ), stable
    log_p = (
        torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
        + theta * (log_theta - log_theta_mu)
        + x * (log_mean - log_theta_mu)
    )
    return -log_p.sum(-1)


def kl_normal(mu: Tensor, logvar: Tensor, prior_mu: Tensor | None = None) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(prior_mu, I)) per dimension; (B, d).

    ``prior_mu`` None means the standard normal prior.
    Closed form per dimension: 0.5 · ((mu − m)² + σ² − log σ² − 1).
    """
    diff = mu if prior_mu is None else mu - prior_mu
    return 0.5 * (diff.pow(2) + logvar.exp() - logvar - 1.0)


def separation_hinge(
    z: Tensor, labels: Tensor, *, n_labels: int, margin: float
) -> tuple[Tensor, Tensor]:
    """Bounded separation loss on label centroids: mean over pairs of relu(margin − d_ij).

    The seed's ``-mean(pairwise_distances(centroids))`` has no lower bound: it rewards pushing
    centroids apart forever, which blows up the latent scale and, sooner or later, the loss. The
    hinge keeps the same gradient while a pair is closer than ``margin`` and is exactly zero
    (no gradient) once every pair is at least ``margin`` apart.

    Args:
        z: (B, k) latents (the modality part).
        labels: (B,) int64 labels.
        n_labels: K, the number of labels.
        margin: Distance at which a pair of centroids stops being pushed apart.

    Returns:
        (loss, mean_distance): the hinge loss (0 when fewer than two labels are in the batch)
        and the mean pairwise centroid distance of the batch (detached, for the progress bar).
    """
    one_hot = F.one_hot(labels, n_labels).to(z.dtype)  # (B, K)
    counts = one_hot.sum(0)  # (K,)
    present = counts > 0
    centroids = (one_hot.T @ z)[present] / counts[present, None]  # (P, k)
    p = centroids.shape[0]
    if p < 2:
        zero = z.sum() * 0.0
        return zero, zero.detach()
    iu = torch.triu_indices(p, p, offset=1, device=z.device)
    diff = centroids[iu[0]] - centroids[iu[1]]  # (P(P-1)/2, k)
    # sqrt of (sum + eps) keeps the gradient finite when two centroids coincide.
    dist = torch.sqrt(diff.pow(2).sum(1) + 1e-8)
    return F.relu(margin - dist).mean(), dist.mean().detach()


def between_label_share(z: Tensor, labels: Tensor, *, n_labels: int, ridge: float = 1e-3) -> Tensor:
    """Share of the variance of z explained by the label, over all directions (Pillai's trace).

    V = tr(S_b S_t⁻¹), with S_b the between-label scatter Σ_k p_k (m_k − m)(m_k − m)ᵀ and S_t
    the total covariance of z (plus ``ridge``·I). It is the variance share η² of the most
    label-revealing direction, plus that of the next orthogonal one, and so on: zero exactly
    when every label has the same mean in every direction — which is what leaves a linear
    probe at chance — and invariant to any invertible linear map of z, so a small offset in a
    low-variance direction counts as much as a large one (as it does for a standardised probe).
    Range [0, min(d, K − 1)].

    Args:
        z: (B, d) latents.
        labels: (B,) int64 labels.
        n_labels: K.
        ridge: Added to the diagonal of S_t (relative to its mean variance) so it is invertible.
    """
    z = z.float()
    one_hot = F.one_hot(labels, n_labels).to(z.dtype)  # (B, K)
    counts = one_hot.sum(0)  # (K,)
    centred = z - z.mean(0)  # (B, d)
    class_mean = (one_hot.T @ centred) / counts.clamp(min=1)[:, None]  # (K, d)
    weight = counts / z.shape[0]  # (K,): absent labels weigh 0
    between = class_mean.T @ (weight[:, None] * class_mean)  # (d, d)
    total = centred.T @ centred / z.shape[0]  # (d, d)
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    total = total + ridge * total.diagonal().mean().detach() * eye
    return torch.linalg.solve(total, between).diagonal().sum()


def supervised_contrastive(z: Tensor, labels: Tensor, *, temperature: float) -> Tensor:
    """Supervised contrastive loss (SupCon, Khosla et al. 2020) on L2-normalised z.

    For each anchor i with at least one positive (same label, j ≠ i):
    −mean_{p ∈ P(i)} log( exp(s_ip / τ) / Σ_{a ≠ i} exp(s_ia / τ) ), averaged over anchors.

    Args:
        z: (B, k) embeddings.
        labels: (B,) int64 labels.
        temperature: τ.

    Returns:
        Scalar loss; 0 when no sample has a positive in the batch.
    """
    h = F.normalize(z.float(), dim=1)  # (B, k)
    sim = h @ h.T / temperature  # (B, B)
    b = z.shape[0]
    self_mask = torch.eye(b, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)  # (B, B), -inf on diagonal
    pos = (labels[:, None] == labels[None, :]) & ~self_mask  # (B, B)
    n_pos = pos.sum(1)  # (B,)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0
    pos_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)  # (B,)
    return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """Identity forward; multiplies the gradient by −scale backward (Ganin & Lempitsky 2015).

    A classifier trained on ``grad_reverse(z)`` learns to predict the label while the encoder
    receives the opposite gradient: it learns to make z uninformative about the label.
    """
    out: Tensor = _GradReverse.apply(x, scale)
    return out


def _log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def tc_decomposition(
    z: Tensor, mu: Tensor, logvar: Tensor, *, dataset_size: int
) -> dict[str, Tensor]:
    """Mutual information, total correlation and dimension-wise KL of a batch (β-TCVAE).

    Minibatch-weighted sampling (Chen et al. 2018, "Isolating Sources of Disentanglement in
    VAEs", eq. 5): log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·M), with N the dataset size
    and M the batch size; the same estimate per dimension gives log Π_k q(z_ik).

    Args:
        z: (M, d) samples from q(z | x_i).
        mu: (M, d) posterior means.
        logvar: (M, d) posterior log-variances.
        dataset_size: N, the size of the training set.

    Returns:
        ``{"mi": ..., "tc": ..., "dim_kl": ...}`` scalars, batch means; their sum is the
        batch's KL(q(z|x) || p(z)) estimate.
    """
    m = z.shape[0]
    log_qz_x = _log_normal(z, mu, logvar).sum(1)  # (M,)
    log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)  # (M,)
    # pairwise[i, j, k] = log q(z_ik | x_j)
    pairwise = _log_normal(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (M, M, d)
    log_norm = math.log(dataset_size * m)
    log_qz = torch.logsumexp(pairwise.sum(2), dim=1) - log_norm  # (M,)
    log_prod_qzk = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(1)  # (M,)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzk).mean(),
        "dim_kl": (log_prod_qzk - log_pz).mean(),
    }
