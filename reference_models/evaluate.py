"""Held-out evaluation: posterior means, reconstruction loss, silhouette by label; latents file.

Under torchrun each process encodes the held-out positions ``rank, rank + W, rank + 2W, ...``
(no padding, so no sample is counted twice), and the rows are gathered back into held-out
order on every process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentdiag.data.base import Subset
from reference_models import distributed
from reference_models.base import ReferenceVAE
from reference_models.data import TrainingData
from reference_models.device import autocast

__all__ = ["HeldoutResult", "evaluate_heldout", "silhouette", "write_heldout_latents"]

# Silhouette is O(n²); per-epoch figures use a fixed random subset above this size.
_SILHOUETTE_MAX = 5000


@dataclass
class HeldoutResult:
    """Everything the evaluation of one epoch produced (on every process)."""

    mu: np.ndarray  # (n, d) posterior means, held-out order
    logvar: np.ndarray  # (n, d)
    recon: np.ndarray  # (n,) NLL of the reconstruction from mu (the model's likelihood), nats
    mse: np.ndarray  # (n,) mean squared error per pixel (or feature) of that reconstruction
    metrics: dict[str, float]


def silhouette(x: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float:
    """Mean silhouette (Euclidean) of ``x`` grouped by ``labels``; NaN for fewer than 2 labels.

    Uses ``latentdiag.metrics.silhouette_score`` (equal to scikit-learn's); NaN when the
    latents are constant. Above 5000 rows a fixed random subset is scored.
    """
    if np.unique(labels).size < 2 or x.shape[0] < 3:
        return float("nan")
    if x.shape[0] > _SILHOUETTE_MAX:
        keep = np.random.default_rng(seed).choice(x.shape[0], _SILHOUETTE_MAX, replace=False)
        x, labels = x[keep], labels[keep]
    from latentdiag.errors import MetricInputError
    from latentdiag.metrics import silhouette_score

    try:
        return float(silhouette_score(x, labels))
    except MetricInputError:  # e.g. collapsed (constant) latents early in training
        return float("nan")


def _gather_rows(local: torch.Tensor, n_total: int, world: int) -> torch.Tensor:
    """Rows held round-robin by the processes (row p on rank p % W) back in order."""
    if world == 1:
        return local
    per_rank = -(-n_total // world)  # ceil
    padded = torch.zeros((per_rank, *local.shape[1:]), dtype=local.dtype)
    padded[: local.shape[0]] = local
    parts = distributed.all_gather_tensors(padded)  # W × (per_rank, ...)
    stacked = torch.stack(parts, dim=1).reshape(per_rank * world, *local.shape[1:])
    return stacked[:n_total]  # position p = i * W + r sits at row i of rank r


@torch.no_grad()
def evaluate_heldout(
    model: ReferenceVAE,
    data: TrainingData,
    *,
    device: torch.device,
    batch_size: int,
    bf16: bool,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> HeldoutResult:
    """Encode the held-out split with posterior means and score it.

    Metrics: ``heldout_recon`` (−log p(x | mu) under the model's likelihood, nats per image or
    row), ``heldout_mse`` (per pixel or feature, of the likelihood's mean, in the data's
    units), ``silhouette`` (by label, whole z) and ``silhouette_<partition>`` for each
    partition.
    """
    was_training = model.training
    model.eval()
    n = int(data.heldout_idx.size)
    positions = np.arange(rank, n, world_size)
    mus, logvars, recons, mses = [], [], [], []
    chunks = [positions[i : i + batch_size] for i in range(0, positions.size, batch_size)]
    for batch in data.batches([data.heldout_idx[c] for c in chunks], device):
        x, y = batch["image"], batch["label"]
        with autocast(device, bf16):
            mu, logvar = model.encode(x, y)
            logits = model.decode(mu, y)
        logits = logits.float()
        recon = model.likelihood.nll(logits, x)  # (B,)
        mse = (model.likelihood.mean(logits, x) - x).pow(2).flatten(1).mean(1)
        mus.append(mu.float().cpu())
        logvars.append(logvar.float().cpu())
        recons.append(recon.cpu())
        mses.append(mse.cpu())
    d = model.latent_dim
    local = torch.cat(
        [
            torch.cat(mus) if mus else torch.zeros(0, d),
            torch.cat(logvars) if logvars else torch.zeros(0, d),
            (torch.cat(recons) if recons else torch.zeros(0))[:, None],
            (torch.cat(mses) if mses else torch.zeros(0))[:, None],
        ],
        dim=1,
    )  # (n_local, 2d + 2): one gather for everything
    rows = _gather_rows(local, n, world_size).numpy()
    model.train(was_training)
    mu_all, logvar_all = rows[:, :d], rows[:, d : 2 * d]
    recon_all, mse_all = rows[:, 2 * d], rows[:, 2 * d + 1]
    labels = data.labels[data.heldout_idx]
    metrics: dict[str, float] = {
        "heldout_recon": float(recon_all.mean()),
        "heldout_mse": float(mse_all.mean()),
    }
    if (labels >= 0).all():
        metrics["silhouette"] = silhouette(mu_all, labels, seed=seed)
        for name, (start, stop) in model.partitions().items():
            metrics[f"silhouette_{name}"] = silhouette(mu_all[:, start:stop], labels, seed=seed)
    return HeldoutResult(
        mu=mu_all, logvar=logvar_all, recon=recon_all, mse=mse_all, metrics=metrics
    )


def write_heldout_latents(
    path: str | os.PathLike[str],
    result: HeldoutResult,
    data: TrainingData,
    model: ReferenceVAE,
    *,
    provenance: Mapping[str, Any],
) -> Path:
    """Write the held-out latents through :class:`latentdiag.store.LatentWriter`."""
    from latentdiag.store import LatentWriter

    n = int(data.heldout_idx.size)
    meta = data.heldout_meta(np.arange(n))
    spec = data.spec
    has_labels = bool(spec.label_names) and bool((meta["labels"] >= 0).all())
    has_factors = bool(spec.factor_names) and meta["factors"] is not None
    # The data's metadata columns come along, indexed by each held-out row's item index.
    ds = data.dataset
    columns = dict(ds.columns or {})
    rows = data.heldout_idx
    if isinstance(ds, Subset):
        rows = ds.indices[rows]
    label_key = ds.label_key if has_labels and ds.label_key in columns else None
    with LatentWriter(
        path,
        latent_dim=model.latent_dim,
        has_logvar=True,
        label_names=list(spec.label_names) if has_labels else None,
        factor_names=list(spec.factor_names) if has_factors else None,
        sample_ids=True,
        partitions={k: list(v) for k, v in model.partitions().items()},
        provenance=provenance,
        overwrite=True,
        columns=list(columns.values()),
        label_key=label_key,
    ) as writer:
        block = 65536
        for start in range(0, n, block):
            sl = slice(start, min(start + block, n))
            writer.append(
                result.mu[sl],
                logvar=result.logvar[sl],
                labels=meta["labels"][sl] if has_labels and label_key is None else None,
                factors=meta["factors"][sl] if has_factors else None,
                sample_ids=meta["sample_ids"][sl],
                columns={name: col.values[rows[sl]] for name, col in columns.items()},
            )
    return Path(path)
