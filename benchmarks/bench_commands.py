"""What a user waits for: `metrics`, `report` and `demo` in fresh processes, in yardsticks.

The file is the ordinary one of the speed issue: 2,000 × 16 latents with four labels, logvar,
five continuous factors and two partitions (``shared`` 0–8, ``modality`` 8–16). Each command
runs in a fresh process, as a user runs it (numba kernels from their cache: one untimed run
first fills it), and its wall time is divided by the yardstick — scikit-learn's exact
silhouette on 10,000 × 16 — timed in the same run, before and after the commands.

``BEFORE`` holds the same commands measured on this repository before the speed work (commit
f7a394e, same machine, same file), and the issue's own figures; the targets are the issue's.

Usage::

    python benchmarks/bench_commands.py            # metrics and report, three runs each
    python benchmarks/bench_commands.py --demo     # and the full demo once (about 2 minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_note, yardstick

# command -> (seconds before the speed work at commit f7a394e, its yardstick then, the issue's
# figure in yardsticks, the target in yardsticks)
BEFORE = {
    "metrics": (11.7, 0.675, "~15", 3),
    "report": (23.6, 0.675, "45-60", 10),
    "demo": (196.8, 0.675, "~230", 120),
}


def write_file(path: Path, n: int = 2000, d: int = 16, seed: int = 0) -> None:
    """Latents with labels, logvar, factors and partitions, structured like a trained VAE's."""
    from latentdiag.store import write_latents

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    factors = rng.uniform(size=(n, 5))
    mixing = rng.normal(size=(5, d // 2)) * (rng.random((5, d // 2)) < 0.5)
    shared = factors @ mixing + 0.3 * rng.normal(size=(n, d // 2))
    centres = rng.normal(size=(4, d - d // 2)) * 3.0
    modality = centres[labels] + rng.normal(size=(n, d - d // 2))
    mu = np.hstack([shared, modality]).astype(np.float32)
    logvar = (rng.normal(size=(n, d)) * 0.2 - 1.0).astype(np.float32)
    write_latents(
        path,
        mu,
        logvar=logvar,
        labels=labels,
        label_names=["a", "b", "c", "d"],
        factors=factors.astype(np.float32),
        factor_names=[f"f{j}" for j in range(5)],
        partitions={"shared": (0, d // 2), "modality": (d // 2, d)},
    )


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of metrics and report")
    parser.add_argument("--demo", action="store_true", help="also time the full demo once")
    args = parser.parse_args()

    print(load_note())
    exe = [sys.executable, "-m", "latentdiag"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        latents = root / "latents.h5"
        write_file(latents)
        commands = {
            "metrics": [*exe, "metrics", str(latents), "--json"],
            "report": [*exe, "report", str(latents), "-o", str(root / "report")],
        }
        for cmd in commands.values():
            run(cmd)  # fills numba's cache once per machine; not timed
        ys = [yardstick()]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(max(1, args.runs)):
            for name, cmd in commands.items():
                times[name].append(run(cmd))
        if args.demo:
            demo = [*exe, "demo", "--out", str(root / "demo"), "--overwrite", "--json"]
            times["demo"] = [run(demo)]
        ys.append(yardstick())
    stick = min(ys)
    print(f"yardstick (scikit-learn's exact silhouette, 10,000 × 16): {stick:.3f} s "
          f"(before {ys[0]:.3f} s, after {ys[-1]:.3f} s)")  # fmt: skip
    print()
    header = ("command", "now", "now (yardsticks)", "before (yardsticks)", "issue", "target")
    print(" | ".join(header))
    for name, values in times.items():
        now = statistics.median(values)
        before_s, before_stick, issue, target = BEFORE[name]
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"{name} | {now:.1f} s ({runs}) | {now / stick:.1f} | "
            f"{before_s / before_stick:.1f} ({before_s:.1f} s) | {issue} | <= {target}"
        )
    print()
    print(load_note())


if __name__ == "__main__":
    main()
