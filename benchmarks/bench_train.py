"""Time the reference-model training loop: images per second, against a plain DataLoader loop.

latentdiag's trainer decodes a small dataset once into one tensor and serves batches by index;
the peer is the textbook PyTorch loop — the same model, loss and optimizer, fed by a
``DataLoader`` over the same dataset (items collated one by one, no workers). Both train for
two epochs on the same synthetic images and the second is timed. On CUDA the trainer also runs
in bf16 autocast with the images already on the GPU, the peer in float32 copying each batch.

Measured on 2 CPU cores (32 × 32, 8,000 training images): the trainer is 1.1–1.2× the plain
loop, from its channels-last convolutions; with an in-memory array dataset the per-item
collation costs little next to the convolutions.
The in-memory path pays off where decoding an item is expensive (image folders are decoded
once, not once per epoch) and on a GPU (no per-batch host-to-device copy).

    python benchmarks/bench_train.py                          # 32 × 32, baseline + disentangled
    python benchmarks/bench_train.py --size 64 --n 4000       # the 64 × 64 configuration
    python benchmarks/bench_train.py --device cuda --size 64 --n 20000 --batch-size 256

Prints images per second for each and their ratio, and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_note


def _peer(model, dataset, indices, *, batch_size: int, lr: float, device) -> float:
    """Two epochs of the plain loop over ``indices``; images per second of the second."""
    import torch
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(
        Subset(dataset, indices.tolist()), batch_size=batch_size, shuffle=True, drop_last=True
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(2):  # the first epoch warms up allocators and kernels
        seen, t0 = 0, time.perf_counter()
        for item in loader:
            batch = {"image": item["image"].to(device), "label": item["label"].to(device)}
            loss = model(batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += batch["image"].shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="baseline,disentangled")
    args = parser.parse_args()

    import torch

    from latentdiag.data import open_dataset
    from reference_models.config import build_config
    from reference_models.data import heldout_split
    from reference_models.device import pick_device
    from reference_models.registry import get_model_class
    from reference_models.trainer import train

    device = pick_device(args.device)
    print(f"machine: {load_note()}; device {device}; torch threads {torch.get_num_threads()}")
    dataset = open_dataset("synthetic", size=args.size, channels=args.channels, n=args.n)
    for name in args.models.split(","):
        overrides = {
            "data": {"size": args.size, "channels": args.channels, "n": args.n},
            "train": {"epochs": 2, "batch_size": args.batch_size, "device": str(device)},
        }
        config = build_config(model=name, overrides=overrides)
        with tempfile.TemporaryDirectory() as tmp:
            train(config, Path(tmp) / "run", dataset=dataset)
            lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
            ours = json.loads(lines[-1])["images_per_s"]  # the second epoch, warmed up

        assert dataset.labels is not None
        train_idx, _ = heldout_split(dataset.labels, fraction=config.data.heldout, seed=0)
        torch.manual_seed(0)
        from reference_models.base import DataSpec

        spec = DataSpec(
            channels=args.channels,
            size=args.size,
            label_names=tuple(dataset.label_names or ()),
            n_train=int(train_idx.size),
        )
        model = get_model_class(name)(config.model, spec).to(device)
        peer = _peer(
            model, dataset, train_idx, batch_size=args.batch_size, lr=config.train.lr, device=device
        )
        shape = f"{args.channels}×{args.size}×{args.size}"
        print(
            f"{name:12s} {shape}, {train_idx.size:,} training images, batch {args.batch_size}: "
            f"latentdiag {ours:,.0f} img/s, plain DataLoader loop {peer:,.0f} img/s, "
            f"ratio {ours / peer:.2f}×"
        )
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()
