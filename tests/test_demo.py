"""`latentdiag demo`: the whole pipeline at a tiny size, its folder, its errors; the full-size
before/after as a slow test."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.errors import ConfigError
from latentdiag.store import LatentStore
from reference_models.demo import DemoConfig, run_demo

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = DemoConfig(n_train=160, n_heldout=48, epochs=1, device="cpu")


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    steps: list[str] = []
    return run_demo(out, TINY, on_step=steps.append), steps


def test_demo_writes_every_product(tiny_demo) -> None:
    result, steps = tiny_demo
    out = result.out_dir
    for rel in (
        "data/train.npz",
        "data/heldout.npz",
        "runs/baseline/model.safetensors",
        "runs/disentangled/metrics.jsonl",
        "onnx/baseline.onnx",
        "onnx/disentangled.onnx",
        "latents/baseline.h5",
        "latents/disentangled.h5",
        "generation/baseline/generation.json",
        "generation/disentangled/samples.png",
        "report/report.html",
        "report/metrics.json",
        "README.md",
    ):
        assert (out / rel).is_file(), rel
    assert any("training the disentangled model" in s for s in steps)
    assert set(result.seconds) >= {"data", "train baseline", "report"}


def test_demo_embeds_the_heldout_set_through_onnx(tiny_demo) -> None:
    result, _ = tiny_demo
    with LatentStore(result.paths["latents/disentangled"]) as store:
        assert store.n_samples == TINY.n_heldout
        assert store.partitions == {"shared": (0, 8), "modality": (8, 16)}
        assert store.provenance["model_kind"] == "onnx"
        assert store.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
    with LatentStore(result.paths["latents/baseline"]) as store:
        assert store.partitions == {}


def test_demo_headline_comes_from_the_report_metrics(tiny_demo) -> None:
    result, _ = tiny_demo
    doc = json.loads((result.out_dir / "report" / "metrics.json").read_text())
    metrics = {f["name"]: f["metrics"] for f in doc["files"]}
    rows = {row.key: row for row in result.headline}
    sil = rows["separation.silhouette"].values
    assert sil["baseline"] == pytest.approx(metrics["baseline"]["separation"]["silhouette"])
    leak = rows["partitions.shared.separation.linear_probe_accuracy"].values
    assert leak["baseline"] is None
    assert leak["disentangled"] == pytest.approx(
        metrics["disentangled"]["partitions"]["shared"]["separation"]["linear_probe_accuracy"]
    )
    recon = rows["runs/<model>/metrics.jsonl: heldout_recon"].values
    last = json.loads((result.out_dir / "runs/baseline/metrics.jsonl").read_text().splitlines()[-1])
    assert recon["baseline"] == pytest.approx(last["heldout_recon"])
    assert all(np.isfinite(v) for row in result.headline for v in row.values.values() if v)


def test_demo_generation_rows_come_from_gencheck(tiny_demo) -> None:
    """Both decoders judged by one judge; their rows are the gencheck results, in the report."""
    result, _ = tiny_demo
    rows = {row.key: row.values for row in result.headline}
    report = json.loads((result.out_dir / "report" / "metrics.json").read_text())
    in_report = {f["name"]: f["metrics"]["generation"] for f in report["files"]}
    judges = set()
    for model in ("baseline", "disentangled"):
        doc = json.loads((result.out_dir / "generation" / model / "generation.json").read_text())
        g = doc["generation"]
        assert rows["generation.condition_accuracy"][model] == g["condition_accuracy"]
        assert rows["generation.cas"][model] == g["cas"]
        assert rows["generation.condition_sensitivity"][model] == g["condition_sensitivity"]
        assert in_report[model]["condition_accuracy"] == g["condition_accuracy"]
        assert f"reference {model} run" in g["decoder"]
        judges.add(json.dumps(g["judge"], sort_keys=True))
    assert len(judges) == 1  # the same judge, the same split
    html = (result.out_dir / "report" / "report.html").read_text()
    assert "Conditional generation" in html


def test_demo_report_shows_reference_images(tiny_demo) -> None:
    result, _ = tiny_demo
    html = (result.out_dir / "report" / "report.html").read_text()
    assert "Reconstructions" in html and "Latent traversal (oct)" in html


def test_demo_readme_says_where_everything_is(tiny_demo) -> None:
    result, _ = tiny_demo
    text = (result.out_dir / "README.md").read_text()
    for rel in ("report/report.html", "onnx/disentangled.onnx", "latents/baseline.h5"):
        assert rel in text
    assert "latentdiag export runs/disentangled -o onnx/disentangled.onnx" in text


def test_demo_refuses_to_overwrite_an_earlier_demo(tiny_demo) -> None:
    result, _ = tiny_demo
    with pytest.raises(ConfigError, match="already holds a demo"):
        run_demo(result.out_dir, TINY)


def test_demo_cli_error_lines(tiny_demo, tmp_path: Path) -> None:
    result, _ = tiny_demo
    runner = CliRunner()
    out = runner.invoke(cli, ["demo", "--out", str(result.out_dir), "--quick"])
    assert out.exit_code == 1
    assert out.stderr == (
        f"Error: {result.out_dir} already holds a demo (data, runs, onnx, latents, generation, "
        "report, README.md); choose another --out or pass --overwrite to replace it.\n"
    )
    afile = tmp_path / "file"
    afile.write_text("x")
    out = runner.invoke(cli, ["demo", "--out", str(afile)])
    assert out.exit_code == 2  # click: the path must be a folder
    out = runner.invoke(cli, ["demo", "--device", "tpu"])
    assert out.exit_code == 2


def test_demo_cli_quick_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command end to end (as small as --quick gets when we shrink QUICK for the test)."""
    import reference_models.demo as demo

    monkeypatch.setattr(demo, "QUICK", dataclasses.replace(TINY, smoke=True))
    (tmp_path / "runs").mkdir()  # an earlier demo's folder, replaced with --overwrite
    out = CliRunner().invoke(
        cli, ["demo", "--out", str(tmp_path), "--quick", "--overwrite", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert Path(data["paths"]["report"]).is_file()
    assert data["headline"][0]["key"] == "separation.silhouette"
    assert data["caveat"].startswith("A smoke run (--quick)")
    assert data["caveat"] in (tmp_path / "README.md").read_text()


@pytest.mark.slow
def test_full_demo_shows_the_before_and_after(tmp_path: Path) -> None:
    """The default demo (CPU settings) meets the seed note's expectations through ONNX."""
    result = run_demo(tmp_path, DemoConfig(device="cpu"))
    rows = {row.key: row.values for row in result.headline}
    assert rows["separation.silhouette"]["baseline"] < 0.15
    assert rows["separation.silhouette"]["disentangled"] > 0.5
    assert rows["separation.centroid_distance.mean"]["disentangled"] > 10
    assert rows["partitions.shared.separation.linear_probe_accuracy"]["disentangled"] <= 0.40
    # Both decoders generate their modality far above chance (0.25), as a judge sees it.
    for model in ("baseline", "disentangled"):
        assert rows["generation.condition_accuracy"][model] > 0.6
        assert rows["generation.cas"][model] > 0.7
