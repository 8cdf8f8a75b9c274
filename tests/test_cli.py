"""The command-line frame: the group, --help, --version, error translation, and inspect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag import __version__
from latentdiag.cli import COMMANDS, cli
from latentdiag.store import LatentWriter, write_latents


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def latents(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(40, 4)).astype(np.float32)
    mu[3, 2] = np.nan
    return write_latents(
        tmp_path / "lat.h5",
        mu,
        logvar=np.zeros((40, 4), np.float32),
        labels=np.repeat([0, 1], 20),
        label_names=["chest_xray", "oct"],
        partitions={"shared": [0, 2], "modality": [2, 4]},
        provenance={"model": "encoder.onnx", "device": "cpu"},
    )


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"latentdiag, version {__version__}"


def test_help_imports_nothing_heavy() -> None:
    """`latentdiag --help` imports none of torch, onnxruntime, umap, matplotlib, anndata."""
    code = (
        "import sys\n"
        "from latentdiag.cli import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='latentdiag')\n"
        "except SystemExit:\n"
        "    pass\n"
        "for name in sorted(cli.list_commands(None)):\n"
        "    cli.get_command(None, name)\n"
        "heavy = {'torch', 'onnxruntime', 'umap', 'matplotlib', 'sklearn', 'numba', 'h5py',\n"
        "         'anndata', 'pandas'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_python_dash_m(latents: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "latentdiag", "inspect", str(latents), "--json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_samples"] == 40


def test_unknown_command_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_inspect_table(runner: CliRunner, latents: Path) -> None:
    result = runner.invoke(cli, ["inspect", str(latents)])
    assert result.exit_code == 0, result.output
    out = result.output
    for text in ("40", "chest_xray", "oct", "shared", "[0, 2)", "mu: 1", "encoder.onnx", "gzip"):
        assert text in out


def test_inspect_json(runner: CliRunner, latents: Path) -> None:
    result = runner.invoke(cli, ["inspect", str(latents), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["n_samples"] == 40 and data["latent_dim"] == 4
    assert data["complete"] is True
    assert data["label_counts"] == {"chest_xray": 20, "oct": 20}
    assert data["partitions"] == {"shared": [0, 2], "modality": [2, 4]}
    assert data["nonfinite"] == {"mu": 1, "logvar": 0}
    assert data["datasets"]["mu"] == {"shape": [40, 4], "dtype": "float32", "compression": None}
    assert data["datasets"]["labels"]["compression"] == "gzip"
    assert data["provenance"]["device"] == "cpu"


def test_inspect_partial_file_shows_progress(runner: CliRunner, tmp_path: Path) -> None:
    w = LatentWriter(tmp_path / "run.h5", latent_dim=3)
    w.append(np.ones((7, 3)))
    w.close()
    result = runner.invoke(cli, ["inspect", str(tmp_path / "run.h5.partial"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["complete"] is False and data["n_samples"] == 7


def test_inspect_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["inspect", str(tmp_path / "nope.h5")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'nope.h5'} does not exist.\n"
    assert "Traceback" not in result.output


def test_inspect_not_a_latents_file(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "images.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((2, 2))
    result = runner.invoke(cli, ["inspect", str(p)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {p} is HDF5 but not a latents file: the root attribute "
        "latentdiag_format='latents' is missing (found None); see docs/format.md for the "
        "layout.\n"
    )


def test_inspect_incomplete_file(runner: CliRunner, tmp_path: Path) -> None:
    w = LatentWriter(tmp_path / "run.h5", latent_dim=3)
    w.close()
    (tmp_path / "run.h5.partial").rename(tmp_path / "run.h5")
    result = runner.invoke(cli, ["inspect", str(tmp_path / "run.h5")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'run.h5'} is incomplete (complete=false)")
    assert result.stderr.count("\n") == 1


def test_inspect_without_argument_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["inspect"])
    assert result.exit_code == 2
    assert "Missing argument 'LATENTS'" in result.output
