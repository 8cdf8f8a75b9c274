"""The built-in synthetic pseudo-modalities: chest X-ray, OCT, pathology and dermatoscopy.

Every image is drawn from a procedural function of canonical coordinates ``(u, v)``; the shared
geometric factors (rotation, scale, shift) only change how output pixels map to those
coordinates, so they cost nothing extra and leave no border artefacts. Each image is then
auto-windowed to a common mean and spread, and the shared photometric factors (brightness,
contrast, noise) are applied, so global grey level is a nuisance shared by all modalities
rather than a modality cue. What tells the modalities apart is their structure: ribs, lungs and
spine; layered retinal bands; nuclei in stained tissue; a pigmented lesion on skin.

The renderers live in :mod:`latentdiag.data._render`; this module draws the factors, batches
the work and applies the shared transforms.

Factors (columns of ``SyntheticData.factors``), in natural units except ``structure``:

==============  =================  ==========================================================
name            range              meaning
==============  =================  ==========================================================
rotation        −40 … 40           degrees, counter-clockwise
scale           0.75 … 1.30        zoom of the anatomy (1 = nominal field of view)
shift_x         −0.15 … 0.15       horizontal shift, fraction of the image width (+ = right)
shift_y         −0.15 … 0.15       vertical shift, fraction of the image height (+ = down)
brightness      −0.20 … 0.20       offset of the image mean from 0.5
contrast        0.60 … 1.50        gain of the image standard deviation (1 = 0.18)
noise           0.00 … 0.08        standard deviation of additive Gaussian sensor noise
structure       0 … 1              the modality's own structure, normalised: rib spacing
                                   (chest X-ray), retinal layer count (OCT), nuclei density
                                   (pathology), lesion size (dermatoscopy); 0 = fewest /
                                   smallest / tightest, see :data:`STRUCTURE_MEANING`
==============  =================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentdiag.data import _render
from latentdiag.errors import DataError

__all__ = [
    "FACTOR_NAMES",
    "FACTOR_RANGES",
    "LABEL_NAMES",
    "STRUCTURE_MEANING",
    "SyntheticData",
    "generate_synthetic",
]

LABEL_NAMES = ["chest_xray", "oct", "pathology", "dermatoscopy"]

# name -> (low, high) of the uniform distribution each factor is drawn from.
FACTOR_RANGES: dict[str, tuple[float, float]] = {
    "rotation": (-40.0, 40.0),
    "scale": (0.75, 1.30),
    "shift_x": (-0.15, 0.15),
    "shift_y": (-0.15, 0.15),
    "brightness": (-0.20, 0.20),
    "contrast": (0.60, 1.50),
    "noise": (0.0, 0.08),
    "structure": (0.0, 1.0),
}
FACTOR_NAMES = list(FACTOR_RANGES)

STRUCTURE_MEANING = {
    "chest_xray": "rib spacing: 0 → 0.16, 1 → 0.30 (canonical units; the field is 2 wide)",
    "oct": "retinal layer count: 0 → 3 bright layers, 1 → 7 (round(3 + 4·s))",
    "pathology": "nuclei density: 0 → sparse (cell pitch 0.24), 1 → dense (pitch 0.12)",
    "dermatoscopy": "lesion size: mean radius 0 → 0.22, 1 → 0.62 (canonical units)",
}

_WINDOW_STD = 0.18  # the standard deviation every image is windowed to before contrast
# Images rendered per batch: about 2**16 pixels (64 px: 16 images, 4 per modality). Bigger
# batches make temporaries big enough that glibc's malloc hands them back to the OS after each
# use, and page faults then cost more than the rendering. The batch depends only on the size,
# so the output depends only on (n, size, channels, seed).
_CHUNK: int | None = None  # None: from the size; the benchmark sets 1 to time one-by-one
_N_EXTRA = 16  # per-image uniforms each renderer may use for its own unrecorded variation
_MAX_SIZE = 512


def _chunk_for(size: int) -> int:
    return _CHUNK or int(np.clip(2**16 // (size * size), 4, 128))


@dataclass
class SyntheticData:
    """A generated pseudo-modality dataset.

    Attributes:
        images: (N, C, S, S) uint8.
        labels: (N,) int64, indices into ``label_names``.
        factors: (N, F) float32 ground-truth factors, columns named by ``factor_names``.
        label_names: ``["chest_xray", "oct", "pathology", "dermatoscopy"]``.
        factor_names: Names of the factor columns (see the module docstring for units).
        seed: The seed the data was generated with.
    """

    images: np.ndarray
    labels: np.ndarray
    factors: np.ndarray
    label_names: list[str] = field(default_factory=lambda: list(LABEL_NAMES))
    factor_names: list[str] = field(default_factory=lambda: list(FACTOR_NAMES))
    seed: int = 0


def generate_synthetic(
    n: int, *, size: int = 32, channels: int = 1, seed: int = 0
) -> SyntheticData:
    """Generate ``n`` images of the four pseudo-modalities, balanced and shuffled.

    The result depends only on ``(n, size, channels, seed)``: the same arguments give the same
    bytes. Factors are drawn independently and uniformly (ranges in :data:`FACTOR_RANGES`),
    the same distribution for every modality.

    Args:
        n: Number of images (labels are balanced: counts differ by at most one).
        size: Side of the square images in pixels (designed for 32, 64 and 128).
        channels: 1 (grayscale) or 3 (RGB; pathology and dermatoscopy in colour).
        seed: Random seed.

    Returns:
        A :class:`SyntheticData` with uint8 images (N, C, S, S).

    Raises:
        DataError: ``n``, ``size`` or ``channels`` out of range.
    """
    if n < 1:
        raise DataError(f"the number of images must be at least 1; got {n}.")
    if not 8 <= size <= _MAX_SIZE:
        raise DataError(
            f"image size must be 8 … {_MAX_SIZE} pixels (32, 64, 128 are designed); got {size}."
        )
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels}.")
    if seed < 0:
        raise DataError(f"the seed must be a non-negative integer; got {seed}.")

    rng = np.random.default_rng([seed, 0x5EED])
    k = len(LABEL_NAMES)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % k)
    low = np.array([r[0] for r in FACTOR_RANGES.values()])
    high = np.array([r[1] for r in FACTOR_RANGES.values()])
    factors = (low + (high - low) * rng.random((n, len(FACTOR_NAMES)))).astype(np.float32)
    extra = rng.random((n, _N_EXTRA)).astype(np.float32)
    hash_seeds = rng.integers(0, 2**31 - 1, size=n, dtype=np.int64).astype(np.uint32)

    images = np.empty((n, channels, size, size), dtype=np.uint8)
    step = _chunk_for(size)
    for chunk, start in enumerate(range(0, n, step)):
        stop = min(start + step, n)
        noise_rng = np.random.default_rng([seed, 0x0015E, chunk])
        images[start:stop] = _render_chunk(
            labels[start:stop],
            factors[start:stop],
            extra[start:stop],
            hash_seeds[start:stop],
            size=size,
            channels=channels,
            rng=noise_rng,
        )
    return SyntheticData(images=images, labels=labels, factors=factors, seed=seed)


def _render_chunk(
    labels: np.ndarray,
    factors: np.ndarray,
    extra: np.ndarray,
    hash_seeds: np.ndarray,
    *,
    size: int,
    channels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one batch: canonical coordinates, the modality renderers, then photometry."""
    b = labels.shape[0]
    col = {name: factors[:, i, None, None] for i, name in enumerate(FACTOR_NAMES)}  # (b, 1, 1)

    # Pixel centres in [-1, 1]; y grows downwards as in an image.
    grid = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    x = grid[None, None, :]  # (1, 1, S)
    y = grid[None, :, None]  # (1, S, 1)

    out = np.empty((b, channels, size, size), dtype=np.float32)
    renderers = (_render.chest_xray, _render.oct, _render.pathology, _render.dermatoscopy)
    for label, render in enumerate(renderers):
        idx = np.flatnonzero(labels == label)
        if idx.size == 0:
            continue
        # Output pixel -> canonical coordinates: undo the shift, then rotation and scale.
        theta = np.deg2rad(col["rotation"][idx])  # (k, 1, 1)
        cos, sin = np.cos(theta), np.sin(theta)
        inv_scale = np.float32(1.0) / col["scale"][idx]
        dx = x - 2.0 * col["shift_x"][idx]  # (k, 1, S)
        dy = y - 2.0 * col["shift_y"][idx]  # (k, S, 1)
        ctx = _render.Context(
            u=(cos * inv_scale) * dx + (sin * inv_scale) * dy,  # (k, S, S)
            v=(cos * inv_scale) * dy - (sin * inv_scale) * dx,  # (k, S, S)
            x=np.broadcast_to(x, (idx.size, size, size)),
            y=np.broadcast_to(y, (idx.size, size, size)),
            pixel=(np.float32(2.0 / size) * inv_scale).astype(np.float32),
            structure=col["structure"][idx],
            extra=extra[idx],
            hash_seed=hash_seeds[idx, None, None],
            channels=channels,
            rng=rng,
        )
        out[idx] = render(ctx)

    # Auto-window: every image to mean 0.5, std _WINDOW_STD (on luminance), then the shared
    # brightness / contrast gain, so neither is a modality cue.
    lum = out[:, 0] if channels == 1 else np.tensordot(_render.LUMA, out, axes=(0, 1))
    flat = lum.reshape(b, -1)
    mean = flat.mean(axis=1)
    std = np.sqrt(np.maximum(np.einsum("ij,ij->i", flat, flat) / flat.shape[1] - mean**2, 0.0))
    mean = mean[:, None, None, None]
    std = std[:, None, None, None] + 1e-3
    gain = (_WINDOW_STD * col["contrast"][:, None] / std).astype(np.float32)
    out -= mean.astype(np.float32)
    out *= gain
    out += (0.5 + col["brightness"][:, None]).astype(np.float32)
    # Sensor noise on luminance (the same in each channel), so gray modalities stay gray.
    noise = _render.fast_normal(rng, (b, 1, size, size))
    noise *= col["noise"][:, None]
    out += noise
    np.clip(out, 0.0, 1.0, out=out)
    out *= 255.0
    out += 0.5
    return out.astype(np.uint8)
