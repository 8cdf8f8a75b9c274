"""embed on vector data: a user's MLP VAE on standardized features, through a factory and ONNX."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from latentdiag.data.vectors import VectorDataset, feature_stats
from latentdiag.embed import embed
from latentdiag.errors import ConfigError, ModelError
from latentdiag.runners import open_runner
from latentdiag.store import LatentStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N, F, D = 300, 50, 8

MLPVAE = textwrap.dedent(
    '''
    """A user's tabular VAE, written the usual way: encode(x) -> (mu, logvar)."""
    import torch
    from torch import nn


    class MLPVAE(nn.Module):
        def __init__(self, n_features: int = 50, latent: int = 8, hidden: int = 64) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
            self.mu = nn.Linear(hidden, latent)
            self.logvar = nn.Linear(hidden, latent)
            self.dec = nn.Sequential(
                nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_features)
            )

        def encode(self, x):
            h = self.body(x)
            return self.mu(h), self.logvar(h)

        def forward(self, x):
            mu, logvar = self.encode(x)
            return self.dec(mu), mu, logvar


    def build(n_features: int = 50, latent: int = 8) -> MLPVAE:
        torch.manual_seed(0)
        return MLPVAE(n_features, latent)
    '''
)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory):
    """The module importable as ``tabular_vae``, its weights, and an ONNX export."""
    folder = tmp_path_factory.mktemp("tabular")
    (folder / "tabular_vae.py").write_text(MLPVAE)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(folder))
    module = importlib.import_module("tabular_vae")
    model = module.build().eval()
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(folder / "vae.safetensors"))

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = model

        def forward(self, x):
            return self.vae.encode(x)

    onnx_path = folder / "encoder.onnx"
    torch.onnx.export(
        Encoder().eval(),
        (torch.zeros(2, F),),
        str(onnx_path),
        dynamo=False,
        input_names=["features"],
        output_names=["mu", "logvar"],
        dynamic_axes={"features": {0: "b"}, "mu": {0: "b"}, "logvar": {0: "b"}},
        opset_version=17,
    )
    yield module, model, folder
    mp.undo()


def features(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardized-looking features (negative values, far outside [0, 1]) and 3 labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, N)
    x = rng.normal(size=(N, F)) * 3.0 + labels[:, None] * 2.0 - 4.0
    return x.astype(np.float32), labels


def dataset(x: np.ndarray, labels: np.ndarray, **kw) -> VectorDataset:
    return VectorDataset(x, labels=labels, label_names=["a", "b", "c"], source="cells.npy", **kw)


def own_encode(model: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(x))
    return mu.numpy(), logvar.numpy()


@pytest.mark.parametrize("route", ["factory", "onnx", "module"])
def test_mlp_vae_on_vectors_equals_its_own_encode(tabular, tmp_path: Path, route: str) -> None:
    _, model, folder = tabular
    x, labels = features()
    if route == "factory":
        runner = open_runner("tabular_vae:build", weights=folder / "vae.safetensors", device="cpu")
    elif route == "onnx":
        runner = open_runner(folder / "encoder.onnx", device="cpu")
    else:
        runner = open_runner(model, device="cpu", name="mlp")
    out = tmp_path / f"{route}.h5"
    embed(runner, dataset(x, labels), out, batch_size=64)
    want_mu, want_lv = own_encode(model, x)
    with LatentStore(out) as s:
        np.testing.assert_allclose(s.mu, want_mu, atol=1e-5)
        np.testing.assert_allclose(s.logvar, want_lv, atol=1e-5)
        np.testing.assert_array_equal(s.labels, labels)
        prep = s.provenance["preprocessing"]
        assert prep == {"input": "vectors", "features": F, "dtype": "float32", "standardize": False}
        assert s.provenance["input"]["layout"] == "flat"


def test_standardized_vectors_and_sparse_rows(tabular, tmp_path: Path) -> None:
    import scipy.sparse as sp

    _, model, _ = tabular
    rng = np.random.default_rng(1)
    counts = sp.random(N, F, density=0.2, format="csr", random_state=1, dtype=np.float32)
    counts.data = np.round(counts.data * 20)
    labels = rng.integers(0, 3, N)
    mean, std = feature_stats(counts)
    ds = dataset(counts, labels, standardize=(mean, std))
    out = tmp_path / "z.h5"
    embed(open_runner(model, device="cpu", name="mlp"), ds, out, batch_size=50, block_rows=100)
    dense = counts.toarray()
    want, _ = own_encode(model, ((dense - mean) / std).astype(np.float32))
    with LatentStore(out) as s:
        np.testing.assert_allclose(s.mu, want, atol=1e-5)
        assert s.provenance["preprocessing"]["standardize"] is True


def test_vectors_read_one_by_one_give_the_same_file(tabular, tmp_path: Path) -> None:
    _, model, _ = tabular
    x, labels = features()
    embed(open_runner(model, device="cpu", name="m"), dataset(x, labels), tmp_path / "a.h5")
    embed(
        open_runner(model, device="cpu", name="m"),
        dataset(x, labels),
        tmp_path / "b.h5",
        workers=1,
    )
    with LatentStore(tmp_path / "a.h5") as a, LatentStore(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(a.mu, b.mu)


def test_wrong_width_says_what_the_model_takes(tabular, tmp_path: Path) -> None:
    _, _, folder = tabular
    x, labels = features()
    with pytest.raises(ModelError) as err:
        embed(open_runner(folder / "encoder.onnx", device="cpu"), dataset(x[:, :40], labels),
              tmp_path / "z.h5")  # fmt: skip
    assert str(err.value) == (
        "model input 'features' expects (B, 50), but the data has 40 features per row; give "
        "data with 50 features (or choose them with --feature-columns)."
    )


def test_an_image_model_refuses_vectors(tmp_path: Path) -> None:
    from test_embed import Encoder

    onnx_path = tmp_path / "img.onnx"
    torch.onnx.export(
        Encoder().eval(), (torch.rand(2, 1, 16, 16),), str(onnx_path), dynamo=False,
        input_names=["x"], output_names=["mu", "logvar"], dynamic_axes={"x": {0: "b"}},
        opset_version=17,
    )  # fmt: skip
    x, labels = features()
    with pytest.raises(ModelError) as err:
        embed(open_runner(onnx_path, device="cpu"), dataset(x, labels), tmp_path / "z.h5")
    assert str(err.value) == (
        "model input 'x' expects (B, 1, 16, 16) NCHW: images, but the data holds vectors of 50 "
        "features; give the model images, or a model whose input is (B, F)."
    )
    assert not (tmp_path / "z.h5").exists()


def test_image_options_are_refused_for_vectors(tabular, tmp_path: Path) -> None:
    _, model, _ = tabular
    x, labels = features()
    with pytest.raises(ConfigError, match=r"--normalize -1\.\.1 applies to images"):
        embed(open_runner(model, device="cpu"), dataset(x, labels), tmp_path / "z.h5",
              normalize="-1..1")  # fmt: skip
    with pytest.raises(ConfigError, match="--size and --channels apply to images"):
        embed(open_runner(model, device="cpu"), dataset(x, labels), tmp_path / "z.h5", size=28)


def _cli(*args: str):
    from click.testing import CliRunner

    from latentdiag.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_cli_npy_with_labels_through_a_factory(tabular, tmp_path: Path) -> None:
    _, model, folder = tabular
    x, labels = features()
    np.save(tmp_path / "cells.npy", x)
    (tmp_path / "meta.csv").write_text(
        "cell_type,site\n" + "".join(f"ct{lab},s{i % 2}\n" for i, lab in enumerate(labels))
    )
    out = tmp_path / "z.h5"
    r = _cli(
        "embed", "tabular_vae:build", str(tmp_path / "cells.npy"), "--weights",
        str(folder / "vae.safetensors"), "--labels", str(tmp_path / "meta.csv"), "-o", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with LatentStore(out) as s:
        np.testing.assert_allclose(s.mu, own_encode(model, x)[0], atol=1e-5)
        assert s.label_key == "cell_type" and list(s.columns) == ["cell_type", "site"]
    r = _cli("metrics", str(out), "--batch-key", "site", "--json")
    assert r.exit_code == 0, r.output


def test_cli_table_standardized_to_h5ad(tabular, tmp_path: Path) -> None:
    import json

    import pandas as pd

    _, model, _ = tabular
    x, labels = features()
    table = pd.DataFrame(x, columns=[f"gene_{j:02d}" for j in range(F)])
    table.insert(0, "cell_id", [f"c{i}" for i in range(N)])
    table["cell_type"] = np.array(["a", "b", "c"])[labels]
    table["donor"] = np.arange(N) % 3  # an integer code: metadata, not a feature
    table.to_csv(tmp_path / "cells.csv", index=False)
    out = tmp_path / "z.h5ad"
    r = _cli(
        "embed", "tabular_vae:build", str(tmp_path / "cells.csv"), "--meta-columns", "donor",
        "--standardize", "-o", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    mean, std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0)
    want, _ = own_encode(model, ((x - mean) / std).astype(np.float32))
    import anndata as ad

    adata = ad.read_h5ad(out)
    np.testing.assert_allclose(adata.obsm["X_latent"], want, atol=1e-4)
    assert list(adata.obs_names[:2]) == ["c0", "c1"]
    assert set(adata.obs.columns) >= {"cell_type", "donor"}
    r = _cli("metrics", str(out), "--label-key", "cell_type", "--batch-key", "donor", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["label_key"] == "cell_type" and doc["batch_key"] == "donor"
    # A standardized run and a raw one are different jobs: resuming one as the other is refused.
    assert json.loads(json.dumps(ad.read_h5ad(out).uns["latentdiag"]["provenance"]))


def test_cli_sparse_h5ad_layer(tabular, tmp_path: Path) -> None:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    _, model, _ = tabular
    rng = np.random.default_rng(2)
    counts = sp.random(N, F, density=0.3, format="csr", random_state=2, dtype=np.float32)
    counts.data = np.round(counts.data * 10)
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(rng.choice(["t", "b"], N)),
            "batch": rng.choice(["x", "y"], N),
        },
        index=[f"bc{i}" for i in range(N)],
    )
    adata = ad.AnnData(X=np.zeros((N, F), np.float32), obs=obs, layers={"counts": counts})
    adata.write_h5ad(tmp_path / "pbmc.h5ad")
    out = tmp_path / "z.h5"
    r = _cli(
        "embed", "tabular_vae:build", str(tmp_path / "pbmc.h5ad"), "--layer", "counts",
        "--label-key", "cell_type", "-o", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    with LatentStore(out) as s:
        np.testing.assert_allclose(s.mu, own_encode(model, counts.toarray())[0], atol=1e-5)
        assert s.label_key == "cell_type" and "batch" in s.columns
        assert s.sample_ids[0] == "bc0"
    r = _cli("embed", "tabular_vae:build", str(tmp_path / "pbmc.h5ad"), "--layer", "raw",
             "-o", str(tmp_path / "y.h5"))  # fmt: skip
    assert r.exit_code == 1 and "Error:" in r.stderr and "counts" in r.stderr
