"""How each metric of :func:`~latentdiag.metrics.suite.compute_metrics` runs on arrays.

:func:`metric_step` maps a (section, key) of the metrics dict to the call that computes it, with
the settings the suite uses for large data (probes on a stratified subset, a budget for the
full-data posterior TC, capped training rows for the disentanglement models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics import centroids, clustering, information, probes, silhouette

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


def _float_list(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def probe_rows(d: int) -> int:
    """Rows the probes run on for ``d`` dimensions: PROBE_MAX_SAMPLES, fewer for wide latents."""
    return int(max(2000, min(PROBE_MAX_SAMPLES, (PROBE_NN_BUDGET / max(1, d)) ** 0.5)))


def _wide_skip(what: str, d: int, how: str) -> str:
    return (
        f"{what} is not computed on {d:,} dimensions (more than {WIDE_DIMS}): {how}; pass "
        "--exhaustive to compute it anyway"
    )


def metric_step(
    section: str,
    key: str,
    mu: np.ndarray,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    logvar: np.ndarray | None,
    factors: np.ndarray | None,
    factor_names: Sequence[str] | None,
    sample: int | None,
    seed: int,
    device: str,
    exhaustive: bool = False,
) -> Callable[[Callable[[float], None]], Any] | str:
    """The computation of one metric, or the reason it cannot run on this data.

    Returns a function of a progress callback (fraction done of this metric) that returns the
    metric's value, or a dict of its value and the keys written beside it; or a string saying
    why the metric cannot run (no labels, no logvar, too costly for wide latents without
    ``exhaustive``).
    """
    n, d = mu.shape
    wide = d > WIDE_DIMS and not exhaustive
    if section == "separation":
        assert labels is not None
        y = labels
        if key == "silhouette":

            def sil(progress: Callable[[float], None]) -> dict[str, Any]:
                r = silhouette.silhouette_report(
                    mu,
                    y,
                    label_names=label_names,
                    sample_size=sample,
                    random_state=seed,
                    device=device,
                    progress=progress,
                )
                out: dict[str, Any] = {"silhouette": r.score, "silhouette_per_label": r.per_label}
                if not r.exact:
                    out["silhouette_ci"] = [r.ci_low, r.ci_high]
                    out["silhouette_ci_level"] = r.confidence
                    out["silhouette_sample_size"] = r.sample_size
                return out

            return sil
        if key == "centroid_distance":
            return lambda _p: centroids.centroid_distances(mu, y, label_names=label_names).to_dict()
        if key == "davies_bouldin":
            return lambda _p: clustering.davies_bouldin_score(mu, y)
        if key == "calinski_harabasz":
            return lambda _p: clustering.calinski_harabasz_score(mu, y)
        rows = PROBE_MAX_SAMPLES if exhaustive else probe_rows(d)
        capped = (
            [f"on a stratified subset of {rows:,} of {n:,} rows: for {d:,} dimensions the probes' "
             "cost is capped at that of 20,000 rows of 32 (pass --exhaustive for 20,000)"]
            if n > rows and rows < PROBE_MAX_SAMPLES
            else []
        )  # fmt: skip
        if key == "knn_accuracy":

            def knn(_p: Callable[[float], None]) -> dict[str, Any]:
                acc = probes.knn_accuracy(mu, y, max_samples=rows, random_state=seed)
                return {"knn_accuracy": acc, "_notes": capped}

            return knn
        if key == "linear_probe_accuracy":

            def probe(_p: Callable[[float], None]) -> dict[str, Any]:
                acc = probes.linear_probe_accuracy(mu, y, max_samples=rows, random_state=seed)
                return {
                    "linear_probe_accuracy": acc,
                    "chance_accuracy": probes.chance_accuracy(y),
                    "_notes": capped,
                }

            return probe
    if section == "information":
        if key == "mi_per_dim":
            if labels is None:
                return "no labels: the latents come without /labels"
            y = labels

            def mi(_p: Callable[[float], None]) -> dict[str, Any]:
                values = information.mutual_info_per_dim(mu, y, random_state=seed)
                h = information.label_entropy(y)
                return {
                    "mi_per_dim": _float_list(values),
                    "mi_per_dim_normalized": _float_list(values / h),
                    "mi_sum": float(values.sum()),
                    "label_entropy": h,
                }

            return mi
        if key == "gaussian_total_correlation":
            dropped = information.zero_variance_dims(mu)
            live = d - len(dropped)
            if live >= n:
                return (
                    f"the Gaussian total correlation needs more rows than varying dimensions "
                    f"(here {n:,} rows, {live:,} dimensions): the covariance of so few rows is "
                    "singular and its log-determinant undefined"
                )

            def gtc(_p: Callable[[float], None]) -> dict[str, Any]:
                value = information.gaussian_total_correlation(mu)
                if not np.isfinite(value):
                    raise MetricInputError(
                        "the covariance of mu is singular: some dimensions are exact linear "
                        "combinations of others, so the Gaussian total correlation is infinite; "
                        "drop the redundant dimensions (or use a partition) to measure the rest"
                    )
                return {
                    "gaussian_total_correlation": value,
                    "gaussian_total_correlation_dropped_dims": dropped,
                }

            return gtc
        if key in ("posterior_total_correlation", "kl_per_dim") and logvar is None:
            return "no logvar: the latents come without /logvar (a deterministic encoder?)"
        if key == "posterior_total_correlation":
            assert logvar is not None
            lv = logvar
            kept: np.ndarray | None = None
            if wide:
                # The most active dimensions (largest mean KL to the prior): TC over a subset
                # of dimensions is a lower bound of the TC over all of them.
                kl_dims = information.kl_per_dim(mu, lv)
                kept = np.sort(np.argsort(-kl_dims, kind="stable")[:WIDE_TC_DIMS])
            x, v = (mu, lv) if kept is None else (mu[:, kept], lv[:, kept])
            n_z = int(max(100, min(1000, POSTERIOR_TC_BUDGET // max(1, n * x.shape[1]))))

            def ptc(_p: Callable[[float], None]) -> dict[str, Any]:
                from latentdiag.metrics.posterior_tc import posterior_total_correlation

                r = posterior_total_correlation(x, v, n_z=n_z, random_state=seed)
                out: dict[str, Any] = {
                    "posterior_total_correlation": r.value,
                    "posterior_total_correlation_estimators": r.to_dict(),
                }
                if kept is not None:
                    out["posterior_total_correlation_dims"] = [int(j) for j in kept]
                    out["_notes"] = [
                        f"on the {kept.size} most active of {d:,} dimensions (largest KL to the "
                        "prior), listed in posterior_total_correlation_dims: a lower bound of "
                        "the TC of all of them (pass --exhaustive for every dimension)"
                    ]
                return out

            return ptc
        if key == "kl_per_dim":
            assert logvar is not None
            lv = logvar

            def kl(_p: Callable[[float], None]) -> dict[str, Any]:
                values = information.kl_per_dim(mu, lv)
                return {"kl_per_dim": _float_list(values), "kl_total": float(values.sum())}

            return kl
        if key == "active_units":

            def au(_p: Callable[[float], None]) -> dict[str, Any]:
                mask = information.active_unit_mask(mu)
                return {
                    "active_units": int(mask.sum()),
                    "active_units_mask": [bool(v) for v in mask],
                    "active_units_threshold": 0.01,
                }

            return au
    if section == "disentanglement":
        assert factors is not None
        f = factors
        if key == "mig":
            from latentdiag.metrics.disentanglement.mig import mig

            return lambda _p: mig(mu, f)
        if key == "dci":
            from latentdiag.metrics.discretize import discretize_factors
            from latentdiag.metrics.disentanglement.dci import dci

            classes = [int(np.unique(c).size) for c in discretize_factors(f).T]
            trees = sum(1 if k == 2 else k for k in classes if k >= 2)  # per boosting stage
            per_row = 3.0 * d * max(trees, 1) * 100
            n_train = min(n // 2, DCI_MAX_TRAIN)
            notes: list[str] = []
            if not exhaustive and per_row * n_train > DCI_BUDGET:
                fit = int(DCI_BUDGET // per_row)
                if fit < min(DCI_MIN_TRAIN, n_train):
                    return (
                        f"DCI would fit {trees} boosted trees per stage on {d:,} dimensions; "
                        f"even {min(DCI_MIN_TRAIN, n_train):,} training rows cost more than "
                        "a minute here, and a subset of dimensions would change its "
                        "importances; pass --exhaustive to compute it anyway"
                    )
                notes.append(
                    f"trained on {fit:,} of the {n_train:,} rows disentanglement_lib's protocol "
                    f"takes: {trees} boosted trees per stage on {d:,} dimensions would cost "
                    "more than a few seconds (pass --exhaustive for all of them)"
                )
                n_train = fit

            def dci_step(_p: Callable[[float], None]) -> dict[str, Any]:
                r = dci(mu, f, max_train=n_train, max_test=DCI_MAX_TEST, random_state=seed)
                out = r.to_dict()
                out["factor_names"] = list(factor_names or [f"f{i}" for i in range(f.shape[1])])
                out["_notes"] = notes
                return out

            return dci_step
        if key == "sap":
            from latentdiag.metrics.disentanglement.sap import sap_score

            def sap(_p: Callable[[float], None]) -> dict[str, Any]:
                out: dict[str, Any] = {"sap": sap_score(mu, f, continuous_factors=True)}
                if wide:  # the discrete SAP fits a classifier per (dimension, factor)
                    out["_skipped"] = [
                        (
                            "sap_discrete",
                            _wide_skip(
                                "The discrete SAP",
                                d,
                                "it fits a classifier for every (dimension, factor) pair",
                            ),
                        )
                    ]
                else:
                    out["sap_discrete"] = sap_score(
                        mu,
                        f,
                        continuous_factors=False,
                        max_samples=DISENTANGLEMENT_MAX_TRAIN,
                        random_state=seed,
                    )
                return out

            return sap
        if key == "modularity":
            from latentdiag.metrics.disentanglement.modularity import modularity

            return lambda _p: modularity(mu, f)
        if key == "factor_vae":
            from latentdiag.metrics.disentanglement.factorvae import factor_vae_score

            return lambda _p: factor_vae_score(mu, f, random_state=seed)
    raise AssertionError(f"no metric {section}.{key}")  # pragma: no cover - _STEPS is closed
