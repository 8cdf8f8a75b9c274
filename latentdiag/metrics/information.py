"""How information spreads over latent dimensions: MI with the label, total correlation, KL.

* :func:`mutual_info_per_dim` — I(z_j; label) per dimension, in nats, by the nearest-neighbour
  estimator of Ross (2014) that ``sklearn.feature_selection.mutual_info_classif`` uses.
* :func:`gaussian_total_correlation` — the total correlation of a Gaussian fitted to the means.
* :func:`kl_per_dim` and :func:`active_units` — the usual VAE diagnostics of posterior collapse.

The posterior (sampled) total correlation of β-TCVAE lives in
:mod:`latentdiag.metrics.posterior_tc`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._validation import (
    check_labels,
    check_latents,
    check_logvar,
    check_positive_int,
)

__all__ = [
    "active_unit_mask",
    "active_units",
    "gaussian_total_correlation",
    "kl_per_dim",
    "label_entropy",
    "mutual_info_per_dim",
    "zero_variance_dims",
]


def label_entropy(labels: Any) -> float:
    """Entropy H(label) of the empirical label distribution, in nats.

    Args:
        labels: One label per row.

    Returns:
        H(label) in [0, ln k]; 0 for a single label.

    Raises:
        MetricInputError: ``labels`` is not 1-D or is empty.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise MetricInputError(
            f"labels must be a non-empty 1-D array; found shape {getattr(arr, 'shape', None)}."
        )
    p = np.unique(arr, return_counts=True)[1] / arr.shape[0]
    return float(-(p * np.log(p)).sum())


def _sklearn_like_noise(X: np.ndarray, random_state: int | None) -> np.ndarray:
    """Scale each column to unit std and add 1e-10-sized noise, as mutual_info_classif does.

    With the same integer ``random_state`` the noisy matrix is the one scikit-learn builds, so
    the estimates match; the noise only breaks ties between equal values.
    """
    Xs = X.astype(np.float64, copy=True)
    scale = np.nanstd(Xs, axis=0)
    scale[scale < 10 * np.finfo(scale.dtype).eps] = 1.0
    Xs /= scale
    means = np.maximum(1.0, np.mean(np.abs(Xs), axis=0))
    rng = np.random.RandomState(random_state)
    Xs += 1e-10 * means * rng.standard_normal(size=Xs.shape)
    return Xs


def mutual_info_per_dim(
    X: Any,
    labels: Any,
    *,
    n_neighbors: int = 3,
    normalize: bool = False,
    random_state: int | None = 0,
) -> np.ndarray:
    """Mutual information I(z_j; label) between each latent dimension and the label, in nats.

    The k-nearest-neighbour estimator for a continuous variable and a discrete one (Ross 2014),
    with scikit-learn's preprocessing (unit-variance scaling and 1e-10 noise against ties):
    with the same ``random_state`` it matches ``mutual_info_classif(X, labels,
    discrete_features=False, n_neighbors=3, random_state=...)`` to rounding. Sorting replaces
    the k-d trees, so it runs in O(n log n) per dimension. Samples whose label occurs once are
    ignored, as in scikit-learn.

    Args:
        X: Latents, shape (n_samples, n_features).
        labels: One discrete label per row.
        n_neighbors: k of the estimator (3 in scikit-learn; larger: less variance, more bias).
        normalize: Divide by H(label), giving the fraction of the label's entropy in [0, 1].
        random_state: Seed of the tie-breaking noise; ``None`` draws fresh noise.

    Returns:
        (n_features,) estimates in [0, ln k] nats (or [0, 1] normalized); higher means the
        dimension says more about the label. Negative estimates are clipped to 0.

    Raises:
        MetricInputError: Bad shapes or values, fewer than two labels with two or more samples.

    References:
        B. C. Ross, "Mutual Information between Discrete and Continuous Data Sets", PLoS ONE
        9(2), 2014. A. Kraskov, H. Stögbauer, P. Grassberger, "Estimating mutual information",
        Phys. Rev. E 69, 2004.
    """
    arr = check_latents(X, min_samples=2)
    enc = check_labels(labels, arr.shape[0], metric="mutual information")
    k = check_positive_int(n_neighbors, "n_neighbors")
    if int((enc.counts > 1).sum()) < 2:
        raise MetricInputError(
            "mutual information needs at least two labels with two or more samples each; "
            f"found label counts {enc.counts.tolist()}."
        )
    from latentdiag.metrics._mi_numba import mi_columns

    noisy = _sklearn_like_noise(arr, random_state)
    mi = np.asarray(mi_columns(np.asfortranarray(noisy), enc.codes, enc.counts, k))
    if normalize:
        mi = mi / label_entropy(enc.codes)
    return mi


def zero_variance_dims(X: Any) -> list[int]:
    """Indices of latent dimensions that are constant over the data.

    Raises:
        MetricInputError: Bad shape or non-finite values.
    """
    arr = check_latents(X)
    return [int(j) for j in np.flatnonzero(np.all(arr == arr[:1], axis=0))]


def gaussian_total_correlation(X: Any) -> float:
    """Total correlation of the Gaussian with the mean and covariance of ``X``, in nats.

    TC = 0.5 · (Σ_j log Σ_jj − log det Σ) = −0.5 · log det R, with R the correlation matrix:
    the KL divergence between that Gaussian and the product of its marginals. Dimensions with
    zero variance are dropped first (see :func:`zero_variance_dims`), so a dead latent does not
    turn the value into NaN.

    Args:
        X: Latent means, shape (n_samples, n_features).

    Returns:
        TC >= 0 nats; 0 for uncorrelated dimensions (lower is more factorised). ``inf`` when
        some dimensions are exact linear combinations of others.

    Raises:
        MetricInputError: Bad shape or values, fewer than 2 rows, or every dimension constant.

    References:
        S. Watanabe, "Information theoretical analysis of multivariate correlation", IBM J. Res.
        Dev. 4(1), 1960.
    """
    arr = check_latents(X, min_samples=2).astype(np.float64)
    live = ~np.all(arr == arr[:1], axis=0)
    if not live.any():
        raise MetricInputError(
            f"every one of the {arr.shape[1]} latent dimensions is constant over the data; "
            "the total correlation needs at least one that varies."
        )
    Z = arr[:, live]
    if Z.shape[1] == 1:
        return 0.0
    Z = Z - Z.mean(axis=0)
    std = np.sqrt((Z * Z).mean(axis=0))
    R = (Z / std).T @ (Z / std) / Z.shape[0]
    np.fill_diagonal(R, 1.0)
    eig = np.linalg.eigvalsh(R)
    if eig.min() <= 1e-13 * eig.max():
        return float("inf")
    return float(max(0.0, -0.5 * np.log(eig).sum()))


def kl_per_dim(mu: Any, logvar: Any) -> np.ndarray:
    """KL(q(z_j|x) ‖ N(0, 1)) per dimension, averaged over the data, in nats.

    For a diagonal Gaussian posterior, per dimension 0.5 · (μ² + σ² − log σ² − 1).

    Args:
        mu: Posterior means, shape (n_samples, n_features).
        logvar: Posterior log-variances log σ², same shape.

    Returns:
        (n_features,) values >= 0; near 0 marks a collapsed (unused) dimension.

    Raises:
        MetricInputError: Bad shapes or non-finite values.

    References:
        D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.
    """
    m = check_latents(mu, name="mu").astype(np.float64)
    lv = check_logvar(logvar, m).astype(np.float64)
    kl = 0.5 * (m * m + np.exp(lv) - lv - 1.0)
    return np.asarray(kl.mean(axis=0))


def active_unit_mask(mu: Any, *, threshold: float = 0.01) -> np.ndarray:
    """Which dimensions are active: variance of the posterior mean over the data > threshold.

    Raises:
        MetricInputError: Bad shape or values.
    """
    m = check_latents(mu, name="mu", min_samples=2).astype(np.float64)
    return np.asarray(m.var(axis=0) > threshold)


def active_units(mu: Any, *, threshold: float = 0.01) -> int:
    """Number of active latent units: Cov_x(E_q[z_j | x]) > threshold (Burda et al. 2016).

    Args:
        mu: Posterior means, shape (n_samples, n_features).
        threshold: Variance above which a unit counts as active (0.01 in the paper).

    Returns:
        A count in [0, n_features]; higher means fewer collapsed dimensions.

    Raises:
        MetricInputError: Bad shape or values, or fewer than 2 rows.

    References:
        Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
    """
    return int(active_unit_mask(mu, threshold=threshold).sum())
