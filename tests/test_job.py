"""The embed job as one value: what it covers, its digest, and the fields a resume compares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from latentdiag.data.base import ArrayDataset
from latentdiag.job import EmbedJob, changed_fields, data_fingerprint, kwargs_files


def job(**kw) -> EmbedJob:
    return EmbedJob(model="pkg.vae:build", model_kind="factory", **kw)


def test_digest_follows_every_field() -> None:
    base = job()
    for f in dataclasses.fields(EmbedJob):
        if f.name in ("model", "model_kind"):
            continue
        value = {"batch_size": 7, "spatial": "mean", "device": "cuda", "shard": "0/2"}.get(
            f.name, {"x": 1} if f.name != "label_key" and "sha256" not in f.name else "abc"
        )
        other = dataclasses.replace(base, **{f.name: value})
        assert other.digest != base.digest, f.name
        assert changed_fields(base.to_dict(), other) == [f.name]


def test_an_older_job_without_a_field_differs_in_it() -> None:
    recorded = job().to_dict()
    del recorded["model_kwargs"]
    assert changed_fields(recorded, job()) == ["model_kwargs"]


def test_kwargs_files_fingerprint_folders_and_files(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    a = kwargs_files(
        {"path": str(folder), "other": 3, "nested": {"file": str(folder / "config.json")}}
    )
    assert set(a) == {"path", "nested.file"}
    (folder / "model.safetensors").write_bytes(b"\1" * 64)  # new weights in the folder
    b = kwargs_files({"path": str(folder), "nested": {"file": str(folder / "config.json")}})
    assert a["path"] != b["path"] and a["nested.file"] == b["nested.file"]
    assert kwargs_files({"name": "not/a/path"}) == {}


def test_data_fingerprint_tells_subsets_apart() -> None:
    images = np.zeros((20, 1, 4, 4), np.uint8)
    ds = ArrayDataset(images, source="x.npz")
    a = data_fingerprint(ds.subset(np.arange(10)))
    b = data_fingerprint(ds.subset(np.arange(10, 20)))
    assert a["n"] == b["n"] == 10 and a != b
    assert data_fingerprint(ds) == data_fingerprint(ArrayDataset(images, source="x.npz"))


def test_job_to_dict_is_plain_json() -> None:
    import json

    j = job(model_kwargs={"b": (1, 2), "a": None}, input={"layout": "flat"})
    text = json.dumps(j.to_dict())
    assert json.loads(text)["model_kwargs"] == {"a": None, "b": [1, 2]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        j.batch_size = 3  # type: ignore[misc]
