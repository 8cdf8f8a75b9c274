"""Per-sample, per-label sums of Euclidean distances: the work of the silhouette, two backends.

* :func:`label_sums_numba` — the fused CPU kernel of :mod:`._silhouette_numba`, tiled over
  label blocks, each pair computed once.
* :func:`label_sums_torch` — blocked torch, fused by ``torch.compile`` on a GPU.

Both return S (n_rows, k) float64 with S[i, c] = Σ_{j in label c} |x_i − x_j|, distances from
differences (on the CPU, a pair's squared distance in the data's precision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Progress = Callable[[float], None]


def _pad8(X: np.ndarray, dtype: Any) -> np.ndarray:
    """Copy with features zero-padded to a multiple of 8 (zeros add 0 to distances)."""
    n, d = X.shape
    d8 = -(-d // 8) * 8
    out = np.zeros((n, d8), dtype=dtype)
    out[:, :d] = X
    return out


def label_bounds(codes_sorted: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(codes_sorted, minlength=k)
    ends = np.cumsum(counts)
    return np.stack([ends - counts, ends], axis=1).astype(np.int64)


def _tiles(rows: np.ndarray, cols: np.ndarray, *, symmetric: bool) -> np.ndarray:
    """Work tiles (i0, i1, j0, j1, label_i, label_j) over label blocks [start, stop)."""
    from latentdiag.metrics._silhouette_numba import BLOCK_COLS, BLOCK_ROWS

    out: list[tuple[int, int, int, int, int, int]] = []
    k = rows.shape[0]
    for a in range(k):
        s0, e0 = int(rows[a, 0]), int(rows[a, 1])
        for b in range(a if symmetric else 0, k):
            s1, e1 = int(cols[b, 0]), int(cols[b, 1])
            for j0 in range(s1, e1, BLOCK_COLS):
                j1 = min(j0 + BLOCK_COLS, e1)
                for i0 in range(s0, e0, BLOCK_ROWS):
                    if symmetric and a == b and i0 >= j1 - 1:
                        continue  # every pair of this tile has j <= i: counted elsewhere
                    out.append((i0, min(i0 + BLOCK_ROWS, e0), j0, j1, a, b))
    return np.asarray(out, dtype=np.int64).reshape(-1, 6)


def label_sums_numba(
    XA: np.ndarray,
    XB: np.ndarray | None,
    rows: np.ndarray,
    cols: np.ndarray,
    k: int,
    progress: Progress | None,
) -> np.ndarray:
    """(nA, k) sums of distances from each row of XA to the points of each label of XB.

    ``XB=None`` means XB is XA (all pairs, each computed once).
    """
    from latentdiag.metrics._silhouette_numba import label_distance_sums, num_threads

    symmetric = XB is None
    # float32 data keeps float32 pair arithmetic (see the kernel's notes); sums stay float64.
    single = XA.dtype == np.float32 and (XB is None or XB.dtype == np.float32)
    dtype = np.float32 if single else np.float64
    A = _pad8(XA, dtype)
    BT = np.ascontiguousarray(A.T if symmetric else _pad8(XB, dtype).T)  # type: ignore[arg-type]
    tiles = _tiles(rows, cols, symmetric=symmetric)
    n = A.shape[0]
    # One accumulator per thread; cap their memory at ~1 GiB whatever the thread count.
    owners = max(1, min(num_threads(), (1 << 27) // max(1, n * k)))
    acc = np.zeros((owners, n, k), dtype=np.float64)
    batches = 20 if progress is not None and tiles.shape[0] > 40 * owners else 1
    edges = np.linspace(0, tiles.shape[0], batches + 1).astype(np.int64)
    for b in range(batches):
        label_distance_sums(A, BT, tiles[edges[b] : edges[b + 1]], acc, symmetric)
        if progress is not None:
            progress((b + 1) / batches)
    return acc.sum(axis=0)


def _block_distance_sums(a: Any, b: Any) -> Any:
    """(r,) Σ_j |a_i − b_j| for a (r, d) and b (m, d): distances from differences."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(dim=2).sqrt().sum(dim=1)


_COMPILED: dict[str, Any] = {}


def _block_fn(dev_type: str, compiled: bool) -> tuple[Any, bool]:
    """The block function: eager, or fused by torch.compile (no (r, m, d) intermediate).

    On CUDA the fused kernel reads each block once and never writes the differences to memory,
    which is what makes n = 10^6 take seconds. torch.compile fails lazily, at the first call,
    where its compiler is missing; the first failure switches to the eager version (the same
    arithmetic, blocked to bound memory) for good.
    """
    if not compiled or _COMPILED.get(dev_type, True) is None:
        return _block_distance_sums, False
    if dev_type not in _COMPILED:
        import torch

        _COMPILED[dev_type] = torch.compile(_block_distance_sums, dynamic=True)
    return _COMPILED[dev_type], True


def _call_block(fn: Any, fused: bool, dev_type: str, a: Any, b: Any) -> tuple[Any, Any, bool]:
    """``fn(a, b)``; a fused function that cannot compile is replaced by the eager one."""
    if not fused:
        return fn(a, b), fn, False
    try:
        return fn(a, b), fn, True
    except Exception:  # no working compiler for torch.compile here
        _COMPILED[dev_type] = None
        return _block_distance_sums(a, b), _block_distance_sums, False


def label_sums_torch(
    XA: np.ndarray,
    XB: np.ndarray | None,
    cols: np.ndarray,
    k: int,
    device: str,
    progress: Progress | None,
) -> np.ndarray:
    """The same sums with torch, in row blocks, from exact differences (float64).

    ``device`` is a CUDA device (fused with torch.compile), ``torch-cpu`` (eager, for testing
    against the numba kernel) or ``torch-cpu-compiled`` (the fused path on the CPU).
    """
    import torch

    dev = torch.device(device if device.startswith("cuda") else "cpu")
    want_compiled = dev.type == "cuda" or device == "torch-cpu-compiled"
    fn, fused = _block_fn(dev.type, want_compiled)
    A = torch.as_tensor(np.ascontiguousarray(XA, dtype=np.float64), device=dev)
    B = A if XB is None else torch.as_tensor(np.ascontiguousarray(XB, dtype=np.float64), device=dev)
    n, d = A.shape
    out = torch.zeros((n, k), dtype=torch.float64, device=dev)
    if fused:  # nothing of size r·m·d is materialised: large blocks
        block_rows, block_cols = min(n, 4096), min(B.shape[0], 1 << 17)
    else:  # (rows, cols, d) float64 intermediates of at most 2^25 elements (256 MiB)
        budget = 1 << 25
        block_cols = int(max(1, min(B.shape[0], budget // max(1, 64 * d))))
        block_rows = int(max(1, min(n, budget // max(1, block_cols * d))))
    steps = -(-n // block_rows)
    with torch.no_grad():
        for step, r0 in enumerate(range(0, n, block_rows)):
            a = A[r0 : r0 + block_rows]  # (r, d)
            for c in range(k):
                s, e = int(cols[c, 0]), int(cols[c, 1])
                total = torch.zeros(a.shape[0], dtype=torch.float64, device=dev)
                for j0 in range(s, e, block_cols):
                    b = B[j0 : min(j0 + block_cols, e)]  # (m, d)
                    if not fused and b.shape[0] * a.shape[0] * d > (1 << 25):
                        # fell back from fused to eager mid-way: keep the intermediates small
                        step_rows = max(1, (1 << 25) // (b.shape[0] * d))
                        for r1 in range(0, a.shape[0], step_rows):
                            total[r1 : r1 + step_rows] += fn(a[r1 : r1 + step_rows], b)
                        continue
                    part, fn, fused = _call_block(fn, fused, dev.type, a, b)
                    total += part
                out[r0 : r0 + a.shape[0], c] = total
            if progress is not None:
                progress((step + 1) / steps)
    return out.cpu().numpy()
