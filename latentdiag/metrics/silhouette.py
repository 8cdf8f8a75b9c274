"""Silhouette coefficient: exact, fused, O(n·k) memory; and a stratified sampled estimate.

For sample i with label c, a(i) is its mean Euclidean distance to the other members of c and
b(i) the smallest mean distance to the members of another label; s(i) = (b - a) / max(a, b),
and s(i) = 0 when i is alone in its label (Rousseeuw 1987; scikit-learn's convention).

The values equal ``sklearn.metrics.silhouette_samples`` / ``silhouette_score`` (to ~1e-12 on
float64 input) without ever holding the n × n distance matrix: a numba kernel sums distances
per sample and per label (see :mod:`latentdiag.metrics._silhouette_numba`), or a blocked torch
computation on a GPU. Distances come from differences, so tight clusters far from the origin
keep their precision.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._silhouette_sums import label_bounds, label_sums_numba, label_sums_torch
from latentdiag.metrics._validation import (
    EncodedLabels,
    check_labels,
    check_latents,
    check_not_constant,
    check_positive_int,
    check_random_state,
)

__all__ = [
    "SilhouetteResult",
    "silhouette_per_label",
    "silhouette_report",
    "silhouette_samples",
    "silhouette_score",
    "stratified_sample",
]

Progress = Callable[[float], None]


@dataclass(frozen=True)
class SilhouetteResult:
    """Silhouette of a labelled latent set, exact or estimated from a stratified sample.

    Attributes:
        score: Mean silhouette over all samples (estimated when ``sample_size`` is set).
        per_label: Mean silhouette of the samples of each label, by label name.
        samples: Per-sample silhouettes (of the sampled rows when estimated).
        sample_index: Row indices the per-sample values belong to (all rows when exact).
        sample_size: Rows whose silhouette was computed; equals ``n_samples`` when exact.
        n_samples: Rows in the data.
        ci_low: Lower end of the bootstrap confidence interval (None when exact).
        ci_high: Upper end of the bootstrap confidence interval (None when exact).
        confidence: Level of that interval.
    """

    score: float
    per_label: dict[str, float]
    samples: np.ndarray
    sample_index: np.ndarray
    sample_size: int
    n_samples: int
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None

    @property
    def exact(self) -> bool:
        return self.sample_size == self.n_samples and self.ci_low is None


def _check(X: Any, labels: Any) -> tuple[np.ndarray, EncodedLabels]:
    arr = check_latents(X, min_samples=3)
    enc = check_labels(
        labels,
        arr.shape[0],
        min_labels=2,
        max_labels=arr.shape[0] - 1,
        metric="the silhouette",
    )
    check_not_constant(arr)
    return arr, enc


def _check_metric(metric: str) -> None:
    if metric != "euclidean":
        raise MetricInputError(
            f"the silhouette here is Euclidean only; got metric={metric!r}. Use "
            "sklearn.metrics.silhouette_score for other metrics."
        )


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when a GPU is usable, else the numba CPU kernel; ``mps`` -> CPU."""
    device = str(device)
    if device == "auto":
        # Importing torch costs a second or two: only try when an NVIDIA driver is present.
        if os.path.exists("/dev/nvidiactl"):
            try:
                import torch

                if torch.cuda.is_available():
                    return "cuda"
            except ImportError:  # pragma: no cover - torch is a dependency
                pass
        return "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise MetricInputError(
                f"device {device!r} was asked for but torch sees no usable CUDA GPU; use "
                "--device cpu or auto."
            )
        return device
    if device in ("cpu", "mps"):
        # MPS has no float64; the CPU kernel is exact and fast.
        return "cpu"
    if device in ("torch-cpu", "torch-cpu-compiled"):  # the torch path on the CPU, for tests
        return device
    raise MetricInputError(f"device must be auto, cpu, cuda or mps; got {device!r}.")


def _finish(sums: np.ndarray, codes: np.ndarray, counts_all: np.ndarray) -> np.ndarray:
    """Silhouettes from (n, k) distance sums; singleton labels get 0 like scikit-learn."""
    n = codes.shape[0]
    rows = np.arange(n)
    own = counts_all[codes]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[rows, codes] / (own - 1)
        means = sums / counts_all[None, :]
    means[rows, codes] = np.inf
    b = means.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (b - a) / np.maximum(a, b)
    s = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    s[own == 1] = 0.0
    return s


def _silhouette_of_rows(
    X: np.ndarray,
    enc: EncodedLabels,
    rows: np.ndarray | None,
    device: str,
    progress: Progress | None,
) -> np.ndarray:
    """Silhouettes of ``rows`` (all rows when None) measured against every row of X."""
    k = enc.n_labels
    order = np.argsort(enc.codes, kind="stable")
    codes_sorted = enc.codes[order]
    col_bounds = label_bounds(codes_sorted, k)
    Xs = X[order]
    dev = resolve_device(device)
    if rows is None:
        if dev == "cpu":
            sums = label_sums_numba(Xs, None, col_bounds, col_bounds, k, progress)
        else:
            sums = label_sums_torch(Xs, None, col_bounds, k, dev, progress)
        s_sorted = _finish(sums, codes_sorted, enc.counts)
        out = np.empty_like(s_sorted)
        out[order] = s_sorted
        return out
    perm = np.argsort(enc.codes[rows], kind="stable")
    sub_order = rows[perm]
    sub_codes = enc.codes[sub_order]
    XA = X[sub_order]
    if dev == "cpu":
        sums = label_sums_numba(XA, Xs, label_bounds(sub_codes, k), col_bounds, k, progress)
    else:
        sums = label_sums_torch(XA, Xs, col_bounds, k, dev, progress)
    # A sampled row is among the columns too; its distance to itself is 0, so the sums and
    # the full-data counts give exactly its silhouette in the full data.
    result = np.empty(rows.shape[0])
    result[perm] = _finish(sums, sub_codes, enc.counts)
    return result


def silhouette_samples(
    X: Any, labels: Any, *, metric: str = "euclidean", device: str = "cpu"
) -> np.ndarray:
    """Silhouette coefficient of every sample (Euclidean).

    Equal to ``sklearn.metrics.silhouette_samples(X, labels)``; a sample alone in its label
    scores 0.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; 2 to n_samples - 1 distinct values.
        metric: Only ``"euclidean"`` (accepted for scikit-learn compatibility).
        device: ``cpu`` (the numba kernel), ``cuda`` (torch), or ``auto``.

    Returns:
        (n_samples,) float64 silhouettes in [-1, 1]; 1 best, -1 worst.

    Raises:
        MetricInputError: Bad shape, non-finite values, constant latents, or labels of the
            wrong length or with fewer than 2 / more than n_samples - 1 distinct values.

    References:
        P. J. Rousseeuw, "Silhouettes: a graphical aid to the interpretation and validation of
        cluster analysis", J. Comput. Appl. Math. 20, 1987.
    """
    _check_metric(metric)
    arr, enc = _check(X, labels)
    return _silhouette_of_rows(arr, enc, None, device, None)


def stratified_sample(
    labels: Any, sample_size: int, *, random_state: int | np.random.Generator | None = 0
) -> np.ndarray:
    """Row indices of a stratified random sample: each label in proportion to its size.

    Every label keeps at least one row (two when it has them), so that small labels are still
    represented; allocation is by largest remainder.

    Args:
        labels: One label per row.
        sample_size: Rows wanted (at most the number of rows).
        random_state: Seed or Generator.

    Returns:
        Sorted row indices (sample_size of them, or all rows when sample_size >= n).

    Raises:
        MetricInputError: ``sample_size`` is not a positive integer.
    """
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1)
    n = codes.shape[0]
    size = check_positive_int(sample_size, "sample_size")
    if size >= n:
        return np.arange(n)
    rng = check_random_state(random_state)
    counts = np.bincount(codes)
    floor = np.minimum(counts, 2)
    size = max(size, int(floor.sum()))
    quota = counts * (size / n)
    take = np.maximum(np.floor(quota).astype(np.int64), floor)
    # Largest remainder, after the floors: trim the most over-served labels, then fill the
    # most under-served ones, until the total is exact.
    while take.sum() > size:
        over = np.where(take > floor, take - quota, -np.inf)
        take[int(np.argmax(over))] -= 1
    while take.sum() < size:
        under = np.where(take < counts, quota - take, -np.inf)
        take[int(np.argmax(under))] += 1
    picks = [
        rng.choice(np.flatnonzero(codes == c), size=int(t), replace=False)
        for c, t in enumerate(take)
    ]
    return np.sort(np.concatenate(picks))


def silhouette_report(
    X: Any,
    labels: Any,
    *,
    label_names: Sequence[str] | None = None,
    sample_size: int | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
    device: str = "cpu",
    progress: Progress | None = None,
) -> SilhouetteResult:
    """Mean, per-label and per-sample silhouette, exact or from a stratified sample.

    With ``sample_size`` set (and smaller than n), a stratified random sample of rows is drawn
    and the silhouette of each sampled row is computed exactly against *all* rows (cost
    O(sample_size · n)); the overall score is the label-weighted mean of those values, an
    unbiased estimate of the exact score, with a percentile bootstrap confidence interval
    (resampling rows within each label). This differs from scikit-learn's ``sample_size``,
    which computes the silhouette of the subsample within itself.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row.
        label_names: Names for integer labels 0..k-1 in ``per_label`` (else ``str(label)``).
        sample_size: Rows to sample; ``None`` (or >= n) computes the exact silhouette.
        n_bootstrap: Bootstrap resamples for the confidence interval.
        confidence: Level of the interval, in (0, 1).
        random_state: Seed or Generator for the sample and the bootstrap.
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: Called with the fraction done, for progress bars.

    Returns:
        A :class:`SilhouetteResult`; the score lies in [-1, 1], 1 best.

    Raises:
        MetricInputError: As :func:`silhouette_samples`, or a bad ``sample_size``/
            ``confidence``.

    References:
        P. J. Rousseeuw, 1987 (see :func:`silhouette_samples`); B. Efron and R. Tibshirani,
        "An Introduction to the Bootstrap", 1993.
    """
    arr, enc = _check(X, labels)
    n = arr.shape[0]
    names = enc.names(label_names)
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"confidence must lie in (0, 1); got {confidence}.")
    rng = check_random_state(random_state)
    if sample_size is None or check_positive_int(sample_size, "sample_size") >= n:
        s = _silhouette_of_rows(arr, enc, None, device, progress)
        per_label = {name: float(s[enc.codes == c].mean()) for c, name in enumerate(names)}
        return SilhouetteResult(
            score=float(s.mean()),
            per_label=per_label,
            samples=s,
            sample_index=np.arange(n),
            sample_size=n,
            n_samples=n,
        )
    rows = stratified_sample(enc.codes, sample_size, random_state=rng)
    s = _silhouette_of_rows(arr, enc, rows, device, progress)
    sub_codes = enc.codes[rows]
    weights = enc.counts / n
    groups = [s[sub_codes == c] for c in range(enc.n_labels)]
    score = float(sum(w * g.mean() for w, g in zip(weights, groups, strict=True)))
    boots = np.empty(check_positive_int(n_bootstrap, "n_bootstrap"))
    for b in range(boots.shape[0]):
        boots[b] = sum(
            w * g[rng.integers(0, g.shape[0], g.shape[0])].mean()
            for w, g in zip(weights, groups, strict=True)
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boots, [tail, 1.0 - tail])
    return SilhouetteResult(
        score=score,
        per_label={name: float(g.mean()) for name, g in zip(names, groups, strict=True)},
        samples=s,
        sample_index=rows,
        sample_size=int(rows.shape[0]),
        n_samples=n,
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
    )


def silhouette_score(
    X: Any,
    labels: Any,
    *,
    metric: str = "euclidean",
    sample_size: int | None = None,
    random_state: int | np.random.Generator | None = 0,
    device: str = "cpu",
) -> float:
    """Mean silhouette coefficient over all samples (Euclidean).

    Without ``sample_size`` this equals ``sklearn.metrics.silhouette_score(X, labels)``. With
    it, the value is the stratified estimate of :func:`silhouette_report` (sampled rows measured
    against all rows), not scikit-learn's within-subsample silhouette.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row; 2 to n_samples - 1 distinct values.
        metric: Only ``"euclidean"`` (accepted for scikit-learn compatibility).
        sample_size: Estimate from this many stratified rows; ``None`` for the exact value.
        random_state: Seed or Generator for the sample.
        device: ``cpu``, ``cuda`` or ``auto``.

    Returns:
        The mean silhouette in [-1, 1]; 1 best (tight, well separated labels), 0 overlapping,
        -1 worst.

    Raises:
        MetricInputError: As :func:`silhouette_samples`.

    References:
        P. J. Rousseeuw, 1987 (see :func:`silhouette_samples`).
    """
    _check_metric(metric)
    result = silhouette_report(
        X,
        labels,
        sample_size=sample_size,
        n_bootstrap=1,
        random_state=random_state,
        device=device,
    )
    return result.score


def silhouette_per_label(
    X: Any,
    labels: Any,
    *,
    label_names: Sequence[str] | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean silhouette of the samples of each label.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One label per row.
        label_names: Names for integer labels 0..k-1 (else ``str(label)``).
        device: ``cpu``, ``cuda`` or ``auto``.

    Returns:
        ``{label name: mean silhouette}``, each in [-1, 1], 1 best.

    Raises:
        MetricInputError: As :func:`silhouette_samples`.
    """
    return silhouette_report(X, labels, label_names=label_names, device=device).per_label
