"""Time the synthetic pseudo-modality generator on one CPU core.

Target: 20,000 images of 64 × 64 in under 20 s on one core. The peer is the same generator
rendering one image at a time (batch of 1), which is what a straightforward per-image
implementation costs; the ratio shows what the batched, vectorised rendering buys.

    python benchmarks/bench_synth.py                      # 20,000 × 64×64 gray, 3 runs
    python benchmarks/bench_synth.py --channels 3 --size 128 --n 5000

The process pins itself to one core and one BLAS / OpenMP thread before importing numpy.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-n", type=int, default=400, help="images for the per-image peer")
    args = parser.parse_args()

    import latentdiag.data.synthetic as synthetic

    synthetic.generate_synthetic(64, size=args.size, channels=args.channels)  # warm caches
    wall, cpu = [], []
    for r in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        synthetic.generate_synthetic(args.n, size=args.size, channels=args.channels, seed=r)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)

    chunk = synthetic._CHUNK
    synthetic._CHUNK = 1  # the peer: one image per render call
    try:
        c0 = time.process_time()
        synthetic.generate_synthetic(args.peer_n, size=args.size, channels=args.channels)
        peer_cpu = (time.process_time() - c0) / args.peer_n * args.n
    finally:
        synthetic._CHUNK = chunk

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    shape = f"{args.channels}×{args.size}×{args.size}"
    print(
        f"latentdiag synthetic: {args.n:,} images {shape}, one core (cpu {cpus}), "
        f"{args.repeats} runs"
    )
    print(
        f"  wall (s):  {', '.join(f'{t:.2f}' for t in wall)}   (includes waiting for a busy core)"
    )
    print(f"  cpu  (s):  {', '.join(f'{t:.2f}' for t in cpu)}")
    med = statistics.median(cpu)
    print(f"  median cpu {med:.2f} s = {args.n / med:,.0f} images/s on one core")
    print(f"  per-image peer cpu: {peer_cpu:.2f} s (extrapolated from {args.peer_n} images)")
    print(f"  ratio peer / latentdiag (cpu): {peer_cpu / med:.1f}×")
    if args.n == 20_000 and args.size == 64:
        worst = max(wall)
        verdict = "meets" if med < 20 and worst < 20 else "MISSES"
        print(
            f"  target 20,000 × 64×64 in < 20 s: {verdict} "
            f"(cpu {med:.2f} s, slowest wall {worst:.2f} s)"
        )


if __name__ == "__main__":
    main()
