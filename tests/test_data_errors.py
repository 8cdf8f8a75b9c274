"""Every bad input a user can feed the data sources gives one clear ``Error:`` line (exit 1) or
one ``Warning:`` line, never a traceback. Run through ``latentdiag data preview``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from latentdiag.cli import cli
from latentdiag.data import DataWarning, open_dataset
from latentdiag.errors import DataError

SUFFIXES = ".png, .jpg, .jpeg, .tif, .tiff, .bmp, .gif, .webp, .pgm, .ppm"


def preview(tmp_path: Path, source: Path | str, *args: str) -> Result:
    out = tmp_path / "grid.png"
    return CliRunner().invoke(cli, ["data", "preview", str(source), "-o", str(out), *args])


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def warning_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], 128, np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- folders


def test_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert error_line(preview(tmp_path, root)) == (
        f"Error: folder {root} is empty; expected one subfolder per label holding images (or "
        "images directly in it, for unlabelled data)."
    )


def test_folder_without_images(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "readme.txt").write_text("hello")
    result = preview(tmp_path, root)
    assert warning_lines(result) == [f"Warning: {root}: skipped 1 non-image file (a/readme.txt)."]
    assert error_line(result) == (
        f"Error: found no images in {root}; looked for {SUFFIXES} files in its subfolders a."
    )


def test_unreadable_image_skipped_with_warning_or_error_when_strict(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    png(root / "a" / "good.png")
    png(root / "b" / "good.png")
    (root / "b" / "bad.png").write_bytes(b"not a png at all")
    result = preview(tmp_path, root)
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        f"Warning: {root}: skipped 1 unreadable image: b/bad.png (cannot identify image file)."
    ]
    assert "wrote" in result.stdout and "2 images" in result.stdout
    with pytest.warns(DataWarning):
        assert open_dataset(str(root)).skipped["unreadable"] == 1

    strict = preview(tmp_path, root, "--strict")
    assert error_line(strict) == (
        f"Error: cannot read image {root}/b/bad.png: cannot identify image file; remove it, or "
        "leave out --strict to skip unreadable images."
    )


def test_truncated_image_decoded_with_warning_or_error_when_strict(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    (root / "a").mkdir(parents=True)
    Image.fromarray(noisy).save(root / "a" / "cut.png")
    data = (root / "a" / "cut.png").read_bytes()
    (root / "a" / "cut.png").write_bytes(data[: len(data) // 2])
    result = preview(tmp_path, root)
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        f"Warning: image {root}/a/cut.png is truncated; decoded the part it holds, the rest "
        "filled (with --strict this is an error)."
    ]
    assert error_line(preview(tmp_path, root, "--strict")) == (
        f"Error: cannot decode image {root}/a/cut.png: image file is truncated; the file is "
        "damaged; remove or replace it."
    )


def test_mixed_sizes_are_resized_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    png(root / "a" / "1.png", (16, 16))
    png(root / "a" / "2.png", (16, 16))
    png(root / "b" / "3.png", (8, 8))
    png(root / "b" / "4.png", (12, 20))
    result = preview(tmp_path, root)
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        f"Warning: {root}: images have 3 different sizes (16×16, 8×8, 12×20); all are "
        "centre-cropped to squares and resized to 16×16."
    ]
    with pytest.warns(DataWarning):
        ds = open_dataset(str(root))
    assert all(ds[i]["image"].shape == (1, 16, 16) for i in range(4))


def test_images_outside_label_folders_and_empty_label_folders(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    png(root / "a" / "1.png")
    png(root / "stray.png")
    (root / "b").mkdir()
    result = preview(tmp_path, root)
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        f"Warning: {root}: skipped 1 image outside the label subfolders (stray.png).",
        f"Warning: {root}: label folders with no images are left out: b.",
    ]


def test_label_options_rejected_for_folders(tmp_path: Path) -> None:
    png(tmp_path / "imgs" / "a" / "1.png")
    result = preview(tmp_path, tmp_path / "imgs", "--labels", "x.csv")
    assert error_line(result) == (
        f"Error: {tmp_path / 'imgs'} is a folder: its labels come from its subfolder names; "
        "--labels, --images-key and --labels-key apply to .npz, .npy and HDF5 files."
    )


# --------------------------------------------------------------------------- labels


def test_labels_file_of_another_length(tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.zeros((5, 8, 8), np.uint8))
    (tmp_path / "lab.csv").write_text("0\n1\n0\n1\n")
    result = preview(tmp_path, tmp_path / "im.npy", "--labels", str(tmp_path / "lab.csv"))
    assert error_line(result) == (
        "Error: im.npy with labels lab.csv: 4 labels for 5 images; expected one label per "
        "image; check that the labels belong to these images."
    )


def test_label_values_out_of_range_of_the_names(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["images"] = np.zeros((3, 8, 8), np.uint8)
        f["labels"] = np.array([0, 1, 2])
        f.attrs["label_names"] = ["normal", "pneumonia"]
    assert error_line(preview(tmp_path, tmp_path / "d.h5")) == (
        "Error: d.h5:/images: label values must lie in 0..1 for the 2 label names; found 0..2; "
        "fix the labels or the label names."
    )


def test_label_values_not_0_to_k_are_remapped_with_a_warning(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((4, 8, 8), np.uint8), labels=[-1, 5, 5, 7])
    result = preview(tmp_path, tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        "Warning: x.npz:images: label values are not 0..k-1 (found -1, 5, 7); mapped to 0..2 "
        "in sorted order, the label names keeping the values."
    ]


def test_non_integer_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(tmp_path / "lab.npy", np.array([0.0, 0.5, 1.0]))
    result = preview(tmp_path, tmp_path / "im.npy", "--labels", str(tmp_path / "lab.npy"))
    assert error_line(result) == (
        "Error: im.npy with labels lab.npy: labels must be integers; found values such as 0.5."
    )


def test_multi_label_arrays_are_dropped_with_a_warning(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "chest.npz",
        train_images=np.zeros((4, 8, 8), np.uint8),
        train_labels=np.zeros((4, 14), np.uint8),
    )
    result = preview(tmp_path, tmp_path / "chest.npz")
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        "Warning: chest.npz:train_images: labels of shape (4, 14) are multi-label; latentdiag "
        "needs one label per image, so the data is read without labels (pass a labels file to "
        "add some)."
    ]


def test_missing_labels_file(tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.zeros((3, 8, 8), np.uint8))
    result = preview(tmp_path, tmp_path / "im.npy", "--labels", str(tmp_path / "nope.csv"))
    assert error_line(result) == (
        f"Error: labels file {tmp_path / 'nope.csv'} does not exist; expected a .npy or .csv file."
    )


# --------------------------------------------------------------------------- .npz / .npy / HDF5


def test_npz_without_expected_keys_lists_its_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8, 8)), y=np.zeros(2))
    assert error_line(preview(tmp_path, tmp_path / "x.npz")) == (
        f"Error: {tmp_path / 'x.npz'} has no images: expected 'images' (and 'labels') or the "
        "MedMNIST layout 'train_images', 'train_labels', ..., or vectors: an (N, F) array 'x', "
        "'X', 'features', 'data' or 'vectors'; it has: x, y; name the array with --data-key."
    )


def test_npz_without_the_split_asked(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", train_images=np.zeros((2, 8, 8)), test_images=np.zeros((2, 8, 8)))
    assert error_line(preview(tmp_path, tmp_path / "m.npz", "--split", "val")) == (
        f"Error: {tmp_path / 'm.npz'} has no split 'val' (no val_images); it has splits test, "
        "train; choose one with --split."
    )


def test_npz_images_key_missing(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros((2, 8, 8)))
    assert error_line(preview(tmp_path, tmp_path / "x.npz", "--images-key", "b")) == (
        f"Error: {tmp_path / 'x.npz'} has no array 'b'; it has: a."
    )


def test_file_that_is_not_what_its_suffix_says(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_text("hello")
    line = error_line(preview(tmp_path, tmp_path / "x.npz"))
    assert line.startswith(f"Error: cannot read {tmp_path / 'x.npz'} as .npz: ")


def test_unknown_kind_of_file(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    assert error_line(preview(tmp_path, tmp_path / "data.bin")) == (
        f"Error: cannot tell what kind of data {tmp_path / 'data.bin'} is (suffix .bin); "
        "expected an image folder or a .npz, .npy, .h5 / .hdf5 file (or, for vectors, .h5ad, "
        ".csv, .tsv, .parquet)."
    )


def test_npz_with_another_suffix_is_recognised(tmp_path: Path) -> None:
    with open(tmp_path / "data.bin", "wb") as fh:
        np.savez(fh, images=np.zeros((2, 8, 8), np.uint8))
    assert len(open_dataset(str(tmp_path / "data.bin"))) == 2


def test_missing_source(tmp_path: Path) -> None:
    result = preview(tmp_path, "no/such/dir")
    assert error_line(result) == (
        "Error: data source no/such/dir does not exist; expected an image folder, an .npz, .npy, "
        ".h5, .h5ad, .csv or .parquet file, or a built-in name (synthetic, digits, "
        "synthetic-vectors, synthetic-counts)."
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (
            # (N, F) arrays are vector data now (tests/test_data_vectors.py); rank 1 is neither.
            np.zeros(5),
            "expected images of shape (N, H, W), (N, H, W, C) or (N, C, H, W), or vectors "
            "(N, F); found shape (5,).",
        ),
        (
            np.zeros((5, 8, 8, 7)),
            "images of shape (5, 8, 8, 7) have no channel axis of 1, 3 or 4 "
            "first or last; expected (N, H, W), (N, H, W, C) or (N, C, H, W).",
        ),
        (np.zeros((0, 8, 8)), "holds no images (shape (0, 8, 8)); expected at least one."),
        (
            np.full((2, 8, 8), np.nan, np.float32),
            "images contain 128 NaN or infinite values; "
            "expected finite values in [0, 1]; clean or drop those images.",
        ),
        (
            np.full((2, 8, 8), 300.0),
            "float images must lie in [0, 1] (or [0, 255], [-1, 1]); "
            "found values from 300 to 300; rescale them.",
        ),
    ],
)
def test_bad_image_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "im.npy", array)
    assert error_line(preview(tmp_path, tmp_path / "im.npy")) == f"Error: im.npy: {message}"


def test_float_images_in_0_255_are_rescaled_with_a_warning(tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.full((2, 8, 8), 127.5))
    with pytest.warns(DataWarning, match=r"read as 0\.\.255"):
        ds = open_dataset(str(tmp_path / "im.npy"))
    assert np.allclose(ds[0]["image"], 0.5)


def test_hdf5_ambiguous_or_missing_images(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((2, 8, 8))
        f["b"] = np.zeros((2, 4, 4, 3))
    assert error_line(preview(tmp_path, tmp_path / "two.h5")) == (
        f"Error: {tmp_path / 'two.h5'} has several datasets that could be images (/a (2, 8, 8), "
        "/b (2, 4, 4, 3)); name one with --images-key."
    )
    assert error_line(preview(tmp_path, tmp_path / "two.h5", "--images-key", "c")) == (
        f"Error: {tmp_path / 'two.h5'} has no dataset /c; it has: /a (2, 8, 8), /b (2, 4, 4, 3)."
    )


def test_hdf5_that_is_not_hdf5(tmp_path: Path) -> None:
    (tmp_path / "x.h5").write_text("nope")
    assert error_line(preview(tmp_path, tmp_path / "x.h5")).startswith(
        f"Error: cannot read {tmp_path / 'x.h5'} as HDF5: "
    )


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], "Error: image size must be 1 … 4096 pixels; got 0."),
        (["--channels", "2"], "Error: channels must be 1 (grayscale) or 3 (RGB); got 2."),
        (["--n", "0"], "Error: the number of images must be at least 1; got 0."),
        (
            ["--labels", "x.csv"],
            "Error: the built-in synthetic data has its own labels; --labels, --images-key and "
            "--labels-key apply to .npz, .npy and HDF5 files.",
        ),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    assert error_line(preview(tmp_path, "synthetic", *args)) == message


def test_subset_bigger_than_source_warns(tmp_path: Path) -> None:
    result = preview(tmp_path, "digits", "--n", "5000")
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == [
        "Warning: digits: asked for 5,000 images but the source has 1,797; using all of them."
    ]


def test_core_raises_data_error_not_something_else(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        open_dataset(str(tmp_path / "missing.npz"))
