"""ONNX export of trained reference encoders: parity with PyTorch, inputs, dynamic batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.errors import ModelError
from reference_models import load_encoder
from reference_models.config import build_config
from reference_models.export import export_encoder
from reference_models.trainer import train

TINY = {
    "model": {"base_channels": 8},
    "data": {"n": 64, "size": 16},
    "train": {"batch_size": 16, "epochs": 1, "device": "cpu"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-runs")
    out = {}
    for name in ("disentangled", "beta-vae"):
        out[name] = root / name
        train(build_config(model=name, overrides=TINY), out[name])
    return out


def test_conditional_export_matches_pytorch(runs, tmp_path) -> None:
    path = tmp_path / "enc.onnx"
    result = export_encoder(runs["disentangled"], path)
    assert result["inputs"] == ["x", "label"] and result["outputs"] == ["mu", "logvar"]
    assert result["max_abs_diff"] <= 1e-4 and result["conditional"]
    model = onnx.load(str(path))
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    inputs = {i.name: i for i in model.graph.input}
    assert inputs["x"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inputs["label"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inputs["x"].type.tensor_type.shape.dim[0].dim_param == "batch"
    # Our own parity check, on other images and a batch size never seen at export.
    encoder, _ = load_encoder(runs["disentangled"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(7, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3, 3, 2, 1])
    mu, logvar = session.run(["mu", "logvar"], {"x": x.numpy(), "label": y.numpy()})
    with torch.no_grad():
        want_mu, want_logvar = encoder(x, y)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-4)
    np.testing.assert_allclose(logvar, want_logvar.numpy(), atol=1e-4)
    # The label is an input that matters (modality-centred z_shared, embedding).
    other, _ = session.run(["mu", "logvar"], {"x": x.numpy(), "label": ((y + 1) % 4).numpy()})
    assert np.abs(other - mu).max() > 1e-3


def test_unconditional_export_has_only_x(runs, tmp_path) -> None:
    result = export_encoder(runs["beta-vae"], tmp_path / "enc.onnx", ir_version=10)
    assert result["inputs"] == ["x"] and not result["conditional"]
    assert onnx.load(str(tmp_path / "enc.onnx")).ir_version == 10


def test_parity_failure_removes_the_file(runs, tmp_path) -> None:
    path = tmp_path / "enc.onnx"
    with pytest.raises(ModelError, match="above the tolerance"):
        export_encoder(runs["disentangled"], path, tolerance=-1.0)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_cli_export(runs, tmp_path) -> None:
    out = tmp_path / "enc.onnx"
    result = CliRunner().invoke(cli, ["export", str(runs["disentangled"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: inputs x, label → outputs mu, logvar" in result.output
    assert "max abs difference vs PyTorch on" in result.output
    result = CliRunner().invoke(cli, ["export", str(runs["beta-vae"]), "-o", str(out), "--json"])
    assert json.loads(result.stdout)["inputs"] == ["x"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{tmp}/nothing", "-o", "{tmp}/e.onnx"],
            "Error: {tmp}/nothing is not a reference run: model.safetensors is missing; train one "
            "with `latentdiag train --model NAME --out DIR`.",
        ),
        (
            ["{run}", "-o", "{tmp}/missing/e.onnx"],
            "Error: cannot write {tmp}/missing/e.onnx: folder {tmp}/missing does not exist.",
        ),
        (
            ["{run}", "-o", "{tmp}/e.onnx", "--ir-version", "14"],
            f"Error: the installed onnxruntime {ort.__version__} reads ONNX IR versions up to "
            "13, not 14; export with --ir-version 13 or lower.\n",
        ),
        (
            ["{run}", "-o", "{tmp}/e.onnx", "--ir-version", "99"],
            "Error: exporting the encoder of {run} to ONNX (opset 17, IR 99) failed: "
            "ValidationError: Your model ir_version 99 is higher than the checker's",
        ),
    ],
)
def test_cli_export_errors(runs, tmp_path, args, message) -> None:
    fill = {"tmp": tmp_path, "run": runs["disentangled"]}
    result = CliRunner().invoke(cli, ["export", *[a.format(**fill) for a in args]])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(message.format(**fill))
    assert "Traceback" not in result.output


def test_export_declares_partitions_and_labels_that_embed_keeps(runs, tmp_path) -> None:
    from latentdiag.data.base import ArrayDataset
    from latentdiag.embed import embed
    from latentdiag.runners import open_runner
    from latentdiag.store import LatentStore

    path = tmp_path / "enc.onnx"
    export_encoder(runs["disentangled"], path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["latentdiag.partitions"]) == {"shared": [0, 8], "modality": [8, 16]}
    runner = open_runner(str(path), device="cpu")
    assert runner.partitions == {"shared": (0, 8), "modality": (8, 16)}
    assert runner.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
    rng = np.random.default_rng(0)
    data = ArrayDataset(
        rng.integers(0, 256, (12, 1, 16, 16), dtype=np.uint8),
        labels=np.arange(12) % 4,
        label_names=runner.label_names,
    )
    embed(runner, data, tmp_path / "z.h5", batch_size=4)
    with LatentStore(tmp_path / "z.h5") as store:
        assert store.partitions == {"shared": (0, 8), "modality": (8, 16)}
