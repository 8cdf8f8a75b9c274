"""The FactorVAE score (Kim & Mnih 2018), on a fixed data set of codes and factors."""

from __future__ import annotations

from typing import Any

import numpy as np

from latentdiag.metrics._validation import (
    check_codes_and_factors,
    check_positive_int,
    check_random_state,
)
from latentdiag.metrics.discretize import discretize_factors

__all__ = ["factor_vae_score", "factor_vae_votes"]


def _votes(
    Xn: np.ndarray,
    active: np.ndarray,
    ys: np.ndarray,
    usable: list[int],
    n_votes: int,
    batch_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_factors, n_codes) counts of (fixed factor, code of least normalised variance)."""
    n_factors = ys.shape[1]
    votes = np.zeros((n_factors, Xn.shape[1]), dtype=np.int64)
    active_idx = np.flatnonzero(active)
    Xa = np.ascontiguousarray(Xn[:, active_idx])  # (n, active codes): gather rows from here
    # Votes per chunk: a (chunk, batch, codes) block of at most ~16 MB, whatever the width.
    chunk = int(max(16, min(2048, (1 << 21) // max(1, batch_size * active_idx.size))))
    chosen = rng.choice(np.asarray(usable), size=n_votes)
    for k in usable:
        m = int((chosen == k).sum())
        if m == 0:
            continue
        # Rows grouped by their value of factor k; values seen once cannot form a batch.
        order = np.argsort(ys[:, k], kind="stable")
        _, starts, counts = np.unique(ys[order, k], return_index=True, return_counts=True)
        ok = counts >= 2
        weights = counts[ok] / counts[ok].sum()
        groups = rng.choice(np.flatnonzero(ok), size=m, p=weights)
        for c0 in range(0, m, chunk):
            g = groups[c0 : c0 + chunk]
            pick = starts[g][:, None] + (
                rng.random((g.shape[0], batch_size)) * counts[g][:, None]
            ).astype(np.int64)
            batch = Xa[order[pick]]  # (votes, batch, active codes)
            local = batch.var(axis=1, ddof=1)
            # argmin over the active codes, mapped back to the full code index.
            best = active_idx[np.argmin(local, axis=1)]
            np.add.at(votes, (np.full(best.shape, k), best), 1)
    return votes


def factor_vae_votes(
    X: Any,
    factors: Any,
    *,
    batch_size: int = 64,
    n_train: int = 10000,
    n_eval: int = 5000,
    n_variance: int = 10000,
    prune_threshold: float = 0.05,
    random_state: int | np.random.Generator | None = 0,
) -> tuple[float, np.ndarray]:
    """The FactorVAE score and its training votes (n_factors, n_codes), by full code index.

    Arguments as :func:`factor_vae_score`; ``votes[k, j]`` counts how often code j had the
    least variance with factor k fixed, so ``votes.argmax(axis=1)`` names each factor's code.

    Raises:
        MetricInputError: As :func:`factor_vae_score`.
    """
    from latentdiag.errors import MetricInputError

    arr, fac = check_codes_and_factors(X, factors, metric="the FactorVAE score", min_samples=4)
    rng = check_random_state(random_state)
    bs = check_positive_int(batch_size, "batch_size", minimum=2)
    ys = discretize_factors(fac)
    usable = [
        k
        for k in range(ys.shape[1])
        if np.unique(ys[:, k]).shape[0] >= 2 and np.bincount(ys[:, k]).max() >= 2
    ]
    if not usable:
        raise MetricInputError(
            "the FactorVAE score needs a factor that varies and has a value shared by two "
            "rows; none has."
        )
    n = arr.shape[0]
    rows = rng.choice(n, size=min(n, check_positive_int(n_variance, "n_variance")), replace=False)
    std = arr[rows].std(axis=0, ddof=1) if rows.shape[0] > 1 else np.zeros(arr.shape[1])
    if std.max() <= 0:
        return 0.0, np.zeros((ys.shape[1], arr.shape[1]), dtype=np.int64)
    active = std >= prune_threshold * std.max()
    Xn = np.zeros_like(arr)
    Xn[:, active] = arr[:, active] / std[active]
    train = _votes(Xn, active, ys, usable, check_positive_int(n_train, "n_train"), bs, rng)
    evals = _votes(Xn, active, ys, usable, check_positive_int(n_eval, "n_eval"), bs, rng)
    assign = np.argmax(train, axis=0)  # (codes,) the factor each code votes for most
    correct = evals[assign, np.arange(arr.shape[1])].sum()
    return float(correct / evals.sum()), train


def factor_vae_score(
    X: Any,
    factors: Any,
    *,
    batch_size: int = 64,
    n_train: int = 10000,
    n_eval: int = 5000,
    n_variance: int = 10000,
    prune_threshold: float = 0.05,
    random_state: int | np.random.Generator | None = 0,
) -> float:
    """FactorVAE score: accuracy of a majority-vote classifier from least-variant code to factor.

    Each vote fixes one factor k: a batch of rows sharing one value of v_k (drawn from the
    data, with replacement) is normalised by the global per-code standard deviation, and the
    code with the smallest variance over the batch votes for k. Each code is assigned the
    factor it most often votes for on ``n_train`` votes; the score is the accuracy of that
    assignment on ``n_eval`` fresh votes. Continuous factors are binned into 20 classes.

    Codes whose global standard deviation is below ``prune_threshold`` times the largest are
    pruned, and the argmin over the remaining codes is mapped back to the full code index.
    (disentanglement_lib keeps every code, so a constant code's 0/0 variance ratio, NaN, wins
    every argmin; and it indexes votes by position within the pruned subset.)

    Args:
        X: Latent codes, shape (n_samples, n_codes).
        factors: Ground-truth factors, shape (n_samples, n_factors).
        batch_size: Rows per vote.
        n_train: Votes to fit the majority-vote classifier.
        n_eval: Votes to score it.
        n_variance: Rows used to estimate the global variances.
        prune_threshold: Relative standard deviation under which a code counts as collapsed.
        random_state: Seed or Generator.

    Returns:
        The score in [0, 1]; higher is better. 0 when every code is collapsed.

    Raises:
        MetricInputError: Bad shapes or values, or no factor with a value seen twice.

    References:
        H. Kim and A. Mnih, "Disentangling by Factorising", ICML 2018.
    """
    return factor_vae_votes(
        X,
        factors,
        batch_size=batch_size,
        n_train=n_train,
        n_eval=n_eval,
        n_variance=n_variance,
        prune_threshold=prune_threshold,
        random_state=random_state,
    )[0]
