"""Per-dimension mutual information with the label: latentdiag against
``sklearn.feature_selection.mutual_info_classif`` (same estimator, same noise seed).

Usage::

    python benchmarks/bench_mi.py [--n 100000] [--d 16] [--k 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import best_of, load_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from sklearn.feature_selection import mutual_info_classif

    from latentdiag.metrics import mutual_info_per_dim

    print(f"machine: {load_note()}")
    rng = np.random.default_rng(args.seed)
    y = rng.integers(0, args.k, args.n)
    X = rng.normal(size=(args.n, args.d)).astype(np.float32)
    X += (y[:, None] * np.linspace(0.0, 2.0, args.d)).astype(np.float32)
    print(f"data: n={args.n:,} d={args.d} k={args.k}")
    mutual_info_per_dim(X[:200], y[:200])  # load the compiled kernel
    t_ours, ours = best_of(lambda: mutual_info_per_dim(X, y, random_state=0), args.repeats)
    print(f"latentdiag   {t_ours:8.3f} s (best of {args.repeats})")
    t_sk, ref = best_of(
        lambda: mutual_info_classif(X, y, discrete_features=False, n_neighbors=3, random_state=0),
        1,
    )
    print(f"scikit-learn {t_sk:8.3f} s")
    print(
        f"ratio: latentdiag is {t_sk / t_ours:.1f}x faster; max |difference| "
        f"{np.abs(ours - ref).max():.2e} nats"
    )
    print(f"machine after: {load_note()}")


if __name__ == "__main__":
    main()
