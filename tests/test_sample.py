"""Sampling and the report gallery of trained reference models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from latentdiag.cli import cli
from reference_models import load_run
from reference_models.config import build_config
from reference_models.gallery import run_gallery
from reference_models.sampling import generate, tile
from reference_models.trainer import train

TINY = {
    "model": {"base_channels": 8},
    "data": {"n": 64, "size": 16},
    "train": {"batch_size": 16, "epochs": 1, "device": "cpu"},
}


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sample-runs")
    out = {}
    for name in ("disentangled", "beta-tcvae"):
        out[name] = root / name
        train(build_config(model=name, overrides=TINY), out[name])
    return out


def test_tile_layout() -> None:
    images = np.zeros((5, 1, 4, 4), np.float32)
    images[1] = 1.0
    grid = tile(images, ncols=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 6:10] == 255).all() and (grid[1:5, 1:5] == 0).all()
    assert (grid[0] == 128).all()  # padding is mid grey


def test_generate_is_seeded_and_conditional(runs) -> None:
    model, _ = load_run(runs["disentangled"])
    a = generate(model, 4, 1, seed=5)
    assert a.shape == (4, 1, 16, 16) and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, generate(model, 4, 1, seed=5))
    assert not torch.allclose(a, generate(model, 4, 2, seed=5))


def test_cli_sample_one_label_and_reconstructions(runs, tmp_path) -> None:
    out = tmp_path / "oct.png"
    args = ["sample", str(runs["disentangled"]), "--label", "oct", "-n", "6", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (6 samples, label oct)" in result.output
    # 16 px images drawn at 2×: 6 in one row of 32 px tiles with 2 px padding.
    assert _size(out) == (6 * 34 + 2, 36)
    recon = tmp_path / "oct-reconstructions.png"
    assert recon.exists() and _size(recon)[0] == 8 * 34 + 2


def test_cli_sample_every_label_json(runs, tmp_path) -> None:
    out = tmp_path / "all.png"
    args = ["sample", str(runs["disentangled"]), "-n", "3", "-o", str(out), "--json"]
    args.append("--no-reconstructions")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "samples": str(out),
        "reconstructions": None,
        "label": None,
        "n": 3,
    }
    assert _size(out) == (3 * 34 + 2, 4 * 34 + 2)  # one row per label


@pytest.mark.parametrize(
    ("run", "extra", "message"),
    [
        (
            "disentangled",
            ["--label", "mri"],
            "Error: unknown label 'mri'; this model knows chest_xray, oct, pathology, "
            "dermatoscopy.",
        ),
        (
            "beta-tcvae",
            ["--label", "oct"],
            "Error: model beta-tcvae is unconditional: it cannot generate images of a chosen "
            "label; leave out --label.",
        ),
        ("disentangled", ["-n", "0"], "Error: the number of samples must be at least 1; got 0."),
    ],
)
def test_cli_sample_errors(runs, tmp_path, run, extra, message) -> None:
    args = ["sample", str(runs[run]), "-o", str(tmp_path / "x.png"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == message


def test_cli_sample_missing_run(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["sample", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {tmp_path} is not a reference run: model.safetensors is missing; train one "
        "with `latentdiag train --model NAME --out DIR`."
    )


@pytest.mark.parametrize("name", ["disentangled", "beta-tcvae"])
def test_gallery_figures(runs, name) -> None:
    figures = run_gallery(runs[name], seed=1)
    titles = [t for t, _, _ in figures]
    assert titles[:2] == ["Reconstructions", "Samples"]
    traversals = [t for t in titles if t.startswith("Latent traversal")]
    if name == "disentangled":
        assert traversals == [
            "Latent traversal (chest_xray)",
            "Latent traversal (oct)",
            "Latent traversal (pathology)",
            "Latent traversal (dermatoscopy)",
        ]
        assert "rows 0–7: shared; rows 8–15: modality" in figures[2][1]
    else:
        assert len(traversals) == 4
    for title, caption, image in figures:
        assert caption.endswith(".") and caption[0].isupper(), title
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # A traversal has one row per latent dimension and 9 steps per row (2× scale, 2 px pad).
    assert figures[2][2].shape[:2] == (16 * 34 + 2, 9 * 34 + 2)
    again = run_gallery(runs[name], seed=1)
    for (_, _, a), (_, _, b) in zip(figures, again, strict=True):
        np.testing.assert_array_equal(a, b)
