"""Turning whatever images a source holds into (C, S, S) arrays of the size and channels asked.

Two entry points: :func:`convert_batch` for arrays (npz, npy, HDF5, digits) and
:func:`decode_image` for image files (the folder source). Both apply the same rules:

* values: uint8 / 255, uint16 / 65535; other integers by the range they use; floats must lie in
  [0, 1] (or [0, 255], [-1, 1], which are rescaled with a warning);
* channels: gray → RGB repeats the plane; RGB → gray is luminance (ITU-R BT.601, as Pillow's
  ``"L"``); an alpha channel is dropped;
* size: a non-square image is centre-cropped to a square, then resized (bilinear, antialiased
  when shrinking) to ``size`` × ``size``.

uint8 input stays uint8 (the dataset divides by 255 per item); anything else becomes float32
in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.data._common import warn
from latentdiag.errors import DataError

__all__ = [
    "ValueScale",
    "convert_batch",
    "decode_image",
    "detect_layout",
    "native_channels",
    "value_scale",
]

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def detect_layout(shape: tuple[int, ...], where: str) -> str:
    """The layout of an image array: ``"NHW"``, ``"NHWC"`` or ``"NCHW"``.

    Channel-last wins when both readings are possible (MedMNIST and most tools store it so).

    Raises:
        DataError: The shape is no image stack.
    """
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        if shape[3] in (1, 2, 3, 4):
            return "NHWC"
        if shape[1] in (1, 2, 3, 4):
            return "NCHW"
        raise DataError(
            f"{where}: images of shape {tuple(shape)} have no channel axis of 1, 3 or 4 first or "
            "last; expected (N, H, W), (N, H, W, C) or (N, C, H, W)."
        )
    raise DataError(
        f"{where}: expected images of shape (N, H, W), (N, H, W, C) or (N, C, H, W), or vectors "
        f"(N, F); found shape {tuple(shape)}."
    )


def native_channels(shape: tuple[int, ...], layout: str) -> int:
    """1 or 3: the channels of the images once an alpha channel is dropped."""
    c = 1 if layout == "NHW" else shape[3] if layout == "NHWC" else shape[1]
    return 1 if c in (1, 2) else 3


def native_size(shape: tuple[int, ...], layout: str) -> int:
    """The side of the square the images are cropped to (their shorter side)."""
    h, w = (shape[1], shape[2]) if layout in ("NHW", "NHWC") else (shape[2], shape[3])
    return int(min(h, w))


@dataclass(frozen=True)
class ValueScale:
    """``x01 = (x + offset) * scale`` maps stored values to [0, 1]."""

    offset: float
    scale: float


def value_scale(dtype: np.dtype[Any], sample: np.ndarray, where: str) -> ValueScale:
    """How to bring values of ``dtype`` to [0, 1], judged on ``sample`` where the dtype alone
    does not say.

    Raises:
        DataError: Non-finite values, or a range that fits no convention.
    """
    if dtype == np.uint8:
        return ValueScale(0.0, 1 / 255)
    if dtype == np.bool_:
        return ValueScale(0.0, 1.0)
    if dtype == np.uint16:
        return ValueScale(0.0, 1 / 65535)
    if sample.size == 0:
        return ValueScale(0.0, 1.0)
    if np.issubdtype(dtype, np.floating):
        finite = np.isfinite(sample)
        if not finite.all():
            raise DataError(
                f"{where}: images contain {int((~finite).sum()):,} NaN or infinite values; "
                "expected finite values in [0, 1]; clean or drop those images."
            )
    lo, hi = float(sample.min()), float(sample.max())
    if np.issubdtype(dtype, np.integer):
        if lo >= 0 and hi <= 255:
            return ValueScale(0.0, 1 / 255)
        if lo >= 0 and hi <= 65535:
            return ValueScale(0.0, 1 / 65535)
        raise DataError(
            f"{where}: integer images must lie in 0..255 or 0..65535; found {lo:g}..{hi:g}; "
            "rescale them."
        )
    eps = 1e-3
    if lo >= -eps and hi <= 1 + eps:
        return ValueScale(0.0, 1.0)
    if lo >= -1 - eps and hi <= 1 + eps:
        warn(f"{where}: float images range over [{lo:.3g}, {hi:.3g}]; read as [-1, 1].")
        return ValueScale(1.0, 0.5)
    if lo >= -eps and hi <= 255 + eps:
        warn(f"{where}: float images range over [{lo:.3g}, {hi:.3g}]; read as 0..255.")
        return ValueScale(0.0, 1 / 255)
    raise DataError(
        f"{where}: float images must lie in [0, 1] (or [0, 255], [-1, 1]); found values from "
        f"{lo:.4g} to {hi:.4g}; rescale them."
    )


def convert_batch(
    raw: np.ndarray, *, layout: str, scale: ValueScale, channels: int, size: int
) -> np.ndarray:
    """Convert a stack of stored images to (n, channels, size, size).

    Args:
        raw: Images as stored, in ``layout``.
        layout: ``"NHW"``, ``"NHWC"`` or ``"NCHW"``.
        scale: How stored values map to [0, 1] (ignored for uint8, which stays uint8).
        channels: 1 or 3.
        size: Output side in pixels.

    Returns:
        uint8 (n, C, S, S) when ``raw`` is uint8, else float32 in [0, 1].
    """
    raw = np.asarray(raw)
    if layout == "NHW":
        x = raw[:, None]
    elif layout == "NHWC":
        x = raw.transpose(0, 3, 1, 2)
    else:
        x = raw
    keep_uint8 = x.dtype == np.uint8
    c_in = x.shape[1]
    if c_in == 4:  # RGBA: drop alpha
        x = x[:, :3]
    elif c_in == 2:  # gray + alpha
        x = x[:, :1]
    if not keep_uint8:
        x = ((x.astype(np.float32) + np.float32(scale.offset)) * np.float32(scale.scale)).clip(
            0.0, 1.0
        )
    if channels == 1 and x.shape[1] == 3:
        gray = np.tensordot(LUMA, x.astype(np.float32, copy=False), axes=(0, 1))[:, None]
        x = (gray + 0.5).astype(np.uint8) if keep_uint8 else gray
    elif channels == 3 and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)

    h, w = x.shape[2], x.shape[3]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        x = x[:, :, top : top + s, left : left + s]
    if x.shape[2] != size:
        x = _resize_stack(x, size)
    out = np.ascontiguousarray(x)
    return out if keep_uint8 else out.astype(np.float32, copy=False)


def _resize_stack(x: np.ndarray, size: int) -> np.ndarray:
    """Resize every plane of (n, C, s, s) to (size, size) with Pillow (bilinear)."""
    from PIL import Image

    out = np.empty((*x.shape[:2], size, size), dtype=x.dtype)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = Image.fromarray(np.ascontiguousarray(x[i, c]))
            out[i, c] = np.asarray(plane.resize((size, size), Image.Resampling.BILINEAR))
    return out


# --------------------------------------------------------------------------- image files

_GRAY_MODES = {"1", "L", "LA", "La", "P;gray", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_HIGH_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def mode_channels(mode: str) -> int:
    """1 for grayscale Pillow modes, 3 for the rest."""
    return 1 if mode in _GRAY_MODES else 3


def decode_image(
    path: str, *, channels: int, size: int, allow_truncated: bool = False
) -> np.ndarray:
    """Decode an image file to float32 (channels, size, size) in [0, 1].

    16-bit images are divided by 65535; 32-bit integer and float images by their own maximum
    when it exceeds the 16-bit or [0, 1] range.

    Args:
        path: The image file.
        channels: 1 or 3.
        size: Output side.
        allow_truncated: Decode what a truncated file holds (Pillow fills the rest).

    Raises:
        OSError, ValueError and Pillow's errors: the file cannot be decoded (the caller names
        the file in its message).
    """
    from PIL import ImageFile

    if not allow_truncated:
        return _decode(path, channels=channels, size=size)
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        return _decode(path, channels=channels, size=size)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _decode(path: str, *, channels: int, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG" and im.mode in ("L", "RGB", "CMYK", "YCbCr"):
            im.draft("L" if channels == 1 else "RGB", (size, size))  # DCT-domain downscale
        if im.mode in _HIGH_BIT_MODES:
            arr = np.asarray(im).astype(np.float32)
            top = float(arr.max(initial=0.0))
            if im.mode.startswith("I;16"):
                arr /= 65535.0
            elif im.mode == "I":
                arr /= 65535.0 if top <= 65535 else top
            elif top > 1.0:
                arr /= top
            img = Image.fromarray(np.clip(arr, 0.0, 1.0))  # mode "F"
            div = 1.0
        else:
            img = im.convert("L" if channels == 1 else "RGB")
            div = 255.0
        w, h = img.size
        if w != h:
            s = min(w, h)
            left, top_px = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top_px, left + s, top_px + s))
        if img.size[0] != size:
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32)
    if div != 1.0:
        arr = arr * np.float32(1.0 / div)
    if arr.ndim == 2:
        arr = arr[None]
        if channels == 3:
            arr = np.repeat(arr, 3, axis=0)
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)
