"""Requirements on metrics (parse, resolve, evaluate) and the `latentdiag check` gate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.errors import ConfigError
from latentdiag.metrics.check import (
    Requirement,
    check_requirements,
    parse_requirement,
    required_keys,
    validate_requirements,
)
from latentdiag.store import write_latents

METRICS = {
    "n_samples": 100,
    "latent_dim": 4,
    "separation": {
        "silhouette": 0.62,
        "silhouette_per_label": {"oct": 0.7, "derm": 0.54},
        "centroid_distance": {"matrix": [[0.0, 12.0], [12.0, 0.0]], "mean": 12.0, "min": 12.0},
        "linear_probe_accuracy": 0.97,
    },
    "information": {"mi_per_dim": [0.1, 0.9, 0.0, 0.2], "gaussian_total_correlation": float("nan")},
    "partitions": {
        "shared": {"dims": [0, 2], "separation": {"linear_probe_accuracy": 0.35}},
    },
    "leakage": {"shared": {"mi_sum": 0.1}},
    "skipped": [
        {"metric": "information.posterior_total_correlation", "reason": "no logvar: ..."},
        {"section": "disentanglement", "reason": "no factors: ..."},
    ],
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("separation.silhouette>=0.5", Requirement("separation.silhouette", ">=", 0.5)),
        (" silhouette < 1e-1 ", Requirement("silhouette", "<", 0.1)),
        ("a.b==3", Requirement("a.b", "==", 3.0)),
        ("x!=-2", Requirement("x", "!=", -2.0)),
        ("x>2", Requirement("x", ">", 2.0)),
        ("x<=2", Requirement("x", "<=", 2.0)),
    ],
)
def test_parse_requirement(text: str, expected: Requirement) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("silhouette=>0.5", "is not of the form KEY OP NUMBER"),
        ("silhouette", "is not of the form KEY OP NUMBER"),
        (">=0.5", "is not of the form KEY OP NUMBER"),
        ("silhouette>=high", "'high' is not a number"),
        ("silhouette>=nan", "must be a finite number"),
    ],
)
def test_parse_requirement_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_requirement(text)


def test_evaluate_with_full_abbreviated_and_indexed_keys() -> None:
    results = check_requirements(
        METRICS,
        [
            "separation.silhouette>=0.5",
            "silhouette>0.7",
            "partitions.shared.linear_probe_accuracy<=0.4",
            "leakage.shared.mi_sum<0.2",
            "information.mi_per_dim.1>=0.9",
            "separation.silhouette_per_label.derm>0.5",
            "separation.centroid_distance.matrix.0.1>10",
        ],
    )
    assert [r.passed for r in results] == [True, False, True, True, True, True, True]
    assert results[1].resolved_key == "separation.silhouette"
    assert results[2].resolved_key == "partitions.shared.separation.linear_probe_accuracy"
    assert results[2].value == 0.35


def test_skipped_and_nan_metrics_fail_with_a_reason() -> None:
    results = check_requirements(
        METRICS,
        [
            "information.posterior_total_correlation<1",
            "disentanglement.mig>0.1",
            "information.gaussian_total_correlation<1",
        ],
    )
    assert not any(r.passed for r in results)
    assert results[0].reason == "no logvar: ..." and results[0].value is None
    assert results[1].reason == "no factors: ..."
    assert results[2].reason == "the value is undefined (NaN)"


def test_unknown_keys_name_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"no metric 'separation\.silhouete'.*Closest: sep"):
        check_requirements(METRICS, ["separation.silhouete>0"])
    message = (
        "latentdiag has no metric 'separation.centroid_distance.meen'. Closest: "
        "separation.centroid_distance.mean"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_requirements(["separation.centroid_distance.meen>1"])
    with pytest.raises(ConfigError, match=re.escape("no metric 'partitions.nope.silhouette'")):
        validate_requirements(["partitions.nope.silhouette>0"], ["shared"])
    assert validate_requirements(["partitions.shared.silhouette>0"], ["shared"])


def test_tables_and_lists_are_not_numbers() -> None:
    message = (
        "'separation.centroid_distance' is a table, not a number; name one of its entries: "
        "separation.centroid_distance.matrix, separation.centroid_distance.mean"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_requirements(METRICS, ["separation.centroid_distance>1"])
    with pytest.raises(ConfigError, match=r"'information\.mi_per_dim' is not a single number"):
        check_requirements(METRICS, ["information.mi_per_dim>1"])


def test_required_keys_cover_abbreviations() -> None:
    keys = required_keys(["silhouette>0", "partitions.shared.linear_probe_accuracy<1"])
    assert "separation.silhouette" in keys
    assert "partitions.shared.separation.linear_probe_accuracy" in keys


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def latents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    mu = rng.normal(size=(300, 4))
    mu[:, 2:] += 6.0 * labels[:, None]
    return write_latents(
        tmp_path_factory.mktemp("c") / "lat.h5",
        mu.astype(np.float32),
        labels=labels,
        label_names=["a", "b", "c"],
        partitions={"shared": [0, 2], "modality": [2, 4]},
    )


def test_check_passes_with_exit_0(latents: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "check",
            str(latents),
            "--min-silhouette",
            "0.3",
            "--min-centroid-distance",
            "5",
            "--require",
            "partitions.shared.linear_probe_accuracy<=0.6",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "all requirements pass" in result.output
    assert "partitions.shared.separation.linear_probe_accuracy <= 0.6" in result.output


def test_check_fails_with_exit_1_and_json(latents: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "check",
            str(latents),
            "--min-silhouette",
            "0.99",
            "--require",
            "active_units>=4",
            "--json",
        ],
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["passed"] is False
    by_key = {r["key"]: r for r in data["results"]}
    assert by_key["separation.silhouette"]["passed"] is False
    assert by_key["active_units"]["passed"] is True
    assert by_key["active_units"]["value"] == 4


def test_check_skipped_metric_fails(latents: Path) -> None:
    result = CliRunner().invoke(
        cli, ["check", str(latents), "--require", "information.posterior_total_correlation<1"]
    )
    assert result.exit_code == 1
    assert "no logvar" in result.output
    assert "1 of 1 requirements failed" in result.output


def test_check_errors(latents: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["check", str(latents), "--require", "silhouette=>1"])
    assert result.exit_code == 2
    assert "Invalid value for '--require': requirement 'silhouette=>1' is not of the form" in (
        result.stderr
    )
    result = runner.invoke(cli, ["check", str(latents)])
    assert result.exit_code == 2
    assert "give at least one requirement" in result.stderr
    result = runner.invoke(cli, ["check", str(latents), "--require", "silhouete>1"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: requirement silhouete>1: latentdiag has no metric 'silhouete'. Closest: "
        "separation.silhouette."
    )
    missing = tmp_path / "none.h5"
    result = runner.invoke(cli, ["check", str(missing), "--min-silhouette", "0.5"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {missing} does not exist."
