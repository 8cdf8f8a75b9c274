"""Images from a trained reference model: conditional samples and reconstructions, as grids."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentdiag.errors import ModelError
from reference_models.base import ReferenceVAE

__all__ = [
    "generate",
    "reconstruction_grid",
    "refuse_vectors",
    "resolve_label",
    "sample_grid",
    "save_png",
    "tile",
    "write_samples",
]


def tile(images: np.ndarray | Tensor, *, ncols: int, pad: int = 2, scale: int = 1) -> np.ndarray:
    """(N, C, S, S) floats in [0, 1] -> one (H, W, 3) uint8 grid, row-major, grey padding."""
    arr = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    n, c, s, _ = arr.shape
    if c == 1:
        arr = np.repeat(arr, 3, axis=1)
    arr = np.clip(arr, 0.0, 1.0).transpose(0, 2, 3, 1)  # (N, S, S, 3)
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
        s *= scale
    nrows = -(-n // ncols)
    grid = np.full((nrows * (s + pad) + pad, ncols * (s + pad) + pad, 3), 0.5, np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        y0, x0 = pad + r * (s + pad), pad + col * (s + pad)
        grid[y0 : y0 + s, x0 : x0 + s] = arr[i]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def refuse_vectors(
    model: ReferenceVAE, run_dir: str | os.PathLike[str], what: str, hint: str = ""
) -> None:
    """Raise ModelError when ``model`` was trained on vectors: image grids need images.

    Raises:
        ModelError: ``"RUN was trained on vector data (...); {what}.{hint}"``.
    """
    if model.spec.is_vectors:
        raise ModelError(
            f"{run_dir} was trained on vector data ({model.spec.describe()}); {what}.{hint}"
        )


def _scale_for(size: int) -> int:
    return 2 if size <= 32 else 1


def resolve_label(model: ReferenceVAE, label: str | int | None) -> int | None:
    """A label name (or its index as text) -> index; None stays None.

    Raises:
        ModelError: Unknown label, or a label for an unconditional model.
    """
    if label is None:
        return None
    names = list(model.spec.label_names)
    if not model.needs_labels:
        raise ModelError(
            f"model {model.name} is unconditional: it cannot generate images of a chosen label; "
            "leave out --label."
        )
    if str(label) in names:
        return names.index(str(label))
    if str(label).isdigit() and int(label) < len(names):
        return int(label)
    raise ModelError(f"unknown label {label!r}; this model knows {', '.join(names)}.")


@torch.no_grad()
def generate(model: ReferenceVAE, n: int, label: int | None, *, seed: int = 0) -> Tensor:
    """``n`` images (n, C, S, S) in [0, 1] drawn from the prior (given ``label`` if any)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    labels = None if label is None else torch.full((n,), label, dtype=torch.long, device=device)
    z = model.sample_latents(n, labels, gen)
    return torch.sigmoid(model.decode(z, labels).float()).cpu()


def sample_grid(
    model: ReferenceVAE, *, label: int | None, n: int, seed: int = 0, ncols: int = 8
) -> np.ndarray:
    """A grid of generated images: ``n`` of ``label``; without a label, ``n`` per label (one
    row each) for a conditional model, or ``n`` unconditional samples."""
    if label is not None or not model.needs_labels:
        images = generate(model, n, label, seed=seed)
        return tile(images, ncols=min(ncols, n), scale=_scale_for(model.spec.size))
    rows = [generate(model, n, k, seed=seed + k) for k in range(model.spec.n_labels)]
    return tile(torch.cat(rows), ncols=n, scale=_scale_for(model.spec.size))


@torch.no_grad()
def reconstruction_grid(
    model: ReferenceVAE, images: Tensor, labels: Tensor, *, n: int = 16
) -> np.ndarray:
    """Pairs of rows: held-out originals above their reconstructions (from posterior means)."""
    device = next(model.parameters()).device
    x, y = images[:n].to(device), labels[:n].to(device)
    recon = model.reconstruct(x, y if model.needs_labels else None).cpu()
    ncols = min(8, x.shape[0])
    rows = []
    for start in range(0, x.shape[0], ncols):
        rows += [x[start : start + ncols].cpu(), recon[start : start + ncols]]
    return tile(torch.cat(rows), ncols=ncols, scale=_scale_for(model.spec.size))


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an (H, W, 3) uint8 array as PNG."""
    from PIL import Image

    out = Path(path)
    if not out.parent.exists():
        raise ModelError(f"cannot write {out}: folder {out.parent} does not exist.")
    Image.fromarray(image).save(out)
    return out


def write_samples(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    label: str | None = None,
    n: int = 16,
    seed: int = 0,
    device: str = "cpu",
    reconstructions: bool = True,
) -> dict[str, Any]:
    """Write generated samples (and a reconstructions grid beside them) as PNG.

    The reconstructions go to ``<stem>-reconstructions.png`` next to ``out_path``.

    Returns:
        ``{"samples": path, "reconstructions": path or None, "label": name or None, "n": n}``.

    Raises:
        ModelError: Unloadable run, unknown label, label for an unconditional model, n < 1.
    """
    from reference_models import load_run
    from reference_models.checkpoint import load_preview
    from reference_models.device import pick_device

    if n < 1:
        raise ModelError(f"the number of samples must be at least 1; got {n}.")
    model, _ = load_run(run_dir, device=pick_device(device))
    refuse_vectors(
        model,
        run_dir,
        "latentdiag sample draws images only",
        f" Embed the data with `latentdiag embed {run_dir} DATA -o latents.h5` and look at the "
        "latents with `latentdiag report` instead.",
    )
    index = resolve_label(model, label)
    out = save_png(sample_grid(model, label=index, n=n, seed=seed), out_path)
    recon_path = None
    if reconstructions:
        images, labels = load_preview(run_dir)
        recon_path = out.with_name(f"{out.stem}-reconstructions{out.suffix or '.png'}")
        save_png(reconstruction_grid(model, images, labels), recon_path)
    return {
        "samples": str(out),
        "reconstructions": None if recon_path is None else str(recon_path),
        "label": None if index is None else model.spec.label_names[index],
        "n": n,
    }
