"""Wide latents stay usable: a cost model, reasons instead of ∞, short output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.metrics import compute_metrics
from latentdiag.metrics._steps import PROBE_MAX_SAMPLES, WIDE_DIMS, WIDE_TC_DIMS, probe_rows
from latentdiag.store import write_latents


def wide(n: int = 300, d: int = 1024, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = rng.random((n, 3)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    mu = factors @ rng.normal(size=(3, d)) + rng.normal(size=(n, d))
    mu[:, :8] += 3.0 * labels[:, None]
    logvar = rng.normal(-1.0, 0.1, (n, d))
    logvar[:, :8] -= 2.0  # the label dimensions are the most active ones
    return {
        "mu": mu.astype(np.float32),
        "logvar": logvar.astype(np.float32),
        "labels": labels,
        "factors": factors,
    }


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("wide") / "wide.h5"
    a = wide(n=200)
    # logvar without factors: the posterior TC runs reduced, and the run takes seconds.
    write_latents(p, a["mu"], logvar=a["logvar"], labels=a["labels"], label_names=["x", "y", "z"])
    return p


def test_wide_metrics_are_reduced_or_skipped_with_reasons() -> None:
    a = wide()
    m = compute_metrics(
        a["mu"],
        labels=a["labels"],
        logvar=a["logvar"],
        factors=a["factors"],
        include=["information", "disentanglement.dci", "disentanglement.sap"],
    )
    skipped = {e.get("metric") or e.get("section"): e["reason"] for e in m["skipped"]}
    # d ≥ n: the Gaussian TC is undefined, said so, not ∞.
    assert "gaussian_total_correlation" not in m["information"]
    assert (
        "needs more rows than varying dimensions"
        in skipped["information.gaussian_total_correlation"]
    )
    assert "--exhaustive" in skipped["disentanglement.dci"]
    assert "--exhaustive" in skipped["disentanglement.sap_discrete"]
    assert "sap" in m["disentanglement"]
    # The posterior TC runs on the most active dimensions, listed, with a note.
    dims = m["information"]["posterior_total_correlation_dims"]
    assert len(dims) == WIDE_TC_DIMS and set(range(8)) <= set(dims)
    assert any(n["metric"] == "information.posterior_total_correlation" for n in m["notes"])
    assert m["settings"]["wide_dims"] == WIDE_DIMS and m["settings"]["exhaustive"] is False


def test_exhaustive_computes_everything() -> None:
    a = wide(n=80, d=WIDE_DIMS + 4)
    m = compute_metrics(
        a["mu"],
        logvar=a["logvar"],
        factors=a["factors"],
        exhaustive=True,
        include=[
            "information.posterior_total_correlation",
            "disentanglement.dci",
            "disentanglement.sap",
        ],
    )
    assert "dci" in m["disentanglement"] and "sap_discrete" in m["disentanglement"]
    assert "posterior_total_correlation_dims" not in m["information"]
    assert m["notes"] == []


def test_narrow_latents_are_untouched() -> None:
    a = wide(n=80, d=WIDE_DIMS)  # exactly at the limit: nothing reduced
    m = compute_metrics(
        a["mu"],
        logvar=a["logvar"],
        factors=a["factors"],
        include=[
            "information.posterior_total_correlation",
            "disentanglement.dci",
            "disentanglement.sap",
        ],
    )
    assert "dci" in m["disentanglement"] and "sap_discrete" in m["disentanglement"]
    assert m["notes"] == []


def test_singular_covariance_is_a_reason_not_infinity() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    mu = np.column_stack([x, x[:, 0] + x[:, 1]])  # an exact linear combination
    m = compute_metrics(mu, include=["information.gaussian_total_correlation"])
    (entry,) = m["skipped"]
    assert entry["metric"] == "information.gaussian_total_correlation"
    assert "singular" in entry["reason"] and "linear combinations" in entry["reason"]


def test_probe_rows_shrink_with_width() -> None:
    assert probe_rows(32) == PROBE_MAX_SAMPLES
    assert probe_rows(16) == PROBE_MAX_SAMPLES
    assert 2000 <= probe_rows(4096) < probe_rows(1024) < PROBE_MAX_SAMPLES


def test_cli_output_stays_short_and_json_keeps_every_dimension(wide_file: Path) -> None:
    r = CliRunner().invoke(cli, ["metrics", str(wide_file)], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) < 150
    assert "∞" not in "".join(
        line for line in lines if "range" not in line and "[0, ∞)" not in line
    )
    assert "the 10 with the most I(z;label) and the 5 with the least" in r.stdout
    assert "1,009 more dimensions: --json lists all 1,024" in r.stdout
    r = CliRunner().invoke(cli, ["metrics", str(wide_file), "--json"])
    doc = json.loads(r.stdout)
    assert len(doc["information"]["mi_per_dim"]) == 1024
    assert len(doc["information"]["kl_per_dim"]) == 1024


def test_report_on_wide_latents(wide_file: Path, tmp_path: Path) -> None:
    from latentdiag.report import build_report

    result = build_report([wide_file], tmp_path / "r", projection=["pca"])
    html = result.html.read_text()
    # The reduced posterior TC says so, and how to get the whole; d ≥ n gives a reason.
    assert "Computed on a reduction" in html and "--exhaustive" in html
    assert "needs more rows than varying dimensions" in html
