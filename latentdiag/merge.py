"""``merge``: join the latents files written by shards into one, in data order.

Each shard file (``latentdiag embed --shard K/N``, or one torchrun rank) records every row's
position in the data in ``/index``. Merging checks that the shards belong to the same job
(same model, data, options; only the shard differs), that every position 0..n-1 is present
exactly once, and writes the rows in position order — so the merged file equals the file one
unsharded run writes.

The merge streams: for each block of output positions it reads, from every shard, the rows
that fall in the block (each shard's ``/index`` is increasing), so memory holds one block per
shard whatever n is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import StoreError
from latentdiag.store import DEFAULT_BLOCK_ROWS, LatentStore, LatentWriter

__all__ = ["MergeResult", "merge_latents"]

_SAME = (
    "latent_dim",
    "has_logvar",
    "label_names",
    "factor_names",
    "partitions",
    "sample_ids",
    "columns",
    "label_key",
)
# Job keys that legitimately differ between shards.
_PER_SHARD = {"shard"}


@dataclass
class MergeResult:
    """What :func:`merge_latents` wrote.

    Attributes:
        path: The merged file.
        n_rows: Rows in it.
        shards: How many files were merged.
    """

    path: Path
    n_rows: int
    shards: int


def _facts(store: LatentStore) -> dict[str, Any]:
    return {
        "latent_dim": store.latent_dim,
        "has_logvar": store.has_logvar,
        "label_names": store.label_names,
        "factor_names": store.factor_names if store.has_factors else None,
        "partitions": {k: list(v) for k, v in store.partitions.items()},
        "sample_ids": store.has("sample_ids"),
        "columns": [
            (c.name, c.categories, str(c.values.dtype))
            for name, c in store.columns.items()
            if name in store.stored_columns
        ],
        "label_key": store.file_label_key if store.file_label_key in store.stored_columns else None,
    }


def _job(store: LatentStore) -> dict[str, Any] | None:
    job = store.provenance.get("job")
    if not isinstance(job, dict):
        return None
    return {k: v for k, v in job.items() if k not in _PER_SHARD}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_same(stores: Sequence[LatentStore]) -> None:
    first = stores[0]
    base_facts, base_job = _facts(first), _job(first)
    for other in stores[1:]:
        facts = _facts(other)
        for key in _SAME:
            if facts[key] != base_facts[key]:
                raise StoreError(
                    f"{other.path} and {first.path} differ in {key} ({_short(facts[key])} vs "
                    f"{_short(base_facts[key])}); only shards of one run can be merged."
                )
        job = _job(other)
        if (job is None) != (base_job is None):
            raise StoreError(
                f"{other.path if job is None else first.path} records no embed job while the "
                "other files do; only shards of one `latentdiag embed` run can be merged."
            )
        if job is not None and base_job is not None and job != base_job:
            key = next(k for k in sorted(set(job) | set(base_job)) if job.get(k) != base_job.get(k))
            raise StoreError(
                f"{other.path} and {first.path} come from different embed jobs ({key}: "
                f"{_short(job.get(key))} vs {_short(base_job.get(key))}); only shards of one "
                "run can be merged."
            )


def _check_shard_set(stores: Sequence[LatentStore]) -> int | None:
    """Name missing or repeated shards when the files say which shard they are."""
    shards: dict[str, list[Path]] = {}
    total = None
    for s in stores:
        spec = s.provenance.get("shard")
        if isinstance(spec, str) and "/" in spec:
            shards.setdefault(spec, []).append(s.path)
            n_data = s.provenance.get("n_data")
            total = int(n_data) if isinstance(n_data, int) else total
    if not shards:
        return total
    for spec, paths in shards.items():
        if len(paths) > 1:
            raise StoreError(
                f"shard {spec} is given {len(paths)} times ({', '.join(map(str, paths))}); give "
                "each shard once."
            )
    counts = {int(spec.split("/")[1]) for spec in shards}
    if len(counts) == 1:
        n = counts.pop()
        # A shard K exists only when the data has more than K samples.
        limit = n if total is None else min(n, total)
        missing = [f"{k}/{n}" for k in range(limit) if f"{k}/{n}" not in shards]
        if missing:
            raise StoreError(
                f"shard {missing[0]} is missing ({len(missing)} of {n} shards missing); give "
                f"all {n} shard files."
            )
    return total


def merge_latents(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    command: Sequence[str] | str | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> MergeResult:
    """Merge shard latents files into one file in data order.

    Args:
        inputs: The shard files (any order).
        out: The merged file.
        overwrite: Replace ``out`` if it exists.
        command: The command line, for provenance.
        block_rows: Output rows per block.

    Returns:
        What was written.

    Raises:
        StoreError: A file is missing, incomplete or lacks ``/index``; the files come from
            different runs; a shard is missing or repeated; a sample is missing or present
            more than once.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise StoreError("give at least one shard file to merge.")
    seen: set[Path] = set()
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise StoreError(f"{p} is given twice; give each shard file once.")
        seen.add(key)
    out = Path(out)
    if out.resolve() in seen:
        raise StoreError(f"the output {out} is one of the inputs; choose another -o path.")
    from latentdiag.store._common import check_room

    # The merged file holds the shards' rows once: their sizes bound it (within slack).
    check_room(out, sum(p.stat().st_size for p in paths if p.is_file()), what="the merge")
    with ExitStack() as stack:
        stores = [stack.enter_context(LatentStore(p)) for p in paths]
        for s in stores:
            if not s.has("index"):
                raise StoreError(
                    f"{s.path} has no /index (each row's position in the data); merge joins "
                    "files written by `latentdiag embed --shard K/N`."
                )
        _check_same(stores)
        total = _check_shard_set(stores)
        n = sum(s.n_samples for s in stores)
        if total is not None and n != total:
            raise StoreError(
                f"the shards hold {n:,} rows but the data had {total:,} samples; "
                f"{'some shards are missing' if n < total else 'some rows are repeated'}."
            )
        first = stores[0]
        provenance = dict(first.provenance)
        provenance.update(
            shard=None,
            n_rows=n,
            merged_from=[str(p) for p in paths],
            command=list(command) if isinstance(command, (list, tuple)) else command,
        )
        job = provenance.get("job")
        if isinstance(job, dict):
            provenance["job"] = {**job, "shard": None}
        facts = _facts(first)
        label_key = facts["label_key"]
        columns = [first.columns[name] for name in first.stored_columns]
        with LatentWriter(
            out,
            latent_dim=first.latent_dim,
            has_logvar=first.has_logvar,
            columns=columns,
            label_key=label_key,
            label_names=first.label_names if first.has_labels else None,
            factor_names=first.factor_names if first.has_factors else None,
            sample_ids=first.has("sample_ids"),
            index=True,
            partitions=first.partitions,
            provenance=provenance,
            overwrite=overwrite,
            compress_latents=first.compression("mu") is not None,
        ) as writer:
            _stream(stores, writer, n, block_rows, label_from_column=label_key is not None)
    return MergeResult(path=out, n_rows=n, shards=len(paths))


def _stream(
    stores: Sequence[LatentStore],
    writer: LatentWriter,
    n: int,
    block_rows: int,
    *,
    label_from_column: bool = False,
) -> None:
    names = ["mu"] + [k for k in ("logvar", "labels", "factors", "sample_ids") if stores[0].has(k)]
    if label_from_column:
        names.remove("labels")  # the writer takes them from the label column
    column_names = list(stores[0].stored_columns)
    cursors = [0] * len(stores)
    last = [-1] * len(stores)
    for s0 in range(0, n, block_rows):
        s1 = min(s0 + block_rows, n)
        rows = s1 - s0
        count = np.zeros(rows, dtype=np.int64)
        owner = np.full(rows, -1, dtype=np.int64)
        block: dict[str, np.ndarray] = {}
        for i, store in enumerate(stores):
            c = cursors[i]
            stop = min(c + rows, store.n_samples)
            if c >= stop:
                continue
            idx = store.read("index", slice(c, stop))
            if idx.size and (idx[0] <= last[i] or np.any(np.diff(idx) <= 0)):
                raise StoreError(
                    f"{store.path}: /index is not strictly increasing near row {c}; merge needs "
                    "files written by `latentdiag embed` (rewrite this shard)."
                )
            take = int(np.searchsorted(idx, s1))
            if take == 0:
                continue
            sel = idx[:take]
            if sel[0] < s0:
                raise StoreError(f"{store.path}: sample {int(sel[0])} is out of order.")
            pos = sel - s0
            dup = pos[count[pos] > 0]
            if dup.size:
                j = int(dup[0] + s0)
                other = stores[int(owner[dup[0]])].path
                raise StoreError(
                    f"sample {j} appears more than once: in {other} and in {store.path}; each "
                    "sample must be in exactly one shard."
                )
            count[pos] += 1
            owner[pos] = i
            for name in names:
                part = store.read(name, slice(c, c + take))
                if name not in block:
                    block[name] = (
                        np.empty(rows, dtype=object)
                        if name == "sample_ids"
                        else np.empty((rows, *part.shape[1:]), dtype=part.dtype)
                    )
                block[name][pos] = part
            for name in column_names:
                part = store.columns[name].values[c : c + take]
                key = "column:" + name
                if key not in block:
                    block[key] = np.empty(rows, dtype=part.dtype)
                block[key][pos] = part
            cursors[i] = c + take
            last[i] = int(sel[-1])
        missing = np.flatnonzero(count == 0)
        if missing.size:
            raise StoreError(
                f"sample {int(missing[0] + s0)} is in none of the shard files "
                f"({missing.size} missing in rows {s0}..{s1 - 1}); give every shard."
            )
        writer.append(
            block["mu"],
            logvar=block.get("logvar"),
            labels=block.get("labels"),
            factors=block.get("factors"),
            sample_ids=list(block["sample_ids"]) if "sample_ids" in block else None,
            index=np.arange(s0, s1, dtype=np.int64),
            columns={name: block["column:" + name] for name in column_names},
        )
    for i, store in enumerate(stores):
        if cursors[i] < store.n_samples:
            extra = int(store.read("index", slice(cursors[i], cursors[i] + 1))[0])
            raise StoreError(
                f"{store.path} holds sample {extra}, beyond the {n} samples of all shards "
                "together; a shard is missing, or the files come from different data."
            )
