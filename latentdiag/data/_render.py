"""Procedural renderers of the four pseudo-modalities (used by :mod:`.synthetic`).

Each renderer takes a batch of canonical coordinate grids ``u, v`` (B, S, S) — the anatomy
lives in roughly [-1, 1]² at scale 1, ``u`` to the right and ``v`` downwards — and returns
float32 images (B, C, S, S) with values around [0, 1]. Everything is vectorised over the batch:
shapes, edges and textures are closed-form functions of the coordinates, so rotation, scale and
shift are applied exactly, and edges are antialiased with the pixel footprint ``pixel``.

Textures that need randomness per position use an integer hash of lattice coordinates (cheap,
deterministic, no per-object loops) or a smooth field made from a few random sinusoids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"
_TAU = np.float32(2.0 * np.pi)


@dataclass
class Context:
    """What a renderer gets for a batch of B images of one modality.

    Attributes:
        u: (B, S, S) canonical horizontal coordinate of each pixel.
        v: (B, S, S) canonical vertical coordinate (down is positive).
        x: (B, S, S) pixel-space horizontal coordinate in [-1, 1] (for lens effects).
        y: (B, S, S) pixel-space vertical coordinate in [-1, 1].
        pixel: (B, 1, 1) size of one pixel in canonical units.
        structure: (B, 1, 1) the modality's structure factor in [0, 1].
        extra: (B, E) uniforms in [0, 1) for unrecorded per-image variation.
        hash_seed: (B, 1, 1) uint32 per-image seed of the lattice hash.
        channels: 1 or 3.
        rng: Generator for per-pixel noise (speckle, texture).
    """

    u: np.ndarray
    v: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pixel: np.ndarray
    structure: np.ndarray
    extra: np.ndarray
    hash_seed: np.ndarray
    channels: int
    rng: np.random.Generator

    def e(self, i: int) -> np.ndarray:
        """Extra uniform ``i`` as a (B, 1, 1) float32 column."""
        return self.extra[:, i, None, None]


# --------------------------------------------------------------------------- helpers


def _inside(d: np.ndarray, width: np.ndarray | float) -> np.ndarray:
    """Soft indicator of ``d < 0`` (``d`` a signed distance), ramping over ``width``."""
    return np.clip(0.5 - d / width, 0.0, 1.0)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """A well-mixed uint32 hash of integer lattice coordinates (negative values wrap)."""
    h = ix.astype(np.uint32) * np.uint32(0x9E3779B1)
    h ^= iy.astype(np.uint32) * np.uint32(0x85EBCA77)
    h ^= seed
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return h


def _byte(h: np.ndarray, k: int) -> np.ndarray:
    """Byte ``k`` (0..3) of a hash as float32 in [0, 1]."""
    return ((h >> np.uint32(8 * k)) & np.uint32(255)).astype(np.float32) * np.float32(1 / 255)


def _waves(ctx: Context, first: int, freq: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth random field in about [-1, 1]: three plane waves with random direction and
    phase taken from extras ``first .. first+2``."""
    out = np.zeros_like(u)
    for j in range(3):
        a = ctx.e(first + j) * _TAU
        out += np.cos((np.cos(a) * u + np.sin(a) * v) * (freq * (1.0 + 0.3 * j)) + a * 7.0)
    return out * np.float32(1 / 1.7)


def fast_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Approximately standard-normal float32 noise: the Irwin–Hall sum of four uniform bytes.

    Five times cheaper than ``standard_normal`` (which dominated generation time); the
    tails stop at ±3.45, which sensor noise and speckle never miss.
    """
    u = rng.integers(0, 2**32, size=shape, dtype=np.uint32)
    m = np.uint32(0x00FF00FF)
    pairs = (u & m) + ((u >> np.uint32(8)) & m)  # two 16-bit lanes, each a sum of two bytes
    total = (pairs & np.uint32(0xFFFF)) + (pairs >> np.uint32(16))  # 0 .. 1020
    out = total.astype(np.float32)
    out -= np.float32(510.0)
    out *= np.float32(1 / 147.80)  # sqrt(4 · (256² − 1) / 12)
    return out


@lru_cache(maxsize=16)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """(size, cells) linear-interpolation matrix from a coarse grid to ``size`` pixels."""
    pos = (np.arange(size) + 0.5) * (cells - 1) / size
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), lo] = 1.0 - frac
    m[np.arange(size), np.minimum(lo + 1, cells - 1)] += frac
    return m


def _smooth_noise(ctx: Context, cells: int) -> np.ndarray:
    """(B, S, S) smooth Gaussian-ish noise in pixel space (a coarse grid, interpolated)."""
    b, size = ctx.u.shape[0], ctx.u.shape[-1]
    m = _upsampler(size, cells)
    coarse = ctx.rng.standard_normal((b, cells, cells), dtype=np.float32)
    return np.matmul(np.matmul(m, coarse), m.T)  # (B, S, S)


def _fade(period: np.ndarray | float, pixel: np.ndarray) -> np.ndarray:
    """Amplitude of a periodic pattern: 1 when a period spans >= 3.5 pixels, 0 below 1.5,
    so patterns finer than the pixel grid fade instead of aliasing into moiré."""
    return np.clip((period / pixel - 1.5) / 2.0, 0.0, 1.0)


def _gray_or_rgb(gray: np.ndarray, channels: int) -> np.ndarray:
    """(B, S, S) -> (B, C, S, S)."""
    return np.repeat(gray[:, None], channels, axis=1) if channels == 3 else gray[:, None]


# --------------------------------------------------------------------------- modalities


def chest_xray(ctx: Context) -> np.ndarray:
    """Frontal chest radiograph: torso, two dark lung fields over a domed diaphragm, heart
    and mediastinum, spine with vertebrae, clavicles and rib arcs; grayscale.

    Structure: rib spacing, 0.16 (s=0) to 0.30 (s=1) canonical units between ribs.
    """
    u, v, px = ctx.u, ctx.v, ctx.pixel
    au = np.abs(u)
    soft = np.maximum(px, np.float32(0.02))

    # Torso: a superellipse narrowing into rounded shoulders, plus the neck; air outside.
    half_w = 0.92 - 0.3 * np.clip((-0.45 - v) * np.float32(1 / 0.55), 0.0, 1.0) ** 2
    qx = au / half_w
    qy = (v - np.float32(0.12)) * np.float32(1 / 1.05)
    qx *= qx
    qy *= qy
    q = qx * qx + qy * qy
    body = _inside(q - 1.0, 0.25 + 4 * px)
    body = np.maximum(body, _inside(au - 0.2, soft) * _inside(-0.6 - v, 0.1))
    img = 0.06 + 0.50 * body + 0.08 * body * np.clip(au - 0.6, 0.0, 0.4)

    # Lungs (mirror-symmetric via |u|): tall fields, narrow apex, wide base, cut below by the
    # domed diaphragm, which leaves the costophrenic angles deepest.
    lung_w = 0.19 + 0.07 * ctx.e(0) + 0.12 * np.clip((v + 0.75) * np.float32(1 / 1.2), 0, 1)
    lung_h = 0.62 + 0.08 * ctx.e(1)
    lq = ((au - 0.41) / lung_w) ** 2 + ((v + 0.02) / lung_h) ** 2
    lung = _inside(np.sqrt(lq) - 1.0, 0.1 + soft / lung_w)
    dome = 0.30 + 0.08 * ctx.e(4) + 1.1 * (au - 0.38) ** 2
    lung *= _inside(v - dome, soft + 0.03)

    # Heart to the patient's left (image right) and the mediastinum over the midline.
    hx = 0.14 + 0.08 * ctx.e(2)
    hr = 0.31 + 0.07 * ctx.e(3)
    hq = ((u - hx) / hr) ** 2 + ((v - 0.28) * np.float32(1 / 0.26)) ** 2
    heart = _inside(np.sqrt(hq) - 1.0, 0.2 + soft / hr)
    medi = _inside(au - 0.12, soft) * _inside(v - 0.3, 0.1)
    opaque = np.maximum(heart, medi)
    air = lung * (1.0 - opaque)
    img -= air * (0.30 + 0.06 * np.clip(-v, 0.0, 1.0) + 0.04 * ctx.e(5))
    img += 0.04 * air * _smooth_noise(ctx, 9)  # vascular markings

    # Spine: a bright column with vertebral segments.
    spine = _inside(au - 0.065, soft) * body
    img += spine * (0.12 + 0.05 * np.cos(v * np.float32(_TAU / 0.13)))

    # Clavicles: bars rising from the sternum towards the shoulders.
    clav_v = -0.70 - 0.15 * au
    clav = (
        _inside(np.abs(v - clav_v) - 0.035, soft)
        * _inside(au - 0.70, soft)
        * _inside(0.08 - au, soft)
    )
    img += 0.16 * clav

    # Posterior ribs: arcs convex upwards across each hemithorax; anterior ribs, fainter,
    # run the other way (down towards the sternum).
    spacing = 0.16 + 0.14 * ctx.structure
    post = np.cos((v - 1.1 * (au - 0.36) ** 2) * (_TAU / spacing))
    ante = np.cos((v + 0.55 * au) * (_TAU / spacing) + ctx.e(6) * _TAU)
    rib = np.clip((post - 0.35) * np.float32(1 / 0.65), 0.0, 1.0)
    rib += 0.45 * np.clip((ante - 0.5) * np.float32(1 / 0.5), 0.0, 1.0)
    cage = body * _inside(0.07 - au, soft) * _inside(au - 0.86, 0.05) * _inside(v - 0.55, 0.1)
    cage *= _inside(-0.9 - v, 0.1)
    img += rib * cage * (0.05 + 0.13 * lung) * _fade(spacing, px)
    return _gray_or_rgb(img, ctx.channels)


def oct(ctx: Context) -> np.ndarray:
    """Retinal OCT B-scan: dark vitreous, a wavy retina with a foveal pit, alternating
    bright / dark layers, a bright RPE band, fading choroid below; speckle throughout.

    Structure: number of bright retinal layers, round(3 + 4·s), i.e. 3 to 7.
    """
    u, v, px = ctx.u, ctx.v, ctx.pixel
    pit_at = 0.35 * (ctx.e(0) - 0.5)
    pit = np.exp(-(((u - pit_at) * np.float32(1 / 0.2)) ** 2))
    surface = (
        -0.35
        + 0.2 * (ctx.e(1) - 0.5)
        + 0.07 * np.sin(u * (1.5 + 2.0 * ctx.e(2)) + ctx.e(3) * _TAU)
        + (0.12 * ctx.e(4)) * u * u
        + (0.08 + 0.08 * ctx.e(5)) * pit
    )
    thick = (0.78 + 0.2 * ctx.e(6)) * (1.0 - 0.35 * pit)
    d = (v - surface) / thick  # 0 at the inner surface, 1 at the RPE

    n_layers = np.round(3.0 + 4.0 * ctx.structure)
    # Slightly wavy internal boundaries, then a cosine per layer: bright crests, dark troughs.
    dw = d + 0.02 * np.sin(u * 9.0 + ctx.e(7) * _TAU)
    layers = 0.5 + 0.5 * np.cos(dw * n_layers * _TAU)
    period = thick / n_layers
    retina = _inside(-d, px / thick) * _inside(d - 1.0, px / thick)
    img = retina * (0.22 + (0.5 - 0.15 * d) * (0.25 + 0.75 * layers * _fade(period, px)))

    rpe = np.exp(-(((d - 1.04) * thick * np.float32(1 / 0.045)) ** 2))
    choroid = _inside(1.04 - d, 0.05) * np.exp(-(d - 1.04) * thick * 3.0)
    img += 0.75 * rpe + 0.35 * choroid * (1.0 + 0.35 * _smooth_noise(ctx, 12))
    img += 0.04  # vitreous

    speckle = fast_normal(ctx.rng, img.shape)
    img *= np.maximum(1.0 + 0.3 * speckle, 0.0)
    return _gray_or_rgb(img, ctx.channels)


# Optical densities of haematoxylin (Ruifrok & Johnston's vector) and eosin (R, G, B); eosin's
# blue absorption is raised from their 0.11 so the stroma reads pink rather than magenta.
_OD_H = np.array([0.65, 0.70, 0.29], dtype=np.float32) * np.float32(1.9)
_OD_E = np.array([0.10, 0.95, 0.45], dtype=np.float32) * np.float32(0.75)


def pathology(ctx: Context) -> np.ndarray:
    """H&E-stained tissue: pink stroma with pale lumens, crowded purple nuclei; colours by
    Beer–Lambert mixing of the two stains.

    Structure: nuclei density, cell pitch 0.24 (s=0) to 0.12 (s=1) canonical units.
    """
    u, v, px = ctx.u, ctx.v, ctx.pixel
    # Domain warp so the lattice of nuclei looks like tissue, not a grid.
    uw = u + 0.05 * np.sin(v * 6.0 + ctx.e(0) * _TAU) + 0.03 * np.sin(v * 13.0 + ctx.e(1) * 9)
    vw = v + 0.05 * np.sin(u * 5.0 + ctx.e(2) * _TAU) + 0.03 * np.sin(u * 11.0 + ctx.e(3) * 9)

    field = _waves(ctx, 4, 3.0 + 2.0 * ctx.e(7), uw, vw)
    lumen = np.clip((field - 0.55) * 4.0, 0.0, 1.0) * (ctx.e(8) < 0.8)
    eosin = (0.55 + 0.3 * ctx.e(9) + 0.15 * _smooth_noise(ctx, 10)) * (1.0 - 0.9 * lumen)

    pitch = 0.24 - 0.12 * ctx.structure  # (B, 1, 1)
    nuclei = np.zeros_like(u)
    for layer, (rel, keep) in enumerate(((1.0, 0.85), (1.37, 0.55))):
        cell = pitch * rel
        gu, gv = uw / cell + 0.5 * layer, vw / cell + 0.31 * layer
        iu, iv = np.floor(gu), np.floor(gv)
        h = _hash(iu.astype(np.int32), iv.astype(np.int32), ctx.hash_seed + np.uint32(layer))
        fu = gu - iu - 0.5 - (_byte(h, 0) - 0.5) * 0.3
        fv = gv - iv - 0.5 - (_byte(h, 1) - 0.5) * 0.3
        radius = 0.17 + 0.1 * _byte(h, 2)
        stretch = 1.0 + 0.5 * (_byte(h, 3) - 0.5)  # elongated nuclei
        dist = np.sqrt(fu * fu * stretch + fv * fv / stretch) - radius  # in cell units
        present = _byte(h, 3) * 0.5 + _byte(h, 1) * 0.5 < keep
        nucleus = _inside(dist, px / cell) * present * (0.7 + 0.3 * _byte(h, 0))
        nuclei = np.maximum(nuclei, nucleus)
    nuclei *= 1.0 - 0.8 * lumen

    if ctx.channels == 1:
        od = nuclei * float(LUMA @ _OD_H) + eosin * float(LUMA @ _OD_E)
        return np.exp(-od)[:, None]
    od = nuclei[:, None] * _OD_H[None, :, None, None] + eosin[:, None] * _OD_E[None, :, None, None]
    return np.exp(-od)


_SKIN = np.array([0.90, 0.72, 0.63], dtype=np.float32)
_SKIN_DARK = np.array([0.76, 0.55, 0.42], dtype=np.float32)
_PIGMENT = np.array([0.30, 0.17, 0.10], dtype=np.float32)


def dermatoscopy(ctx: Context) -> np.ndarray:
    """Dermoscopy of a pigmented lesion: skin, a brown lesion with an irregular border, a
    darker centre and a reticular pigment network, an occasional hair, and sometimes the
    dark circular rim of the dermatoscope's lens.

    Structure: lesion size, mean radius 0.22 (s=0) to 0.62 (s=1) canonical units.
    """
    u, v, px = ctx.u, ctx.v, ctx.pixel
    du = u - 0.25 * (ctx.e(0) - 0.5)
    dv = v - 0.25 * (ctx.e(1) - 0.5)
    rho = np.sqrt(du * du + dv * dv) + 1e-6
    theta = np.arctan2(dv, du)
    radius = 0.22 + 0.40 * ctx.structure
    wobble = 1.0 + (
        0.16 * ctx.e(2) * np.cos(2 * theta + ctx.e(3) * _TAU)
        + 0.12 * ctx.e(4) * np.cos(3 * theta + ctx.e(5) * _TAU)
        + 0.07 * np.cos(5 * theta + ctx.e(6) * _TAU)
        + 0.04 * np.cos(9 * theta + ctx.e(7) * _TAU)
    )
    edge = radius * wobble
    lesion = _inside(rho - edge, np.maximum(px, 0.05 * radius))
    core = np.clip(1.0 - rho / edge, 0.0, 1.0)
    net_period = 0.10
    nu = du + 0.03 * np.sin(dv * 23.0 + ctx.e(12) * _TAU)  # warped: a network, not a grid
    nv = dv + 0.03 * np.sin(du * 19.0 + ctx.e(13) * _TAU)
    net = np.cos(nu * (_TAU / net_period)) * np.cos(nv * (_TAU / net_period))
    pigment = lesion * (0.5 + 0.4 * core + 0.12 * net * _fade(net_period, px))
    pigment = np.clip(pigment, 0.0, 1.0)

    # Hairs: up to two thin, slightly curved dark lines.
    hair = np.zeros_like(u)
    for j in range(2):
        a = ctx.e(8 + j) * _TAU
        along = -np.sin(a) * u + np.cos(a) * v
        offset = 1.6 * (ctx.e(12 + j) - 0.5)
        dist = np.abs(np.cos(a) * u + np.sin(a) * v - offset + 0.2 * along**2)
        width = np.maximum(px, 0.02)
        on = ctx.e(10 + j) > 0.55
        hair = np.maximum(hair, _inside(dist - 0.008, width) * (0.016 / width) * on)

    tone = ctx.e(15)
    texture = 1.0 + 0.035 * _smooth_noise(ctx, 14)
    r_lens = np.sqrt(ctx.x * ctx.x + ctx.y * ctx.y)
    lens = _inside(r_lens - (0.96 + 0.9 * ctx.e(14)), 0.06)  # radius > 1.42: no rim visible

    if ctx.channels == 1:
        skin = float(LUMA @ _SKIN) * (1 - tone) + float(LUMA @ _SKIN_DARK) * tone
        img = (skin * (1.0 - pigment) + float(LUMA @ _PIGMENT) * pigment) * texture
        img = img * (1.0 - 0.8 * hair) * lens
        return img[:, None]
    skin_rgb = (
        _SKIN[None, :, None, None] * (1 - tone[:, None])
        + _SKIN_DARK[None, :, None, None] * tone[:, None]
    )
    p = pigment[:, None]
    img = skin_rgb * (1.0 - p) + _PIGMENT[None, :, None, None] * p
    img *= (texture * (1.0 - 0.8 * hair) * lens)[:, None]
    return img
