"""``latentdiag data synth`` and ``latentdiag data preview``: success paths and their errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from latentdiag.cli import cli
from latentdiag.data import generate_synthetic, open_dataset

FACTORS = "rotation, scale, shift_x, shift_y, brightness, contrast, noise, structure"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_synth_writes_a_file_that_opens_again(
    runner: CliRunner, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"syn{suffix}"
    result = runner.invoke(
        cli,
        ["data", "synth", str(out), "--n", "24", "--size", "16", "--channels", "3", "--seed", "5"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote {out}: 24 images 3×16×16, labels chest_xray, oct, pathology, dermatoscopy; "
        f"factors {FACTORS}\n"
    )
    ds = open_dataset(str(out))
    direct = generate_synthetic(24, size=16, channels=3, seed=5)
    assert ds.label_names == direct.label_names and ds.factor_names == direct.factor_names
    assert np.array_equal(np.round(ds[7]["image"] * 255).astype(np.uint8), direct.images[7])
    assert ds[7]["label"] == direct.labels[7]
    assert np.array_equal(ds[7]["factors"], direct.factors[7])


def test_synth_npz_layout_is_medmnist_like(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "s.npz"
    assert runner.invoke(cli, ["data", "synth", str(out), "--n", "8"]).exit_code == 0
    with np.load(out) as z:
        assert sorted(z.files) == ["factor_names", "factors", "images", "label_names", "labels"]
        assert z["images"].shape == (8, 32, 32) and z["images"].dtype == np.uint8
        assert z["label_names"].tolist() == ["chest_xray", "oct", "pathology", "dermatoscopy"]


def test_synth_h5_has_name_attributes(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    assert (
        runner.invoke(cli, ["data", "synth", str(out), "--n", "8", "--channels", "3"]).exit_code
        == 0
    )
    with h5py.File(out) as f:
        assert f["images"].shape == (8, 32, 32, 3)
        assert list(f.attrs["factor_names"]) == FACTORS.split(", ")
        assert f.attrs["latentdiag_format"] == "images"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["out.png"],
            "Error: cannot write a dataset to out.png: expected a name ending in .npz or "
            ".h5 (.hdf5); found .png.",
        ),
        (
            ["out.npz", "--size", "4"],
            "Error: image size must be 8 … 512 pixels (32, 64, 128 are designed); got 4.",
        ),
        (
            ["out.npz", "--channels", "4"],
            "Error: channels must be 1 (grayscale) or 3 (RGB); got 4.",
        ),
        (["out.npz", "--n", "0"], "Error: the number of images must be at least 1; got 0."),
    ],
)
def test_synth_errors(
    runner: CliRunner, tmp_path: Path, monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["data", "synth", *args])
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert list(tmp_path.iterdir()) == []


def test_synth_into_an_existing_folder_name(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "d.npz").mkdir()
    result = runner.invoke(cli, ["data", "synth", str(tmp_path / "d.npz"), "--n", "4"])
    assert result.exit_code == 2  # a usage error, caught by click before any work
    assert f"Error: Invalid value for 'OUT': File '{tmp_path / 'd.npz'}' is a directory." in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("source", "args", "rows", "summary"),
    [
        (
            "synthetic",
            ["--n", "40", "--size", "64", "--channels", "3"],
            4,
            "40 images 3×64×64, 4 labels (chest_xray, oct, pathology, dermatoscopy), 8 factors; "
            "columns: modality (categorical, 4); label: modality",
        ),
        (
            "digits",
            ["--n", "300"],
            10,
            "300 images 1×8×8, 10 labels (0, 1, 2, 3, 4, 5, …); columns: digit (categorical, 10); "
            "label: digit",
        ),
    ],
)
def test_preview_builtin(
    runner: CliRunner, tmp_path: Path, source: str, args: list[str], rows: int, summary: str
) -> None:
    out = tmp_path / "grid.png"
    result = runner.invoke(cli, ["data", "preview", source, "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}: {summary}\n"
    with Image.open(out) as im:
        w, h = im.size
    assert w > 8 * 64 and h > rows * 64  # one row per label, 8 zoomed images per row


def test_preview_of_an_unlabelled_npy_into_a_new_folder(runner: CliRunner, tmp_path: Path) -> None:
    np.save(tmp_path / "im.npy", np.random.default_rng(0).random((10, 12, 12)))
    out = tmp_path / "new" / "dir" / "grid.png"
    result = runner.invoke(cli, ["data", "preview", str(tmp_path / "im.npy"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_preview_bad_output_suffix(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["data", "preview", "digits", "-o", str(tmp_path / "g.txt")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: cannot write a preview to {tmp_path / 'g.txt'}: expected .png, .jpg, .svg or "
        ".pdf; found .txt."
    )


def test_preview_needs_at_least_one_image_per_label(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    result = runner.invoke(cli, ["data", "preview", "digits", "-o", str(out), "--per-label", "0"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: images per label must be at least 1; got 0."
    assert not out.exists()


def test_data_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from latentdiag.cli import cli\n"
        "try:\n"
        "    cli(['data', 'synth', '--help'], prog_name='latentdiag')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'numpy', 'torch', 'matplotlib', 'PIL', 'h5py', 'sklearn'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
