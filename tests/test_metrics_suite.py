"""compute_metrics (the keys of DESIGN.md, skips, partitions, leakage) and `latentdiag metrics`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.metrics import compute_metrics, compute_metrics_for_store
from latentdiag.store import write_latents

N, D = 240, 6
LABEL_NAMES = ["chest_xray", "oct", "pathology"]


def arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(N) % 3
    mu = rng.normal(size=(N, D))
    mu[:, 3:] += 3.0 * labels[:, None]  # the label lives in dims 3..5 ("modality")
    logvar = rng.normal(size=(N, D)) * 0.1 - 1.0
    factors = np.column_stack([labels, rng.integers(0, 4, N)]).astype(np.float32)
    return mu.astype(np.float32), logvar.astype(np.float32), labels, factors


@pytest.fixture(scope="module")
def full_result() -> dict:
    mu, logvar, labels, factors = arrays()
    return compute_metrics(
        mu,
        labels=labels,
        label_names=LABEL_NAMES,
        logvar=logvar,
        factors=factors,
        factor_names=["modality", "noise"],
        partitions={"shared": (0, 3), "modality": (3, 6)},
    )


def test_design_keys_are_present(full_result: dict) -> None:
    r = full_result
    assert r["n_samples"] == N and r["latent_dim"] == D
    sep = r["separation"]
    for key in (
        "silhouette",
        "silhouette_per_label",
        "davies_bouldin",
        "calinski_harabasz",
        "knn_accuracy",
        "linear_probe_accuracy",
    ):
        assert key in sep, key
    assert set(sep["silhouette_per_label"]) == set(LABEL_NAMES)
    cd = sep["centroid_distance"]
    assert {"matrix", "mean", "min", "normalized_mean"} <= set(cd)
    assert np.asarray(cd["matrix"]).shape == (3, 3)
    info = r["information"]
    for key in (
        "mi_per_dim",
        "gaussian_total_correlation",
        "posterior_total_correlation",
        "kl_per_dim",
        "active_units",
    ):
        assert key in info, key
    assert len(info["mi_per_dim"]) == D and len(info["kl_per_dim"]) == D
    dis = r["disentanglement"]
    for key in ("mig", "sap", "modularity", "factor_vae"):
        assert key in dis, key
    assert {"disentanglement", "completeness", "informativeness"} <= set(dis["dci"])
    assert r["skipped"] == []
    json.dumps(r)  # plain Python all the way down


def test_values_agree_with_the_functions(full_result: dict) -> None:
    import sklearn.metrics as skm

    mu, _, labels, _ = arrays()
    assert full_result["separation"]["silhouette"] == pytest.approx(
        skm.silhouette_score(mu, labels), abs=1e-6
    )


def test_partitions_and_leakage(full_result: dict) -> None:
    parts = full_result["partitions"]
    assert set(parts) == {"shared", "modality"}
    assert parts["modality"]["dims"] == [3, 6]
    assert len(parts["shared"]["information"]["mi_per_dim"]) == 3
    # The label lives in the modality subspace only.
    assert parts["modality"]["separation"]["silhouette"] > 0.5
    assert abs(parts["shared"]["separation"]["silhouette"]) < 0.1
    leak = full_result["leakage"]
    assert leak["modality"]["probe_above_chance"] > 0.9
    assert leak["shared"]["probe_above_chance"] < 0.3
    assert leak["modality"]["mi_sum"] > 5 * leak["shared"]["mi_sum"]
    assert {"linear_probe_accuracy", "chance_accuracy", "mi_sum", "mi_sum_normalized"} <= set(
        leak["shared"]
    )


def test_missing_parts_are_skipped_with_reasons() -> None:
    mu, *_ = arrays()
    r = compute_metrics(mu)
    assert "separation" not in r and "disentanglement" not in r
    assert "active_units" in r["information"]
    skipped = {e.get("metric") or e.get("section"): e["reason"] for e in r["skipped"]}
    assert skipped["separation"].startswith("no labels")
    assert skipped["information.mi_per_dim"].startswith("no labels")
    assert skipped["information.posterior_total_correlation"].startswith("no logvar")
    assert skipped["information.kl_per_dim"].startswith("no logvar")
    assert skipped["disentanglement"].startswith("no factors")


def test_one_label_skips_separation_metric_by_metric() -> None:
    mu, *_ = arrays()
    r = compute_metrics(mu, labels=np.zeros(N, int))
    reasons = {e["metric"]: e["reason"] for e in r["skipped"] if "metric" in e}
    assert "needs at least 2 distinct labels" in reasons["separation.silhouette"]
    assert "separation" not in r
    assert "gaussian_total_correlation" in r["information"]


def test_sample_gives_a_confidence_interval() -> None:
    mu, _, labels, _ = arrays()
    r = compute_metrics(mu, labels=labels, sample=90, include=["separation.silhouette"])
    sep = r["separation"]
    lo, hi = sep["silhouette_ci"]
    assert lo <= sep["silhouette"] <= hi
    assert sep["silhouette_sample_size"] == 90
    assert set(sep) == {
        "silhouette",
        "silhouette_per_label",
        "silhouette_ci",
        "silhouette_ci_level",
        "silhouette_sample_size",
    }


def test_include_computes_only_what_is_asked_and_progress_is_reported() -> None:
    mu, logvar, labels, factors = arrays()
    seen: list[tuple[str, float]] = []
    r = compute_metrics(
        mu,
        labels=labels,
        logvar=logvar,
        factors=factors,
        partitions={"shared": (0, 3)},
        include=["separation.centroid_distance", "leakage.shared"],
        progress=lambda name, frac: seen.append((name, frac)),
    )
    assert set(r["separation"]) == {"centroid_distance"}
    assert "information" not in r and "disentanglement" not in r
    assert set(r["partitions"]["shared"]["separation"]) == {
        "linear_probe_accuracy",
        "chance_accuracy",
    }
    assert set(r["partitions"]["shared"]["information"]) >= {"mi_per_dim", "mi_sum"}
    assert "probe_above_chance" in r["leakage"]["shared"]
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_compute_metrics_for_store(tmp_path: Path) -> None:
    mu, logvar, labels, factors = arrays()
    path = write_latents(
        tmp_path / "l.h5",
        mu,
        logvar=logvar,
        labels=labels,
        label_names=LABEL_NAMES,
        factors=factors,
        factor_names=["modality", "noise"],
        partitions={"shared": [0, 3], "modality": [3, 6]},
    )
    r = compute_metrics_for_store(path, include=["separation.silhouette"])
    assert r["file"] == str(path)
    assert set(r["separation"]["silhouette_per_label"]) == set(LABEL_NAMES)
    assert r["label_names"] == LABEL_NAMES and r["factor_names"] == ["modality", "noise"]


def test_importing_metrics_is_light() -> None:
    code = (
        "import sys, latentdiag.metrics\n"
        "from latentdiag.metrics import silhouette_score, mig, compute_metrics\n"
        "heavy = [m for m in ('numba', 'sklearn', 'torch', 'scipy', 'umap', 'matplotlib')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(mig) and callable(silhouette_score)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_are_the_functions_not_modules() -> None:
    import latentdiag.metrics.disentanglement.mig  # noqa: F401 - a submodule of the same name
    from latentdiag.metrics import dci, mig, modularity

    assert callable(mig) and callable(dci) and callable(modularity)


# -- the command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def latents_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mu, logvar, labels, factors = arrays()
    return write_latents(
        tmp_path_factory.mktemp("m") / "lat.h5",
        mu,
        logvar=logvar,
        labels=labels,
        label_names=LABEL_NAMES,
        factors=factors,
        partitions={"shared": [0, 3], "modality": [3, 6]},
    )


def test_metrics_command_tables(latents_file: Path) -> None:
    result = CliRunner().invoke(cli, ["metrics", str(latents_file)])
    assert result.exit_code == 0, result.output
    for title in (
        "separation",
        "per label",
        "information",
        "per dimension",
        "disentanglement",
        "partitions",
        "leakage",
    ):
        assert title in result.output
    assert "chest_xray" in result.output


def test_metrics_command_json(latents_file: Path) -> None:
    result = CliRunner().invoke(cli, ["metrics", str(latents_file), "--json", "--sample", "60"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n_samples"] == N
    assert data["separation"]["silhouette_sample_size"] == 60
    assert "modality" in data["partitions"] and "shared" in data["leakage"]


def test_metrics_command_lists_skipped(tmp_path: Path) -> None:
    mu, *_ = arrays()
    path = write_latents(tmp_path / "plain.h5", mu)
    result = CliRunner().invoke(cli, ["metrics", str(path)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "no labels" in result.output
    data = json.loads(CliRunner().invoke(cli, ["metrics", str(path), "--json"]).output)
    assert {"section": "separation", "reason": "no labels: the latents come without /labels"} in (
        data["skipped"]
    )


def test_metrics_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "nope.h5"
    result = runner.invoke(cli, ["metrics", str(missing)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {missing} does not exist."
    mu, *_ = arrays()
    mu[[4, 9], 0] = np.nan
    bad = write_latents(tmp_path / "nan.h5", mu)
    result = runner.invoke(cli, ["metrics", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: mu has non-finite values (NaN or inf) in 2 of 240 rows; expected finite numbers "
        "everywhere. Drop or repair those rows (`latentdiag inspect` counts them in a latents "
        "file)."
    )
    result = runner.invoke(cli, ["metrics", str(bad), "--sample", "1"])
    assert result.exit_code == 2
    assert "--sample" in result.stderr


def test_default_metrics_do_not_import_sklearn(tmp_path: Path) -> None:
    """Every default metric (probes, SAP, DCI, FactorVAE...) runs without scikit-learn: its
    import alone took 1.5-3.8 s of a 2,000-row file's `metrics` command."""
    rng = np.random.default_rng(0)
    n, d = 300, 6
    labels = rng.integers(0, 3, n)
    path = tmp_path / "latents.h5"
    write_latents(
        path,
        (rng.normal(size=(n, d)) + labels[:, None]).astype(np.float32),
        logvar=np.full((n, d), -1.0, dtype=np.float32),
        labels=labels,
        factors=rng.uniform(size=(n, 3)).astype(np.float32),
        partitions={"shared": (0, 3), "modality": (3, 6)},
    )
    code = (
        "import sys\n"
        "from latentdiag.cli import cli\n"
        f"try:\n    cli(args=['metrics', {str(path)!r}, '--json'], prog_name='latentdiag')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('SKLEARN' if 'sklearn' in sys.modules else 'CLEAN', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout)
    for key in ("knn_accuracy", "linear_probe_accuracy"):
        assert 0.0 <= metrics["separation"][key] <= 1.0
    assert "dci" in metrics["disentanglement"] and "sap_discrete" in metrics["disentanglement"]
    assert done.stderr.strip().splitlines()[-1] == "CLEAN"


def test_while_waiting_runs_once_beside_the_last_lanes() -> None:
    """The caller's work runs once, on the calling thread, after the numba steps; the metrics
    it is handed are the final ones but for DCI, still computing; the values equal those of a
    sequential run."""
    import threading

    rng = np.random.default_rng(1)
    n, d = 300, 6
    labels = rng.integers(0, 3, n)
    mu = rng.normal(size=(n, d)) + labels[:, None]
    factors = rng.uniform(size=(n, 3))
    logvar = rng.normal(size=(n, d)) * 0.1 - 1.0
    calls: list[str] = []
    known: list[dict] = []

    def waiting(partial) -> None:  # type: ignore[no-untyped-def]
        calls.append(threading.current_thread().name)
        known.append(partial())

    partitions = {"a": (0, 3), "b": (3, 6)}
    done = compute_metrics(
        mu, labels=labels, factors=factors, logvar=logvar, partitions=partitions,
        while_waiting=waiting,
    )  # fmt: skip
    assert calls == [threading.current_thread().name]
    alone = compute_metrics(
        mu, labels=labels, factors=factors, logvar=logvar, partitions=partitions, parallel=False
    )
    assert json.dumps(done, sort_keys=True, default=str) == json.dumps(
        alone, sort_keys=True, default=str
    )
    # The provisional metrics: every key of the final ones, in the same order, with the same
    # values, except DCI's where it had not finished.
    early = known[0]

    def without_dci(m: dict) -> dict:
        out = json.loads(json.dumps(m, default=str))
        out["disentanglement"].pop("dci", None)
        for sub in out["partitions"].values():
            sub["disentanglement"].pop("dci", None)
        return out

    assert json.dumps(without_dci(early), default=str) == json.dumps(without_dci(done), default=str)
    assert "sap_discrete" in early["disentanglement"]  # the side lane had finished
