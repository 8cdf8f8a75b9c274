"""Fidelity and diversity of generated samples, measured in a classifier's feature space.

Three families, each comparing features of real samples (n, d) with features of generated
("fake") samples (m, d) of the same classifier layer:

* :func:`frechet_distance`: the distance between Gaussians fitted to the two sets (FID's
  formula, on whatever features are given);
* :func:`kernel_inception_distance`: the unbiased squared MMD with a cubic polynomial kernel
  (KID's definition), averaged over random subsets;
* :func:`prdc`: precision, recall, density and coverage from k-nearest-neighbour balls.

numpy in float64 throughout (PRDC's radii come from latentdiag's exact k-NN kernel); no torch.
Each function checks its input first (2-D, finite, the same number of features in both sets,
enough rows) and raises :class:`~latentdiag.errors.MetricInputError` with what was expected and
what was found.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import check_latents, check_positive_int, check_random_state
from latentdiag.metrics.knn_graph import exact_knn_graph

__all__ = ["frechet_distance", "kernel_inception_distance", "prdc"]

# Elements (float64) of one block of a blocked matrix computation: 2**22 is 32 MiB, so a
# distance block of b rows against n columns has b = 2**22 // n rows (83 for n = 50,000).
_BLOCK_ELEMENTS = 2**22


# -- input checks ------------------------------------------------------------------------------


def _check_pair(
    real: Any,
    fake: Any,
    *,
    metric: str,
    min_samples: int,
    why: str,
    remedy: str = "Pass more samples.",
) -> tuple[np.ndarray, np.ndarray]:
    """``real`` and ``fake`` as float64 (n, d) and (m, d) arrays with enough rows each."""
    arrays = []
    for value, name in ((real, "real"), (fake, "fake")):
        arr = check_latents(value, name=name, dtype=np.float64)
        if arr.shape[0] < min_samples:
            raise MetricInputError(
                f"{metric} needs at least {min_samples} rows in {name} ({why}); found "
                f"{arr.shape[0]}. {remedy}"
            )
        arrays.append(arr)
    R, F = arrays
    if R.shape[1] != F.shape[1]:
        raise MetricInputError(
            f"{metric} compares two sets in one feature space: real has {R.shape[1]} features "
            f"and fake {F.shape[1]}; expected the same number. Take both from the same layer "
            "of the same classifier."
        )
    return R, F


def _check_real(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MetricInputError(f"{name} must be a real number; got {value!r}.")
    out = float(value)
    if not np.isfinite(out) or (positive and out <= 0):
        expected = "a finite number > 0" if positive else "a finite number"
        raise MetricInputError(f"{name} must be {expected}; got {value!r}.")
    return out


def _block_rows(n_cols: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(n_cols, 1))


# -- Fréchet distance --------------------------------------------------------------------------


def _mean_cov(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of float64 rows, centred block by block."""
    n, d = X.shape
    mu = X.mean(axis=0)  # (d,)
    S = np.zeros((d, d))
    step = _block_rows(d)
    for start in range(0, n, step):
        C = X[start : start + step] - mu  # (b, d): centred before the product, no cancellation
        S += C.T @ C
    S /= n - 1
    return mu, S


def _resolved(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with those below rounding noise set to 0."""
    # A symmetric eigensolver finds each eigenvalue to about d · eps · max|w|; below that an
    # eigenvalue is noise, and its square root (~1e-8 · sqrt(max|w|) for a zero) would add
    # up over the null space of a rank-deficient covariance.
    tol = w.shape[0] * np.finfo(np.float64).eps * float(np.abs(w).max(initial=0.0))
    return np.where(w > tol, w, 0.0)


def _frechet_from_moments(
    mu_r: np.ndarray, S_r: np.ndarray, mu_f: np.ndarray, S_f: np.ndarray
) -> float:
    """||mu_r - mu_f||² + Tr(S_r + S_f - 2 (S_r S_f)^{1/2}), clipped at 0."""
    # Tr (S_r S_f)^{1/2} is the sum of the square roots of the eigenvalues of S_r S_f, which
    # are those of the symmetric PSD matrix S_r^{1/2} S_f S_r^{1/2}: real and >= 0, so a
    # symmetric eigensolver gives them with no complex matrix square root.
    w, V = np.linalg.eigh(S_r)
    root_r = (V * np.sqrt(_resolved(w))) @ V.T  # (d, d) S_r^{1/2}
    M = root_r @ S_f @ root_r  # (d, d)
    M = (M + M.T) / 2  # exactly symmetric
    tr_covmean = float(np.sqrt(_resolved(np.linalg.eigvalsh(M))).sum())
    diff = mu_r - mu_f
    value = float(diff @ diff) + float(np.trace(S_r)) + float(np.trace(S_f)) - 2 * tr_covmean
    return max(value, 0.0)


def frechet_distance(real: Any, fake: Any) -> float:
    """Fréchet distance between Gaussians fitted to real and generated features (FID's formula).

    Fits N(mu_r, S_r) to ``real`` and N(mu_f, S_f) to ``fake`` (unbiased covariances,
    ddof = 1) and returns ||mu_r − mu_f||² + Tr(S_r + S_f − 2 (S_r S_f)^{1/2}). Computed on
    Inception-v3 pool features this is the FID; here it is computed on whatever features are
    given. The trace of the matrix square root comes from the eigenvalues of
    S_r^{1/2} S_f S_r^{1/2}, which are real and non-negative, so there is no complex
    ``sqrtm`` and no imaginary part to discard; on well-conditioned data the value equals
    pytorch-fid's and clean-fid's ``scipy.linalg.sqrtm`` computation to rounding (about
    1e-14 relative). Rank-deficient covariances (fewer samples than features) need no added
    jitter: eigenvalues below the eigensolver's resolution count as 0.

    Cost: O((n + m) d² + d³) time, O(d² + b d) memory beyond the float64 inputs (covariances
    accumulated over blocks of b = 2**22 // d rows); n = m = 10,000 at d = 2048 takes about
    10 s on two cores, about half of the ``sqrtm`` route.

    Args:
        real: Features of real samples, shape (n_samples, n_features), n >= 2.
        fake: Features of generated samples, shape (m_samples, n_features), m >= 2.

    Returns:
        The distance, in squared feature units; range [0, ∞), 0 best (equal means and
        covariances). Clipped at 0 against rounding. The estimate is biased upwards for small
        sample sizes, so only compare values computed from equally many samples.

    Raises:
        MetricInputError: A set is not a finite 2-D numeric array, has fewer than 2 rows, or
            the two have different numbers of features.

    References:
        M. Fréchet, "Sur la distance de deux lois de probabilité", C. R. Acad. Sci. Paris 244,
        1957; D. C. Dowson and B. V. Landau, "The Fréchet distance between multivariate normal
        distributions", J. Multivar. Anal. 12(3), 1982; M. Heusel, H. Ramsauer, T. Unterthiner,
        B. Nessler and S. Hochreiter, "GANs trained by a two time-scale update rule converge
        to a local Nash equilibrium", NeurIPS 2017.
    """
    R, F = _check_pair(
        real, fake, metric="frechet_distance", min_samples=2, why="an unbiased covariance"
    )
    mu_r, S_r = _mean_cov(R)
    mu_f, S_f = _mean_cov(F)
    return _frechet_from_moments(mu_r, S_r, mu_f, S_f)


# -- kernel inception distance -----------------------------------------------------------------


def _poly_mmd2(x: np.ndarray, y: np.ndarray, *, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD² of two equally sized sets (s, d) with k(a, b) = (gamma a·b + coef0)^degree."""
    s = x.shape[0]
    k_xx = (x @ x.T * gamma + coef0) ** degree  # (s, s)
    k_yy = (y @ y.T * gamma + coef0) ** degree  # (s, s)
    k_xy = (x @ y.T * gamma + coef0) ** degree  # (s, s)
    within = (k_xx.sum() - np.trace(k_xx)) + (k_yy.sum() - np.trace(k_yy))  # i != j only
    return float(within / (s * (s - 1)) - 2 * k_xy.sum() / (s * s))


def kernel_inception_distance(
    real: Any,
    fake: Any,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1,
    seed: int | np.random.Generator | None = 0,
) -> tuple[float, float]:
    """Kernel inception distance: unbiased squared MMD with a polynomial kernel, over subsets.

    With k(x, y) = (gamma x·y + coef0)^degree, each subset draws s = min(subset_size, n, m)
    rows of ``real`` and s rows of ``fake`` (without replacement within a subset) and computes
    the unbiased estimate

        MMD² = Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] / (s (s − 1)) − 2 Σ_{i,j} k(x_i, y_j) / s².

    The result is the mean and the standard deviation (population, ddof = 0, as torchmetrics
    reports it) over the subsets: the algorithm of torchmetrics' ``KernelInceptionDistance``
    and clean-fid's ``kernel_distance``, with the defaults of Bińkowski et al. (degree 3,
    gamma = 1/d, coef0 = 1). Subset t draws its real rows, then its fake rows, with
    ``rng.choice(n, s, replace=False)`` from ``numpy.random.default_rng(seed)``, so a seed
    fixes the value.

    Cost: O(subsets · s² d) time (three (s, d) × (d, s) products per subset; about 12 GFLOP
    per subset for s = 1000, d = 2048), O(s² + s d) memory.

    Args:
        real: Features of real samples, shape (n_samples, n_features), n >= 2.
        fake: Features of generated samples, shape (m_samples, n_features), m >= 2.
        subsets: Number of random subsets averaged.
        subset_size: Rows drawn from each set per subset (capped at the smaller set).
        degree: Degree of the polynomial kernel.
        gamma: Scale of the dot product; ``None`` is 1 / n_features.
        coef0: Constant added to the scaled dot product.
        seed: Seed or numpy Generator of the subset draws; ``None`` draws fresh entropy.

    Returns:
        ``(mean, std)`` over the subsets. The mean is unbiased, so it can be slightly negative
        when the two sets come from the same distribution; 0 best, higher worse, in squared
        kernel-feature units. Unlike the Fréchet distance its expectation does not depend on
        the sample size.

    Raises:
        MetricInputError: A set is not a finite 2-D numeric array, has fewer than 2 rows, the
            two have different numbers of features, or an option is out of range.

    References:
        M. Bińkowski, D. J. Sutherland, M. Arbel and A. Gretton, "Demystifying MMD GANs",
        ICLR 2018; A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schölkopf and A. Smola,
        "A kernel two-sample test", JMLR 13, 2012.
    """
    R, F = _check_pair(
        real,
        fake,
        metric="kernel_inception_distance",
        min_samples=2,
        why="the unbiased MMD² leaves each point's kernel with itself out",
    )
    subsets = check_positive_int(subsets, "subsets")
    subset_size = check_positive_int(subset_size, "subset_size", minimum=2)
    degree = check_positive_int(degree, "degree")
    coef = _check_real(coef0, "coef0", positive=False)
    scale = 1.0 / R.shape[1] if gamma is None else _check_real(gamma, "gamma", positive=True)
    rng = check_random_state(seed)
    n, m = R.shape[0], F.shape[0]
    s = min(subset_size, n, m)
    values = np.empty(subsets)
    for t in range(subsets):
        x = R[rng.choice(n, s, replace=False)]  # (s, d)
        y = F[rng.choice(m, s, replace=False)]  # (s, d)
        values[t] = _poly_mmd2(x, y, degree=degree, gamma=scale, coef0=coef)
    return float(values.mean()), float(values.std())


# -- precision, recall, density, coverage ------------------------------------------------------


def _distances(A: np.ndarray, a2: np.ndarray, B: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Euclidean distances (a, b) from ||a||² − 2 a·b + ||b||², clipped at 0 before the root."""
    dist = A @ B.T
    dist *= -2
    dist += a2[:, None]
    dist += b2[None, :]
    np.maximum(dist, 0.0, out=dist)
    return np.sqrt(dist, out=dist)


def _knn_radii(X: np.ndarray, k: int) -> np.ndarray:
    """(n,) distance from each row to its k-th nearest other row (exact, O(n · k) memory)."""
    return exact_knn_graph(X, k).distances[:, k - 1]


def prdc(real: Any, fake: Any, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of generated samples (Naeem et al. 2020).

    Each real point gets a ball whose radius is the distance to its k-th nearest other real
    point; each fake point likewise among the fakes. Then, with strict inequalities as in the
    reference implementation:

    * precision: the fraction of fake points inside at least one real ball (fidelity);
    * recall: the fraction of real points inside at least one fake ball (diversity);
    * density: the number of real balls a fake point lies in, divided by k and averaged over
      the fakes (fidelity that counts how deep in the real manifold a sample falls; about 1
      when the two distributions are equal, unbounded above);
    * coverage: the fraction of real points whose ball holds at least one fake point (diversity
      that outliers among the fakes cannot inflate).

    Equal to clovaai's ``prdc.compute_prdc`` (Euclidean distances, radii leaving the point
    itself out), computed in float64. The radii come from the exact k-NN graph of
    :func:`~latentdiag.metrics.knn_graph.exact_knn_graph` (distances from differences, so a
    duplicated point is at exactly 0); the real-to-fake distances are computed in blocks of
    fake rows after subtracting the mean of ``real`` from both sets, which changes no distance
    but keeps the rounding of ||a||² − 2 a·b + ||b||² small for features far from the origin.

    Cost: O((n² + m² + n m) d) time, like any exact k-NN; memory O(n k + m k) for the radii
    and O(b n) for one block of b = 2**22 // n fake rows (32 MiB of float64), beyond the
    float64 copies of the inputs. n = m = 50,000 at d = 64 takes about 85 s on two cores in
    about 330 MB, where the reference implementation builds full n × n and n × m distance
    matrices (10 GB each for float32 features, 20 GB for float64).

    Args:
        real: Features of real samples, shape (n_samples, n_features), n > k.
        fake: Features of generated samples, shape (m_samples, n_features), m > k.
        k: Neighbours that set each ball's radius.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats. Precision, recall and
        coverage range over [0, 1], 1 best; density over [0, ∞), about 1 for matching
        distributions, above 1 when the fakes crowd the dense regions of the real data.

    Raises:
        MetricInputError: A set is not a finite 2-D numeric array, has k or fewer rows, the
            two have different numbers of features, or k is not a positive integer.

    References:
        M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi and J. Yoo, "Reliable fidelity and diversity
        metrics for generative models", ICML 2020; T. Kynkäänniemi, T. Karras, S. Laine,
        J. Lehtinen and T. Aila, "Improved precision and recall metric for assessing generative
        models", NeurIPS 2019.
    """
    k = check_positive_int(k, "k")
    R, F = _check_pair(
        real,
        fake,
        metric=f"prdc with k={k}",
        min_samples=k + 1,
        why="each point's radius is the distance to its k-th nearest other point",
        remedy="Pass more samples or a smaller k.",
    )
    centre = R.mean(axis=0)
    R = R - centre
    F = F - centre
    r2 = np.einsum("ij,ij->i", R, R)  # (n,)
    f2 = np.einsum("ij,ij->i", F, F)  # (m,)
    radius_real = _knn_radii(R, k)  # (n,)
    radius_fake = _knn_radii(F, k)  # (m,)

    n, m = R.shape[0], F.shape[0]
    balls_hit = np.empty(m, dtype=np.int64)  # real balls each fake point lies in
    recalled = np.zeros(n, dtype=bool)  # real point inside some fake ball
    nearest_fake = np.full(n, np.inf)  # distance from each real point to its nearest fake
    step = _block_rows(n)
    for start in range(0, m, step):
        stop = min(start + step, m)
        dist = _distances(F[start:stop], f2[start:stop], R, r2)  # (b, n): fake rows, real columns
        balls_hit[start:stop] = np.count_nonzero(dist < radius_real[None, :], axis=1)
        recalled |= (dist < radius_fake[start:stop, None]).any(axis=0)
        np.minimum(nearest_fake, dist.min(axis=0), out=nearest_fake)

    return {
        "precision": float(np.mean(balls_hit > 0)),
        "recall": float(np.mean(recalled)),
        "density": float(balls_hit.sum() / (k * m)),
        "coverage": float(np.mean(nearest_fake < radius_real)),
    }
