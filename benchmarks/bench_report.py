"""Time ``latentdiag report`` on a 100,000 × 16 latents file with labels.

Target: under 60 s on a 2-core machine, with the default projections (PCA, UMAP and t-SNE on a
stratified sample of 2,000 rows). The time is measured end to end as a user sees it: a fresh
``latentdiag report`` process, imports and umap-learn's first-use compilation included.

The peer is the short script a user would otherwise write with the same libraries: PCA, UMAP
and t-SNE scatter plots and scikit-learn's silhouette, Davies–Bouldin and Calinski–Harabasz
scores, all on the same 2,000-row sample, written as PNGs — no report, no per-label figures,
no information metrics. The ratio shows what the whole report costs over that bare minimum.

    python benchmarks/bench_report.py                     # 100,000 × 16, 4 labels, logvar
    python benchmarks/bench_report.py --n 20000 --projection pca
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER = r"""
import sys, time
t0 = time.perf_counter()
import h5py, numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
path, out, sample, methods = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
with h5py.File(path, "r") as f:
    mu, labels = f["mu"][:], f["labels"][:]
rng = np.random.default_rng(0)
rows = np.sort(rng.choice(len(mu), size=min(sample, len(mu)), replace=False))
x, y = mu[rows], labels[rows]
scores = (silhouette_score(x, y), davies_bouldin_score(x, y), calinski_harabasz_score(x, y))
for m in methods:
    if m == "pca":
        xy = PCA(2).fit(mu).transform(x)
    elif m == "tsne":
        xy = TSNE(2, random_state=0, init="pca").fit_transform(x)
    else:
        import umap
        xy = umap.UMAP(random_state=0).fit_transform(x)
    fig, ax = plt.subplots()
    ax.scatter(xy[:, 0], xy[:, 1], c=y, s=4, cmap="tab10")
    fig.savefig(f"{out}/{m}.png", dpi=100)
    plt.close(fig)
print(f"{time.perf_counter() - t0:.3f}")
"""


def _write_latents(path: Path, n: int, d: int, k: int, seed: int) -> None:
    import numpy as np

    from latentdiag.store import write_latents

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    mu = rng.normal(size=(n, d)).astype(np.float32)
    mu[:, d // 2 : d // 2 + k] += 2.5 * np.eye(k, dtype=np.float32)[labels][:, : d - d // 2]
    logvar = rng.normal(-1.0, 0.3, size=(n, d)).astype(np.float32)
    names = ["chest_xray", "oct", "pathology", "dermatoscopy", *[f"label_{i}" for i in range(k)]]
    write_latents(path, mu, logvar=logvar, labels=labels, label_names=names[:k])


def _child_cpu() -> float:
    """User + system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--labels", type=int, default=4)
    parser.add_argument(
        "--projection", default="pca,umap,tsne", help="comma-separated, as in --projection"
    )
    parser.add_argument("--plot-sample", type=int, default=2000)
    parser.add_argument("--no-peer", action="store_true", help="time latentdiag only")
    args = parser.parse_args()

    methods = [m for m in args.projection.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        lat = Path(tmp) / "latents.h5"
        _write_latents(lat, args.n, args.d, args.labels, seed=0)
        cmd = [sys.executable, "-m", "latentdiag", "report", str(lat), "-o", f"{tmp}/report"]
        cmd += ["--plot-sample", str(args.plot_sample)]
        for m in methods:
            cmd += ["--projection", m]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t0, c0 = time.perf_counter(), _child_cpu()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours, ours_cpu = time.perf_counter() - t0, _child_cpu() - c0
        html = Path(tmp) / "report" / "report.html"
        size_mb = html.stat().st_size / 1e6
        figures = len(list((Path(tmp) / "report" / "figures").rglob("*.png")))

        print(
            f"latentdiag report: {args.n:,} × {args.d}, {args.labels} labels, logvar; "
            f"projections {', '.join(methods) or 'none'} on {args.plot_sample:,} rows; "
            f"{os.cpu_count()} CPUs, load average {load:.1f} at the start"
        )
        print(
            f"  latentdiag report  {ours:7.1f} s wall, {ours_cpu:6.1f} s CPU  "
            f"({figures} figures, report.html {size_mb:.1f} MB)"
        )
        if args.no_peer:
            return
        peer_out = Path(tmp) / "peer"
        peer_out.mkdir()
        t0, c0 = time.perf_counter(), _child_cpu()
        subprocess.run(
            [sys.executable, "-c", PEER, str(lat), str(peer_out), str(args.plot_sample),
             ",".join(methods)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        peer, peer_cpu = time.perf_counter() - t0, _child_cpu() - c0
        print(
            f"  bare sklearn/umap  {peer:7.1f} s wall, {peer_cpu:6.1f} s CPU  "
            f"({len(methods)} scatter plots, 3 scores)"
        )
        print(
            f"  ratio latentdiag / bare script: {ours / peer:.2f} wall, "
            f"{ours_cpu / peer_cpu:.2f} CPU"
        )


if __name__ == "__main__":
    main()
