"""Data sources pass every metadata column (ImageDataset.columns), not just one label: CSV
labels tables, folder levels, stored labels, synthetic and digits; ``label_key`` /
``--label-key`` choose which column is the label."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from latentdiag.cli import cli
from latentdiag.columns import Column
from latentdiag.data import ImageDataset, open_dataset
from latentdiag.data.folder import FolderDataset
from latentdiag.errors import DataError


def check_columns(ds: ImageDataset) -> None:
    """One value per item in every column; the label column is exactly labels / label_names."""
    assert ds.columns is not None
    for name, col in ds.columns.items():
        assert isinstance(col, Column) and col.name == name
        assert len(col) == len(ds)
    assert ds.label_key is not None
    label = ds.columns[ds.label_key]
    assert label.is_categorical and label.n_missing == 0
    assert list(label.categories or ()) == ds.label_names
    items = np.array([ds[i]["label"] for i in range(len(ds))])
    np.testing.assert_array_equal(label.values, items)
    np.testing.assert_array_equal(label.values, ds.labels)  # type: ignore[attr-defined]


def npy(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "im.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (n, 4, 4), dtype=np.uint8))
    return path


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(path)
    return path


def preview(tmp_path: Path, source: Path | str, *args: str) -> Result:
    out = tmp_path / "grid.png"
    return CliRunner().invoke(cli, ["data", "preview", str(source), "-o", str(out), *args])


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- CSV tables

TABLE = """filename,site,class,age,score
img0.png,site_10,tumor,34,0.5
img1.png,site_2,normal,40,1.25
img2.png,site_2,tumor,51,
img3.png,site_1,normal,23,3.0
"""


def test_csv_with_header_reads_every_column(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    ds = open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"))
    assert ds.columns is not None
    assert list(ds.columns) == ["filename", "site", "class", "age", "score"]
    site = ds.columns["site"]
    assert site.kind == "categorical"
    assert site.categories == ("site_1", "site_2", "site_10")  # natural order
    assert site.values.tolist() == [2, 1, 1, 0]
    age = ds.columns["age"]
    assert age.kind == "numeric" and age.values.dtype == np.int64
    assert age.values.tolist() == [34, 40, 51, 23]
    score = ds.columns["score"]
    assert score.kind == "numeric" and score.values.dtype == np.float64
    np.testing.assert_array_equal(score.values, [0.5, 1.25, np.nan, 3.0])
    assert score.n_missing == 1  # an empty field
    # The default label: the first column named like a label ("class"), not the last.
    assert ds.label_key == "class"
    assert ds.label_names == ["normal", "tumor"]
    assert [ds[i]["label"] for i in range(4)] == [1, 0, 1, 0]
    check_columns(ds)


def test_csv_header_found_by_the_sniffer_and_last_column_is_the_label(tmp_path: Path) -> None:
    # No field is a label name; csv.Sniffer sees "site" / "grade" above values of another
    # kind and length, so the first line is a header, and the last column is the label.
    (tmp_path / "lab.csv").write_text("site,grade\nA,0\nB,1\nA,1\nB,0\nA,0\n")
    ds = open_dataset(str(npy(tmp_path, 5)), labels=str(tmp_path / "lab.csv"))
    assert ds.columns is not None and list(ds.columns) == ["site", "grade"]
    assert ds.label_key == "grade" and ds.label_names == ["0", "1"]
    assert ds.columns["site"].categories == ("A", "B")
    check_columns(ds)


def test_headerless_csv_with_several_columns(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text("a.png,A,7,1\nb.png,B,8,0\nc.png,A,9,1\n")
    ds = open_dataset(str(npy(tmp_path, 3)), labels=str(tmp_path / "lab.csv"))
    assert ds.columns is not None
    assert list(ds.columns) == ["column1", "column2", "column3", "column4"]
    assert ds.columns["column1"].categories == ("a.png", "b.png", "c.png")
    assert ds.columns["column3"].kind == "numeric"
    assert ds.columns["column3"].values.tolist() == [7, 8, 9]
    assert ds.label_key == "column4" and ds.label_names == ["0", "1"]
    assert [ds[i]["label"] for i in range(3)] == [1, 0, 1]
    check_columns(ds)


def test_single_headerless_column_is_named_label(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text("normal\ntumor\ntumor\ntumor\n")
    ds = open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"))
    # Not a header although its length differs from the rest: one column has a header only
    # when it is a label name.
    assert ds.columns is not None and list(ds.columns) == ["label"]
    assert ds.label_key == "label" and ds.label_names == ["normal", "tumor"]
    check_columns(ds)


def test_label_key_chooses_another_column(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    ds = open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"), label_key="site")
    assert ds.label_key == "site"
    assert ds.label_names == ["site_1", "site_2", "site_10"]
    assert [ds[i]["label"] for i in range(4)] == [2, 1, 1, 0]
    assert ds.columns is not None and ds.columns["class"].categories == ("normal", "tumor")
    check_columns(ds)


def test_numeric_label_key_is_grouped_by_value(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text("id,dose\na,2.5\nb,10\nc,2.5\nd,0.5\n")
    ds = open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"), label_key="dose")
    assert ds.label_names == ["0.5", "2.5", "10"]
    assert [ds[i]["label"] for i in range(4)] == [1, 2, 1, 0]
    assert ds.columns is not None and ds.columns["dose"].is_categorical
    check_columns(ds)


def test_numeric_label_key_with_too_many_values_asks_for_bins(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 0.1:.1f}" for i in range(51))
    (tmp_path / "lab.csv").write_text("id,dose\n" + rows + "\n")
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 51)), labels=str(tmp_path / "lab.csv"), label_key="dose")
    assert str(err.value) == (
        "--label-key dose: column 'dose' of im.npy with labels lab.csv is numeric with 51 "
        "distinct values, too many to group by (at most 50); bin it into a few classes first "
        "(e.g. pandas.cut) or choose a categorical column."
    )


def test_unknown_label_key_lists_the_columns(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"), label_key="Age")
    assert str(err.value) == (
        "--label-key Age: im.npy with labels lab.csv has no column 'Age'. Did you mean 'age'? "
        "Its columns: filename (categorical, 4), site (categorical, 3), class (categorical, 2), "
        "age (numeric), score (numeric)."
    )


def test_label_key_with_missing_values_says_how_many(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"), label_key="score")
    assert str(err.value).startswith(
        "--label-key score: 1 of 4 rows of im.npy with labels lab.csv have no value"
    )


def test_default_label_with_an_empty_field_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text("filename,label\na.png,x\nb.png,\nc.png,y\n")
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 3)), labels=str(tmp_path / "lab.csv"))
    assert str(err.value) == (
        "im.npy with labels lab.csv: 1 of 3 images have no label (an empty field in column "
        "'label'); give every image a label, or choose another column as the label "
        "(--label-key)."
    )


def test_csv_of_another_length_names_both_counts(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 5)), labels=str(tmp_path / "lab.csv"))
    assert str(err.value) == (
        "im.npy with labels lab.csv: 4 labels for 5 images; expected one label per image; "
        "check that the labels belong to these images."
    )


def test_csv_lines_with_another_number_of_fields(tmp_path: Path) -> None:
    path = tmp_path / "lab.csv"
    path.write_text("filename,label\na.png,x\nb.png\n")
    with pytest.raises(DataError) as err:
        open_dataset(str(npy(tmp_path, 2)), labels=str(path))
    assert str(err.value) == (
        f"labels file {path}: line 3 has 1 field but line 1 has 2; every line needs the same "
        "columns (quote fields that hold a comma)."
    )


def test_tsv_with_a_pandas_index_column(tmp_path: Path) -> None:
    (tmp_path / "lab.tsv").write_text("\tlabel\tsite\n0\tb\tX\n1\ta\tY\n")
    ds = open_dataset(str(npy(tmp_path, 2)), labels=str(tmp_path / "lab.tsv"))
    assert ds.columns is not None and list(ds.columns) == ["column1", "label", "site"]
    assert ds.label_key == "label" and ds.label_names == ["a", "b"]
    check_columns(ds)


def test_subset_keeps_each_rows_values(tmp_path: Path) -> None:
    rows = "\n".join(f"img{i}.png,{i % 3},{i * 10}" for i in range(12))
    (tmp_path / "lab.csv").write_text("filename,label,dose\n" + rows + "\n")
    ds = open_dataset(str(npy(tmp_path, 12)), labels=str(tmp_path / "lab.csv"), n=5, seed=3)
    assert len(ds) == 5 and ds.columns is not None
    for i in range(5):
        row = int(ds[i]["sample_id"].split("[")[1].rstrip("]"))  # im.npy[row]
        assert ds.columns["dose"].values[i] == row * 10
        fname = ds.columns["filename"]
        assert fname.categories is not None
        assert fname.categories[fname.values[i]] == f"img{row}.png"
        assert ds[i]["label"] == row % 3
    check_columns(ds)


def test_lazy_npy_carries_the_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import latentdiag.data.arrays as arrays

    monkeypatch.setattr(arrays, "IN_MEMORY_BYTES", 10)
    (tmp_path / "lab.csv").write_text(TABLE)
    ds = open_dataset(str(npy(tmp_path, 4)), labels=str(tmp_path / "lab.csv"), label_key="site")
    assert isinstance(ds, arrays.LazyArrayDataset)
    assert ds.columns is not None and ds.label_key == "site"
    check_columns(ds)


# --------------------------------------------------------------------------- stored labels


def test_npz_and_hdf5_labels_are_one_column_named_label(tmp_path: Path) -> None:
    images = np.zeros((4, 4, 4), np.uint8)
    np.savez(tmp_path / "x.npz", images=images, labels=np.array([1, 0, 1, 1]))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["images"] = images
        f["labels"] = np.array([0, 1, 1, 0])
    for name in ("x.npz", "x.h5"):
        for key in (None, "label"):
            ds = open_dataset(str(tmp_path / name), label_key=key)
            assert ds.columns is not None and list(ds.columns) == ["label"]
            assert ds.label_key == "label" and ds.label_names == ["0", "1"]
            check_columns(ds)


def test_label_key_of_a_source_without_that_column(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]))
    with pytest.raises(DataError) as err:
        open_dataset(str(tmp_path / "x.npz"), label_key="site")
    assert str(err.value) == (
        "--label-key site: x.npz:images has no column 'site'. Its columns: label (categorical, 2)."
    )
    np.save(tmp_path / "bare.npy", np.zeros((2, 4, 4), np.uint8))
    assert open_dataset(str(tmp_path / "bare.npy")).columns is None
    with pytest.raises(DataError) as err:
        open_dataset(str(tmp_path / "bare.npy"), label_key="label")
    assert str(err.value) == (
        "--label-key label: bare.npy has no column 'label'. Its columns: none."
    )


# --------------------------------------------------------------------------- folders


def sites_folder(tmp_path: Path, *, shallow: bool) -> Path:
    root = tmp_path / "scans"
    for rel in ("oct/site_A/a.png", "oct/site_B/b.png", "xray/site_A/c.png"):
        png(root / rel)
    if shallow:
        png(root / "xray" / "d.png")
    return root


def test_folder_levels_become_columns(tmp_path: Path) -> None:
    ds = open_dataset(str(sites_folder(tmp_path, shallow=True)))
    assert isinstance(ds, FolderDataset)
    assert ds.columns is not None and list(ds.columns) == ["label", "level2"]
    assert ds.paths == [
        "oct/site_A/a.png",
        "oct/site_B/b.png",
        "xray/d.png",
        "xray/site_A/c.png",
    ]
    assert ds.label_key == "label" and ds.label_names == ["oct", "xray"]
    level2 = ds.columns["level2"]
    assert level2.categories == ("site_A", "site_B")
    assert level2.values.tolist() == [0, 1, -1, 0]  # xray/d.png lies at level 1 only
    check_columns(ds)


def test_folder_with_one_level_has_no_level_columns(tmp_path: Path) -> None:
    png(tmp_path / "f" / "a" / "1.png")
    png(tmp_path / "f" / "b" / "2.png")
    ds = open_dataset(str(tmp_path / "f"))
    assert ds.columns is not None and list(ds.columns) == ["label"]
    check_columns(ds)


def test_unlabelled_folder_has_no_columns(tmp_path: Path) -> None:
    png(tmp_path / "f" / "1.png")
    ds = open_dataset(str(tmp_path / "f"))
    assert ds.columns is None and ds.label_key is None


def test_folder_label_key_level2(tmp_path: Path) -> None:
    ds = open_dataset(str(sites_folder(tmp_path, shallow=False)), label_key="level2")
    assert ds.label_key == "level2" and ds.label_names == ["site_A", "site_B"]
    assert [ds[i]["label"] for i in range(3)] == [0, 1, 0]
    assert ds.columns is not None and ds.columns["label"].values.tolist() == [0, 0, 1]
    check_columns(ds)


def test_folder_label_key_with_images_less_deep(tmp_path: Path) -> None:
    root = sites_folder(tmp_path, shallow=True)
    with pytest.raises(DataError) as err:
        open_dataset(str(root), label_key="level2")
    assert str(err.value).startswith(
        f"--label-key level2: 1 of 4 rows of {root} have no value (NaN) in column 'level2'"
    )


def test_folder_subset_and_skipped_files_keep_columns_aligned(tmp_path: Path) -> None:
    root = tmp_path / "f"
    for label in ("a", "b"):
        for site in ("s1", "s2", "s3"):
            for k in range(2):
                png(root / label / site / f"{k}.png")
    (root / "a" / "s2" / "bad.png").write_bytes(b"not a png")  # skipped: unreadable
    with pytest.warns(UserWarning):
        ds = open_dataset(str(root), n=9, seed=1)
    assert isinstance(ds, FolderDataset)
    assert len(ds) <= 9 and ds.columns is not None
    for i, rel in enumerate(ds.paths):
        label, site, _ = rel.split("/")
        col = ds.columns["level2"]
        assert col.categories is not None and col.categories[col.values[i]] == site
        assert ds.label_names is not None and ds.label_names[ds[i]["label"]] == label
    check_columns(ds)


# --------------------------------------------------------------------------- built-in


def test_synthetic_and_digits_columns() -> None:
    syn = open_dataset("synthetic", n=8)
    assert syn.columns is not None and list(syn.columns) == ["modality"]
    assert syn.label_key == "modality"
    assert syn.columns["modality"].categories == (
        "chest_xray",
        "oct",
        "pathology",
        "dermatoscopy",
    )
    check_columns(syn)
    digits = open_dataset("digits", n=20, label_key="digit")
    assert digits.columns is not None and list(digits.columns) == ["digit"]
    assert digits.label_key == "digit" and digits.label_names == [str(d) for d in range(10)]
    check_columns(digits)
    with pytest.raises(DataError) as err:
        open_dataset("synthetic", n=8, label_key="label")
    assert str(err.value) == (
        "--label-key label: the synthetic data has no column 'label'. Its columns: modality "
        "(categorical, 4)."
    )


def test_subset_view_keeps_the_parents_columns() -> None:
    ds = open_dataset("digits", n=10)
    sub = ds.subset([3, 1])
    assert sub.columns is ds.columns and sub.label_key == "digit"
    assert sub[0]["index"] == 3


# --------------------------------------------------------------------------- command line


def test_preview_lists_the_columns_and_takes_label_key(tmp_path: Path) -> None:
    root = sites_folder(tmp_path, shallow=False)
    result = preview(tmp_path, root, "--label-key", "level2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"wrote {tmp_path / 'grid.png'}: 3 images 1×8×8, 2 labels (site_A, site_B); columns: "
        "label (categorical, 2), level2 (categorical, 2); label: level2"
    )


def test_preview_with_an_unknown_label_key(tmp_path: Path) -> None:
    (tmp_path / "lab.csv").write_text(TABLE)
    result = preview(tmp_path, npy(tmp_path, 4), "--labels", str(tmp_path / "lab.csv"),
                     "--label-key", "donor")  # fmt: skip
    assert error_line(result) == (
        "Error: --label-key donor: im.npy with labels lab.csv has no column 'donor'. Its "
        "columns: filename (categorical, 4), site (categorical, 3), class (categorical, 2), "
        "age (numeric), score (numeric)."
    )


def test_train_config_carries_label_key(tmp_path: Path) -> None:
    from reference_models.config import DataConfig, config_for_command, config_from_dict
    from reference_models.data import open_source

    cfg = config_for_command(
        model="baseline",
        out_dir=tmp_path / "run",
        resume=False,
        options={"data.source": str(sites_folder(tmp_path, shallow=False)),
                 "data.label_key": "level2", "data.size": 16},
    )  # fmt: skip
    assert cfg.data.label_key == "level2"
    ds = open_source(cfg.data, seed=0)
    assert ds.label_key == "level2" and ds.label_names == ["site_A", "site_B"]
    # A config saved before the field existed still loads, with the source's own label.
    old = cfg.to_dict()
    del old["data"]["label_key"]
    assert config_from_dict(old).data == DataConfig(source=cfg.data.source, size=16)


def test_train_with_an_unknown_label_key(tmp_path: Path) -> None:
    root = sites_folder(tmp_path, shallow=False)
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "baseline", "--data", str(root), "--label-key", "site",
         "--size", "16", "--device", "cpu", "--quiet", "-o", str(tmp_path / "run")],
    )  # fmt: skip
    assert error_line(result) == (
        f"Error: --label-key site: {root} has no column 'site'. Its columns: label "
        "(categorical, 2), level2 (categorical, 2)."
    )


def test_train_with_label_key_trains_on_that_column(tmp_path: Path) -> None:
    from latentdiag.store import LatentStore

    rng = np.random.default_rng(0)
    np.save(tmp_path / "images.npy", rng.integers(0, 256, (96, 16, 16), dtype=np.uint8))
    rows = "\n".join(f"img{i}.png,{i % 2},site_{i % 3}" for i in range(96))
    (tmp_path / "meta.csv").write_text("filename,label,site\n" + rows + "\n")
    result = CliRunner().invoke(
        cli,
        ["train", "--model", "baseline", "--data", str(tmp_path / "images.npy"),
         "--set", f"data.labels={tmp_path / 'meta.csv'}", "--label-key", "site",
         "--epochs", "1", "--n-images", "96", "--size", "16", "--batch-size", "16",
         "--device", "cpu", "--set", "model.base_channels=8", "--quiet",
         "-o", str(tmp_path / "run")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with LatentStore(tmp_path / "run" / "latents.h5") as store:
        assert store.label_names == ["site_0", "site_1", "site_2"]
