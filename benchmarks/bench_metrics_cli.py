"""`latentdiag metrics` end to end on a 100,000 × 16 latents file with labels and logvar.

Writes the file to a temporary folder, then runs the command in a fresh process (as a user
would, numba kernels loaded from their cache) and reports the wall time against the 60 s
target. ``--partitions`` adds two named subspaces (every metric then runs three times).

Usage::

    python benchmarks/bench_metrics_cli.py [--n 100000] [--d 16] [--partitions] [--factors]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--partitions", action="store_true")
    parser.add_argument("--factors", action="store_true")
    parser.add_argument("--target", type=float, default=60.0)
    args = parser.parse_args()

    from latentdiag.store import write_latents

    print(f"machine: {load_note()}")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.k, args.n)
    mu = rng.normal(size=(args.n, args.d)).astype(np.float32)
    half = args.d // 2
    mu[:, half:] += 2.0 * labels[:, None]
    logvar = (rng.normal(size=(args.n, args.d)) * 0.1 - 1.0).astype(np.float32)
    factors = None
    if args.factors:
        factors = np.column_stack([labels, rng.integers(0, 5, args.n)]).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latents.h5"
        write_latents(
            path,
            mu,
            logvar=logvar,
            labels=labels,
            label_names=[f"label{i}" for i in range(args.k)],
            factors=factors,
            factor_names=None if factors is None else ["label", "noise"],
            partitions={"shared": [0, half], "modality": [half, args.d]}
            if args.partitions
            else None,
        )
        cmd = [sys.executable, "-m", "latentdiag", "metrics", str(path), "--json"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    result = json.loads(out.stdout)
    print(
        f"latentdiag metrics on {args.n:,} x {args.d} (labels, logvar"
        f"{', factors' if args.factors else ''}{', 2 partitions' if args.partitions else ''}): "
        f"{wall:.1f} s wall (target < {args.target:.0f} s: "
        f"{'met' if wall < args.target else 'MISSED'})"
    )
    print(f"silhouette {result['separation']['silhouette']:.4f}, skipped {len(result['skipped'])}")
    print(f"machine after: {load_note()}")


if __name__ == "__main__":
    main()
