"""Figures of a trained run for the report: reconstructions, samples per label, traversals."""

from __future__ import annotations

import os

import numpy as np
import torch

from reference_models.base import ReferenceVAE
from reference_models.sampling import reconstruction_grid, refuse_vectors, sample_grid, tile

__all__ = ["run_gallery", "traversal_grid"]

_STEPS = 9  # values per traversal row
_SPAN = 3.0  # traversals go from −3 to +3 posterior standard units around the start point


@torch.no_grad()
def traversal_grid(model: ReferenceVAE, image: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    """One row per latent dimension: the image's posterior mean with that dimension swept over
    ``mean ± 3`` (in prior units) while the others stay fixed."""
    device = next(model.parameters()).device
    x, y = image[None].to(device), label.view(1).to(device)
    cond = y if model.needs_labels else None
    mu, _ = model.encode(x, cond)  # (1, d)
    d = mu.shape[1]
    offsets = torch.linspace(-_SPAN, _SPAN, _STEPS, device=device)  # (T,)
    z = mu.repeat(d * _STEPS, 1)  # (d·T, d)
    for j in range(d):
        z[j * _STEPS : (j + 1) * _STEPS, j] = mu[0, j] + offsets
    labels = None if cond is None else y.repeat(d * _STEPS)
    images = torch.sigmoid(model.decode(z, labels).float()).cpu()
    scale = 2 if model.spec.size <= 32 else 1
    return tile(images, ncols=_STEPS, scale=scale)


def run_gallery(
    run_dir: str | os.PathLike[str], *, seed: int = 0, device: str = "cpu"
) -> list[tuple[str, str, np.ndarray]]:
    """The figures of a trained run, as (title, one-sentence caption, (H, W, 3) uint8 image).

    Reconstructions of held-out images, generated samples (one row per label for conditional
    models), and latent traversals of one held-out image per label (one row per dimension,
    shared dimensions first for a partitioned model).

    Raises:
        ModelError: The run cannot be loaded or has no held-out preview, or it was trained on
            vectors (the report shows the message where the figures would be).
    """
    from reference_models import load_run
    from reference_models.checkpoint import load_preview

    model, config = load_run(run_dir, device=device)
    refuse_vectors(model, run_dir, "there are no images to reconstruct, sample or traverse")
    images, labels = load_preview(run_dir)
    out: list[tuple[str, str, np.ndarray]] = [
        (
            "Reconstructions",
            f"Held-out images (odd rows) and their {config.model.name} reconstructions from the "
            "posterior means (even rows).",
            reconstruction_grid(model, images, labels),
        )
    ]
    names = list(model.spec.label_names)
    if model.needs_labels:
        caption = (
            f"Images generated from the prior, one row per label ({', '.join(names)}), seed {seed}."
        )
    else:
        caption = f"Images generated from the N(0, I) prior (unconditional model), seed {seed}."
    out.append(("Samples", caption, sample_grid(model, label=None, n=8, seed=seed)))
    parts = model.partitions()
    where = (
        "; ".join(f"rows {a}–{b - 1}: {name}" for name, (a, b) in parts.items()) if parts else ""
    )
    for k in sorted({int(v) for v in labels}):
        i = int((labels == k).nonzero()[0, 0])  # the first held-out image of label k
        label_text = f" ({names[k]})" if 0 <= k < len(names) else ""
        out.append(
            (
                f"Latent traversal{label_text}",
                f"Each row sweeps one latent dimension from −{_SPAN:g} to +{_SPAN:g} around a "
                f"held-out image's posterior mean{label_text}" + (f"; {where}." if where else "."),
                traversal_grid(model, images[i], labels[i]),
            )
        )
    return out
