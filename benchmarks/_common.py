"""Shared helpers for the benchmark scripts: timing, peak memory, and a note on machine load.

Every script times latentdiag and its peer on the same data in one run and prints the ratio;
nothing here asserts a speed. Timings on a shared machine vary: each script prints the load
average before and after, so a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class PeakRSS:
    """Samples the resident memory every few milliseconds while the block runs.

    ``peak_delta`` is the highest RSS seen minus the RSS at entry: the extra memory the block
    needed at its worst (allocations freed and reused inside the block are not double counted).
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def peak_delta(self) -> int:
        return max(0, self.peak - self.start)


def timed(fn: Callable[[], T]) -> tuple[float, T, int]:
    """Run ``fn`` once: (wall seconds, its result, peak extra resident bytes)."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    return seconds, result, mem.peak_delta


def best_of(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Smallest wall time over ``repeats`` runs (noise on a shared machine only adds time)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result  # type: ignore[return-value]


def load_note() -> str:
    """One line on the machine: CPU count and load average (how shared the CPU was)."""
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, load average (1/5/15 min) {load}"


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def yardstick(repeats: int = 3) -> float:
    """Seconds scikit-learn's exact silhouette takes on 10,000 × 16 here (best of ``repeats``).

    Machines differ by 2× or more, so each benchmark divides its times by this one, measured in
    the same run: a figure in yardsticks means the same on a laptop and on a build server.
    """
    import numpy as np
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 16)).astype(np.float32)
    labels = rng.integers(0, 4, 10_000)
    seconds, _ = best_of(lambda: silhouette_score(x, labels), repeats)
    return seconds
