"""The synthetic pseudo-modalities: determinism, shapes, factors, and the two properties the
before/after demo relies on (shared factors dominate pixels; modalities remain learnable)."""

from __future__ import annotations

import numpy as np
import pytest

from latentdiag.data import SyntheticData, generate_synthetic
from latentdiag.data.synthetic import FACTOR_NAMES, FACTOR_RANGES, LABEL_NAMES
from latentdiag.errors import DataError


@pytest.fixture(scope="module")
def gray32() -> SyntheticData:
    return generate_synthetic(800, size=32, channels=1, seed=3)


def test_same_seed_same_bytes_other_seed_other_images() -> None:
    a = generate_synthetic(50, size=32, seed=7)
    b = generate_synthetic(50, size=32, seed=7)
    c = generate_synthetic(50, size=32, seed=8)
    assert np.array_equal(a.images, b.images)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.factors, b.factors)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_types(size: int, channels: int) -> None:
    d = generate_synthetic(9, size=size, channels=channels, seed=0)
    assert d.images.shape == (9, channels, size, size)
    assert d.images.dtype == np.uint8
    assert d.labels.dtype == np.int64 and d.labels.shape == (9,)
    assert d.factors.dtype == np.float32 and d.factors.shape == (9, len(FACTOR_NAMES))
    assert d.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
    assert d.factor_names == FACTOR_NAMES
    assert d.images.std() > 10  # not blank


def test_gray_modalities_stay_gray_in_rgb() -> None:
    d = generate_synthetic(40, size=32, channels=3, seed=0)
    for label, colored in enumerate([False, False, True, True]):
        imgs = d.images[d.labels == label].astype(int)
        spread = np.abs(imgs[:, 0] - imgs[:, 1]).mean() + np.abs(imgs[:, 1] - imgs[:, 2]).mean()
        assert (spread > 5) == colored, LABEL_NAMES[label]


def test_labels_balanced_and_shuffled() -> None:
    d = generate_synthetic(1001, size=16, seed=0)
    counts = np.bincount(d.labels, minlength=4)
    assert counts.max() - counts.min() <= 1
    assert not np.array_equal(d.labels[:8], np.arange(8) % 4)


def test_factors_within_documented_ranges(gray32: SyntheticData) -> None:
    assert set(FACTOR_NAMES) >= {
        "rotation",
        "scale",
        "shift_x",
        "shift_y",
        "brightness",
        "contrast",
        "noise",
        "structure",
    }
    for i, name in enumerate(gray32.factor_names):
        lo, hi = FACTOR_RANGES[name]
        col = gray32.factors[:, i]
        assert col.min() >= lo and col.max() <= hi, name
        assert col.std() > 0.2 * (hi - lo), name  # spread over the range, not constant


def test_brightness_and_contrast_mean_what_they_say(gray32: SyntheticData) -> None:
    x = gray32.images.reshape(len(gray32.images), -1).astype(np.float32) / 255
    f = dict(zip(gray32.factor_names, gray32.factors.T, strict=True))
    assert np.corrcoef(x.mean(1), f["brightness"])[0, 1] > 0.9
    assert np.corrcoef(x.std(1), f["contrast"])[0, 1] > 0.8


def test_structure_factor_changes_the_modality_structure() -> None:
    """Dermatoscopy: a bigger structure factor means a bigger lesion (more dark pixels)."""
    d = generate_synthetic(400, size=64, seed=2)
    derm = d.labels == LABEL_NAMES.index("dermatoscopy")
    s = d.factors[derm, FACTOR_NAMES.index("structure")]
    imgs = d.images[derm, 0].astype(np.float32)
    # Dark fraction relative to each image's own median (immune to brightness / contrast).
    dark = (imgs < np.median(imgs, axis=(1, 2), keepdims=True) - 30).mean(axis=(1, 2))
    assert np.corrcoef(s, dark)[0, 1] > 0.5


def test_shared_factors_dominate_pixel_variance(gray32: SyntheticData) -> None:
    """Most pixel variance is within modalities (what lets a plain VAE entangle them)."""
    x = gray32.images.reshape(len(gray32.images), -1).astype(np.float32) / 255
    total = x.var(0).sum()
    means = np.stack([x[gray32.labels == k].mean(0) for k in range(4)])
    between = ((means - x.mean(0)) ** 2).sum(1).mean()
    assert between / total < 0.25


def test_modalities_are_learnable(gray32: SyntheticData) -> None:
    """... yet a linear model on a few principal components tells the modalities apart."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x = gray32.images.reshape(len(gray32.images), -1).astype(np.float32) / 255
    z = PCA(32, random_state=0).fit_transform(x)
    acc = cross_val_score(LogisticRegression(max_iter=3000), z, gray32.labels, cv=3).mean()
    assert acc > 0.8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "the number of images must be at least 1; got 0"),
        ({"n": 4, "size": 4}, "image size must be 8 … 512 pixels"),
        ({"n": 4, "channels": 2}, "channels must be 1 (grayscale) or 3 (RGB); got 2"),
        ({"n": 4, "seed": -1}, "the seed must be a non-negative integer; got -1"),
    ],
)
def test_bad_arguments(kwargs: dict[str, int], message: str) -> None:
    n = kwargs.pop("n")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generate_synthetic(n, **kwargs)
