"""latentdiag.track: metrics while a model trains — a plain loop, precomputed latents,
TensorBoard event files, a Lightning run with the callback; the logs read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latentdiag.errors import ConfigError, MetricInputError
from latentdiag.track import TRACK_FILE, LatentDiagCallback, Tracker, read_track

K, F, D = 3, 10, 4


def _data(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    x = rng.normal(size=(n, F)).astype(np.float32)
    x[:, :K] += 3.0 * np.eye(K)[y]
    return x, y


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(F, 2 * D)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return h[:, :D], h[:, D:]


def _train_epoch(enc: Encoder, x: np.ndarray, y: np.ndarray) -> None:
    """A few steps that pull the label's centroids apart (a stand-in for training)."""
    opt = torch.optim.SGD(enc.parameters(), lr=0.05)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(10):
        mu, _ = enc(xt)
        centres = torch.stack([mu[yt == k].mean(0) for k in range(K)])
        loss = -torch.pdist(centres).mean() + 0.1 * mu.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_a_plain_loop_logs_every_nth_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, y = _data()
    enc = Encoder()
    tracker = Tracker(
        enc, x, labels=y, label_names=["a", "b", "c"], partitions={"first": (0, 2)},
        every=2, log_dir=tmp_path, tensorboard=False,
    )  # fmt: skip
    for epoch in range(5):
        _train_epoch(enc, x, y)
        tracker.step(epoch, step=10 * (epoch + 1))
    tracker.close()
    records = read_track(tmp_path)
    assert [r["epoch"] for r in records] == [0, 2, 4] and records[1]["step"] == 30
    m = records[-1]["metrics"]
    assert {"separation.silhouette", "separation.knn_accuracy", "information.active_units"} <= set(
        m
    )
    assert "partitions.first.separation.silhouette" in m
    assert "information.kl_per_dim" not in m  # lists are left out of the log
    assert (
        records[-1]["metrics"]["separation.silhouette"]
        > records[0]["metrics"]["separation.silhouette"]
    )  # the stand-in training separates the labels
    assert enc.training  # the tracker put the module back in training mode
    with open(tmp_path / "track.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 2, 4]
    assert float(rows[2]["separation.silhouette"]) == pytest.approx(m["separation.silhouette"])


def test_precomputed_latents_and_extra_numbers(tmp_path: Path) -> None:
    x, y = _data()
    tracker = Tracker(None, labels=y, log_dir=tmp_path, metrics=["separation.silhouette"])
    rec = tracker.log(3, x[:, :D], extra={"loss": 1.5})
    assert set(rec["metrics"]) == {"separation.silhouette", "loss"}
    assert json.loads((tmp_path / TRACK_FILE).read_text())["metrics"]["loss"] == 1.5
    with pytest.raises(MetricInputError, match="240 labels but the latents have 10 rows"):
        tracker.log(4, x[:10, :D])
    with pytest.raises(ConfigError, match="no encoder or no inputs"):
        tracker.step(0)


def test_a_function_encoder_and_dict_outputs(tmp_path: Path) -> None:
    x, y = _data()
    tracker = Tracker(lambda b: {"mu": b[:, :D], "logvar": np.zeros((len(b), D))}, x,
                      labels=y, log_dir=tmp_path, tensorboard=False)  # fmt: skip
    rec = tracker.step(0)
    assert rec is not None and rec["metrics"]["information.active_units"] >= 1


def test_bad_options_and_logs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="every must be a positive"):
        Tracker(None, every=0, log_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs the validation inputs x"):
        Tracker(Encoder(), log_dir=tmp_path)
    with pytest.raises(ConfigError, match="no track log at"):
        read_track(tmp_path / "none")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"epoch": 0, "metrics": {}}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2, is not a track record"):
        read_track(bad)


def test_tensorboard_event_files_are_written(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = _data()
    tracker = Tracker(Encoder(), x, labels=y, log_dir=tmp_path, tensorboard=True)
    tracker.step(0)
    tracker.step(1)
    tracker.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tag = "latentdiag/separation.silhouette"
    assert tag in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars(tag)] == [0, 1]


def test_a_lightning_run_logs_through_the_callback(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    x, y = _data()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = Encoder()

        def training_step(self, batch, _):
            (xb,) = batch
            mu, logvar = self.encoder(xb)
            return (mu.pow(2) + logvar.exp() - logvar).mean()

        def validation_step(self, batch, _):
            (xb,) = batch
            return self.encoder(xb)[0].pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.as_tensor(x)),
                                         batch_size=60)  # fmt: skip
    tracker = Tracker(None, x, labels=y, log_dir=tmp_path / "track", tensorboard=False)
    trainer = pl.Trainer(
        max_epochs=3, callbacks=[LatentDiagCallback(tracker, encoder="encoder")],
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(Module(), loader, loader)
    records = read_track(tmp_path / "track")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[-1]["step"] == 12  # 4 batches per epoch
    assert "separation.silhouette" in records[-1]["metrics"]


def test_report_draws_a_track_log_over_epochs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from latentdiag.cli import cli
    from latentdiag.store import write_latents

    x, y = _data()
    tracker = Tracker(None, labels=y, log_dir=tmp_path / "log", partitions={"a": (0, 2)})
    for epoch in range(3):
        tracker.log(epoch, x[:, :D] * (epoch + 1), extra={"train.loss": 3.0 - epoch})
    latents = write_latents(tmp_path / "lat.h5", x[:, :D], labels=y, label_names=["a", "b", "c"])
    out = tmp_path / "r"
    argv = ["report", str(latents), "-o", str(out), "--projection", "pca"]
    res = CliRunner().invoke(cli, [*argv, "--track", str(tmp_path / "log")])
    assert res.exit_code == 0, res.output
    html = (out / "report.html").read_text()
    assert "Metrics during training" in html and "3 evaluations logged" in html
    assert (out / "figures" / "lat" / "training-track.png").is_file()
    res = CliRunner().invoke(cli, [*argv, "--track", str(tmp_path / "none")])
    assert res.exit_code == 1 and "Error: no track log at" in res.output
