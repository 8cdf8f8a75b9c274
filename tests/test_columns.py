"""Metadata columns: the Column type, the latents format 2, choosing label and batch by column."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import silhouette_score as sk_silhouette

from latentdiag.cli import cli
from latentdiag.columns import (
    MAX_NUMERIC_GROUPS,
    Column,
    as_grouping,
    categorical_column,
    column_from_values,
    select_groupings,
)
from latentdiag.errors import ConfigError, StoreError
from latentdiag.metrics.suite import compute_metrics_for_store
from latentdiag.store import FORMAT_VERSION, LatentStore, LatentWriter, open_latents, write_latents

N = 120


def _mu(n: int = N, d: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _cells(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "cell_type": np.array(["B", "T", "NK"])[rng.integers(0, 3, n)],
        "donor": rng.integers(1, 4, n),  # ints: numeric, grouped by value
        "n_counts": rng.gamma(2.0, 500.0, n),  # floats: too many values to group by
        "doublet": rng.random(n) > 0.8,
    }


def _write(path: Path, **kw) -> Path:
    mu = kw.pop("mu", _mu())
    return write_latents(path, mu, **kw)


# -- the Column type ---------------------------------------------------------------------------
def test_column_from_values_kinds_and_natural_order() -> None:
    col = column_from_values("site", np.array(["s10", "s2", "s2", None], dtype=object))
    assert col.kind == "categorical" and col.categories == ("s2", "s10")
    np.testing.assert_array_equal(col.values, [1, 0, 0, -1])
    assert col.n_missing == 1
    assert col.counts() == {"s2": 2, "s10": 1}
    num = column_from_values("n", np.array([1.5, np.nan, 2.0]))
    assert num.kind == "numeric" and num.n_missing == 1 and num.values.dtype == np.float64
    flag = column_from_values("ok", np.array([True, False]))
    assert flag.kind == "numeric" and flag.values.dtype == bool


def test_column_from_pandas_categorical_and_nullable() -> None:
    pd = pytest.importorskip("pandas")
    cat = pd.Series(pd.Categorical(["b", None, "a"], categories=["b", "a"], ordered=True))
    col = column_from_values("c", cat)
    assert col.categories == ("b", "a") and col.ordered
    np.testing.assert_array_equal(col.values, [0, -1, 1])
    ints = column_from_values("i", pd.Series(pd.array([1, None, 3], dtype="Int64")))
    assert ints.values.dtype == np.float64 and ints.n_missing == 1
    full = column_from_values("j", pd.Series(pd.array([1, 2, 3], dtype="Int64")))
    assert full.values.dtype == np.int64


def test_column_names_must_fit_hdf5() -> None:
    with pytest.raises(ConfigError, match=r"column name 'a/b' holds '/'"):
        column_from_values("a/b", [1, 2])
    with pytest.raises(ConfigError, match="non-empty strings"):
        column_from_values("", [1, 2])


def test_categorical_codes_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"codes range from 0 to 3 but there are 2 categories"):
        categorical_column("c", [0, 3], ["a", "b"])


def test_grouping_of_numeric_columns() -> None:
    # Integer codes group by value; each value becomes a name, in numeric order.
    codes, names = as_grouping(
        Column("d", np.array([3, 1, 3, 10])), option="--label-key", where="f"
    )
    assert names == ["1", "3", "10"]
    np.testing.assert_array_equal(codes, [1, 0, 1, 2])
    many = Column("n", np.arange(MAX_NUMERIC_GROUPS + 1, dtype=float))
    with pytest.raises(ConfigError, match="too many to group by"):
        as_grouping(many, option="--label-key", where="f")


def test_select_groupings_refuses_the_same_column_twice() -> None:
    cols = {"a": column_from_values("a", ["x", "y"])}
    with pytest.raises(ConfigError, match="both name column 'a'"):
        select_groupings(cols, default_label=None, label_key="a", batch_key="a", where="f")


def test_select_groupings_suggests_the_case_insensitive_match() -> None:
    cols = {"CellType": column_from_values("CellType", ["x", "y"])}
    with pytest.raises(ConfigError, match=r"Did you mean 'CellType'\?"):
        select_groupings(cols, default_label=None, label_key="celltype", where="f")


# -- format 2 ----------------------------------------------------------------------------------
def test_format_2_round_trip_through_the_store(tmp_path: Path) -> None:
    cells = _cells()
    p = _write(tmp_path / "z.h5", columns=cells, label_key="cell_type")
    with h5py.File(p) as f:
        assert int(f.attrs["format_version"]) == FORMAT_VERSION == 2
        assert f.attrs["label_key"] == "cell_type"
        # /labels mirrors the default label, so format-1 readers keep working.
        names = [s.decode() if isinstance(s, bytes) else s for s in f.attrs["label_names"]]
        assert names == ["B", "NK", "T"]
        codes = f["columns/cell_type/codes"][()]
        np.testing.assert_array_equal(f["labels"][()], codes)
    with LatentStore(p) as s:
        assert list(s.columns) == ["cell_type", "donor", "n_counts", "doublet"]
        assert s.label_key == "cell_type" and s.label_names == ["B", "NK", "T"]
        np.testing.assert_array_equal(s.columns["donor"].values, cells["donor"])
        assert s.columns["doublet"].values.dtype == bool
        np.testing.assert_array_equal(s.columns["n_counts"].values, cells["n_counts"])
        lookup = np.array(s.label_names)[s.labels]
        np.testing.assert_array_equal(lookup, cells["cell_type"])


def test_format_1_files_read_unchanged(tmp_path: Path) -> None:
    """A file written by hand the way docs/format.md described format 1."""
    p = tmp_path / "v1.h5"
    mu = _mu()
    labels = np.repeat(np.arange(4), N // 4).astype(np.int64)
    with h5py.File(p, "w") as f:
        f.attrs["latentdiag_format"] = "latents"
        f.attrs["format_version"] = 1
        f.attrs["complete"] = True
        f.attrs["label_names"] = ["chest_xray", "oct", "pathology", "dermatoscopy"]
        f["mu"] = mu
        f["labels"] = labels
        f.create_group("partitions").attrs.update({"shared": [0, 3], "modality": [3, 6]})
    with LatentStore(p) as s:
        assert s.format_version == 1
        np.testing.assert_array_equal(s.labels, labels)
        assert s.label_names == ["chest_xray", "oct", "pathology", "dermatoscopy"]
        # /labels shows as the column "label", so --label-key label works on old files too.
        assert list(s.columns) == ["label"] and s.label_key == "label"
    m = compute_metrics_for_store(p)
    assert m["separation"]["silhouette"] == pytest.approx(sk_silhouette(mu, labels), abs=1e-6)
    assert m["label_key"] == "label" and m["batch_key"] is None
    with LatentStore(p, label_key="label") as s:
        np.testing.assert_array_equal(s.labels, labels)


def test_label_and_batch_by_column_match_scikit_learn(tmp_path: Path) -> None:
    cells = _cells()
    mu = _mu()
    p = _write(tmp_path / "z.h5", mu=mu, columns=cells, label_key="cell_type")
    m = compute_metrics_for_store(p, label_key="donor", batch_key="cell_type")
    assert m["label_key"] == "donor" and m["batch_key"] == "cell_type"
    assert m["separation"]["silhouette"] == pytest.approx(
        sk_silhouette(mu, cells["donor"]), abs=1e-6
    )
    assert m["batch_separation"]["silhouette"] == pytest.approx(
        sk_silhouette(mu, cells["cell_type"]), abs=1e-6
    )
    assert set(m["batch_separation"]["silhouette_per_batch"]) == {"B", "NK", "T"}
    assert m["batch_names"] == ["B", "NK", "T"]


def test_batch_is_measured_in_every_partition(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 2, N)
    # dims 0-2 are pure noise, dims 3-5 are shifted by batch: z_shared mixes, the rest not.
    mu = rng.normal(size=(N, 6)).astype(np.float32)
    mu[:, 3:] += 4.0 * batch[:, None]
    p = _write(
        tmp_path / "z.h5",
        mu=mu,
        columns={"site": np.array(["a", "b"])[batch]},
        partitions={"shared": (0, 3), "site": (3, 6)},
    )
    m = compute_metrics_for_store(p, batch_key="site")
    shared = m["partitions"]["shared"]["batch_separation"]
    site = m["partitions"]["site"]["batch_separation"]
    assert shared["linear_probe_accuracy"] < 0.75 < site["linear_probe_accuracy"]
    assert m["leakage"]["site"]["batch_probe_above_chance"] > 0.9
    assert m["leakage"]["shared"]["batch_probe_above_chance"] < 0.5
    assert "separation" not in m  # no label here: said under skipped
    assert any(
        e.get("section") == "separation" and "--label-key" in e["reason"] for e in m["skipped"]
    )


def test_relabelling_a_column_leaves_the_scores_unchanged(tmp_path: Path) -> None:
    cells = _cells()
    mu = _mu()
    renamed = {"B": "zeta", "NK": "alpha", "T": "mid"}
    a = _write(tmp_path / "a.h5", mu=mu, columns={"ct": cells["cell_type"]})
    b = _write(
        tmp_path / "b.h5",
        mu=mu,
        columns={"ct": np.array([renamed[c] for c in cells["cell_type"]])},
    )
    ma = compute_metrics_for_store(a, label_key="ct", include=["separation"])
    mb = compute_metrics_for_store(b, label_key="ct", include=["separation"])
    for key in ("silhouette", "davies_bouldin", "calinski_harabasz"):
        assert ma["separation"][key] == pytest.approx(mb["separation"][key], abs=1e-9)
    # The cross-validation folds follow the codes, which renaming reorders: close, not equal.
    for key in ("knn_accuracy", "linear_probe_accuracy"):
        assert ma["separation"][key] == pytest.approx(mb["separation"][key], abs=0.06)


def test_writer_checks_column_blocks(tmp_path: Path) -> None:
    w = LatentWriter(
        tmp_path / "z.h5", latent_dim=2, columns=[categorical_column("c", [], ["a", "b"])]
    )
    with pytest.raises(StoreError, match=r"column 'c' codes must lie in -1..1"):
        w.append(np.zeros((2, 2)), columns={"c": np.array([0, 2])})
    with pytest.raises(StoreError, match=r"needs columns= for c too"):
        w.append(np.zeros((2, 2)))
    with pytest.raises(StoreError, match=r"column 'c' block must have shape \(2,\)"):
        w.append(np.zeros((2, 2)), columns={"c": np.array([0])})
    w.close()


def test_writer_resume_keeps_columns(tmp_path: Path) -> None:
    out = tmp_path / "z.h5"
    spec = categorical_column("c", [], ["a", "b"])
    w = LatentWriter(out, latent_dim=2, columns=[spec], label_key="c")
    w.append(np.zeros((3, 2)), columns={"c": np.array([0, 1, 1])})
    w.close()  # interrupted
    w = LatentWriter.resume(out)
    assert w.label_key == "c" and list(w.columns) == ["c"]
    w.append(np.ones((2, 2)), columns={"c": np.array([0, 0])})
    w.finalize()
    with LatentStore(out) as s:
        np.testing.assert_array_equal(s.labels, [0, 1, 1, 0, 0])
        assert s.label_names == ["a", "b"]


def test_default_label_column_needs_every_value(tmp_path: Path) -> None:
    w = LatentWriter(
        tmp_path / "z.h5", latent_dim=2, columns=[categorical_column("c", [], ["a"])], label_key="c"
    )
    with pytest.raises(StoreError, match="is the default label, so every row needs a value"):
        w.append(np.zeros((2, 2)), columns={"c": np.array([0, -1])})
    w.close()


# -- bad files and bad keys, through the command line --------------------------------------------
def _bad_length_file(path: Path) -> Path:
    _write(path, columns={"site": np.array(["a", "b"] * (N // 2))})
    with h5py.File(path, "r+") as f:
        codes = f["columns/site/codes"]
        codes.resize(N - 1, axis=0)
    return path


def test_cli_column_of_the_wrong_length(tmp_path: Path) -> None:
    p = _bad_length_file(tmp_path / "bad.h5")
    r = CliRunner().invoke(cli, ["metrics", str(p)])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        f"Error: {p}: column 'site' has shape ({N - 1},) but /mu has {N} rows; every column "
        "needs one value per row."
    )


def test_cli_unknown_label_key_lists_the_columns(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5", columns=_cells(), label_key="cell_type")
    for command in ("metrics", "inspect", "report", "check"):
        args = [command, str(p), "--label-key", "celltype"]
        args += ["-o", str(tmp_path / "r")] if command == "report" else []
        args += ["--min-silhouette", "0"] if command == "check" else []
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1, (command, r.output)
        assert r.stderr.strip() == (
            f"Error: --label-key celltype: {p} has no column 'celltype'. Its columns: "
            "cell_type (categorical, 3), donor (numeric), n_counts (numeric), doublet (numeric)."
        )
    assert not (tmp_path / "r").exists()


def test_cli_numeric_label_key_with_too_many_values(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5", columns=_cells())
    r = CliRunner().invoke(cli, ["metrics", str(p), "--label-key", "n_counts"])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        f"Error: --label-key n_counts: column 'n_counts' of {p} is numeric with {N:,} distinct "
        f"values, too many to group by (at most {MAX_NUMERIC_GROUPS}); bin it into a few classes "
        "first (e.g. pandas.cut) or choose a categorical column."
    )


def test_cli_batch_key_with_missing_values(tmp_path: Path) -> None:
    site = np.array(["a", "b", None] * (N // 3), dtype=object)
    p = _write(tmp_path / "z.h5", columns={"site": site})
    r = CliRunner().invoke(cli, ["metrics", str(p), "--batch-key", "site"])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        f"Error: --batch-key site: {N // 3:,} of {N:,} rows of {p} have no value (NaN) in column "
        "'site'; a grouping needs a value on every row: fill them (e.g. with a category "
        "'unknown') or drop those rows."
    )


def test_cli_obsm_on_a_latents_file(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5")
    r = CliRunner().invoke(cli, ["metrics", str(p), "--obsm", "X_scVI"])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        f"Error: --obsm applies to AnnData (.h5ad) input; {p} is a latents file, whose "
        "embedding is /mu."
    )


def test_cli_inspect_lists_columns_and_roles(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5", columns=_cells(), label_key="cell_type")
    r = CliRunner().invoke(cli, ["inspect", str(p), "--batch-key", "donor", "--json"])
    assert r.exit_code == 0, r.output
    import json

    doc = json.loads(r.stdout)
    assert doc["label_key"] == "cell_type" and doc["batch_key"] == "donor"
    assert doc["batch_names"] == ["1", "2", "3"]
    assert doc["columns"]["cell_type"]["kind"] == "categorical"
    assert sum(doc["columns"]["cell_type"]["counts"].values()) == N
    assert doc["columns"]["n_counts"]["kind"] == "numeric"
    r = CliRunner().invoke(cli, ["inspect", str(p), "--batch-key", "donor"])
    assert r.exit_code == 0
    assert "columns (4)" in r.stdout and "batches (3) from column donor" in r.stdout


def test_cli_metrics_and_check_with_a_batch_key(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5", columns=_cells(), label_key="cell_type")
    r = CliRunner().invoke(cli, ["metrics", str(p), "--batch-key", "donor"])
    assert r.exit_code == 0, r.output
    assert "label = cell_type, batch = donor" in r.stdout
    assert "separation by batch (donor)" in r.stdout
    ok = "batch_separation.linear_probe_accuracy<=0.9"
    r = CliRunner().invoke(cli, ["check", str(p), "--batch-key", "donor", "--require", ok])
    assert r.exit_code == 0, r.output
    # Without the batch key the requirement cannot be met, and says why.
    r = CliRunner().invoke(cli, ["check", str(p), "--require", ok, "--json"])
    assert r.exit_code == 1
    assert "--batch-key" in r.stdout


def test_report_gains_a_mixing_section(tmp_path: Path) -> None:
    from latentdiag.report import build_report

    p = _write(tmp_path / "z.h5", columns=_cells(), label_key="cell_type", partitions={"a": (0, 3)})
    result = build_report([p], tmp_path / "r", projection=["pca"], batch_key="donor")
    html = result.html.read_text()
    assert 'id="mixing"' in html and "PCA by batch" in html
    assert "Batch information per subspace" in html
    assert "batches in column donor" in html
    import json

    doc = json.loads(result.metrics_json.read_text())
    assert doc["batch_key"] == "donor" and "batch_separation" in doc
    # Without a batch the section says how to ask for one, and nothing is listed as skipped.
    plain = build_report([p], tmp_path / "r2", projection=["pca"])
    assert "pass --batch-key COL" in plain.html.read_text()
    assert not any("mixing" in s for s in plain.skipped)


def test_open_latents_picks_the_reader(tmp_path: Path) -> None:
    p = _write(tmp_path / "z.h5")
    with open_latents(p) as s:
        assert isinstance(s, LatentStore)


def test_projector_metadata_has_every_column(tmp_path: Path) -> None:
    from latentdiag.report import build_report

    cells = _cells()
    cells["cell_type"] = cells["cell_type"].astype(object)
    cells["cell_type"][0] = None  # a gap: an empty cell, not "None"
    p = _write(tmp_path / "z.h5", columns=cells)
    result = build_report([p], tmp_path / "r", projection=[], export_projector=True)
    meta = next(f for f in result.projector if f.name.endswith("metadata.tsv"))
    lines = meta.read_text().splitlines()
    assert lines[0] == "label\tsample_id\trow\tcell_type\tdonor\tn_counts\tdoublet"
    rows = {int(line.split("\t")[2]): line.split("\t") for line in lines[1:]}
    assert rows[0][3] == ""
    assert rows[1][3] == str(cells["cell_type"][1]) and rows[1][4] == str(cells["donor"][1])
