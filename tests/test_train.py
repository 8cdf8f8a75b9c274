"""The training loop: run directory, metrics, latents, resume, torchrun, the command line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from latentdiag.cli import cli
from latentdiag.errors import ConfigError, ModelError
from latentdiag.store import LatentStore
from reference_models import load_encoder, load_run
from reference_models.config import build_config, resume_config
from reference_models.data import batch_plan, heldout_split
from reference_models.trainer import train

TINY = {
    "model": {"base_channels": 8},
    "data": {"n": 96, "size": 16},
    "train": {"batch_size": 16, "epochs": 2, "warmup_steps": 2, "device": "cpu"},
}
TINY_ARGS = ["--n-images", "96", "--size", "16", "--batch-size", "16", "--device", "cpu"]
TINY_ARGS += ["--set", "model.base_channels=8", "--set", "train.warmup_steps=2", "--quiet"]


def tiny(model: str = "baseline", **train_fields: object):
    overrides = {k: dict(v) for k, v in TINY.items()}
    overrides["train"].update(train_fields)
    return build_config(model=model, overrides=overrides)


@pytest.fixture(scope="module")
def disentangled_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "dis"
    train(tiny("disentangled"), out)
    return out


def test_run_directory_holds_weights_config_metrics_and_latents(disentangled_run: Path) -> None:
    names = sorted(p.name for p in disentangled_run.iterdir())
    assert names == [
        "checkpoint.safetensors",
        "config.json",
        "latents.h5",
        "metrics.jsonl",
        "model.safetensors",
        "preview.safetensors",
        "track.csv",
        "track.jsonl",
    ]
    config = json.loads((disentangled_run / "config.json").read_text())
    assert config["model"]["name"] == "disentangled" and config["train"]["epochs"] == 2
    from latentdiag.track import read_track

    track = read_track(disentangled_run)  # latentdiag.track on the held-out latents, per epoch
    assert [r["epoch"] for r in track] == [1, 2]
    m = track[-1]["metrics"]
    assert {"separation.silhouette", "partitions.modality.separation.silhouette"} <= set(m)
    assert "train.loss" in m and "heldout.heldout_recon" in m


def test_the_report_of_a_run_draws_its_track_log(disentangled_run: Path, tmp_path: Path) -> None:
    from latentdiag.report import build_report

    result = build_report([disentangled_run / "latents.h5"], tmp_path / "r", projection=())
    html = result.html.read_text()
    assert "Metrics during training" in html and "2 evaluations logged" in html
    lines = (disentangled_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    last = json.loads(lines[-1])
    for key in ("heldout_recon", "heldout_mse", "silhouette", "silhouette_shared", "train"):
        assert key in last
    assert np.isfinite(last["heldout_recon"]) and -1 <= last["silhouette"] <= 1


def test_latents_file_has_heldout_rows_partitions_and_provenance(disentangled_run: Path) -> None:
    with LatentStore(disentangled_run / "latents.h5") as store:
        labels = store.labels
        assert store.n_samples == 20  # round(20 % of 24) = 5 of each of the 4 labels
        assert store.latent_dim == 16 and store.has_logvar
        assert store.partitions == {"shared": (0, 8), "modality": (8, 16)}
        assert store.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
        assert store.factors is not None and store.factors.shape == (20, 8)
        prov = store.provenance
        ids = list(store.sample_ids)
    assert np.bincount(labels).tolist() == [5, 5, 5, 5]
    assert len(set(ids)) == 20
    assert prov["kind"] == "reference-run" and prov["model"] == "disentangled"
    assert prov["run_dir"] == str(disentangled_run.resolve())
    assert prov["config"]["model"]["name"] == "disentangled" and prov["seed"] == 0
    for key in ("data_source", "device", "latentdiag_version"):
        assert prov[key]


def test_report_reads_the_latents_file_at_once(disentangled_run: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(disentangled_run / "latents.h5"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["partitions"] == {"shared": [0, 8], "modality": [8, 16]}


def test_load_run_and_encoder_round_trip(disentangled_run: Path) -> None:
    model, config = load_run(disentangled_run)
    assert config.model.name == "disentangled" and not model.training
    encoder, info = load_encoder(disentangled_run)
    assert info == {
        "model": "disentangled",
        "conditional": True,
        "channels": 1,
        "size": 16,
        "label_names": ["chest_xray", "oct", "pathology", "dermatoscopy"],
        "partitions": {"shared": [0, 8], "modality": [8, 16]},
        "latent_dim": 16,
    }
    x, y = torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 2, 3, 0])
    with torch.no_grad():
        mu, logvar = encoder(x, y)
        mu2, _ = model.encode(x, y)
    assert mu.shape == logvar.shape == (5, 16)
    torch.testing.assert_close(mu, mu2)
    # The saved weights are the model's weights, bit for bit.
    saved = load_file(str(disentangled_run / "model.safetensors"))
    for key, value in model.state_dict().items():
        assert torch.equal(saved[key], value), key
    # The latents file holds what the loaded encoder gives on the held-out images.
    with LatentStore(disentangled_run / "latents.h5") as store:
        assert np.isfinite(store.mu).all()


def test_loading_never_unpickles(disentangled_run: Path, monkeypatch, tmp_path) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a run")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    load_run(disentangled_run)
    load_encoder(disentangled_run)
    from reference_models.checkpoint import load_checkpoint

    assert load_checkpoint(disentangled_run).state.epoch == 2


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("name", ["disentangled", "beta-tcvae"])
def test_resume_after_an_epoch_ends_where_an_uninterrupted_run_does(tmp_path, name) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny(name), straight)
    first = train(tiny(name, epochs=1), resumed)
    assert first.completed and first.epochs_done == 1
    again = train(resume_config(resumed, {"train": {"epochs": 2}}), resumed, resume=True)
    assert again.completed and again.epochs_done == 2
    _assert_same_weights(straight, resumed)
    lines = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]
    with LatentStore(straight / "latents.h5") as a, LatentStore(resumed / "latents.h5") as b:
        np.testing.assert_array_equal(a.mu, b.mu)


def test_resume_in_the_middle_of_an_epoch(tmp_path) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(tiny("baseline"), straight)
    # 76 training images / batch 16 = 4 steps per epoch; stop after 6 (in epoch 2).
    part = train(tiny("baseline"), stopped, stop_after_steps=6)
    assert not part.completed and part.global_step == 6 and part.latents is None
    assert not (stopped / "latents.h5").exists()
    train(resume_config(stopped), stopped, resume=True)
    _assert_same_weights(straight, stopped)
    assert len((stopped / "metrics.jsonl").read_text().splitlines()) == 2


def test_streaming_data_trains_exactly_like_in_memory_data(tmp_path) -> None:
    in_memory, streamed = tmp_path / "mem", tmp_path / "stream"
    train(tiny("baseline", epochs=1), in_memory)
    config = tiny("baseline", epochs=1, num_workers=0)
    config = build_config(
        overrides={**config.to_dict(), "data": {**config.to_dict()["data"], "in_memory_gb": 0.0}}
    )
    train(config, streamed)
    _assert_same_weights(in_memory, streamed)


def test_checkpoint_every_steps(tmp_path, monkeypatch) -> None:
    import reference_models.trainer as trainer

    steps: list[tuple[int, int, int]] = []
    real = trainer.save_checkpoint

    def spy(run_dir, *, state, **kwargs):
        steps.append((state.epoch, state.step_in_epoch, state.global_step))
        real(run_dir, state=state, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", spy)
    train(tiny("baseline", checkpoint_every=3), tmp_path / "run")
    # 4 steps per epoch: every 3rd step, and at each epoch's end.
    assert steps == [(0, 3, 3), (1, 0, 4), (1, 2, 6), (2, 0, 8)]


def test_resume_drops_metric_lines_written_after_the_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    train(tiny("baseline", epochs=1), run)
    with open(run / "metrics.jsonl", "a") as f:  # as if killed after logging epoch 2
        f.write(json.dumps({"epoch": 2, "silhouette": 0.0}) + "\n")
    with open(run / "track.jsonl", "a") as f:  # and the tracker's line, half written
        f.write(json.dumps({"epoch": 2, "step": 9, "metrics": {"separation.silhouette": 0.0}}))
        f.write("\n" + '{"epoch": 2, "metr')
    train(resume_config(run, {"train": {"epochs": 2}}), run, resume=True)
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    from latentdiag.track import read_track

    track = read_track(run)
    assert [r["epoch"] for r in track] == [1, 2] and track[1]["metrics"]["separation.silhouette"]
    rows = (run / "track.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step,")  # header, epochs 1 and 2


def test_a_run_is_not_overwritten_and_fixed_fields_cannot_change(tmp_path) -> None:
    run = tmp_path / "run"
    train(tiny("baseline", epochs=1), run)
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        train(tiny("baseline", epochs=1), run)
    with pytest.raises(ConfigError, match=r"cannot change train\.lr when resuming"):
        train(tiny("baseline", epochs=2, lr=1e-4), run, resume=True)
    with pytest.raises(ModelError, match="nothing to resume"):
        resume_config(tmp_path / "empty")


def test_batch_plan_is_deterministic_and_splits_over_processes() -> None:
    one = batch_plan(100, batch_size=16, seed=3, epoch=1)
    assert len(one) == 6 and all(b.size == 16 for b in one)
    assert [b.tolist() for b in one] == [
        b.tolist() for b in batch_plan(100, batch_size=16, seed=3, epoch=1)
    ]
    assert one[0].tolist() != batch_plan(100, batch_size=16, seed=3, epoch=2)[0].tolist()
    r0 = batch_plan(100, batch_size=16, seed=3, epoch=1, rank=0, world_size=2)
    r1 = batch_plan(100, batch_size=16, seed=3, epoch=1, rank=1, world_size=2)
    assert len(r0) == len(r1)
    seen = np.concatenate(r0 + r1)
    assert len(set(seen.tolist())) == seen.size  # no item twice in an epoch


def test_heldout_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), 25)
    train_idx, held = heldout_split(labels, fraction=0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    assert not set(train_idx.tolist()) & set(held.tolist())
    assert train_idx.size + held.size == 100


# -- command line ----------------------------------------------------------------------------


def test_cli_train_success_and_json(tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "--model", "beta-vae", "--epochs", "1", "-o", str(out), "--json"]
    result = CliRunner().invoke(cli, args + TINY_ARGS)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["model"] == "beta-vae" and summary["completed"] and summary["epochs"] == 1
    assert Path(summary["latents"]) == out / "latents.h5"
    with LatentStore(out / "latents.h5") as store:
        assert store.partitions == {}
    # Resume a finished run with more epochs.
    result = CliRunner().invoke(
        cli, ["train", "--resume", "--epochs", "2", "-o", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--epochs", "1"], 2, "--model is required for a new run (or pass --resume)."),
        (
            ["--resume", "-o", "{tmp}/none"],
            1,
            "Error: nothing to resume in {tmp}/none: checkpoint.safetensors is missing; start the "
            "run without --resume.",
        ),
        (
            ["--model", "baseline", "--set", "lr=1", "-o", "{tmp}/x"],
            1,
            "Error: override 'lr=1' must look like section.field=value with section one of "
            "model, data, train (e.g. train.lr=1e-3).",
        ),
        (
            ["--model", "baseline", "--set", "train.epochs=0", "-o", "{tmp}/x"],
            1,
            "Error: train.epochs must be at least 1; got 0.",
        ),
        (
            ["--model", "baseline", "--data", "{tmp}/missing.npz", "-o", "{tmp}/x"],
            1,
            "Error: data source {tmp}/missing.npz does not exist; expected an image folder, an "
            ".npz, .npy, .h5, .h5ad, .csv or .parquet file, or a built-in name (synthetic, "
            "digits, synthetic-vectors, synthetic-counts).",
        ),
        (
            ["--model", "baseline", "--config", "{tmp}/none.toml", "-o", "{tmp}/x"],
            1,
            "Error: config file {tmp}/none.toml does not exist; give a .json or .toml file.",
        ),
    ],
)
def test_cli_train_errors(tmp_path, args, code, message) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["train", *args, "--quiet"])
    assert result.exit_code == code, result.output
    assert message.format(tmp=tmp_path) in result.output
    assert "Traceback" not in result.output


def test_cli_train_refuses_to_overwrite_and_unlabelled_data(tmp_path) -> None:
    out = tmp_path / "run"
    base = ["train", "--model", "baseline", "--epochs", "1", "-o", str(out), *TINY_ARGS]
    assert CliRunner().invoke(cli, base).exit_code == 0
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {out} already holds a training run; pass --resume to continue it, or choose "
        "another --out."
    )
    images = (np.random.default_rng(0).random((40, 16, 16)) * 255).astype(np.uint8)
    np.save(tmp_path / "x.npy", images)
    args = [
        "train",
        "--model",
        "baseline",
        "--data",
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "u"),
    ]
    result = CliRunner().invoke(cli, [*args, *TINY_ARGS[2:]])
    assert result.exit_code == 1
    assert "this model is conditioned on labels but" in result.output
    assert "use labelled data" in result.output


# -- torchrun ----------------------------------------------------------------------------------


def test_torchrun_two_processes_gloo(tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "latentdiag", "train", "--model", "baseline", "--epochs", "1", "-o", str(out),
        "--json", *TINY_ARGS,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)  # one summary: only rank 0 reports
    assert summary["completed"] and summary["epochs"] == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors",
        "config.json",
        "latents.h5",
        "metrics.jsonl",
        "model.safetensors",
        "preview.safetensors",
        "track.csv",
        "track.jsonl",
    ]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert len((out / "track.jsonl").read_text().splitlines()) == 1  # rank 0 alone tracks
    from latentdiag.data import open_dataset

    ds = open_dataset("synthetic", size=16, channels=1, n=96, seed=0)
    _, held = heldout_split(ds.labels, fraction=0.2, seed=0)
    with LatentStore(out / "latents.h5") as store:
        ids = [str(s) for s in store.sample_ids]
        np.testing.assert_array_equal(store.labels, ds.labels[held])
    assert ids == [f"{ds.source}[{i}]" for i in held]  # every held-out sample once, in order
    # The latents are what the saved encoder gives on those images.
    encoder, _ = load_encoder(out)
    x = torch.from_numpy(ds.images[held]).float() / 255
    with torch.no_grad():
        mu, _ = encoder(x, torch.from_numpy(ds.labels[held]))
    with LatentStore(out / "latents.h5") as store:
        np.testing.assert_allclose(store.mu, mu.numpy(), atol=1e-5)


def test_train_on_an_npy_stack_with_a_labels_file(tmp_path) -> None:
    """The [data] section reaches every loader option: an .npy stack plus a CSV of labels."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (96, 16, 16), dtype=np.uint8))
    (tmp_path / "labels.csv").write_text("\n".join(str(i % 2) for i in range(96)) + "\n")
    result = CliRunner().invoke(
        cli,
        [
            "train", "--model", "baseline", "--data", str(tmp_path / "images.npy"),
            "--set", f"data.labels={tmp_path / 'labels.csv'}", "--epochs", "1",
            "-o", str(tmp_path / "run"), *TINY_ARGS,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with LatentStore(tmp_path / "run" / "latents.h5") as store:
        assert store.label_names == ["0", "1"]


def test_weights_that_do_not_fit_name_the_keys(disentangled_run: Path, tmp_path) -> None:
    import shutil

    from safetensors.torch import save_file

    run = tmp_path / "run"
    shutil.copytree(disentangled_run, run)
    weights = run / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        # Without the tensors' checksum, as another version would write it (with the old one
        # kept, the file is refused as damaged first: tests/test_faults.py).
        meta = {k: v for k, v in f.metadata().items() if k != "tensors_blake2b"}
    state = load_file(str(weights))
    state["extra.weight"] = torch.zeros(1)
    removed = sorted(state)[0]
    del state[removed]
    save_file(state, str(weights), metadata=meta)
    with pytest.raises(ModelError) as info:
        load_run(run)
    text = str(info.value)
    assert f"missing: {removed}" in text and "unexpected: extra.weight" in text
    assert "written by another version of latentdiag or its files were changed" in text
