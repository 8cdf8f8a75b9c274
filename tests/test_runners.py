"""Model runners: every model kind, every adapter, every input convention and each bad model.

The models are written here: a tiny conv VAE encoder exported to ONNX, TorchScript and
torch.export; graphs built node by node with ``onnx.helper`` (NHWC, fixed batch, float16,
one-hot conditional, log-sigma outputs); and a factory module with one VAE per adapter.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from latentdiag.errors import ConfigError, ModelError
from latentdiag.runners import detect_kind, open_runner
from latentdiag.runners.base import InputSpec
from latentdiag.runners.device import onnx_providers, resolve_torch_device
from latentdiag.runners.preprocess import parse_normalize, plan_preprocess

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# A module of VAEs, one per adapter, written to disk and imported as ``vaes:<factory>``.
VAES = textwrap.dedent(
    '''
    from collections import OrderedDict

    import torch
    from torch import nn


    class TinyEncoder(nn.Module):
        """(B, C, 16, 16) -> (mu, logvar), 6 dims each."""

        def __init__(self, channels=1, dim=6):
            super().__init__()
            self.conv = nn.Conv2d(channels, 4, 3, stride=2, padding=1)
            self.mu = nn.Linear(4 * 8 * 8, dim)
            self.lv = nn.Linear(4 * 8 * 8, dim)

        def forward(self, x):
            h = torch.relu(self.conv(x)).flatten(1)
            return self.mu(h), self.lv(h)


    class TupleVAE(nn.Module):
        def __init__(self, channels=1):
            super().__init__()
            self.enc = TinyEncoder(channels)

        def encode(self, x):
            return self.enc(x)

        def forward(self, x):
            raise AssertionError("forward must not run when the model has encode()")


    class ListVAE(TupleVAE):
        def encode(self, x):
            mu, logvar = self.enc(x)
            return [mu, logvar]


    class LevelsVAE(TupleVAE):
        def encode(self, x):
            mu, logvar = self.enc(x)
            return [(mu[:, :2], logvar[:, :2]), (mu[:, 2:], logvar[:, 2:])]


    class DiagonalGaussianDistribution:
        """As in diffusers: parameters (B, 2C, H, W) split into mean and logvar."""

        def __init__(self, parameters):
            self.mean, self.logvar = torch.chunk(parameters, 2, dim=1)


    class AutoencoderKLOutput:
        def __init__(self, latent_dist):
            self.latent_dist = latent_dist


    class AutoencoderKL(nn.Module):
        """diffusers' API: encode(x, return_dict=True).latent_dist, a 2 x 4 x 4 latent."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, stride=4, padding=1)

        def encode(self, x, return_dict=True):
            posterior = DiagonalGaussianDistribution(self.conv(x))
            return AutoencoderKLOutput(posterior) if return_dict else (posterior,)


    class ModelOutput(OrderedDict):
        """pythae's output: a dict with attribute access."""

        def __getattr__(self, key):
            try:
                return self[key]
            except KeyError:
                raise AttributeError(key) from None


    class PythaeEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = TinyEncoder()

        def forward(self, x):
            mu, logvar = self.enc(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)


    class PythaeVAE(nn.Module):
        """A pythae model: no encode(), an encoder attribute, forward takes a dataset dict."""

        def __init__(self):
            super().__init__()
            self.encoder = PythaeEncoder()

        def forward(self, inputs):
            raise AssertionError("pythae models are read through .encoder")


    PythaeVAE.__module__ = "pythae.models.vae.vae_model"


    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = TinyEncoder()

        def forward(self, x):
            return self.enc(x)[0]


    class NormalEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = TinyEncoder()

        def forward(self, x):
            mu, logvar = self.enc(x)
            normal = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
            return torch.distributions.Independent(normal, 1)


    class SigmaDict(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = TinyEncoder()

        def forward(self, x):
            mu, logvar = self.enc(x)
            return {"z_mean": mu, "sigma": torch.exp(0.5 * logvar)}


    class Conditional(nn.Module):
        def __init__(self, n_labels=3):
            super().__init__()
            self.enc = TinyEncoder()
            self.emb = nn.Embedding(n_labels, 6)

        def forward(self, x, y):
            mu, logvar = self.enc(x)
            return mu + self.emb(y), logvar


    def seeded(cls, **kw):
        torch.manual_seed(0)
        return cls(**kw).eval()


    def make_tuple(channels=1):
        return seeded(TupleVAE, channels=channels)


    def make_list():
        return seeded(ListVAE)


    def make_levels():
        return seeded(LevelsVAE)


    def make_diffusers():
        return seeded(AutoencoderKL)


    def make_pythae_encoder():
        return seeded(PythaeEncoder)


    def make_pythae():
        return seeded(PythaeVAE)


    def make_plain():
        return seeded(Plain)


    def make_normal():
        return seeded(NormalEncoder)


    def make_sigma_dict():
        return seeded(SigmaDict)


    def make_conditional():
        return seeded(Conditional)


    NOT_CALLABLE = 3
    '''
)


@pytest.fixture(scope="module")
def vaes(tmp_path_factory: pytest.TempPathFactory):
    """The VAE module, importable as ``vaes``."""
    folder = tmp_path_factory.mktemp("vaes")
    (folder / "vaes.py").write_text(VAES)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(folder))
    import importlib

    module = importlib.import_module("vaes")
    yield module
    mp.undo()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((10, 1, 16, 16), dtype=np.float32)


def ref(module, x: np.ndarray, *args):
    with torch.no_grad():
        return module(torch.from_numpy(x), *args)


# -- ONNX graphs -----------------------------------------------------------------------------
def export_onnx(module, path: Path, example, *, inputs, outputs, dynamic=True, **kw) -> Path:
    axes = {name: {0: "batch"} for name in [*inputs, *outputs]} if dynamic else None
    torch.onnx.export(
        module,
        example,
        str(path),
        dynamo=False,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=17,
        **kw,
    )
    return path


def nhwc_graph(
    path: Path,
    *,
    batch: int | str = "N",
    dtype: int = TensorProto.FLOAT,
    outputs: tuple[str, str] = ("z_mean", "log_std"),
    ir_version: int = 10,
    opset: int = 17,
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A linear encoder on (N, 8, 8, 3) images: flatten, then two matrix products."""
    rng = np.random.default_rng(1)
    w_mu = rng.normal(size=(192, 4)).astype(np.float32) * 0.1
    w_ls = rng.normal(size=(192, 4)).astype(np.float32) * 0.1
    x = helper.make_tensor_value_info("image", dtype, [batch, 8, 8, 3])
    outs = [helper.make_tensor_value_info(n, dtype, [batch, 4]) for n in outputs]
    nodes = []
    src = "image"
    if dtype == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["image"], ["x32"], to=TensorProto.FLOAT))
        src = "x32"
    nodes.append(helper.make_node("Flatten", [src], ["flat"], axis=1))
    suffix = "32" if dtype == TensorProto.FLOAT16 else ""
    nodes.append(helper.make_node("MatMul", ["flat", "w_mu"], [outputs[0] + suffix]))
    nodes.append(helper.make_node("MatMul", ["flat", "w_ls"], [outputs[1] + suffix]))
    if dtype == TensorProto.FLOAT16:
        for n in outputs:
            nodes.append(helper.make_node("Cast", [n + "32"], [n], to=TensorProto.FLOAT16))
    graph = helper.make_graph(
        nodes,
        "nhwc",
        [x],
        outs,
        initializer=[
            numpy_helper.from_array(w_mu, "w_mu"),
            numpy_helper.from_array(w_ls, "w_ls"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return path, w_mu, w_ls


def nhwc_reference(x_nchw: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.transpose(x_nchw, (0, 2, 3, 1)).reshape(len(x_nchw), -1) @ w


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, vaes) -> Path:
    model = vaes.make_tuple().enc
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(
        model, path, (torch.rand(2, 1, 16, 16),), inputs=["x"], outputs=["mean", "logvar"]
    )


# -- ONNX ------------------------------------------------------------------------------------
def test_onnx_tiny_vae_matches_torch(tiny_onnx, vaes, images):
    runner = open_runner(tiny_onnx, device="cpu")
    assert runner.kind == "onnx"
    assert runner.device == "onnxruntime CPUExecutionProvider"
    assert runner.spec.layout == "NCHW" and runner.spec.channels == 1
    assert (runner.spec.height, runner.spec.width, runner.spec.batch) == (16, 16, None)
    assert runner.outputs["mu"] == "mean" and runner.outputs["logvar"] == "logvar"
    assert runner.model_sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    mu, logvar = runner.run(images)
    want_mu, want_lv = ref(vaes.make_tuple().enc, images)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(logvar, want_lv.numpy(), atol=1e-5)


def test_onnx_nhwc_graph_with_log_std_output(tmp_path, images):
    path, w_mu, w_ls = nhwc_graph(tmp_path / "nhwc.onnx")
    runner = open_runner(path, device="cpu")
    assert runner.spec.layout == "NHWC"
    assert (runner.spec.channels, runner.spec.height, runner.spec.width) == (3, 8, 8)
    assert runner.outputs["logvar_kind"] == "log_sigma"
    x = np.random.default_rng(2).random((5, 3, 8, 8), dtype=np.float32)
    mu, logvar = runner.run(x)
    np.testing.assert_allclose(mu, nhwc_reference(x, w_mu), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logvar, 2 * nhwc_reference(x, w_ls), rtol=1e-5, atol=1e-5)


def test_onnx_layout_option_overrides_the_guess(tmp_path):
    path, _w_mu, _ = nhwc_graph(tmp_path / "nhwc.onnx")
    runner = open_runner(path, device="cpu", layout="nchw")
    # Read as NCHW the graph wants 8 channels of 8 x 3 images: the option wins.
    assert (runner.spec.layout, runner.spec.channels, runner.spec.height) == ("NCHW", 8, 8)


@pytest.mark.parametrize("batch", [1, 4])
def test_onnx_fixed_batch_is_looped_and_padded(tmp_path, batch):
    path, w_mu, w_ls = nhwc_graph(tmp_path / "fixed.onnx", batch=batch)
    runner = open_runner(path, device="cpu")
    assert runner.spec.batch == batch
    x = np.random.default_rng(3).random((7, 3, 8, 8), dtype=np.float32)  # 7: not a multiple
    mu, logvar = runner.run(x)
    assert mu.shape == logvar.shape == (7, 4)
    np.testing.assert_allclose(mu, nhwc_reference(x, w_mu), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logvar, 2 * nhwc_reference(x, w_ls), rtol=1e-5, atol=1e-5)


def test_onnx_float16_model(tmp_path):
    path, w_mu, _ = nhwc_graph(tmp_path / "half.onnx", dtype=TensorProto.FLOAT16)
    runner = open_runner(path, device="cpu")
    assert runner.spec.dtype == "float16"
    x = np.random.default_rng(4).random((6, 3, 8, 8), dtype=np.float32)
    mu, logvar = runner.run(x)
    assert mu.dtype == np.float32 and logvar is not None and logvar.dtype == np.float32
    np.testing.assert_allclose(mu, nhwc_reference(x, w_mu), rtol=2e-2, atol=2e-2)


def test_onnx_conditional_encoder_gets_labels(tmp_path, vaes, images):
    model = vaes.make_conditional()
    path = export_onnx(
        model,
        tmp_path / "cond.onnx",
        (torch.rand(2, 1, 16, 16), torch.tensor([0, 2])),
        inputs=["x", "y"],
        outputs=["mu", "logvar"],
    )
    runner = open_runner(path, device="cpu")
    assert runner.spec.conditional and runner.spec.label_kind == "index"
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    mu, _ = runner.run(images, labels)
    want, _ = ref(model, images, torch.from_numpy(labels))
    np.testing.assert_allclose(mu, want.numpy(), atol=1e-5)
    with pytest.raises(ModelError, match="conditional encoder"):
        runner.run(images, None)


def test_onnx_one_hot_label_input(tmp_path):
    # z = flatten(x) @ W + onehot(y) @ E
    rng = np.random.default_rng(5)
    w = rng.normal(size=(16, 3)).astype(np.float32)
    e = rng.normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "w"], ["a"]),
            helper.make_node("MatMul", ["y_onehot", "e"], ["b"]),
            helper.make_node("Add", ["a", "b"], ["mu"]),
        ],
        "onehot",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4]),
            helper.make_tensor_value_info("y_onehot", TensorProto.FLOAT, ["N", 4]),
        ],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(e, "e")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "onehot.onnx"))
    runner = open_runner(tmp_path / "onehot.onnx", device="cpu")
    assert (runner.spec.label_kind, runner.spec.num_classes) == ("onehot", 4)
    x = rng.random((5, 1, 4, 4), dtype=np.float32)
    labels = np.array([0, 3, 1, 2, 3])
    mu, logvar = runner.run(x, labels)
    assert logvar is None
    np.testing.assert_allclose(mu, x.reshape(5, -1) @ w + e[labels], rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelError, match="takes 4 classes, but the data has label 4"):
        runner.run(x, np.array([0, 1, 2, 3, 4]))


def test_onnx_spatial_latents_flatten_or_mean(tmp_path, vaes, images):
    model = vaes.make_diffusers()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            post = self.m.encode(x).latent_dist
            return post.mean, post.logvar

    path = export_onnx(
        Wrapped(), tmp_path / "kl.onnx", (torch.rand(2, 1, 16, 16),), inputs=["x"],
        outputs=["mean", "logvar"],
    )  # fmt: skip
    post = model.encode(torch.from_numpy(images)).latent_dist
    flat, _ = open_runner(path, device="cpu").run(images)
    assert flat.shape == (10, 2 * 4 * 4)
    np.testing.assert_allclose(flat, post.mean.detach().reshape(10, -1).numpy(), atol=1e-5)
    pooled, lv = open_runner(path, device="cpu", spatial="mean").run(images)
    assert pooled.shape == lv.shape == (10, 2)
    np.testing.assert_allclose(pooled, post.mean.detach().mean(dim=(2, 3)).numpy(), atol=1e-5)


def test_onnx_outputs_by_position_and_by_name(tmp_path, vaes, images):
    enc = vaes.make_tuple().enc
    path = export_onnx(
        enc, tmp_path / "anon.onnx", (torch.rand(2, 1, 16, 16),), inputs=["x"],
        outputs=["out0", "out1"],
    )  # fmt: skip
    runner = open_runner(path, device="cpu")
    assert runner.outputs["selected"].startswith("by position")
    want_mu, want_lv = ref(enc, images)
    mu, lv = runner.run(images)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-5)
    np.testing.assert_allclose(lv, want_lv.numpy(), atol=1e-5)
    swapped = open_runner(path, device="cpu", mu_output="out1", logvar_output="out0")
    mu2, lv2 = swapped.run(images)
    np.testing.assert_allclose(mu2, want_lv.numpy(), atol=1e-5)
    np.testing.assert_allclose(lv2, want_mu.numpy(), atol=1e-5)
    only_mu = open_runner(path, device="cpu", mu_output="out0", logvar_output="none")
    assert only_mu.run(images)[1] is None
    sigma = open_runner(path, device="cpu", logvar_output="out1", logvar_kind="sigma")
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(
            sigma.run(images)[1], 2 * np.log(want_lv.numpy()), atol=1e-4, equal_nan=True
        )


def test_onnx_unknown_output_name_lists_the_outputs(tiny_onnx):
    with pytest.raises(ModelError) as err:
        open_runner(tiny_onnx, device="cpu", mu_output="z")
    assert str(err.value) == (
        "--mu-output 'z': the model has no output of that name; its outputs are: mean, logvar."
    )


def test_onnx_three_anonymous_outputs_need_names(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in "abc"]
    nodes = [helper.make_node("Identity", ["x"], [n]) for n in "abc"]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "three.onnx"))
    with pytest.raises(ModelError) as err:
        open_runner(tmp_path / "three.onnx", device="cpu")
    assert str(err.value) == (
        "cannot tell which output holds the mean among a, b, c; name it with --mu-output "
        "(and the log-variance with --logvar-output)."
    )


def test_onnx_ir_version_too_new_names_both_versions(tmp_path):
    path, *_ = nhwc_graph(tmp_path / "new.onnx", ir_version=99)
    with pytest.raises(ModelError) as err:
        open_runner(path, device="cpu")
    assert re.fullmatch(
        rf"{re.escape(str(path))} has ONNX IR version 99, but the installed onnxruntime "
        r"[\d.]+ reads IR versions up to (\d+); re-save the model with ir_version = \1 \(or "
        r"export it with an older onnx\), or upgrade onnxruntime\.",
        str(err.value),
    ), str(err.value)


def test_onnx_opset_too_new_names_both_versions(tmp_path):
    path, *_ = nhwc_graph(tmp_path / "opset.onnx", opset=99)
    with pytest.raises(ModelError) as err:
        open_runner(path, device="cpu")
    assert re.fullmatch(
        rf"{re.escape(str(path))} uses opset 99 of domain ai\.onnx, but the installed "
        r"onnxruntime [\d.]+ supports that domain up to opset (\d+); re-export with "
        r"opset_version=\1 or lower, or upgrade onnxruntime\.",
        str(err.value),
    ), str(err.value)


def test_onnx_rank_5_input_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 2, 4, 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "r5.onnx"))
    with pytest.raises(ModelError) as err:
        open_runner(tmp_path / "r5.onnx", device="cpu")
    assert str(err.value) == (
        f"{tmp_path / 'r5.onnx'}: input 'x' has rank 5 (['N', 1, 2, 4, 4]); latentdiag feeds "
        "images as rank 4 (B, C, H, W) or (B, H, W, C), rank 3 (B, H, W) or rank 2 (B, C·H·W)."
    )


def test_onnx_not_a_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01 not protobuf at all \xff" * 10)
    with pytest.raises(ModelError, match=r"is not a readable ONNX model"):
        open_runner(bad, device="cpu")


# -- ONNX external data --------------------------------------------------------------------
def external_model(folder: Path, location: str, data_file: Path | None = None) -> Path:
    """A MatMul graph whose weight lives in an external file at ``location``."""
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    tensor = numpy_helper.from_array(w, "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(w.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    if data_file is not None:
        data_file.parent.mkdir(parents=True, exist_ok=True)
        data_file.write_bytes(w.tobytes())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["mu"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["N", 3])],
        initializer=[tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_external_data_inside_the_folder_runs(tmp_path):
    path = external_model(tmp_path / "m", "weights/w.bin", tmp_path / "m" / "weights" / "w.bin")
    runner = open_runner(path, device="cpu")
    assert runner.spec.layout == "flat" and runner.spec.features == 4
    mu, _ = runner.run(np.ones((2, 1, 2, 2), dtype=np.float32))
    np.testing.assert_allclose(mu[0], np.arange(12, dtype=np.float32).reshape(4, 3).sum(0))
    # The sha256 covers the external weights too.
    changed = open_runner(path, device="cpu").model_sha256
    (tmp_path / "m" / "weights" / "w.bin").write_bytes(np.zeros(12, np.float32).tobytes())
    assert open_runner(path, device="cpu").model_sha256 != changed


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("../outside.bin", "is not a plain relative path"),
        ("/etc/passwd", "is not a plain relative path"),
        ("link.bin", "is a symbolic link"),
        ("sub/link.bin", "is a symbolic link"),
    ],
)
def test_onnx_external_data_escaping_the_folder_is_refused(tmp_path, location, why):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    folder = tmp_path / "m"
    path = external_model(folder, location)
    (folder / "sub").mkdir()
    (folder / "link.bin").symlink_to(outside)
    (folder / "sub" / "link.bin").symlink_to(outside)
    with pytest.raises(ModelError) as err:
        open_runner(path, device="cpu")
    assert str(err.value) == (
        f"{path} refers to external data {location!r} for tensor 'w', which {why}; latentdiag "
        "reads external data only from plain files inside the model's folder. Move the data "
        "file next to the model and re-save it."
    )


def test_onnx_external_data_through_a_linked_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "w.bin").write_bytes(np.arange(12, dtype=np.float32).tobytes())
    folder = tmp_path / "m"
    path = external_model(folder, "data/w.bin")
    (folder / "data").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ModelError, match="is a symbolic link"):
        open_runner(path, device="cpu")


def test_onnx_missing_external_data_file(tmp_path):
    path = external_model(tmp_path / "m", "w.bin")
    with pytest.raises(ModelError) as err:
        open_runner(path, device="cpu")
    assert str(err.value) == (
        f"{path} keeps tensor 'w' in external data file 'w.bin', which does not exist in "
        f"{tmp_path / 'm'}; copy it next to the model."
    )


# -- devices -------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answers")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_onnx):
    msg = (
        "--device cuda was asked for but no CUDA device is available here "
        "(torch.cuda.is_available() is False); use --device cpu or auto."
    )
    with pytest.raises(ModelError) as err:
        open_runner(tiny_onnx, device="cuda")
    assert str(err.value) == msg
    with pytest.raises(ModelError) as err:
        resolve_torch_device("cuda")
    assert str(err.value) == msg
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    assert resolve_torch_device("auto") in ("cpu", "mps")


def test_named_providers(tiny_onnx):
    runner = open_runner(tiny_onnx, providers=["CPUExecutionProvider"])
    assert runner.device == "onnxruntime CPUExecutionProvider"
    with pytest.raises(ModelError, match="execution provider 'NoSuchExecutionProvider' is not"):
        open_runner(tiny_onnx, providers=["NoSuchExecutionProvider"])


# -- TorchScript and torch.export ----------------------------------------------------------
def test_torchscript_calls_encode_when_scripted(tmp_path, vaes, images):
    model = vaes.make_tuple()

    class Scripted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = model.enc

        def forward(self, x):
            return torch.zeros(1)

        @torch.jit.export
        def encode(self, x):
            return self.enc(x)

    path = tmp_path / "enc.pt"
    torch.jit.save(torch.jit.script(Scripted()), str(path))
    assert detect_kind(path) == "torchscript"
    runner = open_runner(path, device="cpu")
    assert runner.kind == "torchscript" and runner.outputs["method"] == "encode"
    mu, logvar = runner.run(images)
    want_mu, want_lv = ref(model.enc, images)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(logvar, want_lv.numpy(), atol=1e-6)


def test_torchscript_conditional_from_its_schema(tmp_path, vaes, images):
    model = vaes.make_conditional()
    path = tmp_path / "cond.pt"
    torch.jit.save(torch.jit.trace(model, (torch.rand(2, 1, 16, 16), torch.tensor([0, 1]))), path)
    runner = open_runner(path, device="cpu")
    assert runner.spec.conditional
    labels = np.arange(10) % 3
    mu, _ = runner.run(images, labels)
    np.testing.assert_allclose(mu, ref(model, images, torch.from_numpy(labels))[0], atol=1e-6)


def test_torchscript_wrong_input_size_says_what_it_got(tmp_path, vaes):
    path = tmp_path / "enc.pt"
    torch.jit.save(torch.jit.script(vaes.make_tuple().enc), str(path))
    runner = open_runner(path, device="cpu")
    with pytest.raises(ModelError) as err:
        runner.run(np.zeros((3, 1, 32, 32), dtype=np.float32))
    assert str(err.value) == (
        "the model failed on its first batch, of shape (3, 1, 32, 32) (NCHW): RuntimeError: "
        "mat1 and mat2 shapes cannot be multiplied (3x1024 and 256x6); give --size, --channels "
        "or --layout to feed it the input it expects."
    )


def test_torch_export_with_fixed_batch_and_shape(tmp_path, vaes, images):
    model = vaes.make_tuple().enc
    ep = torch.export.export(model, (torch.rand(4, 1, 16, 16),))  # batch fixed at 4
    path = tmp_path / "enc.pt2"
    torch.export.save(ep, str(path))
    assert detect_kind(path) == "torch.export"
    runner = open_runner(path, device="cpu")
    assert runner.spec.batch == 4
    assert (runner.spec.channels, runner.spec.height, runner.spec.width) == (1, 16, 16)
    mu, logvar = runner.run(images)  # 10 rows: 4 + 4 + 2 padded
    want_mu, want_lv = ref(model, images)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(logvar, want_lv.numpy(), atol=1e-6)


def test_torch_export_conditional(tmp_path, vaes, images):
    model = vaes.make_conditional()
    batch = torch.export.Dim("batch")
    ep = torch.export.export(
        model,
        (torch.rand(2, 1, 16, 16), torch.tensor([0, 1])),
        dynamic_shapes=({0: batch}, {0: batch}),
    )
    torch.export.save(ep, str(tmp_path / "cond.pt2"))
    runner = open_runner(tmp_path / "cond.pt2", device="cpu")
    assert runner.spec.conditional and runner.spec.batch is None
    labels = np.arange(10) % 3
    mu, _ = runner.run(images, labels)
    np.testing.assert_allclose(mu, ref(model, images, torch.from_numpy(labels))[0], atol=1e-6)


class _Marker:
    """Unpickling this writes a file: proof that code ran."""

    path = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "code ran"))


def _rewrite_zip(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = edit(item.filename, zin.read(item.filename))
            zout.writestr(item, data)


@pytest.mark.parametrize("entry", ["weights", "sample_inputs"])
def test_torch_export_archive_with_pickled_code_is_refused(tmp_path, vaes, entry):
    ep = torch.export.export(vaes.make_tuple().enc, (torch.rand(2, 1, 16, 16),))
    good = tmp_path / "good.pt2"
    torch.export.save(ep, str(good))
    marker = tmp_path / "ran.txt"
    _Marker.path = str(marker)
    evil = pickle.dumps(_Marker())

    def edit(name: str, data: bytes) -> bytes:
        if entry == "weights" and name.endswith("model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if entry == "weights" and name.endswith("/data/weights/weight_0"):
            return evil
        if entry == "sample_inputs" and "/data/sample_inputs/" in name:
            import io

            buf = io.BytesIO()
            torch.save(_Marker(), buf)
            return buf.getvalue()
        return data

    bad = tmp_path / "bad.pt2"
    _rewrite_zip(good, bad, edit)
    with pytest.raises(ModelError, match=r"does not load with torch\.load\(weights_only=True\)"):
        open_runner(bad, device="cpu")
    assert not marker.exists()


# -- factories and adapters ----------------------------------------------------------------
def test_factory_tuple_list_and_levels(vaes, images):
    want_mu, want_lv = ref(vaes.make_tuple().enc, images)
    for factory in ("vaes:make_tuple", "vaes:make_list"):
        runner = open_runner(factory, device="cpu")
        assert runner.kind == "factory" and runner.outputs["method"] == "encode"
        mu, lv = runner.run(images)
        np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
        np.testing.assert_allclose(lv, want_lv.numpy(), atol=1e-6)
    levels = open_runner("vaes:make_levels", device="cpu")
    mu, lv = levels.run(images)
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
    assert levels.partitions == {"level0": (0, 2), "level1": (2, 6)}
    assert levels.outputs["adapter"] == "levels of (mu, logvar)"


def test_factory_diffusers_autoencoder_kl(vaes, images):
    runner = open_runner("vaes:make_diffusers", device="cpu")
    assert not runner.spec.conditional  # encode(x, return_dict=True): not a label
    mu, lv = runner.run(images)
    post = vaes.make_diffusers().encode(torch.from_numpy(images)).latent_dist
    assert runner.outputs["adapter"] == "diffusers latent_dist"
    np.testing.assert_allclose(mu, post.mean.detach().reshape(10, -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(lv, post.logvar.detach().reshape(10, -1).numpy(), atol=1e-6)
    pooled, _ = open_runner("vaes:make_diffusers", device="cpu", spatial="mean").run(images)
    np.testing.assert_allclose(pooled, post.mean.detach().mean(dim=(2, 3)).numpy(), atol=1e-6)


def test_factory_pythae_encoder_and_model(vaes, images):
    want_mu, want_lv = ref(vaes.make_tuple().enc, images)
    for factory in ("vaes:make_pythae_encoder", "vaes:make_pythae"):
        runner = open_runner(factory, device="cpu")
        mu, lv = runner.run(images)
        assert runner.outputs["adapter"] == "pythae embedding/log_covariance"
        np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
        np.testing.assert_allclose(lv, want_lv.numpy(), atol=1e-6)
    assert open_runner("vaes:make_pythae", device="cpu").outputs["method"] == "encoder"


def test_factory_plain_normal_and_sigma_dict(vaes, images):
    want_mu, want_lv = ref(vaes.make_tuple().enc, images)
    mu, lv = open_runner("vaes:make_plain", device="cpu").run(images)
    assert lv is None
    np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
    for factory in ("vaes:make_normal", "vaes:make_sigma_dict"):
        mu, lv = open_runner(factory, device="cpu").run(images)
        np.testing.assert_allclose(mu, want_mu.numpy(), atol=1e-6)
        np.testing.assert_allclose(lv, want_lv.numpy(), atol=1e-5)


def test_factory_conditional_and_kwargs(vaes, images):
    runner = open_runner("vaes:make_conditional", device="cpu")
    assert runner.spec.conditional
    labels = np.arange(10) % 3
    mu, _ = runner.run(images, labels)
    want = ref(vaes.make_conditional(), images, torch.from_numpy(labels))[0]
    np.testing.assert_allclose(mu, want.numpy(), atol=1e-6)
    rgb = open_runner("vaes:make_tuple", device="cpu", model_kwargs={"channels": 3})
    assert rgb.run(np.zeros((2, 3, 16, 16), np.float32))[0].shape == (2, 6)


def test_factory_weights_safetensors_and_state_dicts(tmp_path, vaes, images):
    from safetensors.torch import save_file

    torch.manual_seed(123)
    trained = vaes.TupleVAE().eval()
    want_mu, _ = ref(trained.enc, images)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    sd = {f"module.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 7}, str(tmp_path / "w.ckpt"))
    for weights in ("w.safetensors", "w.ckpt"):
        runner = open_runner("vaes:make_tuple", weights=tmp_path / weights, device="cpu")
        np.testing.assert_allclose(runner.run(images)[0], want_mu.numpy(), atol=1e-6)
        digest = hashlib.sha256((tmp_path / weights).read_bytes()).hexdigest()
        assert runner.model_sha256 == digest
    # Without the weights the factory's own (seed 0) parameters give other latents.
    assert not np.allclose(open_runner("vaes:make_tuple").run(images)[0], want_mu.numpy())


def test_factory_weights_with_pickled_code_are_refused(tmp_path, vaes):
    marker = tmp_path / "ran.txt"
    _Marker.path = str(marker)
    torch.save({"enc.mu.weight": _Marker()}, str(tmp_path / "evil.pt"))
    with pytest.raises(ModelError) as err:
        open_runner("vaes:make_tuple", weights=tmp_path / "evil.pt", device="cpu")
    assert str(err.value) == (
        f"{tmp_path / 'evil.pt'} holds pickled Python objects besides tensors, and latentdiag "
        "loads weights only with torch.load(weights_only=True), which could otherwise run code; "
        "save a plain state dict (torch.save(model.state_dict(), ...)) or a safetensors file."
    )
    assert not marker.exists()


def test_factory_weights_that_do_not_fit(tmp_path, vaes):
    from safetensors.torch import save_file

    sd = vaes.TupleVAE().state_dict()
    sd["enc.mu.weight"] = torch.zeros(5, 256)
    del sd["enc.lv.bias"]
    sd["extra"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelError) as err:
        open_runner("vaes:make_tuple", weights=tmp_path / "w.safetensors")
    assert str(err.value) == (
        f"the weights in {tmp_path / 'w.safetensors'} do not fit the model: missing 1 key(s): "
        "enc.lv.bias; unexpected 1 key(s): extra; shape mismatches (file vs model): "
        "enc.mu.weight (5, 256) vs (6, 256); check that the factory builds the same "
        "architecture the weights were saved from."
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "no_such_pkg.vae:build",
            "cannot import module 'no_such_pkg.vae' of MODEL 'no_such_pkg.vae:build' (No module "
            "named 'no_such_pkg'); install it, or run from the folder that holds it, or add "
            "that folder to PYTHONPATH.",
        ),
        (
            "vaes:nope",
            "module 'vaes' has no attribute 'nope' (MODEL 'vaes:nope'); name a function or "
            "class that builds the model.",
        ),
        (
            "vaes:NOT_CALLABLE",
            "'vaes:NOT_CALLABLE' is not callable; name a function or class that builds the model.",
        ),
    ],
)
def test_factory_errors(vaes, model, message):
    with pytest.raises(ModelError) as err:
        open_runner(model)
    assert str(err.value) == message


def test_adapter_refuses_an_ambiguous_tuple():
    from latentdiag.runners.adapters import read_output

    t = torch.zeros(2, 3)
    with pytest.raises(ModelError, match=r"a tuple of 3 \[tensor\(2, 3\), tensor\(2, 3\)"):
        read_output((t, t, t))


# -- model kinds ---------------------------------------------------------------------------
def test_detect_kind_errors(tmp_path):
    with pytest.raises(ModelError) as err:
        detect_kind(tmp_path / "missing.onnx")
    assert str(err.value) == (
        f"model file {tmp_path / 'missing.onnx'} does not exist; MODEL is an .onnx file, a "
        "TorchScript file (.pt, .pth, .jit), a torch.export file (.pt2), a reference run "
        "directory from `latentdiag train`, a diffusers or pythae model folder, or "
        "pkg.module:factory with --weights."
    )
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"is of an unknown model kind \(\.h5\)"):
        detect_kind(tmp_path / "model.h5")
    torch.save({"w": torch.zeros(2)}, str(tmp_path / "ckpt.pt"))
    with pytest.raises(ModelError, match=r"is a torch\.save checkpoint \(pickled objects\)"):
        detect_kind(tmp_path / "ckpt.pt")
    (tmp_path / "w.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="holds weights only; give the model's code"):
        detect_kind(tmp_path / "w.safetensors")
    assert detect_kind("pkg.module:factory") == "factory"
    assert detect_kind(tmp_path) == "reference"


def test_onnx_only_options_on_torch_models(vaes):
    with pytest.raises(ModelError) as err:
        open_runner("vaes:make_tuple", mu_output="mean")
    assert str(err.value) == "--mu-output applies to .onnx models only; MODEL is a factory model."


# -- preprocessing -------------------------------------------------------------------------
def test_preprocess_resize_channels_and_normalize():
    spec = InputSpec(channels=3, height=8, width=8)
    plan = plan_preprocess(spec, data_channels=1, data_size=16, normalize="imagenet")
    x = np.full((2, 1, 16, 16), 0.5, dtype=np.float32)
    y = plan(x)
    assert y.shape == (2, 3, 8, 8) and y.dtype == np.float32
    want = (0.5 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(y[0, :, 3, 3], want, rtol=1e-5)
    gray = plan_preprocess(InputSpec(channels=1), data_channels=3, data_size=4, normalize="-1..1")
    rgb = np.zeros((1, 3, 4, 4), np.float32)
    rgb[:, 0] = 1.0  # pure red: luma 0.299
    np.testing.assert_allclose(gray(rgb), np.full((1, 1, 4, 4), 2 * 0.299 - 1), rtol=1e-5)
    rgba = plan_preprocess(InputSpec(channels=3), data_channels=4, data_size=4)
    assert rgba(np.ones((1, 4, 4, 4), np.float32)).shape == (1, 3, 4, 4)
    assert plan_preprocess(InputSpec(), data_channels=3, data_size=5).is_identity


def test_preprocess_flat_input_finds_a_square_image():
    spec = InputSpec(layout="flat", features=256)
    plan = plan_preprocess(spec, data_channels=3, data_size=32)
    assert (plan.channels, plan.size) == (1, (16, 16))
    with pytest.raises(ModelError) as err:
        plan_preprocess(InputSpec(layout="flat", features=7), data_channels=1, data_size=4)
    assert str(err.value) == (
        "model input 'x' expects (B, 7); the data's images are 1×4×4 = 16 values and no C×S×S "
        "image (C = 1 or 3) gives 7; pass --channels and --size that multiply to 7."
    )


def test_preprocess_errors_say_expected_and_got():
    with pytest.raises(ModelError) as err:
        plan_preprocess(InputSpec(channels=2, height=8, width=8), data_channels=3, data_size=8)
    assert str(err.value) == (
        "model input 'x' expects (B, 2, 8, 8) NCHW with 2 channels; the data has 3-channel "
        "images, and latentdiag converts only 1→3, 3→1 and 4→3 or 4→1 (alpha dropped); give "
        "data with the channels the model takes."
    )
    with pytest.raises(ModelError) as err:
        plan_preprocess(InputSpec(channels=1, height=8, width=8), data_channels=1, data_size=8,
                        size=16)  # fmt: skip
    assert (
        str(err.value) == "model input 'x' expects (B, 1, 8, 8) NCHW; --size 16x16 contradicts it."
    )
    with pytest.raises(ConfigError, match="--normalize has 2 mean values but the model takes 3"):
        plan_preprocess(InputSpec(channels=3), data_channels=3, data_size=4, normalize="0,0:1,1")


@pytest.mark.parametrize(
    ("text", "mean", "std"),
    [
        (None, (0.0,), (1.0,)),
        ("-1..1", (0.5,), (0.5,)),
        ("0.1307:0.3081", (0.1307,), (0.3081,)),
        ("0.5,0.4,0.3:0.2,0.2,0.2", (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)),
    ],
)
def test_parse_normalize(text, mean, std):
    norm = parse_normalize(text)
    assert (norm.mean, norm.std) == (mean, std)


@pytest.mark.parametrize("text", ["0..255", "a:b", "0.5:0", "0.5"])
def test_parse_normalize_errors(text):
    with pytest.raises(ConfigError, match="--normalize"):
        parse_normalize(text)


def test_run_directory_hash_covers_config_and_weights_only(tmp_path):
    from latentdiag.runners.loading import folder_sha256

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "weights.safetensors").write_bytes(b"a")
    first = folder_sha256(tmp_path)
    (tmp_path / "train_log.jsonl").write_text("epoch 1")
    assert folder_sha256(tmp_path) == first
    (tmp_path / "weights.safetensors").write_bytes(b"b")
    assert folder_sha256(tmp_path) != first
