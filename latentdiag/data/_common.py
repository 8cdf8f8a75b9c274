"""Small helpers shared by the data sources: warnings, sorting, atomic output files."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "DataWarning",
    "RowIds",
    "atomic_output",
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
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.partial-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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
