"""The latents file: round trips, flat-memory block writing, and every bad file's own error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentdiag.errors import StoreError
from latentdiag.store import (
    FORMAT_VERSION,
    LatentStore,
    LatentWriter,
    partial_path,
    write_latents,
)


def _full(path: Path, n: int = 50, d: int = 6, **kw: object) -> Path:
    rng = np.random.default_rng(0)
    return write_latents(
        path,
        rng.normal(size=(n, d)).astype(np.float32),
        logvar=rng.normal(size=(n, d)).astype(np.float32),
        labels=rng.integers(0, 3, n),
        label_names=["a", "b", "c"],
        factors=rng.normal(size=(n, 2)).astype(np.float32),
        factor_names=["size", "angle"],
        sample_ids=[f"img/{i}.png" for i in range(n)],
        partitions={"shared": [0, 3], "modality": [3, d]},
        provenance={"model": "enc.onnx", "batch_size": 32, "config": {"lr": 1e-3}},
        **kw,  # type: ignore[arg-type]
    )


# -- round trips ---------------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 300),
    d=st.integers(1, 12),
    block=st.integers(1, 128),
    with_logvar=st.booleans(),
    k=st.one_of(st.none(), st.integers(1, 5)),
    f=st.one_of(st.none(), st.integers(1, 4)),
    with_ids=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip(
    tmp_path: Path,
    n: int,
    d: int,
    block: int,
    with_logvar: bool,
    k: int | None,
    f: int | None,
    with_ids: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, d)).astype(np.float32)
    logvar = rng.normal(size=(n, d)).astype(np.float32) if with_logvar else None
    labels = rng.integers(0, k, n) if k else None
    factors = rng.normal(size=(n, f)).astype(np.float32) if f else None
    ids = [f"sample-{i}-ü" for i in range(n)] if with_ids else None
    path = tmp_path / f"rt-{seed}-{n}-{d}.h5"
    parts = {"first": [0, max(1, d // 2)]}
    write_latents(
        path,
        mu,
        logvar=logvar,
        labels=labels,
        label_names=[f"L{i}" for i in range(k)] if k else None,
        factors=factors,
        factor_names=[f"F{i}" for i in range(f)] if f else None,
        sample_ids=ids,
        partitions=parts,
        provenance={"model": "m", "nested": {"a": [1, 2]}},
        block_rows=block,
        overwrite=True,
    )
    with LatentStore(path) as s:
        assert (s.n_samples, s.latent_dim) == (n, d)
        np.testing.assert_array_equal(s.mu, mu)
        assert s.complete
        if logvar is not None:
            np.testing.assert_array_equal(s.logvar, logvar)
        else:
            assert s.logvar is None
        if labels is not None:
            np.testing.assert_array_equal(s.labels, labels)
            assert s.label_names == [f"L{i}" for i in range(k or 0)]
            counts = s.label_counts()
            assert counts is not None and sum(counts.values()) == n
        else:
            assert s.labels is None
        if factors is not None:
            np.testing.assert_array_equal(s.factors, factors)
            assert s.factor_names == [f"F{i}" for i in range(f or 0)]
        if ids is not None:
            assert list(s.sample_ids) == ids  # type: ignore[arg-type]
        assert s.partitions == {"first": (0, max(1, d // 2))}
        assert s.provenance == {"model": "m", "nested": {"a": [1, 2]}}
        blocks = list(s.iter_blocks(7, names=["mu"]))
        if n:
            np.testing.assert_array_equal(np.concatenate([b["mu"] for b in blocks]), mu)
        assert s.nonfinite_counts()["mu"] == 0
    assert not partial_path(path).exists()


def test_root_attributes_follow_the_format(tmp_path: Path) -> None:
    path = _full(tmp_path / "a.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["latentdiag_format"] == "latents"
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert bool(f.attrs["complete"]) is True
        assert f["mu"].dtype == np.float32 and f["labels"].dtype == np.int64
        # Float latents are chunked but stored raw (gzip saves ~14 % on them and costs more
        # than a small encoder); the per-row metadata is gzip-compressed.
        assert f["mu"].compression is None and f["mu"].chunks is not None
        assert f["labels"].compression == "gzip" and f["sample_ids"].compression == "gzip"
        assert f["mu"].maxshape == (None, 6)
        assert list(f["partitions"].attrs["shared"]) == [0, 3]


def test_nonfinite_values_are_counted_not_hidden(tmp_path: Path) -> None:
    mu = np.zeros((20, 3), np.float32)
    mu[2, 1] = np.nan
    mu[5, 0] = np.inf
    logvar = np.zeros((20, 3), np.float32)
    logvar[7] = -np.inf
    write_latents(tmp_path / "nf.h5", mu, logvar=logvar)
    with LatentStore(tmp_path / "nf.h5") as s:
        assert s.nonfinite_counts() == {"mu": 2, "logvar": 3}
        assert np.isnan(s.mu[2, 1])


def test_labels_without_names_get_value_names(tmp_path: Path) -> None:
    write_latents(tmp_path / "l.h5", np.zeros((4, 2)), labels=np.array([7, 3, 7, 3]))
    with LatentStore(tmp_path / "l.h5") as s:
        assert s.label_names == ["3", "7"]
        np.testing.assert_array_equal(s.labels, [1, 0, 1, 0])


# -- the writer ------------------------------------------------------------------------------


def test_writer_that_dies_leaves_no_file_claiming_complete(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), LatentWriter(path, latent_dim=4) as w:
        w.append(np.ones((10, 4)))
        raise RuntimeError("killed")
    assert not path.exists()
    part = partial_path(path)
    assert part.exists()
    with h5py.File(part, "r") as f:
        assert bool(f.attrs["complete"]) is False
        assert int(f.attrs["n_rows"]) == 10
    with pytest.raises(StoreError, match="incomplete"):
        LatentStore(part)
    with pytest.raises(StoreError, match=r"does not exist\. An unfinished out\.h5\.partial"):
        LatentStore(path)


def test_killed_process_leaves_only_an_incomplete_partial(tmp_path: Path) -> None:
    """A writer process killed with SIGKILL mid-run: no final file, partial is not complete."""
    path = tmp_path / "killed.h5"
    code = f"""
import os, signal, numpy as np
from latentdiag.store import LatentWriter
w = LatentWriter({str(path)!r}, latent_dim=3)
w.append(np.ones((5, 3)))
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode != 0
    assert not path.exists()
    with LatentStore(partial_path(path), allow_incomplete=True) as s:
        assert not s.complete
        assert s.n_samples == 5


def test_resume_continues_after_the_last_committed_block(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(30, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 30)
    w = LatentWriter(path, latent_dim=4, label_names=["x", "y"])
    w.append(mu[:10], labels=labels[:10])
    # A block written without its commit (as if killed between the resize and n_rows):
    w._file["mu"].resize(15, axis=0)
    w.close()
    w = LatentWriter.resume(path)
    assert w.n_rows == 10
    w.append(mu[10:], labels=labels[10:])
    w.finalize()
    with LatentStore(path) as s:
        np.testing.assert_array_equal(s.mu, mu)
        np.testing.assert_array_equal(s.labels, labels)


def test_resume_without_partial_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no interrupted run to resume"):
        LatentWriter.resume(tmp_path / "none.h5")


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    _full(tmp_path / "a.h5")
    with pytest.raises(StoreError, match="already exists"):
        LatentWriter(tmp_path / "a.h5", latent_dim=6)
    _full(tmp_path / "a.h5", overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mu": np.ones((3, 5))}, r"mu block must have shape \(rows, 4\); got \(3, 5\)"),
        ({"mu": np.ones((3, 4))}, r"this latents file has /labels; append\(\) needs labels="),
        (
            {"mu": np.ones((3, 4)), "labels": [0, 1, 2]},
            r"labels must lie in 0\.\.1 \(one per label name\); got values from 0 to 2",
        ),
        (
            {"mu": np.ones((3, 4)), "labels": [0, 1]},
            r"labels block must have shape \(3,\) to match mu; got \(2,\)",
        ),
        (
            {"mu": np.ones((3, 4)), "labels": [0, 1, 1], "logvar": np.ones((3, 4))},
            r"created without /logvar; got logvar= in append\(\)",
        ),
    ],
)
def test_append_rejects_bad_blocks(tmp_path: Path, kwargs: dict, message: str) -> None:
    w = LatentWriter(tmp_path / "w.h5", latent_dim=4, label_names=["a", "b"])
    with pytest.raises(StoreError, match=message):
        w.append(**kwargs)
    w.close()


def test_writer_rejects_bad_partitions(tmp_path: Path) -> None:
    with pytest.raises(
        StoreError, match=r"partition 'z' = \[2, 9\) lies outside the 4 latent dimensions"
    ):
        LatentWriter(tmp_path / "p.h5", latent_dim=4, partitions={"z": [2, 9]})


def test_memory_stays_flat_when_writing_in_blocks(tmp_path: Path) -> None:
    """Writing 1,000,000 × 32 in blocks: peak Python allocation is a few blocks, not n rows."""
    code = f"""
import tracemalloc, numpy as np
from latentdiag.store import LatentWriter, LatentStore
tracemalloc.start()
with LatentWriter({str(tmp_path / "big.h5")!r}, latent_dim=32, label_names=["a", "b"]) as w:
    block = np.random.default_rng(0).normal(size=(50_000, 32)).astype(np.float32)
    labels = np.zeros(50_000, dtype=np.int64)
    for _ in range(20):
        w.append(block, labels=labels)
peak = tracemalloc.get_traced_memory()[1]
with LatentStore({str(tmp_path / "big.h5")!r}) as s:
    assert s.n_samples == 1_000_000
    for b in s.iter_blocks(65536, names=["mu"]):
        pass
peak = max(peak, tracemalloc.get_traced_memory()[1])
print(peak)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak = int(out.stdout.strip())
    all_rows = 1_000_000 * 32 * 4  # 128 MB
    assert peak < all_rows / 4, f"peak {peak / 1e6:.0f} MB"


# -- every bad file has its own message ------------------------------------------------------


def _h5(path: Path, **attrs: object) -> h5py.File:
    f = h5py.File(path, "w")
    base = {"latentdiag_format": "latents", "format_version": 1, "complete": True}
    base.update(attrs)
    for key, value in base.items():
        if value is not None:
            f.attrs[key] = value
    return f


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"missing\.h5 does not exist\.$"):
        LatentStore(tmp_path / "missing.h5")


def test_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder; expected a latents file"):
        LatentStore(tmp_path)


def test_not_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    p.write_text("mu,logvar\n1,2\n")
    with pytest.raises(StoreError, match=r"x\.h5 is not an HDF5 file"):
        LatentStore(p)


def test_truncated(tmp_path: Path) -> None:
    p = _full(tmp_path / "t.h5", n=5000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"t\.h5 is damaged or truncated"), LatentStore(p) as s:
        s.read("mu")


def test_not_a_latents_file(tmp_path: Path) -> None:
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((2, 3))
    with pytest.raises(StoreError, match="is HDF5 but not a latents file"):
        LatentStore(p)


def test_newer_format_version(tmp_path: Path) -> None:
    p = tmp_path / "v.h5"
    with _h5(p, format_version=FORMAT_VERSION + 1) as f:
        f["mu"] = np.zeros((2, 2), np.float32)
    with pytest.raises(StoreError, match=r"has latents format version 3, newer than this"):
        LatentStore(p)


def test_incomplete(tmp_path: Path) -> None:
    p = tmp_path / "inc.h5"
    with _h5(p, complete=False) as f:
        f["mu"] = np.zeros((2, 2), np.float32)
    with pytest.raises(StoreError, match=r"inc\.h5 is incomplete \(complete=false\)"):
        LatentStore(p)


def test_missing_mu(tmp_path: Path) -> None:
    p = tmp_path / "nomu.h5"
    with _h5(p) as f:
        f["z"] = np.zeros((2, 2), np.float32)
    with pytest.raises(StoreError, match=r"has no /mu dataset"):
        LatentStore(p)


def test_mu_not_2d(tmp_path: Path) -> None:
    p = tmp_path / "mu1d.h5"
    with _h5(p) as f:
        f["mu"] = np.zeros(5, np.float32)
    with pytest.raises(StoreError, match=r"/mu must be 2-D \(n, d\); found shape \(5,\)"):
        LatentStore(p)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("labels", np.zeros(3, np.int64), r"/labels has 3 rows but /mu has 4"),
        ("factors", np.zeros((5, 2), np.float32), r"/factors has 5 rows but /mu has 4"),
        ("sample_ids", np.array([b"a", b"b"]), r"/sample_ids has 2 rows but /mu has 4"),
        ("logvar", np.zeros((4, 3), np.float32), r"/logvar must have shape \(4, 2\)"),
    ],
)
def test_row_count_mismatch(tmp_path: Path, name: str, data: np.ndarray, message: str) -> None:
    p = tmp_path / f"{name}.h5"
    with _h5(p, label_names=["a"]) as f:
        f["mu"] = np.zeros((4, 2), np.float32)
        f[name] = data
    with pytest.raises(StoreError, match=message):
        LatentStore(p)


def test_partition_out_of_range(tmp_path: Path) -> None:
    p = tmp_path / "part.h5"
    with _h5(p) as f:
        f["mu"] = np.zeros((4, 8), np.float32)
        f.create_group("partitions").attrs["modality"] = [4, 12]
    with pytest.raises(
        StoreError, match=r"partition 'modality' = \[4, 12\) lies outside the 8 latent"
    ):
        LatentStore(p)


def test_label_values_without_names(tmp_path: Path) -> None:
    p = tmp_path / "ln.h5"
    with _h5(p, label_names=["a", "b"]) as f:
        f["mu"] = np.zeros((3, 2), np.float32)
        f["labels"] = np.array([0, 1, 2])
    with pytest.raises(StoreError, match=r"/labels has values from 0 to 2 but label_names names"):
        LatentStore(p)


def test_labels_but_no_label_names(tmp_path: Path) -> None:
    p = tmp_path / "nolabelnames.h5"
    with _h5(p) as f:
        f["mu"] = np.zeros((3, 2), np.float32)
        f["labels"] = np.array([0, 1, 0])
    with pytest.raises(StoreError, match=r"label_names is missing"):
        LatentStore(p)


def test_a_compatible_file_written_with_plain_h5py(tmp_path: Path) -> None:
    """docs/format.md promises that a file written with plain h5py is read."""
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f.attrs["latentdiag_format"] = "latents"
        f.attrs["format_version"] = 1
        f.attrs["complete"] = True
        f.attrs["label_names"] = ["xray", "oct"]
        f["mu"] = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
        f["labels"] = np.array([0, 1] * 5, dtype="int64")
        f.create_group("partitions").attrs["shared"] = [0, 2]
    with LatentStore(p) as s:
        assert s.label_names == ["xray", "oct"]
        assert s.label_counts() == {"xray": 5, "oct": 5}
        assert s.partitions == {"shared": (0, 2)}


def test_store_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "named.h5"
    p.write_bytes(os.urandom(64))
    with pytest.raises(StoreError) as info:
        LatentStore(p)
    assert str(p) in str(info.value)


def test_corrupt_chunk_is_reported_on_read(tmp_path: Path) -> None:
    p = _full(tmp_path / "c.h5", n=20000)
    with h5py.File(p, "r") as f:
        offset = f["mu"].id.get_chunk_info(0).byte_offset
    data = bytearray(p.read_bytes())
    data[offset + 16 : offset + 4096] = b"\x00" * (4096 - 16)
    p.write_bytes(bytes(data))
    with LatentStore(p) as s, pytest.raises(StoreError, match=r"damaged or truncated: reading /mu"):
        s.read("mu")
