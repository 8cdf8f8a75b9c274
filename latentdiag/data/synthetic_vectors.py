"""Built-in synthetic vector data: four cell types over shared nuisance factors.

The counterpart of the synthetic images (:mod:`latentdiag.data.synthetic`) for MLP VAEs on
tables, single-cell counts and multi-omics features, so every vector workflow runs offline.
Every sample is one of four **modalities** (cell types), and its ``F`` features are a linear
model in log space (docs/data.md, "Vector data", has the table)::

    eta = mu[m]                      the modality's mean profile (marker features up)
        + W[m] @ programme           its own 2-D programme (activities ~ N(0, 1))
        + beta[batch]                a batch / site shift (3 batches), the same for every type
        + library_size * v           a shared scale: every feature up or down together
        + U @ shared                 3 shared continuous factors (cell cycle, stress, hypoxia)

``synthetic-vectors`` adds Gaussian noise to ``eta`` (float32 features); ``synthetic-counts``
draws negative-binomial counts with mean ``exp(eta)`` (int32, like scRNA-seq UMI counts), where
``library_size`` is the log of each cell's size factor.

The structure (``mu``, ``W``, ``beta``, ``v``, ``U``) depends only on the number of features,
never on the seed: two seeds are two samples of the same world, so a model trained on one
is measured on the other. The modality is plain to a linear probe, yet the nuisance factors
carry more of the variance than the modality does, so a plain VAE has every reason to mix
them (see :data:`VARIANCE_SHARES` for the measured split).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from latentdiag.errors import DataError

__all__ = [
    "BATCH_NAMES",
    "FACTOR_NAMES",
    "LABEL_NAMES",
    "SyntheticVectors",
    "generate_synthetic_vectors",
]

LABEL_NAMES = ["t_cell", "b_cell", "monocyte", "fibroblast"]
BATCH_NAMES = ["batch1", "batch2", "batch3"]
# Ground-truth factors (columns of ``factors``): the nuisance first, then the modality's own.
FACTOR_NAMES = [
    "batch",  # 0, 1, 2: which batch (the column ``batch`` holds the same as a category)
    "library_size",  # log scale factor, N(0, 0.45²): all features up or down together
    "cell_cycle",  # shared continuous factors, N(0, 1), the same loadings for every type
    "stress",
    "hypoxia",
    "programme_1",  # the modality's own programme activities, N(0, 1); their loadings
    "programme_2",  # differ per modality (like the images' `structure`)
]

_DESIGN_SEED = 0x7EC7  # the structure's seed: fixed, so every sample seed shares one world
_MIN_FEATURES = 8
_MAX_FEATURES = 100_000
_MARKER_LIFT = 1.8  # log-space lift of a modality's marker features
_PROGRAMME_SCALE = 0.32  # loadings of the modality's own programmes
_BATCH_SCALE = 0.67  # spread of the per-feature batch shifts
_LIBRARY_SD = 0.45  # spread of the log library size
_SHARED_SCALE = 0.34  # loadings of the shared continuous factors
_NOISE_SD = 0.55  # Gaussian noise of synthetic-vectors
_BASE_LOG_MEAN = 1.0  # counts: mean log expression (about 2.7 counts per feature)
_NB_SHAPE = 5.0  # counts: gamma shape of the negative binomial (dispersion 1/5)


@dataclass
class SyntheticVectors:
    """Generated vector data with its ground truth.

    Attributes:
        vectors: (N, F) float32 features, or int32 counts.
        labels: (N,) int64 modality codes, indices into ``label_names``.
        batch: (N,) int64 batch codes, indices into ``batch_names``.
        factors: (N, 7) float32 ground-truth factors named by ``factor_names``.
        feature_names: ``gene_001`` … (zero-padded to the width of F).
        label_names: :data:`LABEL_NAMES`.
        batch_names: :data:`BATCH_NAMES`.
        factor_names: :data:`FACTOR_NAMES`.
        counts: Whether ``vectors`` are counts.
        seed: The seed of the samples.
    """

    vectors: np.ndarray
    labels: np.ndarray
    batch: np.ndarray
    factors: np.ndarray
    feature_names: list[str]
    label_names: list[str] = field(default_factory=lambda: list(LABEL_NAMES))
    batch_names: list[str] = field(default_factory=lambda: list(BATCH_NAMES))
    factor_names: list[str] = field(default_factory=lambda: list(FACTOR_NAMES))
    counts: bool = False
    seed: int = 0


@dataclass(frozen=True)
class _Design:
    """The fixed structure of an F-feature world (see the module docstring)."""

    mu: np.ndarray  # (k, F) modality mean profiles
    programmes: np.ndarray  # (k, 2, F) each modality's programme loadings
    batch: np.ndarray  # (3, F) batch shifts
    library: np.ndarray  # (F,) how strongly each feature follows the library size (about 1)
    shared: np.ndarray  # (3, F) loadings of the shared continuous factors


def _design(n_features: int) -> _Design:
    rng = np.random.default_rng([_DESIGN_SEED, n_features])
    k, f = len(LABEL_NAMES), n_features
    # Each modality lifts its own block of marker features (about an eighth of them each,
    # disjoint) and differs a little everywhere else.
    markers = rng.permutation(f)
    block = max(1, f // 8)
    mu = rng.normal(0.0, 0.45, size=(k, f))
    for m in range(k):
        mu[m, markers[m * block : (m + 1) * block]] += _MARKER_LIFT
    mu -= mu.mean(axis=0)  # the modality is a contrast; the shared baseline is separate
    # A programme touches about a third of the features, a different third per modality.
    mask = rng.random((k, 2, f)) < 1 / 3
    programmes = rng.normal(0.0, _PROGRAMME_SCALE, size=(k, 2, f)) * mask * np.sqrt(3)
    batch = rng.normal(0.0, _BATCH_SCALE, size=(len(BATCH_NAMES), f))
    batch -= batch.mean(axis=0)
    library = rng.uniform(0.8, 1.2, size=f)
    shared = rng.normal(0.0, _SHARED_SCALE, size=(3, f))
    return _Design(mu, programmes, batch, library, shared)


def generate_synthetic_vectors(
    n: int, *, n_features: int = 50, seed: int = 0, counts: bool = False
) -> SyntheticVectors:
    """Generate ``n`` samples of the four modalities, balanced and shuffled.

    The result depends only on ``(n, n_features, seed, counts)``. Modality and batch are
    balanced (counts differ by at most one) and drawn independently of each other.

    Args:
        n: Number of samples.
        n_features: F, the number of features (8 … 100,000).
        seed: Random seed of the samples (the structure does not depend on it).
        counts: Negative-binomial int32 counts instead of Gaussian float32 features.

    Returns:
        A :class:`SyntheticVectors`.

    Raises:
        DataError: ``n``, ``n_features`` or ``seed`` out of range.
    """
    if n < 1:
        raise DataError(f"the number of samples must be at least 1; got {n}.")
    if not _MIN_FEATURES <= n_features <= _MAX_FEATURES:
        raise DataError(
            f"the number of features must be {_MIN_FEATURES} … {_MAX_FEATURES:,}; got {n_features}."
        )
    if seed < 0:
        raise DataError(f"the seed must be a non-negative integer; got {seed}.")
    d = _design(n_features)
    rng = np.random.default_rng([seed, 0x7EC5, int(counts)])
    k = len(LABEL_NAMES)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % k)
    batch = rng.permutation(np.arange(n, dtype=np.int64) % len(BATCH_NAMES))
    library = rng.normal(0.0, _LIBRARY_SD, size=n)
    shared = rng.normal(size=(n, 3))
    programme = rng.normal(size=(n, 2))

    eta = d.mu[labels]  # (N, F)
    for m in range(k):  # per modality: no (N, 2, F) temporary
        rows = labels == m
        eta[rows] += programme[rows] @ d.programmes[m]
    eta += d.batch[batch]
    eta += library[:, None] * d.library
    eta += shared @ d.shared
    if counts:
        mean = np.exp(eta + _BASE_LOG_MEAN)
        rate = rng.gamma(_NB_SHAPE, mean / _NB_SHAPE)  # gamma-Poisson = negative binomial
        vectors = rng.poisson(rate).astype(np.int32)
    else:
        vectors = (eta + rng.normal(0.0, _NOISE_SD, size=eta.shape)).astype(np.float32)

    factors = np.column_stack([batch, library, shared, programme]).astype(np.float32)
    width = len(str(n_features))
    return SyntheticVectors(
        vectors=vectors,
        labels=labels,
        batch=batch,
        factors=factors,
        feature_names=[f"gene_{i + 1:0{width}d}" for i in range(n_features)],
        counts=counts,
        seed=seed,
    )
