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
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        synthetic.generate_synthetic(args.n, size=args.size, channels=args.channels, seed=r)
        times.append(time.perf_counter() - t0)
    best, median = min(times), statistics.median(times)

    chunk = synthetic._CHUNK
    synthetic._CHUNK = 1  # the peer: one image per render call
    try:
        t0 = time.perf_counter()
        synthetic.generate_synthetic(args.peer_n, size=args.size, channels=args.channels)
        per_image = (time.perf_counter() - t0) / args.peer_n
    finally:
        synthetic._CHUNK = chunk
    peer_total = per_image * args.n

    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else "?"
    print(
        f"latentdiag synthetic: {args.n:,} images {args.channels}×{args.size}×{args.size}, "
        f"one core (cpu {sorted(cores) if cores != '?' else cores}), {args.repeats} runs"
    )
    print(f"  runs (s):            {', '.join(f'{t:.2f}' for t in times)}")
    print(f"  best / median (s):   {best:.2f} / {median:.2f}   ({args.n / median:,.0f} images/s)")
    print(f"  per-image peer (s):  {peer_total:.1f} (extrapolated from {args.peer_n} images)")
    print(f"  ratio peer / batched (median): {peer_total / median:.1f}×")
    if args.n == 20_000 and args.size == 64:
        verdict = "meets" if median < 20 else "MISSES"
        print(f"  target 20,000 × 64×64 in < 20 s: {verdict} ({median:.2f} s)")


if __name__ == "__main__":
    main()
