"""One place per metric: a declaration is all it takes for a metric to be computed by
`metrics` (whole space, partitions, by batch), accepted by `check`, and explained and listed
by the report; and the suite's two threads give the same numbers as one."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.metrics.registry import (
    MetricInfo,
    MetricSpec,
    Space,
    register,
    registered,
    spec_for,
    temporarily_registered,
)
from latentdiag.metrics.suite import compute_metrics, metric_keys
from latentdiag.store import write_latents

_INFO = MetricInfo(
    "Spread of the latents",
    "higher",
    "0 and up",
    "The mean standard deviation of the latent dimensions (a test metric).",
    "silhouette--separationsilhouette-silhouette_per_label",
    "Silhouette",
)
THREADS: list[str] = []


def _spread(space: Space):  # type: ignore[no-untyped-def]
    def step(_progress):  # type: ignore[no-untyped-def]
        THREADS.append(threading.current_thread().name)
        return float(space.mu.std(axis=0).mean())

    return step


SPREAD = MetricSpec(
    "separation",
    "spread",
    _spread,
    cost=0.1,
    needs=("labels",),
    side_lane=True,
    shown={"separation.spread": _INFO},
    headline=("separation.spread",),
)


def _data(n: int = 240, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    mu = rng.normal(size=(n, 6)) + labels[:, None]
    return {
        "mu": mu.astype(np.float32),
        "labels": labels,
        "batch": rng.integers(0, 2, n),
        "logvar": (rng.normal(size=(n, 6)) * 0.1 - 1).astype(np.float32),
        "factors": rng.uniform(size=(n, 2)).astype(np.float32),
    }


def _file(tmp_path: Path) -> Path:
    d = _data()
    path = tmp_path / "lat.h5"
    write_latents(
        path,
        d["mu"],
        labels=d["labels"],
        label_names=["a", "b", "c"],
        logvar=d["logvar"],
        partitions={"first": (0, 3), "second": (3, 6)},
    )
    return path


def test_a_declared_metric_runs_everywhere_the_suite_goes() -> None:
    d = _data()
    with temporarily_registered(SPREAD):
        assert "separation.spread" in metric_keys()
        assert "batch_separation.spread" in metric_keys()
        THREADS.clear()
        out = compute_metrics(
            d["mu"],
            labels=d["labels"],
            batch=d["batch"],
            partitions={"first": (0, 3), "second": (3, 6)},
        )
    expected = float(d["mu"].std(axis=0).mean())
    assert out["separation"]["spread"] == pytest.approx(expected)
    assert out["batch_separation"]["spread"] == pytest.approx(expected)
    first = float(d["mu"][:, :3].std(axis=0).mean())
    assert out["partitions"]["first"]["separation"]["spread"] == pytest.approx(first)
    # A side-lane metric runs on the suite's second thread.
    assert THREADS and all(name == "latentdiag-metrics" for name in THREADS)
    # Gone with its declaration.
    assert "separation.spread" not in metric_keys()
    assert "spread" not in compute_metrics(d["mu"], labels=d["labels"])["separation"]


def test_a_declared_metric_is_skipped_with_the_standard_reason() -> None:
    d = _data()
    with temporarily_registered(SPREAD):
        out = compute_metrics(d["mu"])  # no labels: the whole separation section is skipped
    assert any(s.get("section") == "separation" for s in out["skipped"])

    needs_logvar = MetricSpec(
        "information", "logvar_mean", lambda s: lambda _p: 0.0, needs=("logvar",)
    )
    with temporarily_registered(needs_logvar):
        out = compute_metrics(d["mu"])
    reasons = {s["metric"]: s["reason"] for s in out["skipped"] if "metric" in s}
    assert reasons["information.logvar_mean"].startswith("no logvar")


def test_check_and_report_take_a_declared_metric(tmp_path: Path) -> None:
    path = _file(tmp_path)
    runner = CliRunner()
    with temporarily_registered(SPREAD):
        ok = runner.invoke(cli, ["check", str(path), "--require", "spread>=0"])
        fail = runner.invoke(cli, ["check", str(path), "--require", "separation.spread>=100"])
        report = runner.invoke(cli, ["report", str(path), "-o", str(tmp_path / "rep"),
                                     "--projection", "none"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "separation.spread" in ok.output
    assert fail.exit_code == 1, fail.output
    assert report.exit_code == 0, report.output
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert "spread" in json.dumps(doc)
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Spread of the latents" in page
    # Without the declaration, check does not know the key.
    unknown = runner.invoke(cli, ["check", str(path), "--require", "spread>=0"])
    assert unknown.exit_code != 0 and "Error:" in unknown.output


def test_two_threads_give_the_numbers_of_one() -> None:
    d = _data(400, seed=2)
    kwargs = {
        "labels": d["labels"],
        "batch": d["batch"],
        "logvar": d["logvar"],
        "factors": d["factors"],
        "partitions": {"first": (0, 3), "second": (3, 6)},
    }
    one = compute_metrics(d["mu"], parallel=False, **kwargs)
    two = compute_metrics(d["mu"], parallel=True, **kwargs)
    assert json.dumps(one) == json.dumps(two)  # values, key order, skips and notes


def test_the_registry_refuses_what_it_cannot_place() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(MetricSpec("separation", "silhouette", lambda s: "x"))
    with pytest.raises(ValueError, match="section"):
        register(MetricSpec("batch_separation", "x", lambda s: "x"))
    with pytest.raises(ValueError, match="headline"):
        register(MetricSpec("separation", "y", lambda s: "x", headline=("separation.y",)))
    assert spec_for("batch_separation", "knn_accuracy").key == "knn_accuracy"
    with pytest.raises(KeyError):
        spec_for("separation", "nope")


def test_every_declaration_points_at_a_section_of_the_docs() -> None:
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    slugs = set()
    for line in docs.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    for spec in registered():
        assert spec.shown, spec.full_key
        for path, info in spec.shown.items():
            assert info.anchor in slugs, (spec.full_key, path, info.anchor)
