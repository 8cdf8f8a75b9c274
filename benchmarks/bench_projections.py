"""The report's projections against their peers: t-SNE against scikit-learn's, UMAP against
umap-learn's, on the same 2,000 × 16 sample, with the trustworthiness of each embedding.

Each peer is timed in a fresh process with its import (what a report would pay); latentdiag's
in a fresh process too, numba kernels from their cache (one untimed run fills it first).

Usage::

    python benchmarks/bench_projections.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import load_note
from bench_commands import write_file

RUN = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import numpy as np
from latentdiag.store import open_latents
with open_latents(sys.argv[1]) as store:
    x = np.asarray(store.mu, dtype=np.float64)
which = sys.argv[2]
start = time.perf_counter()
if which == "ours-tsne":
    from latentdiag.report.projections import _tsne_exact
    emb = _tsne_exact(x, 30.0, 0)
elif which == "sklearn-tsne":
    from latentdiag.report.projections import _tsne_sklearn
    emb = _tsne_sklearn(x, 30.0, 0)
elif which == "ours-umap":
    from latentdiag.report.projections import _umap
    emb = _umap(x, 0).coords
else:
    import umap
    emb = umap.UMAP(n_neighbors=15, n_epochs=200, random_state=0).fit_transform(x)
seconds = time.perf_counter() - start
from sklearn.manifold import trustworthiness
print(json.dumps({"seconds": seconds, "trust": trustworthiness(x, emb, n_neighbors=10)}))
"""


def measure(path: Path, which: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(path), which], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(load_note())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latents.h5"
        write_file(path)
        for which in ("ours-tsne", "ours-umap"):
            measure(path, which)  # fills numba's cache; not timed
        rows = {w: measure(path, w) for w in ("ours-tsne", "sklearn-tsne", "ours-umap", "umap")}
    print("projection | latentdiag (import + fit) | peer (import + fit) | ratio | trustworthiness")
    for name, ours, peer in (("t-SNE", "ours-tsne", "sklearn-tsne"), ("UMAP", "ours-umap", "umap")):
        a, b = rows[ours], rows[peer]
        print(
            f"{name} | {a['seconds']:.2f} s | {b['seconds']:.2f} s | "
            f"{b['seconds'] / a['seconds']:.1f}x faster | {a['trust']:.4f} vs {b['trust']:.4f}"
        )
    print(load_note())


if __name__ == "__main__":
    main()
