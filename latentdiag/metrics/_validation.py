"""Input checks shared by every public metric: validate at the door, then compute on clean arrays.

Each helper names what was expected and what was found, and raises
:class:`~latentdiag.errors.MetricInputError` (also a ``ValueError``). The metrics call them first
thing, so no metric can run on a NaN, a 1-D array or labels of the wrong length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError

__all__ = [
    "EncodedLabels",
    "check_codes_and_factors",
    "check_factors",
    "check_labels",
    "check_latents",
    "check_logvar",
    "check_not_constant",
    "check_random_state",
]


def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def check_latents(
    X: Any, *, name: str = "X", min_samples: int = 1, dtype: Any = None
) -> np.ndarray:
    """A finite 2-D float array (n_samples, n_features).

    Args:
        X: The latents.
        name: How the array is called in messages.
        min_samples: The fewest rows the metric can work with.
        dtype: Cast to this float dtype; ``None`` keeps float32/float64 and casts anything
            else to float64.

    Returns:
        ``X`` as a float ndarray (not copied when already suitable).

    Raises:
        MetricInputError: ``X`` is not numeric, not 2-D, empty, or holds NaN or infinity.
    """
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"{name} must be a numeric array (n_samples, n_features); it could not be read as "
            f"one ({exc})."
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise MetricInputError(
            f"{name} must hold numbers, shape (n_samples, n_features); found dtype {arr.dtype}."
        )
    if arr.ndim != 2:
        hint = " Use X.reshape(-1, 1) for a single feature." if arr.ndim == 1 else ""
        raise MetricInputError(
            f"{name} must be a 2-D array (n_samples, n_features); found shape {arr.shape}.{hint}"
        )
    n, d = arr.shape
    if d < 1:
        raise MetricInputError(f"{name} has no features (shape {arr.shape}); expected d >= 1.")
    if n < min_samples:
        raise MetricInputError(
            f"{name} has {n} rows; this metric needs at least {min_samples} samples."
        )
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    elif arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        bad_rows = int(np.count_nonzero(~finite.all(axis=1)))
        raise MetricInputError(
            f"{name} has non-finite values (NaN or inf) in {bad_rows:,} of {n:,} rows; "
            "expected finite numbers everywhere. Drop or repair those rows (`latentdiag "
            "inspect` counts them in a latents file)."
        )
    return arr


def check_not_constant(X: np.ndarray, *, name: str = "X") -> None:
    """Refuse latents whose rows are all the same vector (nothing to separate or measure).

    Raises:
        MetricInputError: Every row of ``X`` is identical.
    """
    if X.shape[0] > 0 and bool(np.all(X[0] == X)):
        raise MetricInputError(
            f"{name} is constant: all {X.shape[0]:,} rows are the same vector, so there is "
            "nothing to measure; expected latents that vary (a collapsed encoder gives this)."
        )


@dataclass(frozen=True)
class EncodedLabels:
    """Labels recoded to 0..k-1, with the original values and per-label counts."""

    codes: np.ndarray  # (n,) int64 in 0..k-1
    classes: np.ndarray  # (k,) the original label values, sorted
    counts: np.ndarray  # (k,) int64

    @property
    def n_labels(self) -> int:
        return int(self.classes.shape[0])

    def names(self, label_names: Sequence[str] | None = None) -> list[str]:
        """Display names: ``label_names[value]`` for integer labels when given, else str."""
        out = []
        for value in self.classes.tolist():
            if (
                label_names is not None
                and isinstance(value, (int, np.integer))
                and 0 <= int(value) < len(label_names)
            ):
                out.append(str(label_names[int(value)]))
            else:
                out.append(str(value))
        return out


def check_labels(
    labels: Any,
    n_samples: int,
    *,
    name: str = "labels",
    min_labels: int = 2,
    min_per_label: int = 1,
    max_labels: int | None = None,
    metric: str = "this metric",
) -> EncodedLabels:
    """A 1-D array of n_samples group labels with enough distinct values and samples each.

    Args:
        labels: One label per row (ints or strings).
        n_samples: Rows of the latents the labels go with.
        name: How the labels are called in messages.
        min_labels: The fewest distinct labels the metric needs.
        min_per_label: The fewest samples each label needs.
        max_labels: The most distinct labels allowed (``None``: no limit).
        metric: The metric's name, for messages.

    Returns:
        The labels recoded to 0..k-1 with their original values and counts.

    Raises:
        MetricInputError: The labels are not 1-D, have another length than the latents, hold
            NaN, have too few distinct values or too few samples in a label.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise MetricInputError(
            f"{name} must be a 1-D array with one label per row; found shape {_shape(arr)}."
        )
    if arr.shape[0] != n_samples:
        raise MetricInputError(
            f"{name} has {arr.shape[0]:,} entries but the latents have {n_samples:,} rows; "
            "expected one label per row."
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise MetricInputError(f"{name} holds NaN or inf; expected one finite label per row.")
    if arr.dtype == object:
        arr = arr.astype(str)
    classes, codes, counts = np.unique(arr, return_inverse=True, return_counts=True)
    k = int(classes.shape[0])
    if k < min_labels:
        found = f"only {k} distinct label" + ("" if k == 1 else "s")
        if k == 1:
            found += f" ({classes[0]!s})"
        raise MetricInputError(
            f"{metric} needs at least {min_labels} distinct labels; {name} has {found}."
        )
    if max_labels is not None and k > max_labels:
        raise MetricInputError(
            f"{metric} needs at most {max_labels} distinct labels (n_samples - 1); {name} has "
            f"{k} for {n_samples} samples."
        )
    if min_per_label > 1 and int(counts.min()) < min_per_label:
        small = [
            f"{c!s} ({int(m)})" for c, m in zip(classes, counts, strict=True) if m < min_per_label
        ]
        raise MetricInputError(
            f"{metric} needs at least {min_per_label} samples per label; "
            f"{'labels' if len(small) > 1 else 'label'} {', '.join(small[:5])}"
            f"{' ...' if len(small) > 5 else ''} {'have' if len(small) > 1 else 'has'} fewer."
        )
    return EncodedLabels(
        codes=codes.reshape(-1).astype(np.int64),
        classes=classes,
        counts=counts.astype(np.int64),
    )


def check_logvar(logvar: Any, mu: np.ndarray, *, name: str = "logvar") -> np.ndarray:
    """Finite posterior log-variances of the same shape as ``mu``.

    Raises:
        MetricInputError: ``logvar`` has another shape than ``mu`` or is not finite.
    """
    arr = check_latents(logvar, name=name)
    if arr.shape != mu.shape:
        raise MetricInputError(f"{name} must have the shape of mu {mu.shape}; found {arr.shape}.")
    return arr


def check_factors(factors: Any, n_samples: int, *, name: str = "factors") -> np.ndarray:
    """Ground-truth factors (n_samples, n_factors), finite; a 1-D array is one factor.

    Raises:
        MetricInputError: Wrong number of rows, not 1-D/2-D, or non-finite values.
    """
    arr = np.asarray(factors)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    arr = check_latents(arr, name=name)
    if arr.shape[0] != n_samples:
        raise MetricInputError(
            f"{name} has {arr.shape[0]:,} rows but the latents have {n_samples:,}; expected "
            "one row of factors per latent vector."
        )
    return arr


def check_random_state(random_state: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed, a Generator, or None (fresh entropy)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer option of at least ``minimum``.

    Raises:
        MetricInputError: ``value`` is not an integer or is smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MetricInputError(f"{name} must be an integer; got {value!r}.")
    if int(value) < minimum:
        raise MetricInputError(f"{name} must be at least {minimum}; got {value}.")
    return int(value)


def check_codes_and_factors(
    X: Any, factors: Any, *, metric: str, min_samples: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Latent codes (n, d) and ground-truth factors (n, f) for a disentanglement metric.

    Returns:
        ``X`` as float64 and the factors as a float array, both 2-D with the same rows.

    Raises:
        MetricInputError: Bad shapes or values, too few rows, or every factor constant.
    """
    arr = check_latents(X, min_samples=min_samples).astype(np.float64, copy=False)
    fac = check_factors(factors, arr.shape[0])
    varying = ~np.all(fac == fac[:1], axis=0)
    if not varying.any():
        raise MetricInputError(
            f"{metric} needs at least one factor that varies; all {fac.shape[1]} factors are "
            "constant over the data."
        )
    return arr, fac
