"""Small helpers shared by the data sources: what the caller asked for, warnings, subsets,
sorting, atomic output files."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataWarning",
    "Options",
    "RowIds",
    "SelectedIds",
    "atomic_output",
    "choose_rows",
    "count",
    "examples",
    "natural_sorted",
    "warn",
]


class DataWarning(UserWarning):
    """Something about a data source was repaired or skipped (files that are not images,
    unreadable images, labels remapped, a subset bigger than the source); the data still
    opens. The command line prints each as one ``Warning: ...`` line."""


def warn(message: str) -> None:
    """Issue a :class:`DataWarning` attributed to the caller of the public function."""
    warnings.warn(message, DataWarning, stacklevel=3)


@dataclass(frozen=True)
class Options:
    """What the caller asked for (see :func:`latentdiag.data.open_dataset`)."""

    size: int | None
    channels: int | None
    n: int | None
    seed: int
    standardize: bool = False  # vector data: standardize each feature (images refuse it)


def choose_rows(
    total: int, n: int | None, seed: int, where: str, *, noun: str = "images"
) -> np.ndarray | None:
    """Rows of a random subset of ``n`` (sorted, chosen with ``seed``), or None for all."""
    if n is None or n == total:
        return None
    if n > total:
        warn(f"{where}: asked for {n:,} {noun} but the source has {total:,}; using all of them.")
        return None
    rng = np.random.default_rng([seed, 0x5B5E7])
    return np.sort(rng.choice(total, size=n, replace=False)).astype(np.int64)


def natural_sorted(names: Iterable[str]) -> list[str]:
    """Sort so that ``"2"`` comes before ``"10"`` and ``"class2"`` before ``"class10"``."""

    def key(name: str) -> list[tuple[int, int | str]]:
        return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t]

    return sorted(names, key=key)


def count(n: int, noun: str) -> str:
    """``"1 image"``, ``"2,500 images"``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def examples(items: Sequence[str], k: int = 3) -> str:
    """``"a, b, c and 4 more"`` for a warning."""
    shown = ", ".join(items[:k])
    return shown if len(items) <= k else f"{shown} and {len(items) - k} more"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    A crash or an exception never leaves a half-written file under the final name. The
    temporary name keeps the suffix so that writers that infer the format from it still work.
    """
    from latentdiag.atomic import atomic_path

    final = Path(path)
    try:
        with atomic_path(final, keep_suffix=True) as tmp:
            yield tmp
    except (OSError, RuntimeError) as exc:
        # Name the output in a full-disk error (h5py reports it as text, not as an errno), so
        # the command line can say which file did not fit.
        text = str(exc)
        if getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in text:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final)) from None
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(final)
        raise


class RowIds(Sequence[str]):
    """Sample ids ``"{prefix}[{row}]"`` computed on demand (no list of N strings in memory).

    Args:
        prefix: Usually the file name and the key or split, e.g. ``"pneumonia.npz:train"``.
        rows: The source row of each item, or None for rows 0..n-1.
        n: Number of items when ``rows`` is None.
    """

    def __init__(self, prefix: str, rows: Sequence[int] | None, n: int) -> None:
        self.prefix = prefix
        self.rows = rows
        self.n = n if rows is None else len(rows)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(index)
        row = index % self.n if self.rows is None else int(self.rows[index])
        return f"{self.prefix}[{row}]"


class SelectedIds(Sequence[str]):
    """Stored sample ids (a table's id column, AnnData's ``obs_names``) of some rows.

    Args:
        ids: The ids of every row of the source.
        rows: The source row of each item, or None for all rows in order.

    Attributes:
        rows: As given: like :attr:`RowIds.rows`, it says which source rows a subset holds.
    """

    def __init__(self, ids: Sequence[str], rows: Sequence[int] | None) -> None:
        self._ids = ids
        self.rows = rows
        self.n = len(ids) if rows is None else len(rows)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(index)
        row = index % self.n if self.rows is None else int(self.rows[index])
        return self._ids[row]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == self.n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
