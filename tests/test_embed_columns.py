"""embed writes every metadata column of the data, and AnnData when OUT is .h5ad."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from test_embed import ItemsOnly, make_data, module_runner, stop_after

from latentdiag.columns import categorical_column, column_from_values
from latentdiag.data.base import ArrayDataset
from latentdiag.embed import embed
from latentdiag.store import LatentStore, open_latents, partial_path

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

N = 150


def with_columns(data: ArrayDataset) -> ArrayDataset:
    """The test data with the label as a column, a site with a gap and a numeric dose."""
    assert data.labels is not None and data.label_names is not None
    rng = np.random.default_rng(5)
    site = np.array(["site_A", "site_B", "site_C"], dtype=object)[rng.integers(0, 3, len(data))]
    site[3] = None
    data.columns = {
        "modality": categorical_column("modality", data.labels, data.label_names),
        "site": column_from_values("site", site),
        "dose": column_from_values("dose", rng.random(len(data))),
    }
    data.label_key = "modality"
    return data


@pytest.mark.parametrize("items", [False, True])
def test_embed_writes_every_column(tmp_path: Path, items: bool) -> None:
    data = with_columns(make_data())
    source = ItemsOnly(data) if items else data
    if items:
        source.columns, source.label_key = data.columns, data.label_key
    out = tmp_path / "z.h5"
    embed(module_runner(), source, out, batch_size=16, block_rows=32)
    with LatentStore(out) as s:
        assert list(s.columns) == ["modality", "site", "dose"]
        assert s.label_key == "modality" and s.label_names == data.label_names
        np.testing.assert_array_equal(s.labels, data.labels)
        np.testing.assert_array_equal(s.columns["site"].values, data.columns["site"].values)
        np.testing.assert_array_equal(s.columns["dose"].values, data.columns["dose"].values)
        assert s.columns["site"].n_missing == 1


def test_embed_a_shard_picks_its_rows_of_each_column(tmp_path: Path) -> None:
    data = with_columns(make_data())
    out = tmp_path / "part.h5"
    embed(module_runner(), data, out, batch_size=16, shard=(1, 3))
    with LatentStore(out) as s:
        rows = s.index
        np.testing.assert_array_equal(rows, np.arange(1, N, 3))
        np.testing.assert_array_equal(s.columns["dose"].values, data.columns["dose"].values[rows])


def test_embed_to_h5ad(tmp_path: Path) -> None:
    data = with_columns(make_data())
    out = tmp_path / "z.h5ad"
    opts = {"batch_size": 16, "block_rows": 32}
    with pytest.raises(KeyboardInterrupt):
        embed(module_runner(), data, out, progress=stop_after(80), **opts)
    assert not out.exists() and partial_path(out).exists()  # the .partial is a latents file
    result = embed(module_runner(), data, out, **opts)
    assert result.resumed_rows == 64
    assert out.exists() and not partial_path(out).exists()
    embed(module_runner(), data, tmp_path / "whole.h5", **opts)
    adata = ad.read_h5ad(out)
    with LatentStore(tmp_path / "whole.h5") as whole:
        np.testing.assert_array_equal(adata.obsm["X_latent"], whole.mu)
        np.testing.assert_array_equal(adata.obsm["latent_logvar"], whole.logvar)
        assert list(adata.obs_names) == [str(s) for s in whole.sample_ids]
    assert list(adata.obs["modality"].cat.categories) == data.label_names
    assert adata.obs["site"].isna().sum() == 1
    with open_latents(out) as s:
        assert s.label_key == "modality"
        assert s.provenance["job_id"]
        np.testing.assert_array_equal(s.labels, data.labels)
