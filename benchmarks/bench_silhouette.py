"""Silhouette: latentdiag against ``sklearn.metrics.silhouette_score``, on the same data.

Data: n points in d dimensions, k Gaussian labels (float32, as latents files store them).
Prints wall time, peak extra memory, the ratio and the largest difference; also the numba
first-call cost in a fresh process (compiled code loaded from the cache) and from scratch
(empty cache), which a user pays once. With ``--device cuda`` (and a GPU) also times the torch
path at ``--cuda-n`` points; it needs no peer: scikit-learn would take hours there.

Usage::

    python benchmarks/bench_silhouette.py [--n 100000] [--d 16] [--k 4] [--skip-sklearn]
    python benchmarks/bench_silhouette.py --device cuda --cuda-n 1000000

scikit-learn takes minutes at n = 100,000 on two cores; it runs once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_note, mib, timed


def make_data(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + 1.5 * rng.normal(size=(k, d))[labels]
    return X.astype(np.float32), labels


FIRST_CALL = (
    "import time; t = time.perf_counter()\n"
    "import numpy as np\n"
    "from latentdiag.metrics import silhouette_score\n"
    "silhouette_score(np.random.rand(200, 16).astype('float32'), np.arange(200) % 4)\n"
    "print(time.perf_counter() - t)\n"
)


def first_call_seconds(fresh_cache: bool) -> float:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if fresh_cache:
            env["NUMBA_CACHE_DIR"] = cache  # nothing compiled yet: numba compiles now
        out = subprocess.run(
            [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument(
        "--peer-threads",
        type=int,
        default=None,
        help="limit scikit-learn's BLAS/OpenMP threads (default: its own choice, as users run it)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the torch path")
    parser.add_argument("--cuda-n", type=int, default=1_000_000)
    args = parser.parse_args()

    from latentdiag.metrics import silhouette_score

    print(f"machine: {load_note()}")
    print(f"first call, fresh process, compiled kernels cached: {first_call_seconds(False):.2f} s")
    print(f"first call, fresh process, empty numba cache:       {first_call_seconds(True):.2f} s")

    X, y = make_data(args.n, args.d, args.k, args.seed)
    print(f"data: n={args.n:,} d={args.d} k={args.k} float32")
    silhouette_score(X[:500], y[:500])  # warm: compiled kernels loaded
    t_ours, s_ours, m_ours = timed(lambda: silhouette_score(X, y))
    print(f"latentdiag  {t_ours:9.2f} s  peak +{mib(m_ours)}  silhouette {s_ours:.10f}")
    if not args.skip_sklearn:
        import sklearn.metrics as skm
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.peer_threads):
            t_sk, s_sk, m_sk = timed(lambda: skm.silhouette_score(X, y))
        print(f"scikit-learn{t_sk:9.2f} s  peak +{mib(m_sk)}  silhouette {s_sk:.10f}")
        diff = abs(s_ours - s_sk)
        print(f"ratio: latentdiag is {t_sk / t_ours:.1f}x faster; |difference| {diff:.2e}")
    print(f"memory O(n·k): n·k·8 bytes = {mib(args.n * args.k * 8)} per thread accumulator")

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("cuda: no GPU visible to torch; skipped")
            return
        Xc, yc = make_data(args.cuda_n, args.d, args.k, args.seed + 1)
        silhouette_score(Xc[:2000], yc[:2000], device=args.device)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        s = silhouette_score(Xc, yc, device=args.device)
        torch.cuda.synchronize()
        print(
            f"cuda ({torch.cuda.get_device_name()}): n={args.cuda_n:,} "
            f"{time.perf_counter() - t0:.2f} s  silhouette {s:.6f}"
        )
    print(f"machine after: {load_note()}")


if __name__ == "__main__":
    main()
