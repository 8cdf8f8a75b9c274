"""What the writer and the reader of latents files share: names, limits, attribute coding."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from latentdiag.errors import StoreError

FORMAT_NAME = "latents"
# 2: per-row metadata columns (/columns) and the root attribute label_key; 1 is still read.
FORMAT_VERSION = 2
PARTIAL_SUFFIX = ".partial"
DEFAULT_BLOCK_ROWS = 65536
# Row chunks of ~16k rows: big enough for gzip to pay off, small enough to read in blocks.
CHUNK_ROWS = 16384
ROW_DATASETS = ("mu", "logvar", "labels", "factors", "sample_ids", "index")
STR_DTYPE = h5py.string_dtype(encoding="utf-8")
# provenance["sample_ids"] saying that each row's id is "<data_source>[<index>]": a file
# embedded from arrays in memory stores /index and no /sample_ids strings it can derive.
SAMPLE_IDS_FROM_INDEX = "{data_source}[{index}]"


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The in-progress name of a latents file: ``<name>.partial``."""
    p = Path(path)
    return p.with_name(p.name + PARTIAL_SUFFIX)


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def encode_attr(value: Any) -> Any:
    """HDF5 attributes hold scalars, strings and flat arrays; anything richer goes as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return json.dumps(value, default=str)


def decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [decode_attr(v) for v in value.tolist()]
    if isinstance(value, str) and (value == "null" or value[:1] in ("[", "{")):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, TypeError):
            return value
    return value


def check_names(names: Sequence[str] | None, what: str) -> list[str] | None:
    if names is None:
        return None
    out = [str(n) for n in names]
    if len(set(out)) != len(out):
        raise StoreError(f"{what} must be unique; got {out}.")
    return out


def names_attr(f: h5py.File, key: str) -> list[str] | None:
    if key not in f.attrs:
        return None
    raw = f.attrs[key]
    values = raw.tolist() if isinstance(raw, np.ndarray) else [raw]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def label_minmax(
    ds: h5py.Dataset, n: int, block_rows: int = DEFAULT_BLOCK_ROWS * 4
) -> tuple[int, int]:
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for start in range(0, n, block_rows):
        block = ds[start : min(start + block_rows, n)]
        if block.size:
            lo, hi = min(lo, int(block.min())), max(hi, int(block.max()))
    return lo, hi


COLUMNS_GROUP = "columns"


def column_row_datasets(f: h5py.File) -> list[h5py.Dataset]:
    """The per-row datasets of every column: ``codes`` of a categorical, the dataset itself of
    a numeric column (what grows with the rows, and is cut back on resume)."""
    if COLUMNS_GROUP not in f:
        return []
    out = []
    for obj in f[COLUMNS_GROUP].values():
        if isinstance(obj, h5py.Group):
            if "codes" in obj:
                out.append(obj["codes"])
        else:
            out.append(obj)
    return out


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200]


#: Room kept free beyond the bytes a write itself needs: HDF5's metadata (B-trees, heaps,
#: attributes) and variable-length strings.
ROOM_SLACK = 256 * 1024


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes the current user may still write under ``folder`` (None where unknown)."""
    import shutil

    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        try:
            return int(shutil.disk_usage(folder).free)
        except OSError:
            return None
    return int(st.f_bavail * st.f_frsize)


def check_room(path: str | os.PathLike[str], need: int, *, what: str = "", then: str = "") -> None:
    """Refuse to start a write of about ``need`` bytes to ``path`` where they cannot fit.

    HDF5 is not journaled: a write that runs out of room half-way can leave a file its library
    cannot close cleanly (and h5py then crashes on the way out). Checking first keeps a full
    disk a one-line error.

    Args:
        path: The file about to be written (its folder may not exist yet: the nearest one
            that does says which disk).
        need: Bytes the write needs.
        what: What needs them, for the message (``"the merge"``).
        then: What the user does next, replacing "make room … Nothing was written." (train
            says to resume).

    Raises:
        StoreError: Less free space than ``need`` plus :data:`ROOM_SLACK` in the folder.
    """
    target = Path(path)
    folder = target.parent.absolute()
    while not folder.exists() and folder != folder.parent:  # the disk it will be made on
        folder = folder.parent
    free = free_bytes(folder)
    total = int(need) + ROOM_SLACK
    if free is not None and free < total:
        raise StoreError(
            f"not enough room for {target.name} in {target.parent}: {mib(free)} free, "
            f"{what or 'it'} needs about {mib(total)}; "
            + (
                then
                or "make room (or write to another disk) and run the command again. Nothing "
                "was written."
            )
        )
