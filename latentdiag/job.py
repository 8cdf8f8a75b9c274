"""One embed job as one value: everything that decides its latents, and the identity resume checks.

A run of ``latentdiag embed`` is decided by the model (its file or folder contents, or a
factory's name, source, keyword arguments and weights), the data (where it comes from, how
many rows, which rows, its labels), how the data reaches the model (preprocessing, batch size,
device, shard) and how the outputs are read. :class:`EmbedJob` holds all of it; its fields are
written to the provenance, and its digest is the job's identity: an unfinished ``.partial``
file is resumed only by the same job, and a job that differs is refused with the fields that
changed. Gathering every decision in one frozen value makes the check complete by
construction: nothing can decide the latents without being part of the job.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["EmbedJob", "changed_fields", "data_fingerprint", "path_fingerprint"]

# Above this many bytes a file named by a factory keyword is fingerprinted by size and
# modification time instead of by its bytes (a multi-GB checkpoint is not re-read per run).
_HASH_LIMIT = 1 << 30


def _canonical(value: Any) -> Any:
    """JSON-safe, key-sorted, tuples as lists: two equal jobs give the same text."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class EmbedJob:
    """Everything that decides the latents an embed run writes.

    Attributes:
        model: The model as given: a path, ``pkg.module:factory``, or a module's name.
        model_kind: ``onnx``, ``torchscript``, ``torch.export``, ``factory``, ``module``, ...
        model_sha256: The model's bytes (a file's, or a folder's files'), or None.
        factory_source_sha256: For a factory: the bytes of the module that defines it.
        model_kwargs: A factory's keyword arguments (``--model-kwargs``).
        kwargs_files: sha256 (or size and mtime) of files and folders named by those keyword
            arguments, e.g. the ``from_folder`` / ``from_pretrained`` checkpoint a factory loads.
        weights_sha256: The bytes of ``--weights``, or None.
        input: The model's input spec (layout, shape, dtype, label input).
        outputs: How the outputs are read (which is mu, which logvar, and what it holds).
        spatial: How spatial latents become vectors.
        device: Where the model runs (``cpu``, ``cuda``, an execution provider).
        data: The data's fingerprint (:func:`data_fingerprint`).
        shard: ``K/N``, or None for all rows.
        batch_size: Rows per model call (a resumed run keeps the batch boundaries).
        preprocessing: How the data becomes the model's input.
        label_key: The column the labels come from.
    """

    model: str | None
    model_kind: str
    model_sha256: str | None = None
    factory_source_sha256: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    kwargs_files: Mapping[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None
    input: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    spatial: str = "flatten"
    device: str = "cpu"
    data: Mapping[str, Any] = field(default_factory=dict)
    shard: str | None = None
    batch_size: int = 64
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    label_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The job as plain JSON values (what provenance records)."""
        out: dict[str, Any] = _canonical(asdict(self))
        return out

    @property
    def digest(self) -> str:
        """The job's identity: 16 hex digits of the sha256 of its canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def changed_fields(recorded: Mapping[str, Any], job: EmbedJob) -> list[str]:
    """The fields in which a recorded job (from a file's provenance) differs from ``job``.

    A recorded job that lacks a field (an older latentdiag wrote it) differs in that field.
    """
    mine = job.to_dict()
    theirs = _canonical(dict(recorded))
    return [name for name in EmbedJob.field_names() if theirs.get(name, "<absent>") != mine[name]]


def path_fingerprint(path: str | os.PathLike[str]) -> str:
    """The contents of a file or folder as one string: sha256 of the bytes (for a folder,
    over every file's relative path and bytes), or size and mtime past 1 GiB."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _feed(h, p)
        return h.hexdigest()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(p)).encode() + b"\0")
        _feed(h, f)
    return h.hexdigest()


def _feed(h: Any, f: Path) -> None:
    st = f.stat()
    if st.st_size > _HASH_LIMIT:
        h.update(f"size={st.st_size};mtime_ns={st.st_mtime_ns}".encode())
        return
    with open(f, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def kwargs_files(kwargs: Mapping[str, Any] | None) -> dict[str, str]:
    """Fingerprints of the files and folders a factory's keyword arguments name."""
    out: dict[str, str] = {}

    def visit(key: str, value: Any) -> None:
        if isinstance(value, str) and value and len(value) < 4096:
            try:
                exists = os.path.exists(value)
            except (OSError, ValueError):
                exists = False
            if exists:
                out[key] = path_fingerprint(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                visit(f"{key}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{key}.{i}", v)

    for k, v in (kwargs or {}).items():
        visit(str(k), v)
    return out


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """What identifies the data: its source, size, kind, labels, the rows it holds, and the
    size and modification time of its file (folders: the files it lists)."""
    from latentdiag.data.base import Subset

    root = dataset
    rows = None
    while isinstance(root, Subset):
        rows = root.indices if rows is None else root.indices[rows]
        root = root.parent
    out: dict[str, Any] = {
        "source": getattr(dataset, "source", ""),
        "n": len(dataset),
        "kind": getattr(dataset, "kind", "images"),
        "shape": list(dataset.image_shape),
        "label_names": dataset.label_names,
    }
    h = hashlib.sha256()
    if rows is not None:
        h.update(b"rows:" + rows.astype("int64").tobytes())
    names = getattr(root, "feature_names", None)
    if names:
        out["features_sha256"] = hashlib.sha256("\n".join(map(str, names)).encode()).hexdigest()[
            :16
        ]
    paths = getattr(root, "paths", None)
    if isinstance(paths, list):
        h.update("\n".join(paths).encode())
    sample_rows = getattr(getattr(root, "sample_ids", None), "rows", None)
    if sample_rows is not None:  # a random subset of an array source
        h.update(json.dumps(list(sample_rows)).encode())
    source = str(getattr(root, "source", ""))
    base = source.split(":")[0] if not os.path.exists(source) else source
    if base and os.path.isfile(base):
        st = os.stat(base)
        out["file"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    out["rows_sha256"] = h.hexdigest()[:16]
    return out
