"""DCI: latentdiag's default against disentanglement_lib's own algorithm, on the same codes.

Both split 4,000 messy codes (7 codes mixing 5 discrete factors, ``dislib_dci.messy_codes``)
into the same 2,000 training and 2,000 test rows; disentanglement_lib's code fits scikit-
learn's gradient boosting per factor, latentdiag its numba copy of the same boosting, one
factor per thread. Prints D, C and informativeness of each, their differences, the times and
the ratio; runs disentanglement_lib's code with two seeds to show its own spread (scikit-learn
breaks equal splits by a random feature order).

Usage::

    python benchmarks/bench_dci.py [--n 4000] [--seeds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dislib_dci
from _common import load_note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    from latentdiag.metrics.disentanglement.dci import _fit_gbt, dci_scores

    print(load_note())
    codes, factors = dislib_dci.messy_codes(args.n)
    half = args.n // 2
    xtr, xte, ytr, yte = codes[:half], codes[half:], factors[:half], factors[half:]
    _fit_gbt(xtr[:50], ytr[:50, 0], xte[:5], 0)  # compile (cached after the first run)

    peer = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        peer.append(dislib_dci.dci(xtr, ytr, xte, yte, seed=seed))
        peer[-1]["seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    import numba

    def one(j: int) -> tuple[np.ndarray, float]:
        imp, _, p_te = _fit_gbt(xtr, ytr[:, j], xte, j)
        return imp, float((p_te == yte[:, j]).mean())

    with ThreadPoolExecutor(max_workers=numba.get_num_threads()) as pool:
        fits = list(pool.map(one, range(factors.shape[1])))
    R = np.stack([f[0] for f in fits], axis=1)
    d, c, c_unweighted = dci_scores(R)
    ours = {
        "disentanglement": d,
        "completeness": c,
        "informativeness_test": float(np.mean([f[1] for f in fits])),
        "seconds": time.perf_counter() - t0,
    }
    for i, p in enumerate(peer):
        print(
            f"disentanglement_lib (seed {i}): D = {p['disentanglement']:.4f}, "
            f"C = {p['completeness']:.4f}, I = {p['informativeness_test']:.4f}  "
            f"({p['seconds']:.1f} s)"
        )
    print(
        f"latentdiag gbt:               D = {ours['disentanglement']:.4f}, "
        f"C = {ours['completeness']:.4f}, I = {ours['informativeness_test']:.4f}  "
        f"({ours['seconds']:.2f} s; unweighted C = {c_unweighted:.4f})"
    )
    p0 = peer[0]
    print(
        f"|ΔD| = {abs(ours['disentanglement'] - p0['disentanglement']):.4f}, "
        f"|ΔC| = {abs(ours['completeness'] - p0['completeness']):.4f}, "
        f"|ΔI| = {abs(ours['informativeness_test'] - p0['informativeness_test']):.4f}; "
        f"disentanglement_lib's own spread over seeds: ΔD = "
        f"{np.ptp([p['disentanglement'] for p in peer]):.4f}, ΔC = "
        f"{np.ptp([p['completeness'] for p in peer]):.4f}"
    )
    mean_peer = float(np.mean([p["seconds"] for p in peer]))
    print(f"speed: {mean_peer / ours['seconds']:.1f}× disentanglement_lib's code")
    print(load_note())


if __name__ == "__main__":
    main()
