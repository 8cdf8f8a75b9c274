"""latentdiag's whole `metrics` run with a batch key against scib-metrics' own pipeline.

The same embedding (n cells × d dimensions, 10 cell types, 4 batches with a batch effect) is
measured twice, each in a fresh process:

* ``latentdiag metrics FILE --batch-key batch --json``: every metric (the silhouette, the
  probes, MI, the separation by batch, ...) and the scIB suite on one exact k-NN graph;
* scib-metrics' ``Benchmarker`` (its pynndescent graph, then the same scIB metrics: BRAS,
  iLISI, kBET, graph connectivity; isolated labels, k-means NMI/ARI, label silhouette, cLISI;
  PCR comparison off, as there is no pre-integration embedding), jax compilation included.

Prints both times, the ratio, and each metric side by side (scib-metrics' graph is
approximate, so the graph metrics differ slightly). Needs the optional extra:
``pip install -e '.[scib]'``.

Usage::

    python benchmarks/bench_scib.py [--n 30000] [--d 20]
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

PAIRS = {  # latentdiag key -> scib-metrics column
    "mixing.bras": "BRAS",
    "mixing.ilisi": "iLISI",
    "mixing.kbet": "KBET",
    "mixing.graph_connectivity": "Graph connectivity",
    "separation.isolated_labels": "Isolated labels",
    "separation.nmi": "KMeans NMI",
    "separation.ari": "KMeans ARI",
    "separation.clisi": "cLISI",
    "scores.batch_correction": "Batch correction",
    "scores.bio_conservation": "Bio conservation",
    "scores.total": "Total",
}


def make_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    batch = rng.integers(0, 4, n)
    centres = rng.normal(size=(10, d)) * 3.0
    shifts = rng.normal(size=(4, d)) * 0.8
    mu = centres[labels] + shifts[batch] + rng.normal(size=(n, d))
    return mu.astype(np.float32), labels, batch


def run_peer(path: str) -> None:
    """In a child process: scib-metrics' Benchmarker on the .h5ad; prints JSON."""
    import anndata
    from scib_metrics.benchmark import BatchCorrection, Benchmarker

    adata = anndata.read_h5ad(path)
    t0 = time.perf_counter()
    bm = Benchmarker(
        adata,
        batch_key="batch",
        label_key="cell_type",
        embedding_obsm_keys=["X_emb"],
        batch_correction_metrics=BatchCorrection(pcr_comparison=False),
        n_jobs=2,
        progress_bar=False,
    )
    bm.benchmark()
    seconds = time.perf_counter() - t0
    row = bm.get_results(min_max_scale=False).loc["X_emb"]
    print(json.dumps({"seconds": seconds, "values": {k: float(v) for k, v in row.items()}}))


def get(metrics: dict, key: str) -> float | None:
    node: object = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--peer-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_child:
        run_peer(args.peer_child)
        return

    import anndata
    import pandas as pd

    from latentdiag.store import write_latents

    print(load_note())
    mu, labels, batch = make_data(args.n, args.d)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"type{k}" for k in range(10)]
        h5 = root / "latents.h5"
        write_latents(h5, mu, labels=labels, label_names=names, columns={"batch": batch})
        small = root / "small.h5"
        write_latents(small, mu[:500], labels=labels[:500], label_names=names,
                      columns={"batch": batch[:500]})  # fmt: skip
        obs = pd.DataFrame(
            {
                "cell_type": pd.Categorical([names[k] for k in labels]),
                "batch": pd.Categorical([f"b{k}" for k in batch]),
            },
            index=[str(i) for i in range(args.n)],
        )
        h5ad = root / "cells.h5ad"
        # X is the embedding too: the Benchmarker runs a PCA of X before it starts.
        anndata.AnnData(X=mu, obs=obs, obsm={"X_emb": mu}).write_h5ad(h5ad)

        cmd = [sys.executable, "-m", "latentdiag", "metrics"]
        subprocess.run(
            [*cmd, str(small), "--batch-key", "batch", "--json"], check=True, capture_output=True
        )  # fmt: skip  (fills numba's cache; not timed)
        t0 = time.perf_counter()
        done = subprocess.run(
            [*cmd, str(h5), "--batch-key", "batch", "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        ours_s = time.perf_counter() - t0
        ours = json.loads(done.stdout)

        t0 = time.perf_counter()
        peer = subprocess.run(
            [sys.executable, __file__, "--peer-child", str(h5ad)],
            check=True,
            capture_output=True,
            text=True,
        )
        peer_wall = time.perf_counter() - t0
        theirs = json.loads(peer.stdout.strip().splitlines()[-1])

    print(f"{args.n:,} cells × {args.d} dims, 10 cell types, 4 batches")
    print(f"latentdiag metrics (every metric + scIB, fresh process): {ours_s:.1f} s")
    print(f"scib-metrics Benchmarker (fresh process): {peer_wall:.1f} s "
          f"(benchmark() itself {theirs['seconds']:.1f} s)")  # fmt: skip
    print(f"ratio: {peer_wall / ours_s:.1f}× faster")
    print()
    print("metric | latentdiag | scib-metrics | difference")
    for key, column in PAIRS.items():
        a, b = get(ours, key), theirs["values"].get(column)
        diff = "" if a is None or b is None else f"{abs(a - b):.4f}"
        a_text = "—" if a is None else f"{a:.4f}"
        b_text = "—" if b is None else f"{b:.4f}"
        print(f"{key} | {a_text} | {b_text} | {diff}")
    print()
    print(load_note())


if __name__ == "__main__":
    main()
