"""Preprocessing: turn the data's images into what the model expects.

Datasets yield float32 (C, H, W) images in [0, 1]. A model may want another size, another
channel count, or inputs normalised to −1..1 or ImageNet statistics. :func:`plan_preprocess`
decides, once, from the model's input spec, the data and the user's options, what to do;
the resulting :class:`Preprocess` is applied to whole batches (in DataLoader workers when there
are any) and recorded in provenance.

Channel conversions: 1 → 3 (repeat), 3 → 1 (ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B),
4 → 3 (drop alpha), 4 → 1 (drop alpha, then luma). Resizing is bilinear with antialiasing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import ConfigError, ModelError
from latentdiag.runners.base import InputSpec

__all__ = [
    "NORMALIZATIONS",
    "Normalization",
    "Preprocess",
    "VectorPreprocess",
    "data_hint",
    "parse_normalize",
    "plan_preprocess",
    "plan_vector_preprocess",
]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Normalization:
    """``x → (x − mean) / std`` per channel, applied to images in [0, 1].

    Attributes:
        name: ``0..1``, ``-1..1``, ``imagenet`` or ``custom``.
        mean: One value per channel, or one value for all.
        std: One value per channel, or one value for all.
    """

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def is_identity(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)


NORMALIZATIONS: dict[str, Normalization] = {
    "0..1": Normalization("0..1", (0.0,), (1.0,)),
    "-1..1": Normalization("-1..1", (0.5,), (0.5,)),
    "imagenet": Normalization("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def parse_normalize(text: str | None) -> Normalization:
    """Read a ``--normalize`` value.

    Args:
        text: ``0..1`` (default: images as they are), ``-1..1``, ``imagenet``, or explicit
            ``MEAN:STD`` with comma-separated per-channel values, e.g.
            ``0.5,0.5,0.5:0.25,0.25,0.25`` or ``0.1307:0.3081``.

    Returns:
        The normalisation.

    Raises:
        ConfigError: The value is none of these, or a std is not positive.
    """
    if text is None or text == "":
        return NORMALIZATIONS["0..1"]
    key = text.strip().lower()
    if key in NORMALIZATIONS:
        return NORMALIZATIONS[key]
    if ":" in key:
        mean_text, std_text = key.split(":", 1)
        try:
            mean = tuple(float(v) for v in mean_text.split(","))
            std = tuple(float(v) for v in std_text.split(","))
        except ValueError:
            mean, std = (), ()
        if mean and std:
            if any(not s > 0 or not math.isfinite(s) for s in std):
                raise ConfigError(f"--normalize std values must be positive; got {text!r}.")
            if not all(math.isfinite(m) for m in mean):
                raise ConfigError(f"--normalize mean values must be finite; got {text!r}.")
            return Normalization("custom", mean, std)
    raise ConfigError(
        f"--normalize must be 0..1, -1..1, imagenet or MEAN:STD (comma-separated per channel, "
        f"e.g. 0.5,0.5,0.5:0.25,0.25,0.25); got {text!r}."
    )


def _convertible(src: int, dst: int) -> bool:
    return src == dst or (src, dst) in {(1, 3), (3, 1), (4, 3), (4, 1)}


@dataclass(frozen=True)
class Preprocess:
    """What to do to each batch between the data and the model.

    Attributes:
        in_channels: C of the data's images.
        in_size: (H, W) of the data's images.
        channels: C the model gets.
        size: (H, W) the model gets.
        normalization: Applied last.
    """

    in_channels: int
    in_size: tuple[int, int]
    channels: int
    size: tuple[int, int]
    normalization: Normalization

    @property
    def is_identity(self) -> bool:
        return (
            self.in_channels == self.channels
            and self.in_size == self.size
            and self.normalization.is_identity
        )

    @property
    def resizes(self) -> bool:
        """Whether batches are resized (work worth a prefetch thread)."""
        return self.in_size != self.size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Apply to a batch.

        Args:
            images: (B, C_in, H_in, W_in) float32 in [0, 1].

        Returns:
            (B, C, H, W) float32, C-contiguous.
        """
        x = images
        if x.shape[1:] != (self.in_channels, *self.in_size):
            raise ModelError(
                f"images of shape {tuple(x.shape[1:])} reached a preprocessing step planned "
                f"for {(self.in_channels, *self.in_size)}; every image of a data source must "
                "have the same shape."
            )
        if self.in_channels != self.channels:
            x = _convert_channels(x, self.channels)
        if self.in_size != self.size:
            x = _resize(x, self.size)
        norm = self.normalization
        if not norm.is_identity:
            mean = np.asarray(norm.mean, dtype=np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(norm.std, dtype=np.float32).reshape(1, -1, 1, 1)
            x = (x - mean) / std
        return np.ascontiguousarray(x, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What provenance records."""
        return {
            "input_shape": [self.in_channels, *self.in_size],
            "model_shape": [self.channels, *self.size],
            "resize": "bilinear-antialias" if self.in_size != self.size else None,
            "channels": (
                f"{self.in_channels}->{self.channels}"
                if self.in_channels != self.channels
                else None
            ),
            "normalize": self.normalization.name,
            "mean": list(self.normalization.mean),
            "std": list(self.normalization.std),
        }


@dataclass(frozen=True)
class VectorPreprocess:
    """Feature vectors reach the model as they are: (B, F) float32, checked, never resized.

    Standardization, when asked for, is the data's (``VectorDataset(standardize=...)``) and
    recorded here so that it is part of the job's identity and of the provenance.

    Attributes:
        features: F, the number of features of the data and of the model's input.
        standardized: Whether the data standardizes each feature.
        dtype: The stored dtype of the data (``float32``, ``int64``, ...), for provenance.
    """

    features: int
    standardized: bool = False
    dtype: str = "float32"

    @property
    def is_identity(self) -> bool:
        return True

    @property
    def resizes(self) -> bool:
        return False

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.ndim != 2 or vectors.shape[1] != self.features:
            raise ModelError(
                f"vectors of shape {tuple(vectors.shape[1:])} reached a step planned for "
                f"({self.features},); every row of a data source must have the same features."
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What provenance records."""
        return {
            "input": "vectors",
            "features": self.features,
            "dtype": self.dtype,
            "standardize": self.standardized,
        }


def plan_vector_preprocess(
    spec: InputSpec,
    *,
    features: int,
    standardized: bool = False,
    dtype: str = "float32",
    normalize: str | None = None,
) -> VectorPreprocess:
    """Check that a model takes vectors of the data's width, and plan feeding them.

    Args:
        spec: The model's input spec.
        features: F of the data.
        standardized: Whether the data standardizes its features.
        dtype: The data's stored dtype.
        normalize: Must be None: ``--normalize`` is for images (``--standardize`` is the
            data option for vectors).

    Raises:
        ModelError: The model takes images, or vectors of another width.
        ConfigError: ``--normalize`` was given.
    """
    if normalize not in (None, "", "0..1"):
        raise ConfigError(
            f"--normalize {normalize} applies to images; for vector data use --standardize "
            "(each feature to mean 0 and standard deviation 1 over the data)."
        )
    where = f"model input {spec.name!r} expects {spec.shape_text()}"
    if spec.layout != "flat":
        raise ModelError(
            f"{where}: images, but the data holds vectors of {features:,} features; give the "
            "model images, or a model whose input is (B, F)."
        )
    if spec.features is not None and spec.features != features:
        raise ModelError(
            f"{where}, but the data has {features:,} features per row; give data with "
            f"{spec.features:,} features (or choose them with --feature-columns)."
        )
    return VectorPreprocess(features=int(features), standardized=standardized, dtype=dtype)


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    src = x.shape[1]
    if src == 4:
        x = x[:, :3]  # drop alpha
        src = 3
    if src == channels:
        return x
    if src == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if src == 3 and channels == 1:
        return np.tensordot(x, _LUMA, axes=([1], [0]))[:, None].astype(np.float32)
    raise AssertionError(f"unplanned channel conversion {src} -> {channels}")


def _resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x))
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.numpy()


def plan_preprocess(
    spec: InputSpec,
    *,
    data_channels: int,
    data_size: int | tuple[int, int],
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    normalize: str | Normalization | None = None,
) -> Preprocess:
    """Decide how the data's images become the model's input.

    The model's own input spec wins; ``channels`` / ``size`` fill in what it leaves open (and
    must agree with what it fixes); the data's shape fills in the rest.

    Args:
        spec: The model's image input.
        data_channels: C of the data's images.
        data_size: H == W of the data's images, or (H, W).
        channels: Channel count asked for by the user (``--channels``).
        size: Size asked for by the user (``--size``).
        normalize: A ``--normalize`` value or a :class:`Normalization`.

    Returns:
        The plan.

    Raises:
        ModelError: The data cannot be made to fit the model's input (says expected vs got).
        ConfigError: A bad ``--normalize`` value, or one with the wrong number of channels.
    """
    in_size = _pair(data_size)
    user_size = None if size is None else _pair(size)
    where = f"model input {spec.name!r} expects {spec.shape_text()}"
    if spec.layout == "flat":
        out_c, out_size = _plan_flat(spec, data_channels, in_size, channels, user_size, where)
    else:
        model_c = 1 if spec.layout == "NHW" else spec.channels
        if model_c is not None and channels is not None and channels != model_c:
            raise ModelError(f"{where}; --channels {channels} contradicts it.")
        out_c = model_c or channels or data_channels
        h, w = spec.height, spec.width
        if user_size is not None and (
            (h is not None and h != user_size[0]) or (w is not None and w != user_size[1])
        ):
            raise ModelError(f"{where}; --size {user_size[0]}x{user_size[1]} contradicts it.")
        fill = user_size or in_size
        out_size = (h or fill[0], w or fill[1])
    if not _convertible(data_channels, out_c):
        raise ModelError(
            f"{where} with {out_c} channels; the data has {data_channels}-channel images, and "
            "latentdiag converts only 1→3, 3→1 and 4→3 or 4→1 (alpha dropped); give data "
            "with the channels the model takes."
        )
    norm = normalize if isinstance(normalize, Normalization) else parse_normalize(normalize)
    for values, what in ((norm.mean, "mean"), (norm.std, "std")):
        if len(values) not in (1, out_c):
            raise ConfigError(
                f"--normalize has {len(values)} {what} values but the model takes {out_c} "
                f"channels; give 1 or {out_c}."
            )
    return Preprocess(
        in_channels=int(data_channels),
        in_size=in_size,
        channels=int(out_c),
        size=(int(out_size[0]), int(out_size[1])),
        normalization=norm,
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    a, b = size
    return int(a), int(b)


def _plan_flat(
    spec: InputSpec,
    data_channels: int,
    in_size: tuple[int, int],
    channels: int | None,
    user_size: tuple[int, int] | None,
    where: str,
) -> tuple[int, tuple[int, int]]:
    """Channels and size for a model that takes (B, C·H·W) vectors."""
    features = spec.features
    c_try = channels or data_channels
    size_try = user_size or in_size
    if features is None or c_try * size_try[0] * size_try[1] == features:
        return c_try, size_try
    if channels is not None and user_size is not None:
        raise ModelError(
            f"{where}; --channels {channels} and --size {user_size[0]}x{user_size[1]} give "
            f"{channels * user_size[0] * user_size[1]} features."
        )
    # Find a square C×S×S with C·S·S == features, preferring the data's channel count.
    candidates = [channels] if channels is not None else [data_channels, 1, 3]
    for c in candidates:
        if c is None or features % c or not _convertible(data_channels, c):
            continue
        if user_size is not None:
            if c * user_size[0] * user_size[1] == features:
                return c, user_size
            continue
        side = math.isqrt(features // c)
        if side * side * c == features:
            return c, (side, side)
    c0, (h0, w0) = data_channels, in_size
    raise ModelError(
        f"{where}; the data's images are {c0}×{h0}×{w0} = {c0 * h0 * w0} values and no "
        f"C×S×S image (C = 1 or 3) gives {features}; pass --channels and --size that multiply "
        f"to {features}."
    )


def data_hint(spec: InputSpec) -> tuple[int | None, int | None]:
    """The square size and channel count (1 or 3) a model fixes, for the data loader.

    Handing these to :func:`latentdiag.data.open_dataset` resizes and converts images while
    they are decoded (in DataLoader workers), so preprocessing has less left to do.

    Returns:
        ``(size, channels)``, each None where the model does not fix it.
    """
    size = spec.height if spec.height is not None and spec.height == spec.width else None
    channels = 1 if spec.layout == "NHW" else spec.channels
    return size, channels if channels in (1, 3) else None
