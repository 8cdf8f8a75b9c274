"""Merging shard files: the happy path is in test_embed; here every way a merge must refuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.data.base import ArrayDataset
from latentdiag.embed import embed
from latentdiag.errors import StoreError
from latentdiag.merge import merge_latents
from latentdiag.runners import open_runner
from latentdiag.store import LatentStore, LatentWriter, write_latents

N = 30


def runner(name: str = "enc"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    return open_runner(model, device="cpu", name=name)


def data() -> ArrayDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N, 1, 4, 4), dtype=np.uint8)
    return ArrayDataset(images, labels=rng.integers(0, 2, N), label_names=["a", "b"], source="t")


@pytest.fixture()
def shards(tmp_path) -> list[Path]:
    out = []
    for k in range(3):
        path = tmp_path / f"part{k}.h5"
        embed(runner(), data(), path, batch_size=4, shard=(k, 3))
        out.append(path)
    return out


def test_merge_puts_rows_back_in_data_order(tmp_path, shards):
    merge_latents(shards, tmp_path / "m.h5", block_rows=7)
    embed(runner(), data(), tmp_path / "whole.h5", batch_size=4)
    with LatentStore(tmp_path / "m.h5") as m, LatentStore(tmp_path / "whole.h5") as w:
        np.testing.assert_array_equal(m.index, np.arange(N))
        np.testing.assert_allclose(m.mu, w.mu, atol=1e-6)
        np.testing.assert_array_equal(m.labels, w.labels)
        np.testing.assert_array_equal(m.sample_ids, w.sample_ids)


def test_a_missing_shard_is_named(tmp_path, shards):
    with pytest.raises(StoreError) as err:
        merge_latents([shards[0], shards[2]], tmp_path / "m.h5")
    assert str(err.value) == "shard 1/3 is missing (1 of 3 shards missing); give all 3 shard files."
    assert not (tmp_path / "m.h5").exists()


def test_a_repeated_shard_is_named(tmp_path, shards):
    copy = tmp_path / "copy.h5"
    shutil.copy(shards[1], copy)
    with pytest.raises(StoreError) as err:
        merge_latents([*shards, copy], tmp_path / "m.h5")
    assert str(err.value) == (
        f"shard 1/3 is given 2 times ({shards[1]}, {copy}); give each shard once."
    )
    with pytest.raises(StoreError, match="is given twice"):
        merge_latents([shards[0], shards[0]], tmp_path / "m.h5")


def test_shards_of_different_jobs_are_refused(tmp_path, shards):
    other = tmp_path / "other1.h5"
    embed(runner("another-model"), data(), other, batch_size=4, shard=(1, 3))
    with pytest.raises(StoreError) as err:
        merge_latents([shards[0], other, shards[2]], tmp_path / "m.h5")
    assert str(err.value) == (
        f'{other} and {shards[0]} come from different embed jobs (model: "another-model" vs '
        '"enc"); only shards of one run can be merged.'
    )


def test_files_without_index_are_refused(tmp_path):
    write_latents(tmp_path / "a.h5", np.zeros((3, 2), np.float32))
    with pytest.raises(StoreError) as err:
        merge_latents([tmp_path / "a.h5"], tmp_path / "m.h5")
    assert str(err.value) == (
        f"{tmp_path / 'a.h5'} has no /index (each row's position in the data); merge joins "
        "files written by `latentdiag embed --shard K/N`."
    )


def write_indexed(path: Path, index: list[int], dim: int = 2) -> Path:
    with LatentWriter(path, latent_dim=dim, index=True) as w:
        w.append(np.asarray(index, np.float32)[:, None].repeat(dim, 1), index=index)
    return path


def test_a_sample_in_two_files_is_refused(tmp_path):
    a = write_indexed(tmp_path / "a.h5", [0, 2, 3])
    b = write_indexed(tmp_path / "b.h5", [1, 3])
    with pytest.raises(StoreError) as err:
        merge_latents([a, b], tmp_path / "m.h5")
    assert str(err.value) == (
        f"sample 3 appears more than once: in {a} and in {b}; each sample must be in exactly "
        "one shard."
    )


def test_a_gap_is_refused(tmp_path):
    a = write_indexed(tmp_path / "a.h5", [0, 1, 3])
    b = write_indexed(tmp_path / "b.h5", [4])
    with pytest.raises(StoreError) as err:
        merge_latents([a, b], tmp_path / "m.h5")
    assert str(err.value) == (
        "sample 2 is in none of the shard files (1 missing in rows 0..3); give every shard."
    )


def test_files_of_different_shapes_are_refused(tmp_path):
    a = write_indexed(tmp_path / "a.h5", [0], dim=2)
    b = write_indexed(tmp_path / "b.h5", [1], dim=3)
    with pytest.raises(StoreError, match=r"differ in latent_dim \(3 vs 2\)"):
        merge_latents([a, b], tmp_path / "m.h5")


def test_merge_writes_in_index_order_from_unordered_files(tmp_path):
    a = write_indexed(tmp_path / "a.h5", [1, 4, 5])
    b = write_indexed(tmp_path / "b.h5", [0, 2, 3])
    merge_latents([a, b], tmp_path / "m.h5", block_rows=2)
    with LatentStore(tmp_path / "m.h5") as m:
        np.testing.assert_array_equal(m.mu[:, 0], np.arange(6, dtype=np.float32))


def test_cli_merge_error_line(tmp_path, shards):
    result = CliRunner().invoke(
        cli, ["merge", str(shards[0]), str(shards[2]), "-o", str(tmp_path / "m.h5")]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: shard 1/3 is missing (1 of 3 shards missing); give all 3 shard files.\n"
    )
    result = CliRunner().invoke(cli, ["merge", str(shards[0]), "-o", str(shards[0])])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the output {shards[0]} is one of the inputs; choose another -o path.\n"
    )


def test_cli_merge_onto_an_existing_file_names_overwrite(tmp_path, shards):
    out = tmp_path / "m.h5"
    assert CliRunner().invoke(cli, ["merge", *map(str, shards), "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(cli, ["merge", *map(str, shards), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {out} already exists; choose another output path, remove it, or overwrite it "
        "(--overwrite).\n"
    )
    again = CliRunner().invoke(cli, ["merge", *map(str, shards), "-o", str(out), "--overwrite"])
    assert again.exit_code == 0, again.stderr
