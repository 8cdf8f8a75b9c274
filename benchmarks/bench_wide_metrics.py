"""`latentdiag metrics` on wide latents (600 × 1,024, with logvar, labels and factors).

The case of diffusers' AutoencoderKL flattened at 32 px. Times, in fresh processes and against
the yardstick (scikit-learn's exact silhouette on 10,000 × 16, measured in the same run):

* the default run, whose cost model keeps wide latents fast (probes on fewer rows, posterior
  TC on the 64 most active dimensions, DCI and the discrete SAP skipped, each said);
* ``--exhaustive``: every metric on every dimension, which is what every run did before the
  cost model (apart from the FactorVAE score, whose wide-batch gather was made ~10× faster
  at the same time: before both changes this file took 101 s here, about 120 yardsticks).

It also counts the lines the command prints.

Usage::

    python benchmarks/bench_wide_metrics.py [--n 600] [--d 1024] [--no-exhaustive]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_note, yardstick


def write_file(path: Path, n: int, d: int) -> None:
    from latentdiag.store import write_latents

    rng = np.random.default_rng(0)
    factors = rng.random((n, 4)).astype(np.float32)
    labels = rng.integers(0, 4, n)
    mu = factors @ rng.normal(size=(4, d)) + rng.normal(size=(n, d))
    mu[:, :16] += 2.0 * labels[:, None]
    write_latents(
        path,
        mu.astype(np.float32),
        logvar=rng.normal(-1.0, 0.1, (n, d)).astype(np.float32),
        labels=labels,
        label_names=["a", "b", "c", "d"],
        factors=factors,
    )


def run(path: Path, *extra: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "latentdiag", "metrics", str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    return time.perf_counter() - t0, len(out.stdout.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--no-exhaustive", action="store_true", help="Skip the slow run.")
    args = parser.parse_args()
    print(load_note())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wide.h5"
        write_file(path, args.n, args.d)
        run(path)  # numba kernels compiled and cached, as on a user's second run
        y = yardstick()
        print(f"yardstick (sklearn silhouette, 10,000 × 16): {y:.2f} s")
        t, lines = run(path)
        print(f"metrics, default:     {t:6.1f} s = {t / y:5.1f} yardsticks, {lines} lines printed")
        if not args.no_exhaustive:
            te, lines_e = run(path, "--exhaustive")
            print(
                f"metrics, --exhaustive: {te:6.1f} s = {te / y:5.1f} yardsticks, "
                f"{lines_e} lines printed; default is {te / t:.1f}× faster"
            )
    print(load_note())


if __name__ == "__main__":
    main()
