"""Peak memory of ``latentdiag embed`` at n = 10,000 and n = 100,000, in one run.

Each embed runs in a fresh process over a dataset that makes its images on the fly (so the
data itself takes no memory that grows with n), through both data paths: DataLoader worker
processes, and the in-process prefetch thread. The peak resident set size of the embedding
process, and of its largest child process, is read from ``getrusage``; memory is flat when
the peak at n = 100,000 is within 10 % of the peak at n = 10,000.

Usage::

    python benchmarks/bench_embed_memory.py [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys
import numpy as np
import torch
from torch import nn

from latentdiag.data.base import ImageDataset
from latentdiag.embed import embed
from latentdiag.runners import open_runner

n, workers, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]


class Generated(ImageDataset):
    # 1x28x28 images computed from their index: no array that grows with n.
    label_names = ["a", "b", "c", "d"]
    channels, size, source = 1, 28, "generated"

    def __init__(self, n):
        self.n = n
        self.base = np.arange(28 * 28, dtype=np.int64).reshape(1, 28, 28)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        img = ((self.base * 7 + i * 2654435761) % 251).astype(np.float32) / 250.0
        return {"image": img, "label": i % 4, "factors": np.zeros(0, np.float32),
                "sample_id": f"gen/{i:07d}.png", "index": i}


torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(),
    nn.Flatten(), nn.Linear(32 * 7 * 7, 32),
).eval()
path = f"{folder}/enc.onnx"
torch.onnx.export(model, (torch.rand(2, 1, 28, 28),), path, dynamo=False,
                  input_names=["x"], output_names=["mean"], opset_version=17,
                  dynamic_axes={"x": {0: "b"}, "mean": {0: "b"}})
runner = open_runner(path, device="cpu")
result = embed(runner, Generated(n), f"{folder}/z_{n}_{workers}.h5", batch_size=256,
               workers=workers, overwrite=True)
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"n": n, "workers": workers, "rows": result.n_rows, "self_mb": self_kb / 1024,
                  "child_mb": child_kb / 1024, "images_per_s": result.images_per_s}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workers", default="0,1", help="DataLoader workers to try")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: dict[tuple[int, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            for n in sizes:
                out = subprocess.run(
                    [sys.executable, "-W", "ignore", "-c", CHILD, str(n), str(workers), tmp],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                info = json.loads(out.stdout.strip().splitlines()[-1])
                rows[(workers, n)] = info
                print(
                    f"workers={workers} n={n:>7,}  peak RSS {info['self_mb']:7.1f} MiB  "
                    f"largest child {info['child_mb']:7.1f} MiB  "
                    f"{info['images_per_s']:8,.0f} images/s",
                    flush=True,
                )
                Path(tmp, f"z_{n}_{workers}.h5").unlink()
    for workers in sorted({w for w, _ in rows}):
        small, large = rows[(workers, sizes[0])], rows[(workers, sizes[-1])]
        ratio = large["self_mb"] / small["self_mb"]
        verdict = "flat (within 10 %)" if ratio <= 1.10 else "GROWS"
        print(
            f"workers={workers}: peak at n={sizes[-1]:,} / n={sizes[0]:,} = {ratio:.3f}  {verdict}"
        )


if __name__ == "__main__":
    main()
