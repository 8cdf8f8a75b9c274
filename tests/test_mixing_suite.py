"""The scIB metrics inside `metrics`: with a batch key they run on every space from one exact
k-NN graph, give the numbers the functions give, aggregate into scIB's scores, and reach
`check` and the report; without one nothing of them is computed or reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.metrics import scib
from latentdiag.metrics.knn_graph import exact_knn_graph
from latentdiag.metrics.suite import compute_metrics
from latentdiag.store import write_latents

PARTS = {"first": (0, 4), "second": (4, 8)}


def _data(n: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    batch = rng.integers(0, 2, n)
    mu = rng.normal(size=(n, 8))
    mu[:, :4] += 2.0 * labels[:, None]  # the first half separates the labels
    mu[:, 4:] += 1.5 * batch[:, None]  # the second half separates the batches
    return mu.astype(np.float32), labels, batch


@pytest.fixture(scope="module")
def measured() -> dict:
    mu, labels, batch = _data()
    return compute_metrics(mu, labels=labels, batch=batch, partitions=PARTS)


def test_mixing_metrics_equal_the_functions_on_the_exact_graph(measured) -> None:
    mu, labels, batch = _data()
    graph = exact_knn_graph(mu, 89)
    mix, sep = measured["mixing"], measured["separation"]
    assert mix["ilisi"] == pytest.approx(scib.ilisi(graph, batch))
    assert mix["kbet"] == pytest.approx(scib.kbet(graph, batch, labels))
    assert mix["graph_connectivity"] == pytest.approx(scib.graph_connectivity(graph, labels))
    assert mix["silhouette_batch"] == pytest.approx(scib.silhouette_batch(mu, labels, batch))
    assert mix["bras"] == pytest.approx(scib.bras(mu, labels, batch))
    assert sep["clisi"] == pytest.approx(scib.clisi(graph, labels))
    assert sep["isolated_labels"] == pytest.approx(scib.isolated_labels(mu, labels, batch))
    nmi_ari = scib.nmi_ari_kmeans(mu, labels, random_state=0)
    assert (sep["nmi"], sep["ari"]) == pytest.approx((nmi_ari["nmi"], nmi_ari["ari"]))
    # The separation metrics that use labels and batch together do not run "by batch".
    assert "clisi" not in measured["batch_separation"]


def test_each_partition_tells_its_own_story(measured) -> None:
    first, second = (measured["partitions"][p] for p in ("first", "second"))
    # The first half ignores the batch (mixed), the second is made of it (not mixed).
    assert first["mixing"]["ilisi"] > second["mixing"]["ilisi"] + 0.3
    assert first["separation"]["clisi"] > second["separation"]["clisi"]
    assert first["scores"]["bio_conservation"] > second["scores"]["bio_conservation"]


def test_scores_are_scibs_aggregates(measured) -> None:
    mix, sep, scores = measured["mixing"], measured["separation"], measured["scores"]
    batch = np.mean([mix[k] for k in ("bras", "ilisi", "kbet", "graph_connectivity")])
    bio = np.mean(
        [sep["isolated_labels"], sep["nmi"], sep["ari"], (sep["silhouette"] + 1) / 2,
         sep["clisi"]]
    )  # fmt: skip
    assert scores["batch_correction"] == pytest.approx(batch)
    assert scores["bio_conservation"] == pytest.approx(bio)
    assert scores["total"] == pytest.approx(0.4 * batch + 0.6 * bio)
    assert scores["components"]["batch_correction"] == [
        "bras",
        "ilisi",
        "kbet",
        "graph_connectivity",
    ]


def test_without_a_batch_key_nothing_of_scib_runs_or_is_listed() -> None:
    mu, labels, _ = _data()
    out = compute_metrics(mu, labels=labels, partitions=PARTS)
    assert "mixing" not in out and "scores" not in out
    assert not {"clisi", "nmi", "ari", "isolated_labels"} & set(out["separation"])
    text = json.dumps(out["skipped"])
    assert "clisi" not in text and "mixing" not in text


def test_a_single_batch_is_skipped_with_its_reason() -> None:
    mu, labels, _ = _data()
    out = compute_metrics(mu, labels=labels, batch=np.zeros(len(labels), dtype=int))
    reasons = {s["metric"]: s["reason"] for s in out["skipped"] if "metric" in s}
    assert "mixing.ilisi" in reasons and "batch" in reasons["mixing.ilisi"].lower()


def test_check_and_report_take_the_mixing_keys(tmp_path: Path) -> None:
    mu, labels, batch = _data()
    path = tmp_path / "lat.h5"
    write_latents(
        path,
        mu,
        labels=labels,
        label_names=["a", "b", "c"],
        columns={"batch": batch},
        partitions=PARTS,
    )
    runner = CliRunner()
    ok = runner.invoke(
        cli,
        ["check", str(path), "--batch-key", "batch",
         "--require", "mixing.ilisi>=0", "--require", "scores.total>=0"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "mixing.ilisi" in ok.output
    tables = runner.invoke(cli, ["metrics", str(path), "--batch-key", "batch"])
    assert tables.exit_code == 0, tables.output
    assert "scIB: mixing and label conservation" in tables.output
    for title in ("iLISI", "kBET acceptance", "cLISI", "scIB total"):
        assert title in tables.output, title
    report = runner.invoke(
        cli,
        ["report", str(path), "--batch-key", "batch", "-o", str(tmp_path / "rep"),
         "--projection", "none"],
    )  # fmt: skip
    assert report.exit_code == 0, report.output
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "iLISI" in page and "kBET acceptance" in page


def test_tiny_files_use_the_neighbourhoods_they_have() -> None:
    mu, labels, batch = _data(40, seed=4)
    out = compute_metrics(mu, labels=labels, batch=batch)
    assert out["settings"]["scib_neighbors"] == {"lisi": 40, "kbet": 40, "graph_connectivity": 15}
    graph = exact_knn_graph(mu, 39)
    assert out["mixing"]["ilisi"] == pytest.approx(scib.ilisi(graph, batch, n_neighbors=40))
    assert 0.0 <= out["scores"]["total"] <= 1.0


def test_without_a_batch_key_a_partition_mixes_its_labels_or_not() -> None:
    # z_shared should mix the modalities (high iLISI with the label as the batch), z_modality
    # separate them; the whole space has no mixing section, and no partition gets scores.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 500)
    mu = rng.normal(size=(500, 8))
    mu[:, 4:] += 3.0 * labels[:, None]
    out = compute_metrics(mu, labels=labels, partitions={"shared": (0, 4), "modality": (4, 8)})
    assert "mixing" not in out
    shared, modality = out["partitions"]["shared"], out["partitions"]["modality"]
    assert set(shared["mixing"]) == {"ilisi"} and "scores" not in shared
    assert shared["mixing"]["ilisi"] > 0.6 > 0.1 > modality["mixing"]["ilisi"]
    graph = exact_knn_graph(mu[:, :4], 89)
    assert shared["mixing"]["ilisi"] == pytest.approx(scib.ilisi(graph, labels))
    notes = [n["metric"] for n in out["notes"]]
    assert "partitions.shared.mixing.ilisi" in notes


def test_scib_table_ranks_by_total_and_marks_the_best() -> None:
    from latentdiag.report.scib_table import scib_table

    def doc(total: float, ilisi: float, sil: float) -> dict:
        return {
            "separation": {"silhouette": sil},
            "mixing": {"ilisi": ilisi},
            "scores": {"total": total, "batch_correction": ilisi, "bio_conservation": 0.5},
        }

    table = scib_table([("a", doc(0.4, 0.9, 0.2)), ("b", doc(0.7, 0.3, 0.6)), ("c", {})])
    assert table is not None
    assert [r["name"] for r in table["rows"]] == ["b", "a"]  # c has no scores
    assert [r["rank"] for r in table["rows"]] == [1, 2]
    assert table["best"]["mixing.ilisi"] == ["a"] and table["best"]["scores.total"] == ["b"]
    assert table["best"]["scores.bio_conservation"] == ["b", "a"]  # a tie marks both
    sil = {r["name"]: r["values"]["separation.silhouette_label"] for r in table["rows"]}
    assert sil == pytest.approx({"a": 0.6, "b": 0.8})  # scib's (s + 1) / 2
    assert "mixing.kbet" not in [c["key"] for c in table["columns"]]
    assert scib_table([("a", doc(0.4, 0.9, 0.2))]) is None


def test_a_report_of_several_embeddings_ranks_them(tmp_path: Path) -> None:
    mu, labels, batch = _data()
    paths = []
    for name, shift in (("mixed", 0.0), ("split", 4.0)):
        x = mu.copy()
        x[:, :4] += shift * batch[:, None]  # "split" separates the batches in every dimension
        path = tmp_path / f"{name}.h5"
        write_latents(path, x, labels=labels, label_names=["a", "b", "c"],
                      columns={"batch": batch})  # fmt: skip
        paths.append(str(path))
    runner = CliRunner()
    out = runner.invoke(
        cli,
        ["report", *paths, "--batch-key", "batch", "-o", str(tmp_path / "rep"),
         "--projection", "none"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    table = doc["scib_table"]
    assert [r["name"] for r in table["rows"]] == ["mixed", "split"]
    assert table["best"]["mixing.ilisi"] == ["mixed"]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "scIB ranking" in page and 'alt="scIB ranking"' in page
    png = (tmp_path / "rep" / "figures" / "scib-ranking.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_pcr_comparison_reads_the_embedding_before_integration(tmp_path: Path) -> None:
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    mu, labels, batch = _data()
    before = mu + 3.0 * batch[:, None]  # the batch effect integration removed
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels.astype(str)), "batch": pd.Categorical(batch)},
        index=[str(i) for i in range(len(labels))],
    )
    path = tmp_path / "cells.h5ad"
    anndata.AnnData(obs=obs, obsm={"X_emb": mu, "X_pca": before}).write_h5ad(path)
    args = ["metrics", str(path), "--obsm", "X_emb", "--label-key", "cell_type",
            "--batch-key", "batch", "--json"]  # fmt: skip
    runner = CliRunner()
    with_pre = json.loads(runner.invoke(cli, [*args, "--pre-obsm", "X_pca"]).output)
    assert with_pre["pre_obsm"] == "X_pca"
    expected = scib.pcr_comparison(before, mu, batch)
    assert with_pre["mixing"]["pcr_comparison"] == pytest.approx(expected)
    assert "pcr_comparison" in with_pre["scores"]["components"]["batch_correction"]
    without = json.loads(runner.invoke(cli, args).output)
    reasons = {s["metric"]: s["reason"] for s in without["skipped"] if "metric" in s}
    assert "--pre-obsm" in reasons["mixing.pcr_comparison"]
    bad = runner.invoke(cli, [*args, "--pre-obsm", "X_nope"])
    assert bad.exit_code != 0
    assert bad.output.count("Error:") == 1 and "no obsm entry 'X_nope'" in bad.output
