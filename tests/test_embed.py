"""The embed loop: what it writes, both data paths, resume, shards, bad input, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.data.base import ArrayDataset, ImageDataset, Subset
from latentdiag.embed import embed, parse_shard, shard_from_env, shard_path, unfinished_rows
from latentdiag.errors import ConfigError, DataError, ModelError, StoreError
from latentdiag.merge import merge_latents
from latentdiag.runners import open_runner
from latentdiag.store import LatentStore, partial_path

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N = 150
LABELS = ["chest", "oct", "path"]


class Encoder(torch.nn.Module):
    """(B, 1, 16, 16) -> (mu, logvar), 6 dims; optionally NaN where the first pixel is bright."""

    def __init__(self, nan_above: float | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.mu = torch.nn.Linear(256, 6)
        self.lv = torch.nn.Linear(256, 6)
        self.nan_above = nan_above

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(x)).flatten(1)
        mu = self.mu(h)
        if self.nan_above is not None:
            bad = x[:, 0, 0, 0] > self.nan_above
            mu = torch.where(bad[:, None], torch.full_like(mu, float("nan")), mu)
        return mu, self.lv(h)


class Conditional(Encoder):
    def forward(self, x: torch.Tensor, labels: torch.Tensor):  # type: ignore[override]
        mu, lv = super().forward(x)
        return mu + labels[:, None].float(), lv


class ItemsOnly(ImageDataset):
    """The same items as an ArrayDataset, read one by one (no array fast path)."""

    def __init__(self, inner: ArrayDataset) -> None:
        self.inner = inner
        self.label_names = inner.label_names
        self.factor_names = inner.factor_names
        self.channels, self.size, self.source = inner.channels, inner.size, inner.source

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.inner[index]


def make_images(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 16, 16), dtype=np.uint8)


def make_data(n: int = N, *, labels: bool = True) -> ArrayDataset:
    rng = np.random.default_rng(1)
    return ArrayDataset(
        make_images(n),
        labels=rng.integers(0, 3, n) if labels else None,
        label_names=LABELS if labels else None,
        factors=rng.random((n, 2)).astype(np.float32),
        factor_names=["rotation", "scale"],
        source="test-arrays",
    )


def read_all(path: Path) -> dict[str, Any]:
    with LatentStore(path) as s:
        out = {k: s.read(k) for k in ("mu", "logvar", "labels", "factors", "index")
               if s.has(k)}  # fmt: skip
        if s.sample_ids is not None:  # stored, or derived from /index
            out["sample_ids"] = s.sample_ids
        out["provenance"] = s.provenance
        out["partitions"] = s.partitions
        out["label_names"] = s.label_names
        out["factor_names"] = s.factor_names
    return out


def assert_same_file(a: Path, b: Path, *, exact: bool = True) -> None:
    fa, fb = read_all(a), read_all(b)
    assert set(fa) == set(fb)
    for key in ("mu", "logvar"):
        if key not in fa:
            continue
        if exact:
            np.testing.assert_array_equal(fa[key], fb[key])
        else:
            np.testing.assert_allclose(fa[key], fb[key], atol=1e-6)
    for key in ("labels", "factors", "sample_ids", "index"):
        if key in fa:
            np.testing.assert_array_equal(fa[key], fb[key])
    assert fa["partitions"] == fb["partitions"]
    assert fa["label_names"] == fb["label_names"] and fa["factor_names"] == fb["factor_names"]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "enc.onnx"
    torch.onnx.export(
        Encoder().eval(),
        (torch.rand(2, 1, 16, 16),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["z_mean", "z_log_var"],
        dynamic_axes={"x": {0: "b"}, "z_mean": {0: "b"}, "z_log_var": {0: "b"}},
        opset_version=17,
    )
    return path


def module_runner(model: torch.nn.Module | None = None, **info: Any):
    return open_runner(model or Encoder().eval(), device="cpu", info=info or None, name="enc")


# -- what embed writes -----------------------------------------------------------------------
def test_embed_writes_latents_labels_factors_ids_index_and_provenance(tmp_path):
    data = make_data()
    runner = module_runner(partitions={"shared": [0, 4], "private": [4, 6]})
    result = embed(runner, data, tmp_path / "z.h5", batch_size=32, command=["latentdiag", "x"])
    assert (result.n_rows, result.latent_dim, result.has_logvar) == (N, 6, True)
    assert result.device.startswith("torch cpu") and result.resumed_rows == 0
    f = read_all(tmp_path / "z.h5")
    with torch.no_grad():
        mu, lv = Encoder()(torch.from_numpy(data.images.astype(np.float32) / 255.0))
    np.testing.assert_allclose(f["mu"], mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(f["logvar"], lv.numpy(), atol=1e-6)
    np.testing.assert_array_equal(f["labels"], data.labels)
    np.testing.assert_array_equal(f["factors"], data.factors)
    np.testing.assert_array_equal(f["index"], np.arange(N))
    assert list(f["sample_ids"][:2]) == ["test-arrays[0]", "test-arrays[1]"]
    assert f["label_names"] == LABELS and f["factor_names"] == ["rotation", "scale"]
    assert f["partitions"] == {"shared": (0, 4), "private": (4, 6)}
    prov = f["provenance"]
    assert prov["model"] == "enc" and prov["model_kind"] == "module"
    assert prov["data_source"] == "test-arrays" and prov["n_data"] == N
    assert prov["batch_size"] == 32 and prov["command"] == ["latentdiag", "x"]
    assert prov["device"].startswith("torch cpu") and prov["shard"] is None
    assert prov["nonfinite"] == {"mu": 0, "logvar": 0, "rows": 0}
    assert prov["preprocessing"]["normalize"] == "0..1"
    assert prov["torch_version"] == str(torch.__version__)
    for key in ("latentdiag_version", "numpy_version", "job_id", "job"):
        assert key in prov


def test_array_ids_are_derived_from_the_index_and_other_ids_are_stored(tmp_path):
    data = make_data()
    embed(module_runner(), data, tmp_path / "arrays.h5", batch_size=32)
    named = ArrayDataset(data.images, sample_ids=[f"scan-{i:03d}.png" for i in range(N)])
    embed(module_runner(), named, tmp_path / "named.h5", batch_size=32)
    # The DataLoader path (one worker) over the same arrays derives them too.
    embed(module_runner(), data, tmp_path / "worker.h5", batch_size=32, workers=1)
    with h5py.File(tmp_path / "arrays.h5") as f:
        assert (
            "sample_ids" not in f
            and f["provenance"].attrs["sample_ids"] == "{data_source}[{index}]"
        )
    with LatentStore(tmp_path / "arrays.h5") as s:
        assert s.sample_ids is not None and s.sample_ids[-1] == f"test-arrays[{N - 1}]"
    with LatentStore(tmp_path / "named.h5") as s:
        assert s.has("sample_ids") and "sample_ids" not in s.provenance
        assert list(s.sample_ids[:2]) == ["scan-000.png", "scan-001.png"]
    assert_same_file(tmp_path / "arrays.h5", tmp_path / "worker.h5")
    with h5py.File(tmp_path / "worker.h5") as f:
        assert "sample_ids" not in f
    # A subset's ids name the parent's rows, so they are stored.
    embed(module_runner(), Subset(data, np.arange(N)[::-1].copy()), tmp_path / "sub.h5")
    with LatentStore(tmp_path / "sub.h5") as s:
        assert s.has("sample_ids") and s.sample_ids[0] == f"test-arrays[{N - 1}]"


def test_onnx_provenance_names_provider_and_model_hash(tmp_path, onnx_model):
    runner = open_runner(onnx_model, device="cpu")
    embed(runner, make_data(40), tmp_path / "z.h5")
    prov = read_all(tmp_path / "z.h5")["provenance"]
    assert prov["model_sha256"] == hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    assert prov["device"] == "onnxruntime CPUExecutionProvider"
    assert prov["model_kind"] == "onnx" and prov["onnx_ir_version"] == 8
    assert prov["outputs"]["mu"] == "z_mean" and prov["outputs"]["logvar"] == "z_log_var"
    assert "onnxruntime_version" in prov


def test_torch_and_onnx_latents_of_one_model_agree(tmp_path, onnx_model):
    data = make_data()
    ts = tmp_path / "enc.pt"
    torch.jit.save(torch.jit.script(Encoder().eval()), str(ts))
    embed(open_runner(onnx_model, device="cpu"), data, tmp_path / "onnx.h5")
    embed(open_runner(ts, device="cpu"), data, tmp_path / "ts.h5")
    embed(module_runner(), data, tmp_path / "module.h5")
    assert_same_file(tmp_path / "onnx.h5", tmp_path / "ts.h5", exact=False)
    assert_same_file(tmp_path / "module.h5", tmp_path / "ts.h5", exact=False)


def test_array_fast_path_equals_dataloader_path(tmp_path):
    data = make_data()
    embed(module_runner(), data, tmp_path / "fast.h5", batch_size=32)
    embed(module_runner(), ItemsOnly(data), tmp_path / "items.h5", batch_size=32, workers=0)
    embed(module_runner(), ItemsOnly(data), tmp_path / "workers.h5", batch_size=32, workers=1)
    # A memory-mapped array is sliced by the prefetch thread (reads may wait on the disk);
    # an array in memory is sliced in line.
    np.save(tmp_path / "images.npy", data.images)
    mapped = ArrayDataset(
        np.load(tmp_path / "images.npy", mmap_mode="r"), labels=data.labels,
        label_names=data.label_names, factors=data.factors, factor_names=data.factor_names,
        source=data.source,
    )  # fmt: skip
    embed(module_runner(), mapped, tmp_path / "mapped.h5", batch_size=32)
    assert_same_file(tmp_path / "fast.h5", tmp_path / "items.h5")
    assert_same_file(tmp_path / "fast.h5", tmp_path / "workers.h5")
    assert_same_file(tmp_path / "fast.h5", tmp_path / "mapped.h5")


def test_latents_are_stored_raw_unless_compression_is_asked_for(tmp_path):
    data = make_data()
    embed(module_runner(), data, tmp_path / "raw.h5", batch_size=32)
    for k in range(2):
        embed(module_runner(), data, tmp_path / f"gz{k}.h5", batch_size=32, shard=(k, 2),
              compress_latents=True)  # fmt: skip
    merge_latents([tmp_path / "gz0.h5", tmp_path / "gz1.h5"], tmp_path / "gz.h5")
    for name, mu_filter in (("raw.h5", None), ("gz0.h5", "gzip"), ("gz.h5", "gzip")):
        with LatentStore(tmp_path / name) as s:
            assert (s.compression("mu"), s.compression("logvar")) == (mu_filter, mu_filter)
            assert s.compression("labels") == s.compression("index") == "gzip"
    assert_same_file(tmp_path / "raw.h5", tmp_path / "gz.h5")


def test_preprocessing_fits_data_to_the_model(tmp_path, onnx_model):
    rgb = np.random.default_rng(3).integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    data = ArrayDataset(rgb, source="rgb")
    runner = open_runner(onnx_model, device="cpu")
    embed(runner, data, tmp_path / "z.h5", normalize="-1..1")
    f = read_all(tmp_path / "z.h5")
    assert f["provenance"]["preprocessing"]["channels"] == "3->1"
    assert f["provenance"]["preprocessing"]["model_shape"] == [1, 16, 16]
    from latentdiag.runners.preprocess import plan_preprocess

    plan = plan_preprocess(runner.spec, data_channels=3, data_size=32, normalize="-1..1")
    mu, _ = runner.run(plan(rgb.astype(np.float32) / 255.0))
    np.testing.assert_allclose(f["mu"], mu, atol=1e-6)


# -- resume ----------------------------------------------------------------------------------
def stop_after(rows: int):
    def progress(done: int, total: int) -> None:
        if done >= rows:
            raise KeyboardInterrupt

    return progress


@pytest.mark.parametrize("workers", [None, 1])
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tmp_path, workers):
    data = make_data() if workers is None else ItemsOnly(make_data())
    opts = {"batch_size": 16, "block_rows": 32, "workers": workers}
    embed(module_runner(), data, tmp_path / "whole.h5", **opts)
    out = tmp_path / "z.h5"
    with pytest.raises(KeyboardInterrupt):
        embed(module_runner(), data, out, progress=stop_after(80), **opts)
    assert not out.exists() and partial_path(out).exists()
    assert unfinished_rows(out) == 64  # two committed blocks of 32; rows 64..79 were lost
    result = embed(module_runner(), data, out, **opts)
    assert result.resumed_rows == 64 and result.n_rows == N
    assert_same_file(tmp_path / "whole.h5", out)
    assert read_all(out)["provenance"] == read_all(tmp_path / "whole.h5")["provenance"]


def test_resume_after_kill(tmp_path, onnx_model):
    np.save(tmp_path / "images.npy", make_images())
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            import numpy as np
            from latentdiag.data.base import ArrayDataset
            from latentdiag.embed import embed
            from latentdiag.runners import open_runner

            data = ArrayDataset(np.load({str(tmp_path / "images.npy")!r}), source="npy")
            runner = open_runner({str(onnx_model)!r}, device="cpu")
            kill = int(sys.argv[2])

            def progress(done, total):
                if kill and done >= kill:
                    os.kill(os.getpid(), signal.SIGKILL)

            embed(runner, data, sys.argv[1], batch_size=16, block_rows=32, progress=progress)
            """
        )
    )
    run = [sys.executable, str(script)]
    killed = subprocess.run([*run, str(tmp_path / "z.h5"), "100"], capture_output=True)
    assert killed.returncode == -9
    # Blocks are committed by a writer thread: the kill may land before the last ones.
    kept = unfinished_rows(tmp_path / "z.h5")
    assert kept is not None and kept % 32 == 0 and kept <= 96
    subprocess.run([*run, str(tmp_path / "z.h5"), "0"], check=True)
    subprocess.run([*run, str(tmp_path / "whole.h5"), "0"], check=True)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "z.h5")


def test_a_partial_of_another_job_is_refused(tmp_path):
    data = make_data()
    out = tmp_path / "z.h5"
    with pytest.raises(KeyboardInterrupt):
        embed(module_runner(), data, out, batch_size=16, block_rows=32, progress=stop_after(40))
    with pytest.raises(StoreError) as err:
        embed(module_runner(), data, out, batch_size=8)
    assert str(err.value) == (
        f"{partial_path(out)} is an unfinished run of a different job (batch_size: 16 there, "
        "8 now); resuming would mix the latents of two jobs in one file: run the same command "
        "as before, delete it, or run again with --overwrite to start over."
    )
    result = embed(module_runner(), data, out, batch_size=8, overwrite=True)
    assert result.resumed_rows == 0 and result.n_rows == N


def test_an_existing_output_is_refused(tmp_path):
    embed(module_runner(), make_data(20), tmp_path / "z.h5")
    with pytest.raises(StoreError) as err:
        embed(module_runner(), make_data(20), tmp_path / "z.h5")
    assert str(err.value) == (
        f"{tmp_path / 'z.h5'} already exists; choose another -o path or pass --overwrite."
    )


# -- shards ----------------------------------------------------------------------------------
def test_shards_merged_equal_one_run(tmp_path):
    data = make_data()
    embed(module_runner(), data, tmp_path / "whole.h5", batch_size=16)
    parts = []
    for k in range(3):
        part = tmp_path / f"part{k}.h5"
        result = embed(module_runner(), data, part, batch_size=16, shard=(k, 3))
        assert result.n_rows == len(range(k, N, 3))
        np.testing.assert_array_equal(read_all(part)["index"], np.arange(k, N, 3))
        parts.append(part)
    merged = merge_latents(parts[::-1], tmp_path / "merged.h5", block_rows=40)
    assert (merged.n_rows, merged.shards) == (N, 3)
    assert_same_file(tmp_path / "whole.h5", tmp_path / "merged.h5", exact=False)
    prov = read_all(tmp_path / "merged.h5")["provenance"]
    assert prov["shard"] is None and len(prov["merged_from"]) == 3


def test_shard_options():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1-4", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    with pytest.raises(ConfigError) as err:
        parse_shard("4/4")
    assert str(err.value) == (
        "--shard 4/4: K must lie in 0..N-1 (shards are numbered from 0); got K=4, N=4."
    )
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    assert shard_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert shard_from_env({}) is None
    assert shard_path("out/latents.h5", (2, 4)) == Path("out/latents.shard2-of-4.h5")


def test_an_empty_shard_or_empty_data_is_an_error(tmp_path):
    with pytest.raises(DataError) as err:
        embed(module_runner(), make_data(3), tmp_path / "z.h5", shard=(3, 5))
    assert str(err.value) == ("shard 3/5 of the data (3 images) is empty; use at most 3 shards.")
    empty = ArrayDataset(np.zeros((0, 1, 16, 16), np.uint8), source="nothing")
    with pytest.raises(DataError, match=r"the data \(nothing\) holds no images"):
        embed(module_runner(), empty, tmp_path / "z.h5")


# -- bad outputs and bad combinations --------------------------------------------------------
def test_nonfinite_outputs_are_counted_then_allowed(tmp_path):
    data = make_data()
    bright = int(np.sum(data.images[:, 0, 0, 0] / 255.0 > 0.9))
    assert bright > 0
    runner = module_runner(Encoder(nan_above=0.9).eval())
    out = tmp_path / "z.h5"
    with pytest.raises(ModelError) as err:
        embed(runner, data, out, batch_size=32)
    assert str(err.value) == (
        f"the model produced {6 * bright:,} non-finite values (NaN or inf: {6 * bright:,} in "
        f"mu, 0 in logvar) in {bright:,} of {N:,} rows; they are kept in {partial_path(out)}: "
        "run the same command with --allow-nonfinite to finish the file with them, or fix the "
        "model or its input (--normalize)."
    )
    result = embed(runner, data, out, batch_size=32, allow_nonfinite=True)
    assert result.resumed_rows == N and result.nonfinite == {"mu": 6 * bright, "logvar": 0}
    f = read_all(out)
    assert int(np.isnan(f["mu"]).any(axis=1).sum()) == bright
    assert f["provenance"]["nonfinite"] == {"mu": 6 * bright, "logvar": 0, "rows": bright}


class Huge(Encoder):
    """Finite outputs near float32's limit: their sum overflows, yet none is non-finite."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, lv = super().forward(x)
        return torch.full_like(mu, 3e38), lv


def test_huge_finite_outputs_are_not_counted_as_nonfinite(tmp_path):
    result = embed(module_runner(Huge().eval()), make_data(), tmp_path / "z.h5", batch_size=32)
    assert result.nonfinite == {"mu": 0, "logvar": 0}
    assert read_all(tmp_path / "z.h5")["provenance"]["nonfinite"]["rows"] == 0


def test_a_conditional_model_needs_labels(tmp_path):
    runner = module_runner(Conditional().eval())
    assert runner.spec.conditional
    with pytest.raises(ModelError) as err:
        embed(runner, make_data(labels=False), tmp_path / "z.h5")
    assert str(err.value) == (
        "the model takes labels (input 'labels': a conditional encoder) but the data has none; "
        "give data with labels."
    )
    data = make_data()
    embed(runner, data, tmp_path / "z.h5")
    f = read_all(tmp_path / "z.h5")
    with torch.no_grad():
        mu, _ = Encoder()(torch.from_numpy(data.images.astype(np.float32) / 255.0))
    np.testing.assert_allclose(f["mu"], mu.numpy() + data.labels[:, None], atol=1e-5)


def test_bad_batch_size_and_block_rows(tmp_path):
    with pytest.raises(ConfigError, match="--batch-size must be at least 1; got 0"):
        embed(module_runner(), make_data(10), tmp_path / "z.h5", batch_size=0)
    with pytest.raises(ConfigError, match=r"block_rows \(20\) must be a multiple"):
        embed(module_runner(), make_data(10), tmp_path / "z.h5", batch_size=8, block_rows=20)


# -- the command line ------------------------------------------------------------------------
@pytest.fixture()
def npz(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "data.npz"
    np.savez(path, images=make_images(60)[:, 0], labels=rng.integers(0, 3, 60))
    return path


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_cli_embed_onnx(tmp_path, onnx_model, npz, monkeypatch):
    out = tmp_path / "z.h5"
    argv = ["embed", str(onnx_model), str(npz), "-o", str(out), "--batch-size", "16"]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/latentdiag", *argv])
    result = invoke(*argv)
    assert result.exit_code == 0, result.stderr
    assert "running onnx model on onnxruntime CPUExecutionProvider" in result.stderr
    assert re.fullmatch(
        rf"wrote {re.escape(str(out))}: 60 rows × 6 dims \(mu, logvar\) at [\d,]+ images/s on "
        r"onnxruntime CPUExecutionProvider\n",
        result.stdout,
    ), result.stdout
    prov = read_all(out)["provenance"]
    assert prov["command"] == ["latentdiag", *argv]
    assert prov["data_source"] and prov["n_data"] == 60
    with LatentStore(out) as s:
        assert s.compression("mu") is None
    packed = tmp_path / "packed.h5"
    assert invoke(*argv[:3], "-o", str(packed), "--compress-latents").exit_code == 0
    with LatentStore(packed) as s:
        assert s.compression("mu") == s.compression("logvar") == "gzip"


def test_cli_embed_json_and_resume(tmp_path, onnx_model, npz):
    out = tmp_path / "z.h5"
    runner = open_runner(onnx_model, device="cpu")
    from latentdiag.data import open_dataset

    data = open_dataset(str(npz), size=16, channels=1)
    with pytest.raises(KeyboardInterrupt):
        embed(runner, data, out, batch_size=16, block_rows=16, progress=stop_after(40))
    result = invoke("embed", str(onnx_model), str(npz), "-o", str(out), "--batch-size", "16",
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    import json

    info = json.loads(result.stdout)
    # Blocks of one batch: three were committed before the stop at 40 rows.
    assert info["resumed_rows"] == 48 and info["n_rows"] == 60


def test_cli_embed_under_torchrun_takes_its_shard(tmp_path, onnx_model, npz):
    out = tmp_path / "z.h5"
    for rank in range(2):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        result = invoke("embed", str(onnx_model), str(npz), "-o", str(out), env=env)
        assert result.exit_code == 0, result.stderr
    shards = [tmp_path / "z.shard0-of-2.h5", tmp_path / "z.shard1-of-2.h5"]
    assert read_all(shards[1])["provenance"]["shard"] == "1/2"
    result = invoke("merge", *map(str, shards), "-o", str(tmp_path / "merged.h5"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"wrote {tmp_path / 'merged.h5'}: 60 rows from 2 shards\n"
    invoke("embed", str(onnx_model), str(npz), "-o", str(tmp_path / "whole.h5"))
    assert_same_file(tmp_path / "whole.h5", tmp_path / "merged.h5", exact=False)


def nan_graph(path: Path) -> Path:
    """mu = log(x - 0.5): NaN wherever a pixel is below 0.5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("Sub", ["f", "half"], ["d"]),
            helper.make_node("Log", ["d"], ["mu"]),
        ],
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(np.array(0.5, np.float32), "half")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def flat_graph(path: Path, features: int) -> Path:
    """An MLP-style encoder input: (N, features) vectors, mu = x."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["mu"])],
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["N", features])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def test_cli_errors(tmp_path, onnx_model, npz):
    out = str(tmp_path / "z.h5")
    cases = [
        (
            ["embed", str(tmp_path / "nope.onnx"), str(npz), "-o", out],
            f"Error: model file {tmp_path / 'nope.onnx'} does not exist; MODEL is an .onnx "
            "file, a TorchScript file (.pt, .pth, .jit), a torch.export file (.pt2), a "
            "reference run directory from `latentdiag train`, a diffusers or pythae model "
            "folder, or pkg.module:factory with --weights.",
        ),
        (
            ["embed", str(npz), str(npz), "-o", out],
            f"Error: {npz} is of an unknown model kind (.npz); MODEL is an .onnx file, a "
            "TorchScript file (.pt, .pth, .jit), a torch.export file (.pt2), a reference run "
            "directory from `latentdiag train`, a diffusers or pythae model folder, or "
            "pkg.module:factory with --weights.",
        ),
        (
            ["embed", str(onnx_model), str(npz), "-o", out, "--mu-output", "mean"],
            "Error: --mu-output 'mean': the model has no output of that name; its outputs are: "
            "z_mean, z_log_var.",
        ),
        (
            ["embed", str(flat_graph(tmp_path / "flat7.onnx", 7)), str(npz), "-o", out],
            "Error: model input 'x' expects (B, 7); the data's images are 1×16×16 = 256 values "
            "and no C×S×S image (C = 1 or 3) gives 7; pass --channels and --size that multiply "
            "to 7.",
        ),
        (
            ["embed", str(onnx_model), str(npz), "-o", out, "--shard", "2/2"],
            "Error: --shard 2/2: K must lie in 0..N-1 (shards are numbered from 0); got K=2, N=2.",
        ),
        (
            ["embed", str(onnx_model), str(npz), "-o", out, "--normalize", "0..255"],
            "Error: --normalize must be 0..1, -1..1, imagenet or MEAN:STD (comma-separated per "
            "channel, e.g. 0.5,0.5,0.5:0.25,0.25,0.25); got '0..255'.",
        ),
        (
            ["embed", str(onnx_model), str(npz), "-o", out, "--model-kwargs", "[1]"],
            "Error: --model-kwargs must be a JSON object; got [1].",
        ),
    ]
    for args, line in cases:
        result = invoke(*args)
        assert result.exit_code == 1, (args, result.stderr)
        assert error_line(result) == line
    assert not Path(out).exists()


def test_cli_error_for_an_unreadable_ir_version(tmp_path, npz):
    import onnx

    model = onnx.load(str(nan_graph(tmp_path / "m.onnx")))
    model.ir_version = 99
    onnx.save(model, str(tmp_path / "new.onnx"))
    result = invoke("embed", str(tmp_path / "new.onnx"), str(npz), "-o", str(tmp_path / "z.h5"))
    assert result.exit_code == 1
    assert re.fullmatch(
        r"Error: .*new\.onnx has ONNX IR version 99, but the installed onnxruntime [\d.]+ "
        r"reads IR versions up to \d+; .*",
        error_line(result),
    )


def test_cli_nonfinite_error_then_allowed(tmp_path, npz):
    model = nan_graph(tmp_path / "nan.onnx")
    out = tmp_path / "z.h5"
    args = ["embed", str(model), str(npz), "-o", str(out), "--size", "2"]
    result = invoke(*args)
    assert result.exit_code == 1
    line = error_line(result)
    assert re.fullmatch(
        r"Error: the model produced [\d,]+ non-finite values \(NaN or inf: [\d,]+ in mu, 0 in "
        rf"logvar\) in [\d,]+ of 60 rows; they are kept in {re.escape(str(out))}\.partial: run "
        r"the same command with --allow-nonfinite to finish the file with them, or fix the "
        r"model or its input \(--normalize\)\.",
        line,
    ), line
    result = invoke(*args, "--allow-nonfinite")
    assert result.exit_code == 0, result.stderr
    assert "resumed after 60 rows" in result.stdout


def test_cli_factory_with_weights(tmp_path, npz, monkeypatch):
    from safetensors.torch import save_file

    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def build(dim=6):\n"
        "    torch.manual_seed(1)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, dim))\n"
    )
    torch.manual_seed(9)
    trained = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 3))
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.chdir(tmp_path)
    result = invoke("embed", "mymodels:build", str(npz), "-o", "z.h5", "--weights",
                    "w.safetensors", "--model-kwargs", '{"dim": 3}', "--size", "16")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    f = read_all(tmp_path / "z.h5")
    assert "logvar" not in f and f["mu"].shape == (60, 3)
    images = np.load(npz)["images"].astype(np.float32)[:, None] / 255.0
    with torch.no_grad():
        want = trained(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(f["mu"], want, atol=1e-5)
    assert f["provenance"]["model_kind"] == "factory"
    assert "note: no --weights" not in result.stderr
    # Without --weights the factory's own (here: random) weights run, and the user is told.
    result = invoke("embed", "mymodels:build", str(npz), "-o", "r.h5", "--model-kwargs",
                    '{"dim": 3}', "--size", "16")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "note: no --weights given; the factory's own weights are used\n" in result.stderr


def test_help_lists_embed_and_merge():
    result = invoke("--help")
    assert "embed" in result.stdout and "merge" in result.stdout
    # The command modules import neither torch nor onnxruntime: --help stays instant.
    code = (
        "import sys, latentdiag.cli.embed_cmd, latentdiag.cli.merge_cmd; "
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_cli_ctrl_c_keeps_the_partial_file_and_says_how_to_resume(
    tmp_path, onnx_model, npz, monkeypatch
):
    import latentdiag.embed

    real = latentdiag.embed.embed

    def interrupted(*args: Any, **kwargs: Any):
        kwargs.update(batch_size=16, block_rows=16, progress=stop_after(40))
        return real(*args, **kwargs)

    monkeypatch.setattr(latentdiag.embed, "embed", interrupted)
    out = tmp_path / "z.h5"
    result = invoke("embed", str(onnx_model), str(npz), "-o", str(out))
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == (
        f"Interrupted: 48 rows are kept in {out}.partial; run the same command to resume."
    )
    monkeypatch.setattr(latentdiag.embed, "embed", real)
    result = invoke("embed", str(onnx_model), str(npz), "-o", str(out), "--batch-size", "16")
    assert result.exit_code == 0, result.stderr
    assert "resumed after 48 rows" in result.stdout


def test_cli_embed_an_image_folder_through_dataloader_workers(tmp_path, onnx_model):
    from PIL import Image

    rng = np.random.default_rng(7)
    for label in ("benign", "malignant"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{i}.png")
    out = tmp_path / "z.h5"
    result = invoke("embed", str(onnx_model), str(tmp_path / "imgs"), "-o", str(out),
                    "--workers", "1", "--batch-size", "4")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    f = read_all(out)
    assert f["label_names"] == ["benign", "malignant"]
    np.testing.assert_array_equal(f["labels"], [0] * 5 + [1] * 5)
    assert f["sample_ids"][0].endswith("0.png") and "benign" in f["sample_ids"][0]
    # The folder was decoded at the model's size and channels (16×16 gray) in the worker.
    assert f["provenance"]["preprocessing"]["input_shape"] == [1, 16, 16]
    assert f["mu"].shape == (10, 6) and np.isfinite(f["mu"]).all()


def test_cli_embed_a_reference_run_directory(tmp_path, npz, monkeypatch):
    import reference_models
    from latentdiag.runners.loading import folder_sha256

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": "disentangled"}')
    (run / "weights.safetensors").write_bytes(b"weights")
    encoder = Conditional().eval()
    seen = {}

    def load_encoder(run_dir, *, device="cpu"):
        seen.update(run_dir=str(run_dir), device=device)
        info = {"model": "disentangled", "conditional": True, "channels": 1, "size": 16,
                "label_names": ["0", "1", "2"], "partitions": {"shared": [0, 4],
                "modality": [4, 6]}, "latent_dim": 6}  # fmt: skip
        return encoder, info

    monkeypatch.setattr(reference_models, "load_encoder", load_encoder, raising=False)
    out = tmp_path / "z.h5"
    result = invoke("embed", str(run), str(npz), "-o", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert seen == {"run_dir": str(run), "device": "cpu"}
    assert "running reference model on torch cpu" in result.stderr
    f = read_all(out)
    assert f["partitions"] == {"shared": (0, 4), "modality": (4, 6)}
    prov = f["provenance"]
    assert prov["model_kind"] == "reference" and prov["model"] == str(run)
    assert prov["model_sha256"] == folder_sha256(run)
    images = np.load(npz)["images"].astype(np.float32)[:, None] / 255.0
    with torch.no_grad():
        mu, _ = encoder(torch.from_numpy(images), torch.from_numpy(f["labels"]))
    np.testing.assert_allclose(f["mu"], mu.numpy(), atol=1e-5)


def test_a_conditional_model_needs_the_labels_it_was_trained_on(tmp_path):
    runner = open_runner(
        Conditional().eval(), device="cpu", info={"conditional": True,
        "label_names": ["oct", "chest", "path"]},
    )  # fmt: skip
    with pytest.raises(ModelError) as err:
        embed(runner, make_data(), tmp_path / "z.h5")
    assert str(err.value) == (
        "the model was trained on the labels oct, chest, path, but the data's labels are chest, "
        "oct, path; a conditional encoder needs the same labels in the same order."
    )


def test_onnx_metadata_partitions_and_the_partition_option(tmp_path, onnx_model, npz):
    import onnx

    model = onnx.load(str(onnx_model))
    onnx.helper.set_model_props(model, {"latentdiag.partitions": '{"a": [0, 2], "b": [2, 6]}'})
    declared = tmp_path / "declared.onnx"
    onnx.save(model, str(declared))
    result = invoke("embed", str(declared), str(npz), "-o", str(tmp_path / "a.h5"))
    assert result.exit_code == 0, result.stderr
    assert read_all(tmp_path / "a.h5")["partitions"] == {"a": (0, 2), "b": (2, 6)}
    # --partition replaces what the model declares.
    out = tmp_path / "b.h5"
    result = invoke(
        "embed", str(declared), str(npz), "-o", str(out), "--partition", "x=0:3",
        "--partition", "y=3:6",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert read_all(out)["partitions"] == {"x": (0, 3), "y": (3, 6)}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "shared=8:0",
            "Error: --partition must be NAME=START:STOP with START < STOP, e.g. shared=0:8; "
            "got 'shared=8:0'.",
        ),
        ("shared=0:99", "Error: {out}: partition 'shared' = [0, 99) lies outside the 6 latent "
         "dimensions; expected 0 <= start < stop <= 6."),
    ],
)  # fmt: skip
def test_bad_partition_option(tmp_path, onnx_model, npz, value, message):
    out = tmp_path / "p.h5"
    result = invoke("embed", str(onnx_model), str(npz), "-o", str(out), "--partition", value)
    assert result.exit_code == 1
    assert error_line(result) == message.format(out=out)
    assert not out.exists()


def test_bad_partition_metadata_is_a_model_error(tmp_path, onnx_model):
    import onnx

    model = onnx.load(str(onnx_model))
    onnx.helper.set_model_props(model, {"latentdiag.partitions": "[1, 2]"})
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match=r"metadata 'latentdiag.partitions' must be a JSON"):
        open_runner(str(bad), device="cpu")


def test_cli_embed_a_folder_keeps_its_levels(tmp_path: Path, onnx_model: Path) -> None:
    """root/<modality>/<site>/x.png: the label is the first level, the site a column."""
    from click.testing import CliRunner
    from PIL import Image

    from latentdiag.cli import cli

    rng = np.random.default_rng(0)
    for modality in ("ct", "mri"):
        for site in ("site_A", "site_B"):
            folder = tmp_path / "data" / modality / site
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 256, (16, 16), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "z.h5ad"
    data = str(tmp_path / "data")
    r = CliRunner().invoke(cli, ["embed", str(onnx_model), data, "-o", str(out)])
    assert r.exit_code == 0, r.output
    from latentdiag.store import open_latents

    with open_latents(out) as s:
        assert list(s.columns) == ["label", "level2"]
        assert s.label_key == "label" and s.label_names == ["ct", "mri"]
        assert s.columns["level2"].counts() == {"site_A": 12, "site_B": 12}
    # The site as the label, the modality as the batch: one command, no rewriting.
    r = CliRunner().invoke(
        cli, ["metrics", str(out), "--label-key", "level2", "--batch-key", "label", "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = __import__("json").loads(r.stdout)
    assert doc["label_key"] == "level2" and doc["batch_key"] == "label"
    assert doc["batch_names"] == ["ct", "mri"]
    # --label-key at embed time makes the site the file's default label.
    out2 = tmp_path / "by_site.h5"
    r = CliRunner().invoke(
        cli, ["embed", str(onnx_model), data, "-o", str(out2), "--label-key", "level2"]
    )
    assert r.exit_code == 0, r.output
    with LatentStore(out2) as s:
        assert s.label_key == "level2" and s.label_names == ["site_A", "site_B"]
    r = CliRunner().invoke(
        cli, ["embed", str(onnx_model), data, "-o", str(tmp_path / "x.h5"), "--label-key", "lvl"]
    )
    assert r.exit_code == 1
    assert r.stderr.splitlines()[-1] == (
        f"Error: --label-key lvl: {data} has no column 'lvl'. Its columns: label (categorical, "
        "2), level2 (categorical, 2)."
    )


KILLABLE = textwrap.dedent(
    """
    import os, signal
    import torch


    class Enc(torch.nn.Module):
        '''A factory model whose weights follow its seed; killed by SIGKILL on call KILL_AT.'''

        def __init__(self, seed: int) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.lin = torch.nn.Linear(256, 4)
            self.calls = 0

        def encode(self, x):
            self.calls += 1
            if self.calls == int(os.environ.get("KILL_AT", "0")):
                os.kill(os.getpid(), signal.SIGKILL)
            return self.lin(x.flatten(1)), torch.zeros(x.shape[0], 4)


    def build(seed: int = 0):
        return Enc(seed)
    """
)


def test_resume_with_other_kwargs_after_sigkill_is_refused(tmp_path):
    """A factory without --weights is known by its name, source and kwargs: resuming with other
    kwargs would put two models' latents in one file."""
    (tmp_path / "killable.py").write_text(KILLABLE)
    np.save(tmp_path / "images.npy", make_images())
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = tmp_path / "z.h5"

    def embed_cli(seed: int, kill_at: int = 0, target: Path = out) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable, "-m", "latentdiag", "embed", "killable:build",
            str(tmp_path / "images.npy"), "-o", str(target), "--batch-size", "16",
            "--model-kwargs", json.dumps({"seed": seed}), "--device", "cpu",
        ]  # fmt: skip
        return subprocess.run(
            cmd, env={**env, "KILL_AT": str(kill_at)}, capture_output=True, text=True
        )

    killed = embed_cli(1, kill_at=5)
    assert killed.returncode == -9, killed.stderr
    assert not out.exists() and partial_path(out).exists()
    refused = embed_cli(2)
    assert refused.returncode == 1
    (line,) = [ln for ln in refused.stderr.splitlines() if ln.startswith("Error:")]
    assert line.startswith(
        f"Error: {partial_path(out)} is an unfinished run of a different job (model_kwargs: "
        '{"seed": 1} there, {"seed": 2} now); resuming would mix the latents of two jobs'
    )
    assert "Traceback" not in refused.stderr
    # The same job resumes, and its file equals an uninterrupted run's.
    assert embed_cli(1).returncode == 0
    assert embed_cli(1, target=tmp_path / "whole.h5").returncode == 0
    assert_same_file(tmp_path / "whole.h5", out)
    with LatentStore(out) as s:
        job = s.provenance["job"]
        assert job["model_kwargs"] == {"seed": 1} and job["factory_source_sha256"]
    # Editing the factory's code is another model too.
    assert embed_cli(1, kill_at=3, target=tmp_path / "y.h5").returncode == -9
    (tmp_path / "killable.py").write_text(KILLABLE.replace("256, 4", "256, 4, bias=False"))
    again = embed_cli(1, target=tmp_path / "y.h5")
    assert again.returncode == 1 and "factory_source_sha256" in again.stderr
