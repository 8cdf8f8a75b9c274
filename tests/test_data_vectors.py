"""Vector data sources: (N, F) arrays, CSV / Parquet tables, AnnData, ``--standardize``, the
synthetic vector data, ``data synth --vectors`` and ``data preview`` of vectors.

Errors go through the command line (``latentdiag data preview``) and are checked as their exact
``Error:`` line with exit status 1.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from click.testing import CliRunner, Result
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from latentdiag.cli import cli
from latentdiag.data import ArrayDataset, VectorDataset, open_dataset, vector_arrays
from latentdiag.data.sources import describe
from latentdiag.data.synthetic_vectors import (
    BATCH_NAMES,
    FACTOR_NAMES,
    LABEL_NAMES,
    generate_synthetic_vectors,
)
from latentdiag.data.vector_arrays import H5Matrix
from latentdiag.data.vector_preview import MAX_FEATURES, _choose_features
from latentdiag.data.vectors import feature_stats, is_sparse

RNG = np.random.default_rng(7)


def preview(tmp_path: Path, source: Path | str, *args: str) -> Result:
    out = tmp_path / "preview.png"
    return CliRunner().invoke(cli, ["data", "preview", str(source), "-o", str(out), *args])


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def all_rows(ds: VectorDataset) -> np.ndarray:
    return ds.rows(slice(None))


# --------------------------------------------------------------------------- (N, F) arrays


@pytest.mark.parametrize(
    "array",
    [
        RNG.normal(100.0, 400.0, size=(12, 5)),  # float64 far outside [0, 1]
        RNG.integers(-300, 3000, size=(12, 5)).astype(np.int16),
        RNG.normal(size=(12, 5)).astype(np.float32),
    ],
    ids=["float64", "int16", "float32"],
)
def test_npy_of_rank_2_is_vectors_kept_as_stored(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", array)
    ds = open_dataset(str(tmp_path / "x.npy"))
    assert isinstance(ds, VectorDataset) and ds.kind == "vectors"
    assert ds.dtype == array.dtype  # dtype kept
    assert (len(ds), ds.n_features, ds.image_shape) == (12, 5, (5,))
    # No rescaling to [0, 1], no reshaping: the values reach the model as stored.
    assert np.array_equal(all_rows(ds), array.astype(np.float32))
    item = ds[3]
    assert item["image"].shape == (5,) and np.array_equal(item["image"], array[3].astype("f4"))
    assert item["sample_id"] == "x.npy[3]" and item["label"] == -1
    assert ds.standardize is None and not ds.has_labels


def test_rank_3_and_4_arrays_stay_images(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((3, 8, 8), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((3, 8, 8, 3), np.uint8))
    for name in ("a.npy", "b.npy"):
        ds = open_dataset(str(tmp_path / name))
        assert isinstance(ds, ArrayDataset) and ds.kind == "images"


def test_npy_vectors_with_a_multi_column_labels_csv(tmp_path: Path) -> None:
    x = RNG.normal(size=(4, 3))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "meta.csv").write_text("site,label\nA,tumor\nB,normal\nA,tumor\nB,tumor\n")
    ds = open_dataset(str(tmp_path / "x.npy"), labels=str(tmp_path / "meta.csv"))
    assert isinstance(ds, VectorDataset)
    assert ds.label_key == "label" and ds.label_names == ["normal", "tumor"]
    assert ds.labels is not None and ds.labels.tolist() == [1, 0, 1, 1]
    assert ds.columns is not None and list(ds.columns) == ["site", "label"]
    assert ds.columns["site"].categories == ("A", "B")
    by_site = open_dataset(
        str(tmp_path / "x.npy"), labels=str(tmp_path / "meta.csv"), label_key="site"
    )
    assert by_site.label_names == ["A", "B"] and by_site[1]["label"] == 1


@pytest.mark.parametrize("key", ["x", "X", "features", "data", "vectors", "expression"])
def test_npz_vectors_by_name_or_as_the_only_2d_array(tmp_path: Path, key: str) -> None:
    x = RNG.normal(size=(6, 4)).astype(np.float32)
    np.savez(tmp_path / "v.npz", **{key: x}, labels=np.array([0, 1, 2, 0, 1, 2]))
    ds = open_dataset(str(tmp_path / "v.npz"))
    assert isinstance(ds, VectorDataset)
    assert np.array_equal(all_rows(ds), x)
    assert ds.labels is not None and ds.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert ds.label_key == "label" and ds.sample_ids is not None
    assert ds.sample_ids[5] == "v.npz[5]"


def test_npz_with_two_matrices_needs_the_data_key(tmp_path: Path) -> None:
    a, b = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 4))
    np.savez(tmp_path / "two.npz", a=a, b=b)
    assert error_line(preview(tmp_path, tmp_path / "two.npz")) == (
        f"Error: {tmp_path / 'two.npz'} has several arrays that could be the vectors "
        "(a (5, 3), b (5, 4)); name one with --data-key."
    )
    for option in ("--data-key", "--images-key"):  # the old name keeps working
        result = preview(tmp_path, tmp_path / "two.npz", option, "b")
        assert result.exit_code == 0, result.output
    chosen = open_dataset(str(tmp_path / "two.npz"), images_key="b")
    assert np.array_equal(all_rows(chosen), b.astype(np.float32))


def test_hdf5_vectors_in_memory_and_read_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = RNG.normal(size=(20, 6))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["features"] = x
        f["labels"] = np.arange(20) % 2
        f.attrs["label_names"] = ["ctrl", "case"]
    ds = open_dataset(str(tmp_path / "d.h5"))
    assert isinstance(ds, VectorDataset) and isinstance(ds.vectors, np.ndarray)
    assert ds.label_names == ["ctrl", "case"] and ds.dtype == np.float64
    assert np.array_equal(all_rows(ds), x.astype(np.float32))

    monkeypatch.setattr(vector_arrays, "IN_MEMORY_BYTES", 10)
    lazy = open_dataset(str(tmp_path / "d.h5"))
    assert isinstance(lazy, VectorDataset) and isinstance(lazy.vectors, H5Matrix)
    order = np.array([7, 2, 19, 2])  # unsorted, repeated: HDF5 wants increasing indices
    assert np.array_equal(lazy.rows(order), x[order].astype(np.float32))
    again = pickle.loads(pickle.dumps(lazy))  # DataLoader workers open the file themselves
    assert np.array_equal(again[4]["image"], x[4].astype(np.float32))


def test_hdf5_with_several_matrices_needs_the_data_key(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.zeros((3, 2))
        f["b"] = np.zeros((3, 5))
        f["factors"] = np.zeros((3, 2))  # describes the data: never taken for it
    assert error_line(preview(tmp_path, tmp_path / "two.h5")) == (
        f"Error: {tmp_path / 'two.h5'} has several datasets that could be the vectors "
        "(/a (3, 2), /b (3, 5)); name one with --data-key."
    )


def test_subset_of_vectors_keeps_source_rows(tmp_path: Path) -> None:
    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    np.save(tmp_path / "x.npy", x)
    ds = open_dataset(str(tmp_path / "x.npy"), n=5, seed=3)
    assert len(ds) == 5
    rows = [int(s.split("[")[1].rstrip("]")) for s in ds.sample_ids]
    assert rows == sorted(rows) and np.array_equal(all_rows(ds), x[rows].astype(np.float32))


def test_nan_and_inf_rows_are_counted(tmp_path: Path) -> None:
    x = np.zeros((10, 3))
    x[1, 0] = x[1, 2] = np.nan  # one row, two NaN
    x[4, 1] = np.inf
    x[7, 2] = -np.inf
    np.save(tmp_path / "x.npy", x)
    assert error_line(preview(tmp_path, tmp_path / "x.npy")) == (
        "Error: x.npy: 3 of 10 rows hold NaN or infinite values; expected finite features; "
        "drop or impute those rows."
    )


def test_size_and_channels_do_not_apply_to_vectors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    assert error_line(preview(tmp_path, tmp_path / "x.npy", "--size", "16")) == (
        "Error: x.npy: holds vectors (4 × 3 features), not images; --size and --channels apply "
        "to images only."
    )


def test_strings_are_no_vectors(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.array([["a", "b"], ["c", "d"]]))
    assert error_line(preview(tmp_path, tmp_path / "x.npy")) == (
        "Error: x.npy: vectors must hold numbers (integers or floats); found dtype <U1."
    )


# --------------------------------------------------------------------------- tables


def cells_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_id": ["c1", "c2", "c3", "c4", "c5", "c6"],
            "gene_a": [0.5, -1.25, 3.0, 2.0, 0.0, 7.5],
            "gene_b": [1, 0, 4, 2, 2, 9],
            "batch": [1, 2, 1, 2, 3, 3],
            "donor": ["d1", "d1", "d2", "d2", "d3", "d3"],
            "is_control": [True, False, False, True, False, False],
            "cell_type": ["T", "B", "T", "NK", "B", "T"],
        }
    )


def write_table(tmp_path: Path, frame: pd.DataFrame, suffix: str) -> Path:
    path = tmp_path / f"cells{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_features_metadata_and_ids(tmp_path: Path, suffix: str) -> None:
    frame = cells_frame()
    path = write_table(tmp_path, frame, suffix)
    ds = open_dataset(str(path), meta_columns="batch")
    assert isinstance(ds, VectorDataset)
    assert ds.feature_names == ["gene_a", "gene_b"]
    expected = frame[["gene_a", "gene_b"]].to_numpy(dtype=np.float64)
    assert ds.dtype == np.float64 and np.array_equal(all_rows(ds), expected.astype(np.float32))
    assert ds.sample_ids == ["c1", "c2", "c3", "c4", "c5", "c6"]  # the id column
    assert ds.columns is not None
    assert list(ds.columns) == ["batch", "donor", "is_control", "cell_type"]
    assert ds.columns["batch"].kind == "numeric"  # --meta-columns: an int code, not a feature
    assert ds.columns["batch"].values.tolist() == [1, 2, 1, 2, 3, 3]
    assert ds.columns["is_control"].values.dtype == np.bool_
    assert ds.columns["donor"].categories == ("d1", "d2", "d3")
    # The default label: the metadata column named like a label.
    assert ds.label_key == "cell_type" and ds.label_names == ["B", "NK", "T"]
    assert ds.labels is not None and ds.labels.tolist() == [2, 0, 2, 1, 0, 2]

    without = open_dataset(str(path))  # batch is an integer column: a feature by default
    assert without.feature_names == ["gene_a", "gene_b", "batch"]

    by_donor = open_dataset(str(path), label_key="donor", meta_columns=["batch"])
    assert by_donor.label_key == "donor" and by_donor.label_names == ["d1", "d2", "d3"]
    by_batch = open_dataset(str(path), label_key="batch")  # a numeric label is metadata
    assert by_batch.feature_names == ["gene_a", "gene_b"]
    assert by_batch.label_names == ["1", "2", "3"]


def test_parquet_categoricals_and_index_ids(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "g1": np.arange(4, dtype=np.float32),
            "tissue": pd.Categorical(["lung", "gut", "lung", "gut"], categories=["lung", "gut"]),
        },
        index=pd.Index(["s1", "s2", "s3", "s4"], name="sample"),
    )
    frame.to_parquet(tmp_path / "t.parquet")
    ds = open_dataset(str(tmp_path / "t.parquet"))
    assert ds.sample_ids == ["s1", "s2", "s3", "s4"]
    assert ds.dtype == np.float32
    assert ds.columns is not None and ds.columns["tissue"].categories == ("lung", "gut")
    assert ds.label_key is None  # "tissue" is no label name


def test_table_feature_columns_by_list_and_glob(tmp_path: Path) -> None:
    path = write_table(tmp_path, cells_frame(), ".csv")
    globbed = open_dataset(str(path), feature_columns="gene_*")
    assert globbed.feature_names == ["gene_a", "gene_b"]
    assert globbed.columns is not None and "batch" in globbed.columns  # left out: metadata
    listed = open_dataset(str(path), feature_columns="batch, gene_a")
    assert listed.feature_names == ["gene_a", "batch"]  # file order


def test_table_ids_named_index_and_integer_labels(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("index,f1,f2,label\n10,1.5,2,0\n11,2.5,3,1\n12,0.5,1,1\n")
    ds = open_dataset(str(tmp_path / "t.csv"))
    assert ds.sample_ids == ["10", "11", "12"]
    # An integer column named like a label is the label, never a feature.
    assert ds.feature_names == ["f1", "f2"]
    assert ds.label_key == "label" and ds.label_names == ["0", "1"]


def test_table_subset_keeps_its_ids_and_says_which_rows(tmp_path: Path) -> None:
    path = write_table(tmp_path, cells_frame(), ".csv")
    ds = open_dataset(str(path), n=3, seed=1)
    rows = ds.sample_ids.rows  # what a resume check hashes, as for RowIds
    assert len(rows) == 3 and rows == sorted(rows)
    assert list(ds.sample_ids) == [f"c{r + 1}" for r in rows]
    assert np.array_equal(all_rows(ds)[:, 0], cells_frame()["gene_a"].to_numpy()[rows])


def test_table_string_column_with_unique_values_is_the_ids(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,f1,group\nalpha,1,x\nbeta,2,x\ngamma,3,y\n")
    ds = open_dataset(str(tmp_path / "t.csv"))
    assert ds.sample_ids == ["alpha", "beta", "gamma"]
    assert ds.columns is not None and list(ds.columns) == ["group"]


def test_table_errors(tmp_path: Path) -> None:
    path = write_table(tmp_path, cells_frame(), ".csv")
    assert error_line(preview(tmp_path, path, "--label-key", "tissue")) == (
        "Error: --label-key tissue: cells.csv has no column 'tissue'. Its columns: donor "
        "(categorical, 3), is_control (numeric), cell_type (categorical, 3)."
    )
    listing = (
        "cell_id (categorical, 6), gene_a (numeric), gene_b (numeric), batch (numeric), donor "
        "(categorical, 3), is_control (numeric), cell_type (categorical, 3)"
    )
    assert error_line(preview(tmp_path, path, "--feature-columns", "gene_a,gene_c")) == (
        f"Error: --feature-columns gene_c: cells.csv has no column 'gene_c'; its columns: "
        f"{listing}."
    )
    assert error_line(preview(tmp_path, path, "--feature-columns", "expr_*")) == (
        f"Error: --feature-columns expr_*: cells.csv has no column matching 'expr_*'; its "
        f"columns: {listing}."
    )
    assert error_line(preview(tmp_path, path, "--meta-columns", "age")) == (
        f"Error: --meta-columns age: cells.csv has no column 'age'; its columns: {listing}."
    )
    assert error_line(preview(tmp_path, path, "--feature-columns", "gene_a,donor")) == (
        "Error: --feature-columns: column 'donor' of cells.csv is text or categorical, not "
        "numeric; features must be numbers: leave it out, or encode it as numbers first."
    )
    assert error_line(preview(tmp_path, path, "--feature-columns", "is_control")) == (
        "Error: --feature-columns: column 'is_control' of cells.csv is bool, not numeric; "
        "features must be numbers: leave it out, or encode it as numbers first."
    )
    result = preview(tmp_path, path, "--feature-columns", "gene_*", "--meta-columns", "gene_b")
    assert error_line(result) == (
        "Error: column 'gene_b' of cells.csv is asked for as a feature (--feature-columns) and "
        "as metadata (--meta-columns or --label-key); choose one."
    )
    assert error_line(preview(tmp_path, path, "--labels", str(path))) == (
        f"Error: {path} is a CSV table: its labels are among its columns (choose one with "
        "--label-key); --labels, --data-key and --labels-key apply to .npz, .npy and HDF5 "
        "files."
    )


def test_table_without_numbers_or_with_missing_features(tmp_path: Path) -> None:
    (tmp_path / "words.csv").write_text("a,b\nx,y\nz,w\n")
    assert error_line(preview(tmp_path, tmp_path / "words.csv")) == (
        "Error: words.csv has no numeric column to use as features; its columns: a "
        "(categorical, 2), b (categorical, 2)."
    )
    (tmp_path / "gaps.csv").write_text("f1,f2,cell_type\n1,2,T\n,3,B\n4,,T\n5,6,B\n")
    assert error_line(preview(tmp_path, tmp_path / "gaps.csv")) == (
        "Error: gaps.csv: 2 of 4 rows hold NaN or infinite values; expected finite features; "
        "drop or impute those rows."
    )


def test_table_options_refused_elsewhere(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    assert error_line(preview(tmp_path, tmp_path / "x.npy", "--feature-columns", "a")) == (
        f"Error: --feature-columns applies to CSV and Parquet tables; {tmp_path / 'x.npy'} is "
        "an .npy array."
    )
    assert error_line(preview(tmp_path, tmp_path / "x.npy", "--layer", "counts")) == (
        f"Error: --layer applies to AnnData .h5ad files; {tmp_path / 'x.npy'} is an .npy array."
    )


# --------------------------------------------------------------------------- AnnData


def obs_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_type": pd.Categorical(["T", "B", "T", "NK"]),
            "batch": ["b1", "b2", "b1", "b2"],
            "n_counts": [10.0, 20.0, 15.0, 12.5],
        },
        index=["AAAC", "AAAG", "AACT", "AAGT"],
    )


def var_frame(f: int = 3) -> pd.DataFrame:
    return pd.DataFrame(index=[f"gene{i}" for i in range(f)])


def test_h5ad_dense_x_with_obs_columns(tmp_path: Path) -> None:
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    anndata.AnnData(X=x, obs=obs_frame(), var=var_frame()).write_h5ad(tmp_path / "a.h5ad")
    ds = open_dataset(str(tmp_path / "a.h5ad"))
    assert isinstance(ds, VectorDataset) and np.array_equal(all_rows(ds), x)
    assert ds.sample_ids == ["AAAC", "AAAG", "AACT", "AAGT"]
    assert ds.feature_names == ["gene0", "gene1", "gene2"]
    assert ds.columns is not None and list(ds.columns) == ["cell_type", "batch", "n_counts"]
    assert ds.columns["n_counts"].values.tolist() == [10.0, 20.0, 15.0, 12.5]
    assert ds.label_key == "cell_type" and ds.label_names == ["B", "NK", "T"]
    by_batch = open_dataset(str(tmp_path / "a.h5ad"), label_key="batch")
    assert by_batch.label_names == ["b1", "b2"] and by_batch[1]["label"] == 1


def test_h5ad_sparse_x_stays_sparse(tmp_path: Path) -> None:
    dense = np.array([[0, 3, 0], [1, 0, 0], [0, 0, 0], [2, 0, 5]], dtype=np.float32)
    adata = anndata.AnnData(X=sp.csr_matrix(dense), obs=obs_frame(), var=var_frame())
    adata.write_h5ad(tmp_path / "s.h5ad")
    ds = open_dataset(str(tmp_path / "s.h5ad"))
    assert isinstance(ds, VectorDataset) and is_sparse(ds.vectors)
    assert ds.vectors.format == "csr" and ds.vectors.nnz == 4
    assert np.array_equal(ds.rows(np.array([3, 0])), dense[[3, 0]])
    assert np.array_equal(ds[1]["image"], dense[1])
    assert "sparse" in describe(ds)


def test_h5ad_layer_and_its_errors(tmp_path: Path) -> None:
    counts = np.array([[1, 0, 2], [0, 5, 0], [3, 3, 3], [0, 0, 1]], dtype=np.int32)
    adata = anndata.AnnData(
        X=np.log1p(counts).astype(np.float32),
        obs=obs_frame(),
        var=var_frame(),
        layers={"counts": sp.csr_matrix(counts)},
    )
    adata.write_h5ad(tmp_path / "l.h5ad")
    ds = open_dataset(str(tmp_path / "l.h5ad"), layer="counts")
    assert isinstance(ds, VectorDataset) and is_sparse(ds.vectors)
    assert ds.dtype == np.int32 and np.array_equal(all_rows(ds), counts.astype(np.float32))
    assert error_line(preview(tmp_path, tmp_path / "l.h5ad", "--layer", "raw")) == (
        f"Error: --layer raw: {tmp_path / 'l.h5ad'} has no layer 'raw'; its layers: counts."
    )
    no_x = anndata.AnnData(obs=obs_frame(), var=var_frame(), layers={"counts": counts})
    no_x.write_h5ad(tmp_path / "nox.h5ad")
    assert error_line(preview(tmp_path, tmp_path / "nox.h5ad")) == (
        f"Error: {tmp_path / 'nox.h5ad'} has no X (the AnnData was saved without one); its "
        "layers: counts; choose one with --layer NAME."
    )


def test_h5ad_named_h5_is_still_anndata(tmp_path: Path) -> None:
    x = np.ones((4, 3), np.float32)
    anndata.AnnData(X=x, obs=obs_frame(), var=var_frame()).write_h5ad(tmp_path / "cells.h5")
    ds = open_dataset(str(tmp_path / "cells.h5"))
    assert ds.label_key == "cell_type" and ds.sample_ids[0] == "AAAC"


# --------------------------------------------------------------------------- --standardize


def test_standardize_gives_mean_0_std_1_and_constant_features_stay_0(tmp_path: Path) -> None:
    x = np.column_stack(
        [
            RNG.normal(1e4, 3.0, 200),  # a large mean: no cancellation in the statistics
            RNG.integers(0, 50, 200),
            np.full(200, 7.0),  # constant
        ]
    )
    np.save(tmp_path / "x.npy", x)
    ds = open_dataset(str(tmp_path / "x.npy"), standardize=True)
    assert isinstance(ds, VectorDataset) and ds.standardize is not None
    z = all_rows(ds).astype(np.float64)
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(z[:, :2].std(axis=0), 1.0, atol=1e-4)
    assert np.array_equal(z[:, 2], np.zeros(200))
    # rows() reads float32 before standardizing: 1e4 ± 3 keeps about 1e-3 / 3 of precision.
    assert np.allclose(z, StandardScaler().fit_transform(x), atol=2e-3)
    assert ds.dtype == np.float64  # stored as is; standardized as it is read


def test_standardize_a_subset_uses_the_subset(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(100, dtype=np.float64).reshape(50, 2))
    ds = open_dataset(str(tmp_path / "x.npy"), standardize=True, n=10, seed=1)
    z = all_rows(ds)
    assert np.allclose(z.mean(axis=0), 0.0, atol=1e-5) and np.allclose(z.std(axis=0), 1.0)


def test_feature_stats_of_sparse_equal_dense() -> None:
    dense = RNG.poisson(0.3, size=(300, 7)).astype(np.float64)
    mean, std = feature_stats(sp.csr_matrix(dense), block_rows=64)
    assert np.allclose(mean, dense.mean(axis=0)) and np.allclose(std, dense.std(axis=0))


def test_standardize_sparse_h5ad_keeps_it_sparse(tmp_path: Path) -> None:
    dense = RNG.poisson(1.0, size=(4, 3)).astype(np.float32)
    anndata.AnnData(X=sp.csr_matrix(dense), obs=obs_frame(), var=var_frame()).write_h5ad(
        tmp_path / "s.h5ad"
    )
    ds = open_dataset(str(tmp_path / "s.h5ad"), standardize=True)
    assert is_sparse(ds.vectors)
    assert np.allclose(all_rows(ds), StandardScaler().fit_transform(dense), atol=1e-5)


def test_standardize_refuses_images(tmp_path: Path) -> None:
    np.savez(tmp_path / "im.npz", images=np.zeros((2, 8, 8), np.uint8))
    assert error_line(preview(tmp_path, tmp_path / "im.npz", "--standardize")) == (
        "Error: im.npz:images: holds images; --standardize applies to vector data (N × F "
        "features); to scale images for a model use embed --normalize."
    )
    assert error_line(preview(tmp_path, "synthetic", "--standardize", "--n", "8")) == (
        "Error: synthetic: holds images; --standardize applies to vector data (N × F "
        "features); to scale images for a model use embed --normalize."
    )


# --------------------------------------------------------------------------- synthetic vectors


@pytest.mark.parametrize("counts", [False, True])
def test_synthetic_vectors_shapes_names_and_determinism(counts: bool) -> None:
    a = generate_synthetic_vectors(401, n_features=30, seed=4, counts=counts)
    b = generate_synthetic_vectors(401, n_features=30, seed=4, counts=counts)
    c = generate_synthetic_vectors(401, n_features=30, seed=5, counts=counts)
    assert a.vectors.shape == (401, 30) and a.factors.shape == (401, len(FACTOR_NAMES))
    assert a.vectors.dtype == (np.int32 if counts else np.float32)
    assert np.array_equal(a.vectors, b.vectors) and np.array_equal(a.factors, b.factors)
    assert not np.array_equal(a.vectors, c.vectors)
    assert a.label_names == LABEL_NAMES and a.batch_names == BATCH_NAMES
    assert a.factor_names == FACTOR_NAMES and a.feature_names[:2] == ["gene_01", "gene_02"]
    assert np.bincount(a.labels).tolist() == [101, 100, 100, 100]  # balanced
    assert np.bincount(a.batch).tolist() == [134, 134, 133]
    assert np.array_equal(a.factors[:, 0], a.batch)
    if counts:
        assert a.vectors.min() >= 0 and 0.05 < np.mean(a.vectors == 0) < 0.6


@pytest.mark.parametrize("counts", [False, True])
def test_synthetic_modality_and_batch_are_readable(counts: bool) -> None:
    d = generate_synthetic_vectors(1600, seed=0, counts=counts)
    x = StandardScaler().fit_transform(d.vectors.astype(np.float64))
    for target in (d.labels, d.batch):
        train, test = train_test_split(np.arange(len(x)), test_size=0.25, random_state=0)
        probe = LogisticRegression(max_iter=2000).fit(x[train], target[train])
        assert probe.score(x[test], target[test]) > 0.9


def test_synthetic_nuisance_carries_more_variance_than_the_modality() -> None:
    # The share of the feature variance explained by the groups' means (between-group
    # variance over total): the modality is substantial but the nuisance factors together
    # carry more, so a plain VAE has reason to mix them.
    d = generate_synthetic_vectors(4000, seed=0)
    x = StandardScaler().fit_transform(d.vectors.astype(np.float64))

    def explained(design: np.ndarray) -> float:
        design = np.column_stack([design, np.ones(len(x))])
        coef, *_ = np.linalg.lstsq(design, x, rcond=None)
        return 1.0 - float((x - design @ coef).var(axis=0).sum() / x.var(axis=0).sum())

    modality = explained(np.eye(4)[d.labels])
    nuisance = explained(np.column_stack([np.eye(3)[d.batch], d.factors[:, 1:5]]))
    assert 0.15 < modality < 0.35 and 0.35 < nuisance < 0.6 and nuisance > modality


def test_synthetic_structure_is_shared_across_seeds() -> None:
    means = [
        np.stack([d.vectors[d.labels == k].mean(axis=0) for k in range(4)])
        for d in (generate_synthetic_vectors(2000, seed=s) for s in (0, 1))
    ]
    assert np.corrcoef(means[0].ravel(), means[1].ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    ("name", "dtype"), [("synthetic-vectors", np.float32), ("synthetic-counts", np.int32)]
)
def test_builtin_synthetic_vector_sources(name: str, dtype: type) -> None:
    ds = open_dataset(name)
    assert isinstance(ds, VectorDataset) and (len(ds), ds.n_features) == (4000, 50)
    assert ds.dtype == dtype and ds.label_key == "modality" and ds.label_names == LABEL_NAMES
    assert ds.factor_names == FACTOR_NAMES and ds.feature_names is not None
    assert ds.columns is not None and list(ds.columns) == ["modality", "batch"]
    assert ds.columns["batch"].categories == tuple(BATCH_NAMES)
    direct = generate_synthetic_vectors(4000, seed=0, counts=name == "synthetic-counts")
    assert np.array_equal(all_rows(ds), direct.vectors.astype(np.float32))
    small = open_dataset(name, n=40, seed=2, label_key="batch")
    assert len(small) == 40 and small.label_key == "batch" and small.label_names == BATCH_NAMES


# --------------------------------------------------------------------------- data synth --vectors


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("counts", [False, True])
def test_synth_vectors_round_trip(tmp_path: Path, suffix: str, counts: bool) -> None:
    out = tmp_path / f"v{suffix}"
    args = ["data", "synth", str(out), "--vectors", "--n", "40", "--features", "12"]
    result = CliRunner().invoke(cli, [*args, "--seed", "3", *(["--counts"] if counts else [])])
    assert result.exit_code == 0, result.output
    what = "counts (int32)" if counts else "vectors (float32)"
    assert result.stdout == (
        f"wrote {out}: 40 × 12 {what}, labels t_cell, b_cell, monocyte, fibroblast; columns "
        f"modality, batch; factors {', '.join(FACTOR_NAMES)}\n"
    )
    direct = generate_synthetic_vectors(40, n_features=12, seed=3, counts=counts)
    ds = open_dataset(str(out))
    assert isinstance(ds, VectorDataset) and ds.dtype == direct.vectors.dtype
    assert np.array_equal(all_rows(ds), direct.vectors.astype(np.float32))
    assert ds.labels is not None and np.array_equal(ds.labels, direct.labels)
    assert ds.label_key == "modality" and ds.label_names == LABEL_NAMES
    assert ds.factors is not None and np.array_equal(ds.factors, direct.factors)
    assert ds.factor_names == FACTOR_NAMES and ds.feature_names == direct.feature_names
    assert ds.columns is not None and list(ds.columns) == ["modality", "batch"]
    assert np.array_equal(ds.columns["batch"].values, direct.batch)
    by_batch = open_dataset(str(out), label_key="batch")
    assert by_batch.label_names == BATCH_NAMES
    assert by_batch.labels is not None and np.array_equal(by_batch.labels, direct.batch)


def test_synth_vector_options_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["data", "synth", str(tmp_path / "v.npz"), "--vectors", "--size", "32"]
    )
    assert error_line(result) == "Error: --size and --channels apply to images, not --vectors."
    result = runner.invoke(cli, ["data", "synth", str(tmp_path / "v.npz"), "--counts"])
    assert error_line(result) == "Error: --counts and --features apply with --vectors."
    result = runner.invoke(
        cli, ["data", "synth", str(tmp_path / "v.npz"), "--vectors", "--features", "2"]
    )
    assert error_line(result) == "Error: the number of features must be 8 … 100,000; got 2."


# --------------------------------------------------------------------------- data preview


def test_preview_of_vectors_writes_a_png(tmp_path: Path) -> None:
    result = preview(tmp_path, "synthetic-vectors", "--n", "200")
    assert result.exit_code == 0, result.output
    png = tmp_path / "preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout == (
        f"wrote {png}: vectors: 200 × 50 (float32), 4 labels (t_cell, b_cell, monocyte, "
        "fibroblast), 7 factors; columns: modality (categorical, 4), batch (categorical, 3); "
        "label: modality\n"
    )


def test_preview_of_wide_unlabelled_vectors(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", RNG.normal(size=(30, 150)).astype(np.float32))
    result = preview(tmp_path, tmp_path / "wide.npy", "--standardize")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote {tmp_path / 'preview.png'}: vectors: 30 × 150 (float32, standardized)\n"
    )


def test_heatmap_keeps_the_features_that_vary_most() -> None:
    score = np.arange(100.0)[::-1]  # feature 0 varies most
    cols, _ = _choose_features(score, "most variable")
    assert cols.tolist() == list(range(MAX_FEATURES))
    few, _ = _choose_features(np.ones(10), "most variable")
    assert few.tolist() == list(range(10))
