"""The suite's settings for large data, shared by the metric declarations.

Probes run on a stratified subset, the full-data posterior TC has a budget, the
disentanglement models cap their training rows, and wide latents have a cost model; the
declarations in :mod:`latentdiag.metrics.declarations` read these constants.
"""

from __future__ import annotations

import numpy as np

# k-NN and linear probes run on a stratified subset of at most this many rows: their
# cross-validated accuracy is then known to about ±0.5% and costs seconds, not minutes.
PROBE_MAX_SAMPLES = 20000
# Rows for training / testing the discrete-SAP models.
DISENTANGLEMENT_MAX_TRAIN = 5000
DISENTANGLEMENT_MAX_TEST = 2500
# DCI follows disentanglement_lib's protocol: up to 10,000 training and 5,000 test rows. Its
# cost is about 3 · d · n_train · (trees per stage) · 100 tree steps; above DCI_BUDGET the
# training rows are cut to fit (at least DCI_MIN_TRAIN, else it is skipped), said in a note.
DCI_MAX_TRAIN = 10000
DCI_MAX_TEST = 5000
DCI_BUDGET = 1e9  # about 5-10 s on 2 cores
DCI_MIN_TRAIN = 500
# Budget of the full-data posterior TC: n_z · n · d evaluations of a log-density.
POSTERIOR_TC_BUDGET = 3.2e8
# The cost model for wide latents. A k-NN probe costs rows² · d: its rows are capped so that
# it never costs more than 20,000 rows of 32 dimensions (a few seconds). Above WIDE_DIMS
# dimensions, the estimators whose cost grows with d times a model fit (DCI's forests, the
# discrete SAP's per-pair classifiers) are skipped with the reason, and the posterior TC runs
# on the WIDE_TC_DIMS most active dimensions (a lower bound of the whole space's TC), unless
# ``exhaustive`` asks for everything.
PROBE_NN_BUDGET = PROBE_MAX_SAMPLES**2 * 32
WIDE_DIMS = 256
WIDE_TC_DIMS = 64


def float_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def probe_rows(d: int) -> int:
    """Rows the probes run on for ``d`` dimensions: PROBE_MAX_SAMPLES, fewer for wide latents."""
    return int(max(2000, min(PROBE_MAX_SAMPLES, (PROBE_NN_BUDGET / max(1, d)) ** 0.5)))


def wide_skip(what: str, d: int, how: str) -> str:
    return (
        f"{what} is not computed on {d:,} dimensions (more than {WIDE_DIMS}): {how}; pass "
        "--exhaustive to compute it anyway"
    )
