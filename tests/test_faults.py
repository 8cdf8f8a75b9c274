"""Faults: a full disk during embed (injected, and a real 1-4 MiB tmpfs where mounting is
allowed) leaves the .partial at its last commit with one Error line, and the same command
resumes to the file an uninterrupted run writes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_embed import N, assert_same_file, make_data, make_images, module_runner, stop_after

import latentdiag.store.writer as writer_module
from latentdiag.cli import cli
from latentdiag.embed import embed
from latentdiag.errors import StoreError
from latentdiag.store import LatentStore, partial_path


def test_a_full_disk_stops_at_the_last_commit_and_the_run_resumes(tmp_path, monkeypatch) -> None:
    opts = {"batch_size": 16, "block_rows": 32}
    embed(module_runner(), make_data(), tmp_path / "whole.h5", **opts)
    out = tmp_path / "z.h5"
    calls = {"n": 0}

    def little_room(folder: Path) -> int:
        calls["n"] += 1
        return 10**9 if calls["n"] <= 2 else 1000  # room for two blocks, then the disk is full

    monkeypatch.setattr(writer_module, "free_bytes", little_room)
    message = r"not enough room for z\.h5 in .*: 0\.0 MiB free, the next block of 32 rows "
    with pytest.raises(StoreError, match=message + r"needs about 0\.\d MiB.*resumes from row 64"):
        embed(module_runner(), make_data(), out, **opts)
    assert not out.exists() and partial_path(out).exists()
    monkeypatch.setattr(writer_module, "free_bytes", lambda folder: 10**9)  # room made
    result = embed(module_runner(), make_data(), out, **opts)
    assert result.resumed_rows == 64 and result.n_rows == N
    assert_same_file(tmp_path / "whole.h5", out)


def test_a_failed_write_is_one_error_line(tmp_path, monkeypatch) -> None:
    """A write the room check cannot foresee (a quota, an I/O error) fails cleanly too."""
    import h5py

    np.save(tmp_path / "images.npy", make_images())
    real = h5py.Dataset.__setitem__

    def failing(self, key, value):  # type: ignore[no-untyped-def]
        if self.name == "/mu" and self.shape[0] > 32:
            raise OSError(122, "Disk quota exceeded")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    factory = tmp_path / "fault_model.py"
    factory.write_text(
        "from test_embed import Encoder\n\ndef make():\n    return Encoder().eval()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    res = CliRunner().invoke(
        cli,
        ["embed", "fault_model:make", str(tmp_path / "images.npy"), "-o", str(tmp_path / "z.h5"),
         "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "Error: the disk (or quota) holding" in res.output and "Traceback" not in res.output


def test_a_failed_write_keeps_the_last_commit_and_the_run_resumes(tmp_path, monkeypatch) -> None:
    """A write that fails in the middle of a block (here a quota, after two blocks were
    committed) leaves the .partial at its last commit; the same job then resumes from it."""
    import h5py

    opts = {"batch_size": 16, "block_rows": 32}
    embed(module_runner(), make_data(), tmp_path / "whole.h5", **opts)
    real = h5py.Dataset.__setitem__

    def failing(self, key, value):  # type: ignore[no-untyped-def]
        if self.name == "/logvar" and self.shape[0] > 64:  # mu of block 3 written, then this
            raise OSError(122, "Disk quota exceeded")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    out = tmp_path / "z.h5"
    with pytest.raises((StoreError, OSError)):
        embed(module_runner(), make_data(), out, **opts)
    assert not out.exists() and partial_path(out).exists()
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real)  # the quota raised
    result = embed(module_runner(), make_data(), out, **opts)
    assert result.resumed_rows == 64 and result.n_rows == N
    assert_same_file(tmp_path / "whole.h5", out)


def _can_mount_tmpfs(target: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)],
                        capture_output=True).returncode == 0  # fmt: skip
    return ok


@pytest.fixture()
def small_tmpfs(tmp_path):
    target = tmp_path / "tmpfs"
    if not _can_mount_tmpfs(target):
        pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN here")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_embed_on_a_real_full_tmpfs_resumes_after_room_is_made(tmp_path, small_tmpfs) -> None:
    """A 2 MiB tmpfs, latents of about 2.5 MiB in blocks of 16,384 rows: the disk fills after
    the first block; remounted at 8 MiB, the same command resumes, and the file equals an
    uninterrupted run's."""
    n = 40_000
    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (n, 1, 16, 16), dtype=np.uint8))
    (tmp_path / "fault_model.py").write_text(
        "from test_embed import Encoder\n\ndef make():\n    return Encoder().eval()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path(__file__).parent)]))
    argv = [sys.executable, "-m", "latentdiag", "embed", "fault_model:make",
            str(tmp_path / "images.npy"), "--device", "cpu"]  # fmt: skip
    out = small_tmpfs / "z.h5"
    first = subprocess.run([*argv, "-o", str(out)], capture_output=True, text=True, env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    errors = [ln for ln in first.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "not enough room for z.h5" in errors[0], first.stderr
    assert "resumes from row 16,384" in errors[0]  # the first block was committed
    assert "Traceback" not in first.stderr
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_tmpfs)], check=True)
    second = subprocess.run([*argv, "-o", str(out)], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed after" in second.stdout
    whole = tmp_path / "whole.h5"
    ref = subprocess.run([*argv, "-o", str(whole)], capture_output=True, text=True, env=env)
    assert ref.returncode == 0, ref.stderr
    assert_same_file(whole, out)


# -- corruption never surprises ---------------------------------------------------------------


def _corrupt(data: bytes, rng: np.random.Generator, kind: str) -> bytes:
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[: int(rng.integers(0, len(b)))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 8))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    i, size = int(rng.integers(0, len(b))), int(rng.integers(1, 4096))
    size = min(size, len(b) - i)
    b[i : i + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    return bytes(b)


def _result(argv: list[str], output: str) -> str:
    """What a successful run produced, to compare with the undamaged input's: the latents
    embed wrote, the weights train ended with, or the JSON printed."""
    if argv[0] == "embed":
        with LatentStore(argv[argv.index("-o") + 1]) as store:
            return hashlib.blake2b(np.asarray(store.mu[:]).tobytes()).hexdigest()
    if argv[0] == "train":
        return hashlib.blake2b((Path(argv[2]) / "model.safetensors").read_bytes()).hexdigest()
    return output


def _fuzz(
    source: Path, argv: list[str], cases: int, seed: int, bad: Path | None = None
) -> dict[str, int]:
    """Damage ``source`` ``cases`` times and run ``argv`` (``{bad}`` is the damaged copy, by
    default ``bad.SUFFIX`` beside it): each run must end with an Error line (exit 1) or
    succeed (exit 0), never a traceback. A success is counted as ``same`` or ``different``
    by what it produced, against the run on the undamaged file."""
    rng = np.random.default_rng(seed)
    data = source.read_bytes()
    bad = bad or source.with_name("bad" + source.suffix)
    runner = CliRunner()
    args = [a.replace("{bad}", str(bad)) for a in argv]
    bad.write_bytes(data)
    clean = runner.invoke(cli, args)
    assert clean.exit_code == 0, clean.output
    expected = _result(args, clean.output)
    outcomes: dict[str, int] = {}
    for case in range(cases):
        kind = ("truncate", "flip", "block")[case % 3]
        bad.write_bytes(_corrupt(data, rng, kind))
        res = runner.invoke(cli, args)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise AssertionError(
                f"case {case} ({kind}): {type(res.exception).__name__}: {res.exception}"
            ) from res.exception
        if res.exit_code == 0:
            outcome = "same" if _result(args, res.output) == expected else "different"
        else:
            assert res.exit_code == 1 and "Error:" in res.output, (case, kind, res.output)
            outcome = "refused"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


# Where a damaged file can still give other numbers, because its format has no checksum:
# ONNX and TorchScript encoders (a flipped weight runs), image .npz (a changed pixel is an
# image). latentdiag's own files carry checksums: latents (Fletcher-32 per chunk) and the
# reference models' safetensors (BLAKE2b of their tensors), so for them it must never happen.
SILENT_POSSIBLE = {"onnx", "torchscript", "npz", "h5ad"}


@pytest.fixture(scope="module")
def damaged_inputs(tmp_path_factory) -> dict[str, Path]:
    """Real files of each kind latentdiag reads: an embed output, an .h5ad, an ONNX encoder,
    an .npz of images."""
    import torch
    from test_embed import Encoder

    from latentdiag.data import write_dataset
    from latentdiag.store import write_latents

    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    n = 240
    lat = write_latents(
        root / "lat.h5", rng.normal(size=(n, 6)).astype(np.float32),
        logvar=np.full((n, 6), -1.0, np.float32), labels=np.arange(n) % 3,
        label_names=["a", "b", "c"], factors=rng.uniform(size=(n, 2)),
        sample_ids=[f"s{i}" for i in range(n)], partitions={"p": (0, 3), "q": (3, 6)},
        columns={"batch": np.array(["x", "y"])[np.arange(n) % 2]},
    )  # fmt: skip
    h5ad = root / "lat.h5ad"
    assert CliRunner().invoke(cli, ["convert", str(lat), "-o", str(h5ad)]).exit_code == 0
    onnx = root / "enc.onnx"
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        torch.onnx.export(Encoder().eval(), (torch.rand(2, 1, 16, 16),), str(onnx), dynamo=False,
                          input_names=["x"], output_names=["mu", "logvar"],
                          dynamic_axes={"x": {0: "b"}, "mu": {0: "b"}, "logvar": {0: "b"}},
                          opset_version=17)  # fmt: skip
    npz = write_dataset(root / "images.npz", make_images(64), np.arange(64) % 3, ["a", "b", "c"])
    run = root / "run"
    res = CliRunner().invoke(
        cli,
        ["train", "--model", "baseline", "--n-images", "48", "--size", "16", "--batch-size",
         "16", "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(run)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    names = ["chest_xray", "oct", "pathology", "dermatoscopy"]  # the synthetic data's, as trained
    run_images = write_dataset(root / "run_images.npz", make_images(64), np.arange(64) % 4, names)
    script = root / "enc.pt"
    torch.jit.script(Encoder().eval()).save(str(script))
    return {"latents": Path(lat), "h5ad": h5ad, "onnx": onnx, "npz": npz, "run": run,
            "torchscript": script, "run_images": run_images}  # fmt: skip


def _run_copy(paths: dict[str, Path], out: Path) -> Path:
    """A copy of the trained run (the fuzz damages one of its files)."""
    copy = out.parent / "badrun"
    if not copy.exists():
        shutil.copytree(paths["run"], copy)
    return copy


def _cases(kind: str, paths: dict[str, Path], out: Path) -> tuple[Path, list[str], Path | None]:
    """What is damaged, the command that reads it, and where the damaged copy goes."""
    images = str(paths["npz"])
    if kind == "latents":
        return paths["latents"], ["metrics", "{bad}", "--json"], None
    if kind == "h5ad":
        return paths["h5ad"], ["inspect", "{bad}", "--json"], None
    if kind in ("onnx", "torchscript"):
        argv = ["embed", "{bad}", images, "-o", str(out), "--overwrite", "--device", "cpu"]
        return paths[kind], argv, None
    if kind == "npz":
        argv = ["embed", str(paths["onnx"]), "{bad}", "-o", str(out), "--overwrite"]
        return paths["npz"], [*argv, "--device", "cpu"], None
    run = _run_copy(paths, out)
    if kind == "checkpoint":  # train --resume reads the whole checkpoint
        name, argv = "checkpoint.safetensors", ["train", "--out", str(run), "--resume", "--quiet"]
    else:  # "weights": embed with the run reads its weights (and the config they carry)
        name = "model.safetensors"
        images = str(paths["run_images"])
        argv = ["embed", str(run), images, "-o", str(out), "--overwrite", "--device", "cpu"]
    return paths["run"] / name, argv, run / name


# (A run's config.json is written for people and never read: the weights carry the config.)
FUZZ_KINDS = ["latents", "h5ad", "onnx", "npz", "torchscript", "checkpoint", "weights"]


def _fuzz_kind(
    kind: str, inputs: dict[str, Path], tmp_path: Path, cases: tuple[int, int], seed: int
) -> dict[str, int]:
    """Fuzz one kind of file (``cases``: for latents and .h5ad, for the slower kinds); files
    with a checksum of latentdiag's must never give other numbers."""
    source, argv, bad = _cases(kind, inputs, tmp_path / "out.h5")
    n = cases[0] if kind in ("latents", "h5ad") else cases[1]
    outcomes = _fuzz(source, argv, cases=n, seed=seed, bad=bad)
    if kind not in SILENT_POSSIBLE:
        assert outcomes.get("different", 0) == 0, outcomes
    print(kind, outcomes)
    return outcomes


@pytest.mark.parametrize("kind", FUZZ_KINDS)
def test_damaged_inputs_are_refused_or_read_never_a_traceback(
    kind: str, damaged_inputs: dict[str, Path], tmp_path: Path
) -> None:
    outcomes = _fuzz_kind(kind, damaged_inputs, tmp_path, cases=(60, 30), seed=1)
    assert outcomes.get("refused", 0) > 0  # the damage was noticed


@pytest.mark.slow
@pytest.mark.parametrize("kind", FUZZ_KINDS)
def test_damaged_inputs_longer_fuzz(
    kind: str, damaged_inputs: dict[str, Path], tmp_path: Path
) -> None:
    _fuzz_kind(kind, damaged_inputs, tmp_path, cases=(600, 60), seed=2)


# -- concurrency ------------------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path: Path, onnx_model) -> None:
    """HDF5's lock on the .partial: a second embed onto the same output is refused with a
    message that says so (and never suggests deleting the running job's file)."""
    out = tmp_path / "z.h5"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from latentdiag.store import LatentWriter\n"
         "w = LatentWriter(sys.argv[1], latent_dim=6)\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        np.save(tmp_path / "images.npy", make_images())
        res = CliRunner().invoke(
            cli, ["embed", str(onnx_model), str(tmp_path / "images.npy"), "-o", str(out)]
        )
        assert res.exit_code == 1, res.output
        assert "is being written by another process" in res.output
        assert "Delete" not in res.output and "Traceback" not in res.output
    finally:
        holder.kill()
        holder.wait()
    assert partial_path(out).exists()  # the first writer's file is untouched


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from test_embed import onnx_model as make

    return make.__wrapped__(tmp_path_factory)


# -- full disks for the other writers ---------------------------------------------------------


def test_writers_check_the_room_first(tmp_path: Path, monkeypatch) -> None:
    """data synth, merge and convert refuse to start a write that cannot fit."""
    import latentdiag.store._common as common
    from latentdiag.store import write_latents

    lat = write_latents(tmp_path / "lat.h5", np.zeros((50, 3), np.float32))
    monkeypatch.setattr(common, "free_bytes", lambda folder: 4096)
    runner = CliRunner()
    for argv, what in (
        (["data", "synth", str(tmp_path / "s.h5"), "--n", "50"], "the data needs about"),
        (["merge", str(lat), "-o", str(tmp_path / "m.h5")], "the merge needs about"),
        (["convert", str(lat), "-o", str(tmp_path / "c.h5ad")], "the converted file needs"),
    ):
        res = runner.invoke(cli, argv)
        assert res.exit_code == 1 and "Error: not enough room for" in res.output, res.output
        assert what in res.output and "Nothing was written" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat.h5"]  # no file left behind


def test_a_full_disk_anywhere_is_one_error_line(tmp_path: Path, monkeypatch) -> None:
    """The command line's safety net: ENOSPC from any write (here numpy's), or a library's
    own error that says so (safetensors'), is one Error line, never a traceback."""
    import errno

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full)
    res = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "s.npz"), "--n", "20"])
    assert res.exit_code == 1 and res.output.startswith("Error: no room left writing")
    assert str(tmp_path / "s.npz") in res.output and not list(tmp_path.iterdir())

    import reference_models.checkpoint as checkpoint

    def rust_full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(checkpoint, "save_file", rust_full)  # the name the trainer calls
    res = CliRunner().invoke(
        cli,
        ["train", "--model", "baseline", "--n-images", "48", "--size", "16", "--batch-size", "16",
         "--epochs", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 1 and "Error: no room left" in res.output, res.output


def test_a_full_disk_before_a_checkpoint_is_one_error_line_and_the_run_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    """train checks the room a checkpoint needs before writing it; the run stops at the last
    checkpoint written, and --resume ends where an uninterrupted run does."""
    from safetensors.numpy import load_file

    import latentdiag.store._common as common

    argv = ["train", "--model", "baseline", "--n-images", "48", "--size", "16", "--batch-size",
            "16", "--epochs", "2", "--device", "cpu", "--quiet", "--set",
            "train.checkpoint_every=1"]  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(cli, [*argv, "--out", str(tmp_path / "straight")]).exit_code == 0
    calls = {"n": 0}

    def filling(folder):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return 10**9 if calls["n"] <= 2 else 1000  # two checkpoints fit, then the disk is full

    monkeypatch.setattr(common, "free_bytes", filling)
    run = tmp_path / "run"
    res = runner.invoke(cli, [*argv, "--out", str(run)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert re.match(r"Error: not enough room for (checkpoint|model)\.safetensors in ", res.output)
    assert "run the same command with --resume" in res.output
    assert sorted(p.name for p in run.iterdir() if ".tmp-" in p.name) == []
    monkeypatch.setattr(common, "free_bytes", lambda folder: 10**9)  # room made
    res = runner.invoke(cli, ["train", "--out", str(run), "--resume", "--quiet"])
    assert res.exit_code == 0, res.output
    a, b = (
        load_file(str(tmp_path / "straight" / "model.safetensors")),
        load_file(str(run / "model.safetensors")),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a)


# -- two reports into one folder --------------------------------------------------------------


def test_two_reports_into_one_folder_write_one_after_the_other(tmp_path: Path, monkeypatch):
    """Each report writes its files under a lock on the folder: the folder ends as one
    report's whole output (page, figures and metrics.json of the same run), never a mix."""
    import threading
    import time

    import latentdiag.report.build as build

    tree, text = build._replace_tree, build._replace_text

    def slow_tree(target, files):  # type: ignore[no-untyped-def]
        if any("second" in p.name for p in files):
            time.sleep(0.2)  # the second writer's figures land after the first's
        tree(target, files)

    def slow_text(path, content):  # type: ignore[no-untyped-def]
        if "first" in content:
            time.sleep(0.5)  # and the first writer's page after the second's: a mix, unlocked
        text(path, content)

    monkeypatch.setattr(build, "_replace_tree", slow_tree)
    monkeypatch.setattr(build, "_replace_text", slow_text)
    out = tmp_path / "rep"

    def write(tag: str) -> None:
        figures = {out / "figures" / f"{tag}-{i}.png": tag.encode() * 10 for i in range(3)}
        build._write(out, figures, {}, {"run": tag}, f"<html>{tag}</html>")

    threads = [threading.Thread(target=write, args=(tag,)) for tag in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tag = json.loads((out / "metrics.json").read_text())["run"]
    assert (out / "report.html").read_text() == f"<html>{tag}</html>"
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        f"{tag}-{i}.png" for i in range(3)
    ]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_a_report_that_cannot_fit_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    import latentdiag.store._common as common
    from latentdiag.store import write_latents

    lat = write_latents(tmp_path / "z.h5", np.random.default_rng(0).normal(size=(60, 3)),
                        labels=np.arange(60) % 2)  # fmt: skip
    monkeypatch.setattr(common, "free_bytes", lambda folder: 4096)
    res = CliRunner().invoke(cli, ["report", str(lat), "-o", str(tmp_path / "rep"),
                                   "--projection", "pca"])  # fmt: skip
    assert res.exit_code == 1 and res.output.startswith("Error: not enough room for report.html")
    assert "the report needs about" in res.output and not (tmp_path / "rep").exists()


def test_a_changed_byte_in_a_weight_is_refused_not_loaded(
    damaged_inputs: dict[str, Path], tmp_path: Path
) -> None:
    """safetensors has no checksum: the reference models' files carry one, so a flipped bit
    in a tensor is refused instead of loading as a slightly different model. Files written
    before the checksum existed still load."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(damaged_inputs["run"], run)
    weights = run / "model.safetensors"
    clean = weights.read_bytes()
    argv = ["embed", str(run), str(damaged_inputs["run_images"]), "-o", str(tmp_path / "z.h5"),
            "--device", "cpu", "--overwrite"]  # fmt: skip
    damaged = bytearray(clean)
    damaged[-3] ^= 0x10  # the last bytes of a file are tensor data
    weights.write_bytes(bytes(damaged))
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "is damaged: its tensors do not match the checksum written with them" in res.output
    weights.write_bytes(clean)
    with safe_open(str(weights), "pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != "tensors_blake2b"}
    save_file(load_file(str(weights)), str(weights), metadata=meta)  # as an older release wrote it
    assert CliRunner().invoke(cli, argv).exit_code == 0


def test_a_resume_rewrites_the_committed_rows_and_drops_a_damaged_chunk(tmp_path) -> None:
    """A resume never appends to the killed file: it copies the committed rows into a fresh
    one (a kill during HDF5's flush can leave metadata half on disk). A committed chunk that
    fails its checksum ends the rows kept, and the run redoes them."""
    import h5py

    opts = {"batch_size": 16, "block_rows": 32}
    embed(module_runner(), make_data(), tmp_path / "whole.h5", **opts)
    out = tmp_path / "z.h5"
    with pytest.raises(KeyboardInterrupt):
        embed(module_runner(), make_data(), out, **opts, progress=stop_after(100))
    with h5py.File(partial_path(out), "r") as f:
        assert f.attrs["n_rows"] == 96
        offset = f["mu"].id.get_chunk_info(0).byte_offset
    damaged = bytearray(partial_path(out).read_bytes())
    damaged[offset + 100] ^= 0xFF  # a byte of mu's first chunk: its Fletcher-32 now fails
    partial_path(out).write_bytes(bytes(damaged))
    result = embed(module_runner(), make_data(), out, **opts)
    assert result.resumed_rows == 0 and result.n_rows == N
    assert_same_file(tmp_path / "whole.h5", out)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_partial_that_cannot_be_opened_is_started_again(tmp_path) -> None:
    """A .partial cut short while HDF5 wrote its metadata holds no row that can be kept: the
    same command warns and starts again (instead of asking the user to delete it)."""
    opts = {"batch_size": 16, "block_rows": 32}
    embed(module_runner(), make_data(), tmp_path / "whole.h5", **opts)
    out = tmp_path / "z.h5"
    with pytest.raises(KeyboardInterrupt):
        embed(module_runner(), make_data(), out, **opts, progress=stop_after(40))
    head = partial_path(out).read_bytes()[:96]  # the superblock only, as a kill test found
    partial_path(out).write_bytes(head)
    with pytest.warns(UserWarning, match=r"z\.h5\.partial cannot be opened .* starting again"):
        result = embed(module_runner(), make_data(), out, **opts)
    assert result.resumed_rows == 0
    assert_same_file(tmp_path / "whole.h5", out)
