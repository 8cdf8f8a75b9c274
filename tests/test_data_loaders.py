"""Every loader behind open_dataset, on small files the tests write: image folders, MedMNIST-style
and plain .npz, .npy with .npy / .csv labels, HDF5, digits, synthetic; and write_dataset."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from latentdiag.data import (
    ArrayDataset,
    DataWarning,
    ImageDataset,
    generate_synthetic,
    open_dataset,
    write_dataset,
)
from latentdiag.data.arrays import LazyArrayDataset
from latentdiag.data.folder import FolderDataset


def check_items(ds: ImageDataset, *, n_check: int = 3) -> None:
    """The item dict contract of latentdiag.data.base, on the first few items."""
    for i in range(min(n_check, len(ds))):
        item = ds[i]
        assert set(item) == {"image", "label", "factors", "sample_id", "index"}
        img = item["image"]
        assert img.dtype == np.float32 and img.shape == ds.image_shape
        assert img.min() >= 0.0 and img.max() <= 1.0
        assert isinstance(item["label"], int)
        if ds.label_names is None:
            assert item["label"] == -1
        else:
            assert 0 <= item["label"] < len(ds.label_names)
        assert item["factors"].dtype == np.float32
        assert item["factors"].shape == ((len(ds.factor_names),) if ds.factor_names else (0,))
        assert isinstance(item["sample_id"], str) and item["sample_id"]
        assert item["index"] == i


def save_image(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def gradient(h: int, w: int, c: int | None = None) -> np.ndarray:
    """A uint8 test image whose pixel values are known."""
    g = (np.add.outer(np.arange(h), np.arange(w)) * (255 // max(1, h + w - 2))).astype(np.uint8)
    return g if c is None else np.stack([g] * c, axis=-1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three labels, PNG / JPEG / TIFF / BMP, gray / RGB / RGBA, two sizes, a note file."""
    root = tmp_path / "images"
    save_image(root / "cat" / "a.png", gradient(16, 16))
    save_image(root / "cat" / "b.jpg", gradient(16, 16, 3))
    save_image(root / "cat" / "deep" / "c.tif", gradient(16, 16))
    save_image(root / "dog" / "d.bmp", gradient(16, 16, 3))
    save_image(root / "dog" / "e.png", gradient(16, 16, 4))
    save_image(root / "10_bird" / "f.png", gradient(16, 16))
    save_image(root / "10_bird" / "g.png", gradient(16, 16))
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------- folders


def test_folder_labels_from_subfolders_and_lazy_paths(folder: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(str(folder))
    assert isinstance(ds, FolderDataset)
    assert ds.label_names == ["10_bird", "cat", "dog"]  # natural sort: 10 is a number
    assert len(ds) == 7
    assert ds.paths[:4] == ["10_bird/f.png", "10_bird/g.png", "cat/a.png", "cat/b.jpg"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert ds.skipped == {"not_image": 1, "unreadable": 0, "no_label": 0}
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert messages == [f"{folder}: skipped 1 non-image file (dog/notes.txt)."]
    assert ds.size == 16 and ds.channels == 1  # most images are grayscale
    check_items(ds, n_check=7)
    assert ds[4]["sample_id"] == "cat/deep/c.tif"


def test_folder_decodes_nothing_until_an_item_is_asked_for(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening reads headers only; pixels are decoded per item (so big folders stream)."""
    import latentdiag.data.folder as folder_module

    decoded: list[str] = []
    real = folder_module.decode_image

    def spy(path: str, **kwargs: object) -> np.ndarray:
        decoded.append(path)
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(folder_module, "decode_image", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = open_dataset(str(folder))
    assert decoded == []
    assert not any(isinstance(v, np.ndarray) and v.ndim > 1 for v in vars(ds).values())
    ds[2]
    assert decoded == [str(folder / "cat" / "a.png")]


def test_folder_converts_channels_and_size(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        rgb = open_dataset(str(folder), channels=3, size=8)
        gray = open_dataset(str(folder), channels=1)
    assert rgb.image_shape == (3, 8, 8)
    check_items(rgb, n_check=7)
    # a gray PNG repeated into three equal planes; an RGBA PNG loses its alpha
    img = rgb[1]["image"]
    assert np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])
    # pixel values survive a lossless round trip exactly
    assert np.allclose(gray[1]["image"][0], gradient(16, 16) / 255, atol=1e-6)
    assert np.allclose(gray[6]["image"][0], gradient(16, 16) / 255, atol=1 / 255 + 1e-6)


def test_folder_without_subfolders_is_unlabelled(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / f"{i}.png", gradient(8, 8))
    ds = open_dataset(str(tmp_path))
    assert ds.label_names is None and not ds.has_labels
    check_items(ds)


def test_folder_non_square_images_are_centre_cropped(tmp_path: Path) -> None:
    wide = np.zeros((8, 16), np.uint8)
    wide[:, 4:12] = 255  # the centre square is white, the sides black
    save_image(tmp_path / "a" / "wide.png", wide)
    ds = open_dataset(str(tmp_path))
    assert ds.size == 8
    assert ds[0]["image"].min() == 1.0


def test_folder_subset_keeps_label_names_of_remaining_images(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = open_dataset(str(folder), n=4, seed=1)
        again = open_dataset(str(folder), n=4, seed=1)
    assert len(ds) == 4
    assert ds.paths == again.paths
    assert all(0 <= lab < len(ds.label_names) for lab in ds.labels)


def test_folder_dataloader_with_workers_and_pickle(folder: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = open_dataset(str(folder), size=8, channels=3)
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone[2]["image"], ds[2]["image"])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert [b["image"].shape for b in batches] == [(4, 3, 8, 8), (3, 3, 8, 8)]
    assert torch.cat([b["label"] for b in batches]).tolist() == ds.labels.tolist()
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(7))
    assert batches[0]["sample_id"][0] == "10_bird/f.png"


def test_folder_16_bit_png(tmp_path: Path) -> None:
    deep = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    save_image(tmp_path / "x" / "deep.png", deep)
    ds = open_dataset(str(tmp_path))
    assert ds.channels == 1
    assert np.allclose(ds[0]["image"], 0.5, atol=1e-4)


# --------------------------------------------------------------------------- .npz


def medmnist(tmp_path: Path, *, rgb: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 10), ("test", 12)):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (n, 1), dtype=np.uint8)
        arrays[f"{split}_labels"][:3, 0] = [0, 1, 2]
    path = tmp_path / ("rgbmnist.npz" if rgb else "pneumoniamnist.npz")
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_splits(tmp_path: Path) -> None:
    path = medmnist(tmp_path)
    raw = np.load(path)
    train = open_dataset(str(path))
    test = open_dataset(str(path), split="test")
    assert isinstance(train, ArrayDataset)
    assert len(train) == 30 and len(test) == 12
    assert train.image_shape == (1, 28, 28)
    assert train.label_names == ["0", "1", "2"]
    assert train[5]["label"] == int(raw["train_labels"][5, 0])
    assert np.allclose(train[5]["image"][0], raw["train_images"][5] / 255)
    assert test[0]["sample_id"] == "pneumoniamnist.npz:test[0]"
    check_items(train)


def test_medmnist_rgb_npz_resized_to_gray(tmp_path: Path) -> None:
    ds = open_dataset(str(medmnist(tmp_path, rgb=True)), size=32, channels=1, split="val")
    assert ds.image_shape == (1, 32, 32) and len(ds) == 10
    check_items(ds)
    native = open_dataset(str(medmnist(tmp_path, rgb=True)))
    assert native.image_shape == (3, 28, 28)


def test_plain_npz_float_images(tmp_path: Path) -> None:
    images = np.random.default_rng(1).random((12, 10, 10)).astype(np.float32)
    np.savez(tmp_path / "plain.npz", images=images, labels=np.arange(12) % 2)
    ds = open_dataset(str(tmp_path / "plain.npz"))
    assert np.allclose(ds[4]["image"][0], images[4])
    assert ds.label_names == ["0", "1"]
    check_items(ds)


def test_npz_keys_by_name(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", x=np.zeros((5, 8, 8), np.uint8), y=np.array([3, 3, 4, 4, 3]))
    with pytest.warns(DataWarning, match=r"label values are not 0\.\.k-1 \(found 3, 4\)"):
        ds = open_dataset(str(tmp_path / "k.npz"), images_key="x", labels_key="y")
    assert ds.label_names == ["3", "4"]
    assert [ds[i]["label"] for i in range(5)] == [0, 0, 1, 1, 0]


def test_npz_channel_first_stack(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "chw.npz", images=images)
    ds = open_dataset(str(tmp_path / "chw.npz"))
    assert ds.image_shape == (3, 12, 12) and not ds.has_labels
    assert np.allclose(ds[1]["image"], images[1] / 255)


# --------------------------------------------------------------------------- .npy


@pytest.mark.parametrize("labels_kind", ["npy", "csv", "csv-header", "csv-strings"])
def test_npy_with_labels_file(tmp_path: Path, labels_kind: str) -> None:
    images = np.random.default_rng(3).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "im.npy", images)
    values = [0, 1, 2, 1, 0, 2, 2, 1]
    if labels_kind == "npy":
        labels = tmp_path / "lab.npy"
        np.save(labels, np.array(values))
    else:
        labels = tmp_path / "lab.csv"
        words = ["benign", "malignant", "normal"]
        rows = [words[v] for v in values] if labels_kind == "csv-strings" else values
        head = "filename,label\n" if labels_kind == "csv-header" else ""
        body = "\n".join(
            f"img{i}.png,{v}" if labels_kind == "csv-header" else str(v) for i, v in enumerate(rows)
        )
        labels.write_text(head + body + "\n")
    ds = open_dataset(str(tmp_path / "im.npy"), labels=str(labels))
    assert ds.image_shape == (3, 16, 16)
    assert [ds[i]["label"] for i in range(8)] == values
    expected = (
        ["benign", "malignant", "normal"] if labels_kind == "csv-strings" else ["0", "1", "2"]
    )
    assert ds.label_names == expected
    assert ds[7]["sample_id"] == "im.npy[7]"
    check_items(ds)


def test_npy_without_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.zeros((4, 8, 8), np.float64))
    ds = open_dataset(str(tmp_path / "im.npy"), size=4)
    assert not ds.has_labels and ds.image_shape == (1, 4, 4)
    check_items(ds)


def test_npy_bigger_than_memory_budget_is_read_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentdiag.data.arrays as arrays

    images = np.random.default_rng(4).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "big.npy", images)
    monkeypatch.setattr(arrays, "IN_MEMORY_BYTES", 100)
    ds = open_dataset(str(tmp_path / "big.npy"), channels=3, n=10, seed=0)
    assert isinstance(ds, LazyArrayDataset)
    check_items(ds)
    clone = pickle.loads(pickle.dumps(ds))
    row = int(ds.sample_ids[3].split("[")[1].rstrip("]"))
    assert np.allclose(clone[3]["image"][2], images[row] / 255)


# --------------------------------------------------------------------------- HDF5


def test_hdf5_auto_detects_images_labels_and_names(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["x/images"] = np.random.default_rng(5).random((9, 20, 20)).astype(np.float32)
        f["x/labels"] = np.arange(9) % 3
        f.attrs["label_names"] = ["a", "b", "c"]
    ds = open_dataset(str(path))
    assert ds.label_names == ["a", "b", "c"]
    assert ds.image_shape == (1, 20, 20)
    assert ds[4]["label"] == 1 and ds[4]["sample_id"] == "d.h5:/x/images[4]"
    check_items(ds)


def test_hdf5_named_datasets_and_lazy_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentdiag.data.arrays as arrays

    path = tmp_path / "d.hdf5"
    images = np.random.default_rng(6).integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["scans"] = images
        f["other"] = np.zeros((12, 4, 4))
        f["modality"] = np.arange(12) % 2
    monkeypatch.setattr(arrays, "IN_MEMORY_BYTES", 10)
    ds = open_dataset(str(path), images_key="/scans", labels_key="modality", size=8)
    assert isinstance(ds, LazyArrayDataset)
    assert ds.image_shape == (3, 8, 8) and ds.label_names == ["0", "1"]
    check_items(ds)

    import torch

    batches = list(torch.utils.data.DataLoader(ds, batch_size=6, num_workers=2))
    assert torch.cat([b["label"] for b in batches]).tolist() == [0, 1] * 6


# --------------------------------------------------------------------------- built-ins


def test_digits() -> None:
    ds = open_dataset("digits")
    assert len(ds) == 1797 and ds.image_shape == (1, 8, 8)
    assert ds.label_names == [str(i) for i in range(10)]
    check_items(ds)
    big = open_dataset("digits", size=16, channels=3, n=100)
    assert len(big) == 100 and big.image_shape == (3, 16, 16)


def test_synthetic_source_defaults_and_options() -> None:
    ds = open_dataset("synthetic", n=40, seed=2)
    assert len(ds) == 40 and ds.image_shape == (1, 32, 32)
    assert ds.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
    assert ds.factor_names is not None and "structure" in ds.factor_names
    check_items(ds)
    direct = generate_synthetic(40, size=32, channels=1, seed=2)
    assert np.allclose(ds[0]["image"], direct.images[0] / 255)
    assert np.array_equal(ds[0]["factors"], direct.factors[0])
    assert len(open_dataset("synthetic", size=16)) == 4000


def test_existing_path_wins_over_builtin_name(tmp_path: Path, monkeypatch) -> None:
    save_image(tmp_path / "digits" / "one" / "a.png", gradient(8, 8))
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_dataset("digits"), FolderDataset)


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("channels", [1, 3])
def test_write_dataset_round_trip(tmp_path: Path, suffix: str, channels: int) -> None:
    d = generate_synthetic(12, size=16, channels=channels, seed=0)
    path = write_dataset(
        tmp_path / f"s{suffix}", d.images, d.labels, d.label_names, d.factors, d.factor_names
    )
    ds = open_dataset(str(path))
    assert ds.label_names == d.label_names and ds.factor_names == d.factor_names
    assert ds.image_shape == (channels, 16, 16)
    for i in range(12):
        item = ds[i]
        assert np.array_equal(np.round(item["image"] * 255).astype(np.uint8), d.images[i])
        assert item["label"] == d.labels[i]
        assert np.array_equal(item["factors"], d.factors[i])
    assert [p.name for p in tmp_path.iterdir()] == [f"s{suffix}"]  # no temporary left behind


def test_write_dataset_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while writing leaves neither a partial file nor a temporary one."""
    target = tmp_path / "out.npz"

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(target, np.zeros((2, 1, 8, 8), np.uint8), None, None)
    assert list(tmp_path.iterdir()) == []


def test_items_of_every_source_collate(tmp_path: Path) -> None:
    """The default collate of torch works on every kind of source (same keys, same shapes)."""
    import torch

    np.savez(tmp_path / "p.npz", images=np.zeros((4, 8, 8), np.uint8))
    for source in ["synthetic", "digits", str(tmp_path / "p.npz")]:
        ds = open_dataset(source, n=4, size=8)
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
        assert batch["image"].shape == (4, ds.channels, 8, 8)
