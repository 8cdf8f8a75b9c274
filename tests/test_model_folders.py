"""Models found without trial and error: diffusers and pythae folders as MODEL, the input
range a model was trained on, and errors that say what the model takes and what to pass."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from latentdiag.cli import cli
from latentdiag.errors import ModelError
from latentdiag.runners import detect_kind, open_runner
from latentdiag.store import LatentStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def sd_vae(tmp_path_factory) -> Path:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    )
    folder = tmp_path_factory.mktemp("hf") / "vae"
    vae.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def pythae_vae(tmp_path_factory) -> Path:
    models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    model = models.VAE(models.VAEConfig(input_dim=(1, 16, 16), latent_dim=6))
    folder = tmp_path_factory.mktemp("pythae") / "final_model"
    model.save(str(folder))
    return folder


def rgb_npz(path: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
             labels=rng.integers(0, 2, n))  # fmt: skip
    return path


def test_a_diffusers_folder_is_a_model(sd_vae: Path, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    assert detect_kind(sd_vae) == "diffusers"
    data = rgb_npz(tmp_path / "rgb.npz")
    out = tmp_path / "z.h5"
    r = CliRunner().invoke(cli, ["embed", str(sd_vae), str(data), "-o", str(out)])
    assert r.exit_code == 0, r.output
    # Its training range is the default, and it says so.
    assert "note: inputs scaled to -1..1, the range this model was trained on" in r.stderr
    assert "accelerate" not in r.stderr
    images = np.load(data)["images"].transpose(0, 3, 1, 2).astype(np.float32) / 255
    vae = AutoencoderKL.from_pretrained(str(sd_vae)).eval()
    with torch.no_grad():
        dist = vae.encode(torch.from_numpy(images * 2 - 1)).latent_dist
    with LatentStore(out) as s:
        np.testing.assert_allclose(s.mu, dist.mean.flatten(1).numpy(), atol=2e-5)
        np.testing.assert_allclose(s.logvar, dist.logvar.flatten(1).numpy(), atol=2e-5)
        assert s.provenance["model_kind"] == "diffusers"
        assert s.provenance["preprocessing"]["normalize"] == "-1..1"
        assert len(s.provenance["job"]["model_sha256"]) == 64  # the folder's files


def test_a_pythae_folder_is_a_model(pythae_vae: Path, tmp_path: Path) -> None:
    from pythae.models import AutoModel

    assert detect_kind(pythae_vae) == "pythae"
    runner = open_runner(pythae_vae, device="cpu")
    x = np.random.default_rng(0).random((5, 1, 16, 16), dtype=np.float32)
    mu, logvar = runner.run(x)
    model = AutoModel.load_from_folder(str(pythae_vae)).eval()
    with torch.no_grad():
        out = model.encoder(torch.from_numpy(x))
    np.testing.assert_allclose(mu, out.embedding.numpy(), atol=1e-6)
    np.testing.assert_allclose(logvar, out.log_covariance.numpy(), atol=1e-6)
    assert runner.default_normalize is None  # pythae trains on [0, 1]


def test_pythae_folder_with_pickled_networks_is_refused(pythae_vae: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "custom"
    shutil.copytree(pythae_vae, folder)
    (folder / "encoder.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match=r"holds pickled custom networks \(encoder\.pkl\)"):
        open_runner(folder, device="cpu")


def test_an_unknown_folder_says_what_a_model_folder_is(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a diffusers model folder"):
        open_runner(tmp_path, device="cpu")


FACTORIES = textwrap.dedent(
    """
    import torch
    from torch import nn


    class RGBEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 2)

        def encode(self, x):
            h = self.conv(x).mean((2, 3))
            return self.head(h), torch.zeros(x.shape[0], 2)


    class FlatEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 2)

        def encode(self, x):
            return self.lin(x), torch.zeros(x.shape[0], 2)


    def rgb():
        return RGBEncoder()


    def flat():
        return FlatEncoder()


    def sized(n_features: int):
        return FlatEncoder()
    """
)


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "hinted.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "gray.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.integers(0, 256, (8, 16, 16), dtype=np.uint8))
    return data


def _error(args: list[str]) -> str:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    return line


def test_first_batch_failure_names_the_channels_to_pass(factories: Path, tmp_path: Path) -> None:
    line = _error(["embed", "hinted:rgb", str(factories), "-o", str(tmp_path / "a.h5")])
    assert line.endswith(
        "its first layer is Conv2d(in_channels=3): it takes (B, 3, H, W) images; pass "
        "--channels 3 (and --size S for the side it was trained on)."
    )
    ok = CliRunner().invoke(
        cli,
        ["embed", "hinted:rgb", str(factories), "-o", str(tmp_path / "b.h5"), "--channels", "3"],
    )
    assert ok.exit_code == 0, ok.output


def test_first_batch_failure_names_the_flat_layout(factories: Path, tmp_path: Path) -> None:
    line = _error(["embed", "hinted:flat", str(factories), "-o", str(tmp_path / "a.h5")])
    assert line.endswith(
        "its first layer is Linear(in_features=784): it takes flattened images of 784 values; "
        "pass --layout flat --channels 1 --size 28."
    )
    args = ["--layout", "flat", "--channels", "1", "--size", "28"]
    ok = CliRunner().invoke(
        cli, ["embed", "hinted:flat", str(factories), "-o", str(tmp_path / "b.h5"), *args]
    )
    assert ok.exit_code == 0, ok.output


def test_a_missing_constructor_argument_points_at_model_kwargs(
    factories: Path, tmp_path: Path
) -> None:
    line = _error(["embed", "hinted:sized", str(factories), "-o", str(tmp_path / "a.h5")])
    assert "missing 1 required positional argument: 'n_features'" in line
    assert line.endswith(
        "Give the factory's arguments as JSON with --model-kwargs, e.g. --model-kwargs "
        "'{\"n_features\": 50}'."
    )


def test_outputs_taken_by_position_are_reported(tmp_path: Path) -> None:
    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            h = x.flatten(1)[:, :3]
            return h, h * 0

    path = tmp_path / "anon.onnx"
    torch.onnx.export(
        TwoOutputs(), (torch.rand(2, 1, 16, 16),), str(path), dynamo=False,
        input_names=["x"], output_names=["out_a", "out_b"], dynamic_axes={"x": {0: "b"}},
        opset_version=17,
    )  # fmt: skip
    data = tmp_path / "gray.npz"
    np.savez(data, images=np.zeros((4, 16, 16), np.uint8))
    r = CliRunner().invoke(cli, ["embed", str(path), str(data), "-o", str(tmp_path / "z.h5")])
    assert r.exit_code == 0, r.output
    assert (
        "note: the outputs have no names that say what they hold; taken by position: 'out_a' "
        "as mu, 'out_b' as logvar (--mu-output / --logvar-output name them)"
    ) in r.stderr
    with LatentStore(tmp_path / "z.h5") as s:
        assert json.loads(json.dumps(s.provenance["outputs"]))["selected"].startswith("by position")
