"""Embed throughput against bare inference loops, in one run.

For each model (a small conv VAE encoder on 1×28×28 images and a larger one on 3×64×64):

* ONNX: ``latentdiag.embed`` with an ONNX runner versus a bare ``InferenceSession.run`` loop
  over the same images, already decoded to float32 batches before the clock starts;
* PyTorch: ``latentdiag.embed`` with a torch runner versus a bare
  ``torch.inference_mode()`` loop over the same pre-decoded batches.

embed starts from the uint8 images (it decodes, preprocesses, runs, checks for non-finite
values and writes the HDF5 file); the bare loops only run the model. Runs come in pairs, in
alternating order, so a noisy neighbour slows both alike; the script prints the ratio of the
best times and the median ratio of the pairs. The target is a ratio of at least 0.90.

Usage::

    python benchmarks/bench_embed.py [--n 4096] [--batch-size 256] [--repeats 5] [--threads T]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class SmallEncoder(nn.Module):
    """1×28×28 → 16-d (mu, logvar): two strided convs and two linear heads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
        )  # fmt: skip
        self.mu = nn.Linear(256, 16)
        self.lv = nn.Linear(256, 16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.lv(h)


class LargeEncoder(nn.Module):
    """3×64×64 → 32-d (mu, logvar): four strided convs, as in a β-VAE on CelebA."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, 32, 64, 128, 256]
        for cin, cout in itertools.pairwise(channels):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.mu = nn.Linear(256 * 4 * 4, 32)
        self.lv = nn.Linear(256 * 4 * 4, 32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.lv(h)


def export(model: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    torch.onnx.export(
        model, (torch.rand(2, *shape),), str(path), dynamo=False, input_names=["x"],
        output_names=["mean", "logvar"], opset_version=17,
        dynamic_axes={"x": {0: "b"}, "mean": {0: "b"}, "logvar": {0: "b"}},
    )  # fmt: skip
    return path


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(name: str, model: nn.Module, shape: tuple[int, ...], args, tmp: Path) -> list[str]:
    import onnxruntime as ort

    from latentdiag.data.base import ArrayDataset
    from latentdiag.embed import embed
    from latentdiag.runners import open_runner

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, *shape), dtype=np.uint8)
    data = ArrayDataset(images, source=name)
    bs = args.batch_size
    # Pre-decoded batches for the bare loops: float32 in [0, 1], the same values embed feeds.
    batches = [images[i : i + bs].astype(np.float32) / 255.0 for i in range(0, args.n, bs)]
    tbatches = [torch.from_numpy(b) for b in batches]
    onnx_path = export(model, shape, tmp / f"{name}.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_runner = open_runner(onnx_path, device="cpu")
    torch_runner = open_runner(model, device="cpu", name=name)
    out = tmp / "z.h5"

    def bare_onnx() -> None:
        for b in batches:
            session.run(None, {"x": b})

    def bare_torch() -> None:
        with torch.inference_mode():
            for t in tbatches:
                model(t)

    def embed_with(runner) -> None:
        embed(runner, data, out, batch_size=bs, overwrite=True)

    lines = []
    for label, bare, runner in (
        ("onnx", bare_onnx, onnx_runner),
        ("torch", bare_torch, torch_runner),
    ):
        bare()  # warm up (allocations, kernel selection)
        embed_with(runner)
        t_bare, t_embed, ratios = [], [], []
        for i in range(args.repeats):  # pairs, in alternating order
            pair = {}
            for which in ("bare", "embed") if i % 2 == 0 else ("embed", "bare"):
                fn = bare if which == "bare" else (lambda r=runner: embed_with(r))
                time.sleep(0.3)  # let the previous run's pool threads go idle
                pair[which] = best_of(fn, 1)
            t_bare.append(pair["bare"])
            t_embed.append(pair["embed"])
            ratios.append(pair["bare"] / pair["embed"])
        best = min(t_bare) / min(t_embed)
        median = float(np.median(ratios))
        lines.append(
            f"{name:6s} {label:6s} bare {args.n / min(t_bare):9,.0f} img/s   embed "
            f"{args.n / min(t_embed):9,.0f} img/s   ratio best {best:.3f}  median of pairs "
            f"{median:.3f}  {'ok' if max(best, median) >= 0.9 else 'BELOW 0.90'}"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32768, help="images per run (steady state)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--models", default="small,large")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "small": (SmallEncoder().eval(), (1, 28, 28)),
        "large": (LargeEncoder().eval(), (3, 64, 64)),
    }
    print(f"n={args.n} batch={args.batch_size} repeats={args.repeats} "
          f"torch threads={torch.get_num_threads()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, shape = models[name]
            bench(name, model, shape, args, Path(tmp))


if __name__ == "__main__":
    main()
