"""AnnData in and out: .h5ad read in place (scVI style), convert both ways, embed -o x.h5ad."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import silhouette_score as sk_silhouette

from latentdiag.cli import cli
from latentdiag.metrics.suite import compute_metrics_for_store
from latentdiag.store import LatentStore, open_latents, write_latents
from latentdiag.store.convert import convert_latents
from latentdiag.store.h5ad import AnnDataLatents

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

N, D = 240, 10


def scvi_like(n: int = N, *, extra_obsm: bool = False, seed: int = 0) -> ad.AnnData:
    """What scvi-tools leaves behind: counts in X, the latent in obsm['X_scVI'], obs metadata."""
    rng = np.random.default_rng(seed)
    cell_type = rng.choice(["B cell", "T cell", "NK cell", "monocyte"], n)
    batch = rng.choice(["donor_1", "donor_2", "donor_3"], n)
    centres = {c: rng.normal(scale=3.0, size=D) for c in np.unique(cell_type)}
    z = np.stack([centres[c] for c in cell_type]) + rng.normal(size=(n, D))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(cell_type),
            "batch": batch,  # plain strings: anndata stores them as categorical
            "_scvi_batch": pd.Categorical(batch).codes.astype(np.int64),
            "n_counts": rng.gamma(2.0, 1000.0, n),
            "is_doublet": rng.random(n) > 0.9,
        },
        index=[f"AAAC{i:05d}-1" for i in range(n)],
    )
    obsm = {"X_scVI": z.astype(np.float32)}
    if extra_obsm:
        obsm["X_umap"] = rng.normal(size=(n, 2))
    x = sp.random(n, 300, density=0.05, format="csr", random_state=seed, dtype=np.float32)
    return ad.AnnData(X=x, obs=obs, obsm=obsm)


@pytest.fixture
def h5ad(tmp_path: Path) -> Path:
    p = tmp_path / "pbmc.h5ad"
    scvi_like().write_h5ad(p)
    return p


# -- reading -----------------------------------------------------------------------------------
def test_metrics_on_scvi_h5ad_match_scikit_learn_for_every_column(h5ad: Path) -> None:
    adata = ad.read_h5ad(h5ad)
    z = np.asarray(adata.obsm["X_scVI"])
    for column in ("cell_type", "batch", "_scvi_batch", "is_doublet"):
        m = compute_metrics_for_store(h5ad, label_key=column, include=["separation.silhouette"])
        want = sk_silhouette(z, np.asarray(adata.obs[column]))
        assert m["separation"]["silhouette"] == pytest.approx(want, abs=2e-6), column
        assert m["label_key"] == column and m["obsm"] == "X_scVI"


def test_batch_key_on_h5ad(h5ad: Path) -> None:
    adata = ad.read_h5ad(h5ad)
    z = np.asarray(adata.obsm["X_scVI"])
    m = compute_metrics_for_store(h5ad, label_key="cell_type", batch_key="batch")
    assert m["batch_separation"]["silhouette"] == pytest.approx(
        sk_silhouette(z, np.asarray(adata.obs["batch"])), abs=2e-6
    )
    # The batch here is random: it cannot be read from z, the cell type can.
    chance = m["batch_separation"]["chance_accuracy"]
    assert m["batch_separation"]["linear_probe_accuracy"] < chance + 0.15
    assert m["separation"]["linear_probe_accuracy"] > 0.9


def test_in_memory_and_backed_anndata_give_the_same_numbers(h5ad: Path) -> None:
    memory = ad.read_h5ad(h5ad)
    backed = ad.read_h5ad(h5ad, backed="r")
    try:
        a = compute_metrics_for_store(memory, label_key="cell_type", include=["separation"])
        b = compute_metrics_for_store(backed, label_key="cell_type", include=["separation"])
        c = compute_metrics_for_store(h5ad, label_key="cell_type", include=["separation"])
    finally:
        backed.file.close()
    for key in ("silhouette", "knn_accuracy", "linear_probe_accuracy"):
        assert a["separation"][key] == b["separation"][key] == c["separation"][key]


def test_obs_columns_keep_their_kinds(h5ad: Path) -> None:
    with open_latents(h5ad) as s:
        assert isinstance(s, AnnDataLatents)
        cols = s.columns
        assert cols["cell_type"].categories == ("B cell", "NK cell", "T cell", "monocyte")
        assert cols["batch"].kind == "categorical"
        assert cols["_scvi_batch"].values.dtype == np.int64
        assert cols["is_doublet"].values.dtype == bool
        assert cols["n_counts"].values.dtype == np.float64
        assert s.sample_ids[0] == "AAAC00000-1"
        assert not s.has_labels  # an scVI file names no default label
        assert s.provenance == {"kind": "anndata", "source": str(h5ad), "obsm": "X_scVI"}


def test_logvar_obsm(tmp_path: Path) -> None:
    adata = scvi_like()
    adata.obsm["qz_logvar"] = np.full((N, D), -1.0, dtype=np.float32)
    p = tmp_path / "lv.h5ad"
    adata.write_h5ad(p)
    m = compute_metrics_for_store(p, logvar_obsm="qz_logvar", include=["information.kl_per_dim"])
    assert len(m["information"]["kl_per_dim"]) == D
    bad = tmp_path / "lv2.h5ad"
    adata.obsm["qz_logvar"] = np.zeros((N, D + 1), dtype=np.float32)
    adata.write_h5ad(bad)
    r = CliRunner().invoke(cli, ["metrics", str(bad), "--logvar-obsm", "qz_logvar"])
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        f"Error: --logvar-obsm qz_logvar: obsm 'qz_logvar' has shape ({N}, {D + 1}) but the "
        f"embedding 'X_scVI' has ({N}, {D}); log-variances need one per latent value."
    )


# -- bad input, each one Error: line -------------------------------------------------------------
def _err(args: list[str]) -> str:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
    return r.stderr.strip()


def test_error_missing_obsm_key(h5ad: Path) -> None:
    assert _err(["metrics", str(h5ad), "--obsm", "X_scvi"]) == (
        f"Error: --obsm X_scvi: {h5ad} has no obsm entry 'X_scvi'; its obsm keys: "
        f"X_scVI ({N} × {D})."
    )


def test_error_ambiguous_obsm(tmp_path: Path) -> None:
    p = tmp_path / "two.h5ad"
    scvi_like(extra_obsm=True).write_h5ad(p)
    for command in ("metrics", "inspect", "check", "report"):
        extra = {"check": ["--min-silhouette", "0"], "report": ["-o", str(tmp_path / "r")]}
        assert _err([command, str(p), *extra.get(command, [])]) == (
            f"Error: {p} has 2 embeddings in obsm (X_scVI ({N} × {D}), X_umap ({N} × 2)); "
            "choose one with --obsm KEY."
        )
    m = compute_metrics_for_store(p, obsm="X_umap", include=["information.active_units"])
    assert m["latent_dim"] == 2


def test_error_nan_categories_as_label(tmp_path: Path) -> None:
    adata = scvi_like()
    ct = adata.obs["cell_type"].astype(object)
    ct.iloc[:7] = np.nan
    adata.obs["cell_type"] = pd.Categorical(ct)
    p = tmp_path / "nan.h5ad"
    adata.write_h5ad(p)
    assert _err(["metrics", str(p), "--label-key", "cell_type"]) == (
        f"Error: --label-key cell_type: 7 of {N} rows of {p} have no value (NaN) in column "
        "'cell_type'; a grouping needs a value on every row: fill them (e.g. with a category "
        "'unknown') or drop those rows."
    )
    # Not chosen as a key, the column with gaps is fine: inspect counts the gaps.
    r = CliRunner().invoke(cli, ["inspect", str(p), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["columns"]["cell_type"]["n_missing"] == 7


def test_error_numeric_label_with_too_many_values(h5ad: Path) -> None:
    assert _err(["metrics", str(h5ad), "--label-key", "n_counts"]).startswith(
        f"Error: --label-key n_counts: column 'n_counts' of {h5ad} is numeric with {N} distinct "
        "values, too many to group by (at most 50); bin it into a few classes first"
    )


def test_error_sparse_x_without_obsm(tmp_path: Path) -> None:
    adata = scvi_like()
    del adata.obsm["X_scVI"]
    p = tmp_path / "counts.h5ad"
    adata.write_h5ad(p)
    assert _err(["metrics", str(p)]) == (
        f"Error: {p} has no embedding in obsm, and its X is a sparse matrix (csr_matrix, "
        f"{N} × 300): data, not latents. Embed it with a model first, or store your model's "
        "latents in adata.obsm['X_...'] (scVI: adata.obsm['X_scVI'] = "
        "model.get_latent_representation())."
    )
    assert _err(["metrics", str(p), "--obsm", "X"]) == (
        f"Error: --obsm X: the X of {p} is a sparse matrix (csr_matrix, {N} × 300), not an "
        "embedding; embed it with a model first."
    )


def test_dense_x_as_the_embedding(tmp_path: Path) -> None:
    z = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    p = tmp_path / "dense.h5ad"
    ad.AnnData(X=z, obs=pd.DataFrame({"g": ["a", "b"] * 25}, index=[str(i) for i in range(50)])
               ).write_h5ad(p)  # fmt: skip
    assert "pass --obsm X to measure X itself" in _err(["metrics", str(p)])
    m = compute_metrics_for_store(p, obsm="X", label_key="g", include=["separation.silhouette"])
    assert m["separation"]["silhouette"] == pytest.approx(
        sk_silhouette(z, ["a", "b"] * 25), abs=1e-6
    )


def test_error_damaged_h5ad(tmp_path: Path, h5ad: Path) -> None:
    junk = tmp_path / "junk.h5ad"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    assert _err(["metrics", str(junk)]).startswith(f"Error: {junk} is not an HDF5 file")
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(h5ad.read_bytes()[: h5ad.stat().st_size // 2])
    message = _err(["metrics", str(cut)])
    assert message.startswith("Error: ") and str(cut) in message


# -- writing and converting ----------------------------------------------------------------------
def test_convert_scvi_to_latents_and_back(tmp_path: Path, h5ad: Path) -> None:
    out = tmp_path / "pbmc.h5"
    r = CliRunner().invoke(cli, ["convert", str(h5ad), "-o", str(out), "--label-key", "cell_type"])
    assert r.exit_code == 0, r.output
    with LatentStore(out) as s:
        assert s.label_key == "cell_type"
        assert s.label_names == ["B cell", "NK cell", "T cell", "monocyte"]
        assert s.provenance["obsm"] == "X_scVI"
    back = tmp_path / "back.h5ad"
    r = CliRunner().invoke(cli, ["convert", str(out), "-o", str(back)])
    assert r.exit_code == 0, r.output
    a, b = ad.read_h5ad(h5ad), ad.read_h5ad(back)
    np.testing.assert_array_equal(a.obsm["X_scVI"], b.obsm["X_scVI"])  # the key is kept
    assert list(a.obs_names) == list(b.obs_names)
    for col in a.obs.columns:
        pd.testing.assert_series_equal(a.obs[col], b.obs[col], check_categorical=True), col
    assert b.uns["latentdiag"]["label_key"] == "cell_type"


def test_convert_never_leaves_a_partial_output(tmp_path: Path, h5ad: Path) -> None:
    out = tmp_path / "x.h5"
    assert _err(["convert", str(h5ad), "-o", str(out), "--label-key", "n_counts"]).startswith(
        "Error: --label-key n_counts: the default label must be a categorical column"
    )
    assert list(tmp_path.iterdir()) == [h5ad]
    assert _err(["convert", str(h5ad), "-o", str(tmp_path / "x.csv")]) == (
        f"Error: cannot tell what to write to {tmp_path / 'x.csv'}: name it .h5ad for AnnData or "
        ".h5 for a latents file (found .csv)."
    )


def test_written_h5ad_is_what_scanpy_expects(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(40, 6)).astype(np.float32)
    src = write_latents(
        tmp_path / "z.h5",
        mu,
        logvar=np.zeros_like(mu),
        factors=rng.random((40, 2)).astype(np.float32),
        factor_names=["rotation", "scale"],
        columns={"modality": np.array(["oct", "xray"] * 20)},
        label_key="modality",
        partitions={"shared": (0, 3), "modality": (3, 6)},
    )
    out = tmp_path / "z.h5ad"
    convert_latents(src, out)
    adata = ad.read_h5ad(out)
    assert set(adata.obsm) == {"X_latent", "latent_logvar", "latent_factors"}
    assert [k for k in adata.obsm if k.startswith("X_")] == ["X_latent"]  # one basis to plot
    assert isinstance(adata.obs["modality"].dtype, pd.CategoricalDtype)
    meta = adata.uns["latentdiag"]
    assert meta["mu"] == "X_latent" and meta["label_key"] == "modality"
    assert list(meta["partitions"]["modality"]) == [3, 6]
    assert list(meta["factor_names"]) == ["rotation", "scale"]


# A hypothesis strategy for whole latents files.
@st.composite
def latents_files(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 30))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    out: dict = {
        "mu": rng.normal(size=(n, d)).astype(draw(st.sampled_from(["float32", "float64"])))
    }
    if draw(st.booleans()):
        out["logvar"] = rng.normal(size=(n, d)).astype(out["mu"].dtype)
    if draw(st.booleans()):
        out["factors"] = rng.random((n, 2)).astype(np.float32)
        out["factor_names"] = ["f_a", "f_b"]
    columns = []
    n_cat = draw(st.integers(0, 2))
    from latentdiag.columns import Column, categorical_column

    names = draw(st.lists(st.sampled_from(["site", "cell type", "Donor", "x.y", "é"]),
                          min_size=n_cat, max_size=n_cat, unique=True))  # fmt: skip
    for name in names:
        k = draw(st.integers(1, 4))
        cats = [f"c{i}" for i in range(k)]
        codes = rng.integers(-1 if draw(st.booleans()) else 0, k, n)
        columns.append(categorical_column(name, codes, cats, ordered=draw(st.booleans())))
    for dtype in draw(st.lists(st.sampled_from(["int64", "float64", "bool", "float32"]),
                               max_size=3, unique=True)):  # fmt: skip
        values = rng.normal(size=n) * 10
        if dtype == "float64" and n > 1:
            values[0] = np.nan
        columns.append(Column(f"num_{dtype}", values.astype(dtype)))
    out["columns"] = columns
    full = [c for c in columns if c.is_categorical and c.n_missing == 0]
    if full and draw(st.booleans()):
        out["label_key"] = full[0].name
    ids = draw(st.sampled_from(["stored", "derived", "none"]))
    if ids == "stored":
        out["sample_ids"] = [f"s{i}/{seed}" for i in range(n)]
    if ids != "none":
        out["index"] = rng.permutation(n * 2)[:n]
    if d >= 2 and draw(st.booleans()):
        out["partitions"] = {"shared": (0, 1), "rest": (1, d)}
    out["provenance"] = {"model": "m.onnx", "batch_size": 64, "job": {"a": [1, 2]}, "none": None}
    if ids == "derived":
        out["provenance"]["sample_ids"] = "{data_source}[{index}]"
        out["provenance"]["data_source"] = "arrays.npz"
    return out


def _snapshot(s) -> dict:
    return {
        "mu": s.read("mu"),
        "mu_dtype": str(s.read("mu").dtype),
        "logvar": s.read("logvar") if s.has("logvar") else None,
        "factors": s.factors,
        "factor_names": s.factor_names if s.has_factors else None,
        "columns": {
            k: (c.categories, c.ordered, str(c.values.dtype), c.values)
            for k, c in s.columns.items()
        },
        "label_key": s.file_label_key,
        "labels": s.labels,
        "label_names": s.label_names if s.has_labels else None,
        "sample_ids": s.sample_ids,
        "index": s.index,
        "partitions": dict(s.partitions),
        "provenance": s.provenance,
    }


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if key == "columns":
            assert list(x) == list(y)
            for name in x:
                assert x[name][:3] == y[name][:3], name
                np.testing.assert_array_equal(x[name][3], y[name][3])
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            assert x == y, key


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(latents_files())
def test_round_trip_latents_h5ad_latents_is_lossless(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        mu = spec.pop("mu")
        # write_latents stores float32 unless asked: go through the writer for float64.
        from latentdiag.store import LatentWriter

        cols = spec["columns"]
        with LatentWriter(
            t / "a.h5",
            latent_dim=mu.shape[1],
            has_logvar="logvar" in spec,
            factor_names=spec.get("factor_names"),
            sample_ids="sample_ids" in spec,
            index="index" in spec,
            partitions=spec.get("partitions"),
            provenance=spec["provenance"],
            columns=cols,
            label_key=spec.get("label_key"),
            latent_dtype=str(mu.dtype),
        ) as w:
            w.append(
                mu,
                logvar=spec.get("logvar"),
                factors=spec.get("factors"),
                sample_ids=spec.get("sample_ids"),
                index=spec.get("index"),
                columns={c.name: c.values for c in cols},
            )
        convert_latents(t / "a.h5", t / "a.h5ad")
        convert_latents(t / "a.h5ad", t / "b.h5")
        convert_latents(t / "b.h5", t / "b.h5ad")
        with LatentStore(t / "a.h5") as a, LatentStore(t / "b.h5") as b:
            _assert_same(_snapshot(a), _snapshot(b))
        with open_latents(t / "a.h5ad") as x, open_latents(t / "b.h5ad") as y:
            _assert_same(_snapshot(x), _snapshot(y))
        with LatentStore(t / "a.h5") as a, open_latents(t / "a.h5ad") as x:
            _assert_same(_snapshot(a), _snapshot(x))
        # anndata itself reads what latentdiag wrote.
        adata = ad.read_h5ad(t / "a.h5ad")
        assert adata.n_obs == mu.shape[0]
        np.testing.assert_array_equal(adata.obsm["X_latent"], mu)


def test_merged_shards_keep_columns(tmp_path: Path) -> None:
    from latentdiag.columns import categorical_column
    from latentdiag.merge import merge_latents
    from latentdiag.store import LatentWriter

    spec = categorical_column("site", [], ["a", "b"])
    parts = []
    for k in range(2):
        p = tmp_path / f"s{k}.h5"
        rows = np.arange(k, 10, 2)
        with LatentWriter(
            p, latent_dim=2, columns=[spec], label_key="site", index=True,
            provenance={"shard": f"{k}/2", "n_data": 10},
        ) as w:  # fmt: skip
            w.append(
                np.stack([rows, rows], 1).astype(np.float32),
                index=rows,
                columns={"site": rows % 2},
            )
        parts.append(p)
    out = merge_latents(parts, tmp_path / "all.h5").path
    with LatentStore(out) as s:
        np.testing.assert_array_equal(s.columns["site"].values, np.arange(10) % 2)
        np.testing.assert_array_equal(s.labels, np.arange(10) % 2)
        assert s.label_key == "site"


def test_h5py_reader_of_today_reads_format_2(tmp_path: Path) -> None:
    """A script written against format 1 (h5py, /mu, /labels, label_names) keeps working."""
    p = write_latents(
        tmp_path / "z.h5",
        np.zeros((4, 2), np.float32),
        columns={"modality": ["a", "b", "b", "a"]},
        label_key="modality",
    )
    with h5py.File(p) as f:
        names = [x.decode() if isinstance(x, bytes) else x for x in f.attrs["label_names"]]
        assert [names[i] for i in f["labels"][()]] == ["a", "b", "b", "a"]
