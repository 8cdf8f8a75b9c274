"""Kill at any point: `embed`, `merge`, `train` and `report` are SIGKILLed at random moments
of real runs (fresh processes, as a user runs them), and after each kill

* every file under a final name is complete and valid (a latents file reads whole and equals
  the uninterrupted run's; weights and checkpoints load; a report's page, figures and
  metrics.json agree);
* the inputs are untouched;
* the same command (``--resume`` for train, ``--overwrite`` where the output was finished)
  ends with the result an uninterrupted run gives, and leaves no temporary file behind.

The kill moments are drawn uniformly over 1.3 times the uninterrupted run's wall time
(measured first, in the same test), so they fall in the imports, the work, the writes and
after the end alike. The default suite kills each command twice, the slow suite
``SLOW_RUNS`` times; ``LATENTDIAG_KILL_RUNS=N`` sets both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_embed import assert_same_file, make_images

from latentdiag.embed import unfinished_rows
from latentdiag.store import LatentStore, partial_path

FAST_RUNS = 2
SLOW_RUNS = 20


def _runs(default: int) -> int:
    return int(os.environ.get("LATENTDIAG_KILL_RUNS", "0")) or default


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentdiag", *args]


def _run(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return time.perf_counter() - t0


def _kill_after(cmd: list[str], cwd: Path, seconds: float) -> int:
    """Start ``cmd``; SIGKILL it after ``seconds`` unless it ended. Returns its exit status
    (-9 when killed); a run that ended by itself must have succeeded."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err.decode(errors="replace")
    return proc.returncode


def _moments(full: float, runs: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05 * full, 1.3 * full, runs)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name)


def _digest(*paths: Path) -> str:
    h = hashlib.blake2b()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _report(outcomes: Counter[str], what: str) -> None:
    print(
        f"{what}: {sum(outcomes.values())} runs: "
        + ", ".join(f"{k} {v}" for k, v in outcomes.items())
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """An ONNX encoder, 160,000 images (ten committed blocks of embed) and two shards."""
    import warnings

    import torch
    from test_embed import Encoder

    root = tmp_path_factory.mktemp("kills")
    np.save(root / "images.npy", make_images(160_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder().eval(), (torch.rand(2, 1, 16, 16),), str(root / "enc.onnx"),
                          dynamo=False, input_names=["x"], output_names=["mu", "logvar"],
                          dynamic_axes={"x": {0: "b"}, "mu": {0: "b"}, "logvar": {0: "b"}},
                          opset_version=17)  # fmt: skip
    return root


def _embed(out: str, *extra: str) -> list[str]:
    return _cli("embed", "enc.onnx", "images.npy", "-o", out, "--device", "cpu", *extra)


def _kill_embed(work: Path, runs: int, seed: int) -> Counter[str]:
    if (work / "ref.h5").exists():
        full = _run(_embed("ref-timing.h5", "--overwrite"), work)
    else:
        full = _run(_embed("ref.h5"), work)
    inputs = _digest(work / "images.npy", work / "enc.onnx")
    outcomes: Counter[str] = Counter()
    out = work / "z.h5"
    for moment in _moments(full, runs, seed):
        for stale in (out, partial_path(out)):
            stale.unlink(missing_ok=True)
        rc = _kill_after(_embed("z.h5"), work, moment)
        if out.exists():  # finished (or killed after the rename): whole and right
            assert_same_file(work / "ref.h5", out)
            outcomes["finished before the kill" if rc == 0 else "killed after the rename"] += 1
            continue
        kept = (unfinished_rows(out) or 0) if partial_path(out).exists() else 0
        outcomes["killed, nothing committed" if kept == 0 else "killed, rows kept"] += 1
        _run(_embed("z.h5"), work)  # the same command resumes
        assert_same_file(work / "ref.h5", out)
        assert not partial_path(out).exists()
    assert _digest(work / "images.npy", work / "enc.onnx") == inputs
    assert _temporaries(work) == []
    return outcomes


def _kill_merge(work: Path, runs: int, seed: int) -> Counter[str]:
    for k in (0, 1):
        if not (work / f"s{k}.h5").exists():
            _run(_embed(f"s{k}.h5", "--shard", f"{k}/2"), work)
    cmd = _cli("merge", "s0.h5", "s1.h5", "-o", "m.h5")
    if not (work / "mref.h5").exists():
        _run(_cli("merge", "s0.h5", "s1.h5", "-o", "mref.h5"), work)
    full = _run([*cmd[:-1], "m-timing.h5", "--overwrite"], work)
    shards = _digest(work / "s0.h5", work / "s1.h5")
    outcomes: Counter[str] = Counter()
    out = work / "m.h5"
    for moment in _moments(full, runs, seed):
        out.unlink(missing_ok=True)
        rc = _kill_after(cmd, work, moment)
        if out.exists():
            assert_same_file(work / "mref.h5", out)
            outcomes["finished before the kill" if rc == 0 else "killed after the rename"] += 1
            _run([*cmd, "--overwrite"], work)
        else:
            outcomes["killed, no output"] += 1
            _run(cmd, work)
        assert_same_file(work / "mref.h5", out)
    assert _digest(work / "s0.h5", work / "s1.h5") == shards
    assert _temporaries(work) == []
    return outcomes


_TRAIN = ("train", "--model", "baseline", "--n-images", "400", "--size", "16", "--batch-size",
          "32", "--epochs", "2", "--device", "cpu", "--quiet", "--set", "train.checkpoint_every=3",
          "--seed", "3")  # fmt: skip


def _assert_valid_run(run: Path) -> None:
    """Every file of a run directory that exists under its final name is whole."""
    from safetensors.numpy import load_file

    for name in ("model.safetensors", "checkpoint.safetensors", "preview.safetensors"):
        if (run / name).exists():
            load_file(str(run / name))
    if (run / "config.json").exists():
        json.loads((run / "config.json").read_text())
    if (run / "latents.h5").exists():
        with LatentStore(run / "latents.h5") as store:
            assert np.isfinite(store.mu[:]).all()


def _kill_train(work: Path, runs: int, seed: int) -> Counter[str]:
    from safetensors.numpy import load_file

    ref = work / "run-ref"
    if not ref.exists():
        _run(_cli(*_TRAIN, "--out", "run-ref"), work)
    full = _run(_cli(*_TRAIN, "--out", "run-timing"), work)
    outcomes: Counter[str] = Counter()
    for i, moment in enumerate(_moments(full, runs, seed)):
        run = work / f"run{i}"
        rc = _kill_after(_cli(*_TRAIN, "--out", run.name), work, moment)
        _assert_valid_run(run)
        if rc == 0:
            outcomes["finished before the kill"] += 1
            continue
        if (run / "checkpoint.safetensors").exists():
            outcomes["killed, resumed from a checkpoint"] += 1
            _run(_cli("train", "--out", run.name, "--resume", "--quiet"), work)
        else:
            outcomes["killed before the first checkpoint, run again"] += 1
            _run(_cli(*_TRAIN, "--out", run.name), work)
        a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        with LatentStore(ref / "latents.h5") as x, LatentStore(run / "latents.h5") as y:
            np.testing.assert_array_equal(x.mu[:], y.mu[:])
        epochs = [
            json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()
        ]
        assert epochs == [1, 2]
        assert _temporaries(run) == []
    return outcomes


def _metrics_of(folder: Path) -> dict:
    doc = json.loads((folder / "metrics.json").read_text())
    return {k: doc[k] for k in ("separation", "information", "disentanglement")}


def _assert_whole_report(folder: Path) -> None:
    page = (folder / "report.html").read_text()
    assert page.rstrip().endswith("</html>")
    json.loads((folder / "metrics.json").read_text())
    for src in __import__("re").findall(r'src="(figures/[^"]+)"', page):
        assert (folder / src).is_file(), src


def _kill_report(work: Path, runs: int, seed: int) -> Counter[str]:
    from latentdiag.store import write_latents

    rng = np.random.default_rng(0)
    labels = np.arange(600) % 3
    mu = rng.normal(size=(600, 6)) + labels[:, None]
    write_latents(work / "small.h5", mu.astype(np.float32), labels=labels,
                  label_names=["a", "b", "c"], factors=rng.uniform(size=(600, 2)))  # fmt: skip
    cmd = _cli("report", "small.h5", "-o", "rep", "--projection", "pca")
    _run([*cmd[:-3], "rep-ref", "--projection", "pca"], work)
    full = _run([*cmd[:-3], "rep-timing", "--projection", "pca"], work)
    reference = _metrics_of(work / "rep-ref")
    outcomes: Counter[str] = Counter()
    rep = work / "rep"
    for i, moment in enumerate(_moments(full, runs, seed)):
        if i % 2:  # half the kills land on a new folder, half on the previous report's
            shutil.rmtree(rep, ignore_errors=True)
        rc = _kill_after(cmd, work, moment)
        if (rep / "report.html").exists():
            _assert_whole_report(rep)
            outcomes["finished before the kill" if rc == 0 else "killed, a whole report"] += 1
        else:
            outcomes["killed, no page"] += 1
        _run(cmd, work)
        _assert_whole_report(rep)
        assert _metrics_of(rep) == reference
        assert _temporaries(work) == []
    return outcomes


KILLS = {"embed": _kill_embed, "merge": _kill_merge, "train": _kill_train, "report": _kill_report}


@pytest.mark.parametrize("command", list(KILLS))
def test_a_kill_at_a_random_moment_loses_nothing(command: str, work: Path) -> None:
    outcomes = KILLS[command](work, _runs(FAST_RUNS), seed=1)
    _report(outcomes, command)


@pytest.mark.slow
@pytest.mark.parametrize("command", list(KILLS))
def test_many_kills_at_random_moments_lose_nothing(command: str, work: Path) -> None:
    outcomes = KILLS[command](work, _runs(SLOW_RUNS), seed=2)
    _report(outcomes, command)
    # Not vacuous: some runs were killed (how many depends on the machine's load, which can
    # make the kills' runs faster than the timed one; one CI run killed 9 of 20).
    assert sum(n for k, n in outcomes.items() if k.startswith("killed")) >= 3
