"""The judge: trained CNN / MLP classifiers and a user's ONNX classifier behind one interface."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from latentdiag.errors import MetricInputError, ModelError
from latentdiag.generation.judge import (
    FEATURE_DIM,
    Judge,
    OnnxJudge,
    default_epochs,
    train_classifier,
    train_judge,
)


# -- data --------------------------------------------------------------------------------------
def patterns(n: int, *, size: int = 8, n_labels: int = 4, seed: int = 0):
    """Images (n, 1, size, size) in [0, 1]: label c lights quadrant c, under pixel noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % n_labels
    x = rng.uniform(0.0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    h = size // 2
    for c in range(n_labels):
        r, q = divmod(c, 2)
        x[labels == c, 0, r * h : (r + 1) * h, q * h : (q + 1) * h] += 0.6
    return np.clip(x, 0.0, 1.0), labels


def blobs(n: int, *, n_labels: int = 3, seed: int = 0):
    """Vectors (n, 2): Gaussian blobs of sd 1 whose centres lie 10 apart, in raw units ×100."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % n_labels
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])[:n_labels]
    x = centres[labels] + rng.normal(size=(n, 2))
    return (100.0 * x + 500.0).astype(np.float32), labels


@pytest.fixture(scope="module")
def images():
    return patterns(400)


@pytest.fixture(scope="module")
def image_judge(images):
    return train_judge(*images, seed=0, epochs=30)


@pytest.fixture(scope="module")
def vectors():
    return blobs(300)


@pytest.fixture(scope="module")
def vector_judge(vectors):
    return train_judge(*vectors, seed=0)


# -- trained judges ----------------------------------------------------------------------------
def test_separable_images_are_judged_right(image_judge):
    assert image_judge.kind == "cnn" and image_judge.n_labels == 4
    assert image_judge.heldout_accuracy >= 0.95
    assert image_judge.input_shape == (1, 8, 8)
    assert image_judge.epochs == 30 and image_judge.updates == 30 * 3  # 320 rows: 3 batches
    assert image_judge.seconds > 0 and not image_judge.stopped_by_time


def test_separable_vectors_are_judged_right(vector_judge):
    # The raw units (centres near 500, spread 100) only work because the MLP standardises.
    assert vector_judge.kind == "mlp" and vector_judge.n_labels == 3
    assert vector_judge.epochs == default_epochs(240) == 60  # 300 rows, 60 held out
    assert vector_judge.heldout_accuracy >= 0.95


def test_mlp_on_flattened_images(images):
    judge = train_judge(*images, kind="mlp", epochs=20)
    assert judge.kind == "mlp" and judge.heldout_accuracy >= 0.95
    assert judge.features(images[0][:5]).shape == (5, FEATURE_DIM)


def test_random_labels_give_chance_on_the_heldout_part():
    # The MLP memorises the random labels of its training part; the held-out part, which it
    # never saw, stays at chance (1/4). A judge trained on its held-out rows would score high.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 20)).astype(np.float32)
    y = rng.integers(0, 4, size=1000)  # 200 held out: chance 0.25 ± 0.03
    judge = train_judge(x, y, epochs=150)
    train_acc = np.mean(judge.predict(x[judge.train_index]) == y[judge.train_index])
    assert train_acc > 0.9
    assert abs(judge.heldout_accuracy - 0.25) < 0.12
    assert judge.heldout_accuracy == np.mean(
        judge.predict(x[judge.heldout_index]) == y[judge.heldout_index]
    )


def test_split_is_disjoint_complete_and_stratified(images):
    x, y = images
    judge = train_judge(x, y, heldout=0.25, epochs=1)
    train, held = judge.train_index, judge.heldout_index
    assert np.intersect1d(train, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(y)))
    # 400 rows, 100 per label, a quarter held out: 25 of each label.
    assert np.bincount(y[held], minlength=4).tolist() == [25, 25, 25, 25]
    assert np.array_equal(held, np.sort(held)) and held.dtype == np.int64
    again = train_judge(x, y, heldout=0.25, epochs=1)
    other = train_judge(x, y, heldout=0.25, epochs=1, seed=1)
    assert np.array_equal(again.heldout_index, held)
    assert not np.array_equal(other.heldout_index, held)


@pytest.mark.parametrize("data", ["images", "vectors"])
def test_same_seed_gives_identical_judges(data, images, vectors):
    x, y = images if data == "images" else vectors
    before = torch.get_rng_state()
    one = train_judge(x, y, seed=5, epochs=3)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is left alone
    two = train_judge(x, y, seed=5, epochs=3)
    three = train_judge(x, y, seed=6, epochs=3)
    assert np.array_equal(one.predict_proba(x), two.predict_proba(x))
    assert np.array_equal(one.features(x), two.features(x))
    assert not np.array_equal(one.predict_proba(x), three.predict_proba(x))


def test_outputs_have_the_documented_shapes_and_types(image_judge, images):
    x = images[0][:37]
    proba = image_judge.predict_proba(x)
    assert proba.shape == (37, 4) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    pred = image_judge.predict(x)
    assert pred.dtype == np.int64 and np.array_equal(pred, proba.argmax(axis=1))
    feats = image_judge.features(x)
    assert feats.shape == (37, FEATURE_DIM) and feats.dtype == np.float64
    assert (feats >= 0).all()  # after the ReLU
    assert image_judge.predict_proba(x[:0]).shape == (0, 4)
    assert image_judge.features(x[:0]).shape == (0, FEATURE_DIM)


def test_batches_do_not_change_the_answer(vector_judge):
    # More rows than one forward pass (1,024) holds: the batches are stitched back in order.
    x, _ = blobs(2500, seed=9)
    whole = vector_judge.predict_proba(x)
    np.testing.assert_allclose(whole[1500:1600], vector_judge.predict_proba(x[1500:1600]))


def test_float64_and_lists_are_accepted(vector_judge, vectors):
    x = vectors[0][:4]
    expected = vector_judge.predict(x)
    assert np.array_equal(vector_judge.predict(x.astype(np.float64)), expected)
    assert np.array_equal(vector_judge.predict(x.tolist()), expected)


def test_all_judges_satisfy_the_protocol(image_judge, tmp_path):
    assert isinstance(image_judge, Judge)
    path = export(LinearJudge(), tmp_path / "j.onnx", torch.zeros(2, 6), outputs=["logits"])
    assert isinstance(OnnxJudge(path, device="cpu"), Judge)


@pytest.mark.parametrize(
    ("bad", "found"),
    [
        (np.zeros((3, 1, 16, 16), np.float32), "(3, 1, 16, 16)"),
        (np.zeros((3, 64), np.float32), "(3, 64)"),
        (np.zeros((1, 8, 8), np.float32), "(1, 8, 8)"),
    ],
)
def test_wrong_input_shape_is_refused(image_judge, bad, found):
    message = (
        "the judge takes images (N, 1, 8, 8), laid out like its training data; found shape "
        f"{found}."
    )
    for method in (image_judge.predict_proba, image_judge.predict, image_judge.features):
        with pytest.raises(MetricInputError, match=re.escape(message)):
            method(bad)


def test_vector_judge_names_its_layout(vector_judge):
    with pytest.raises(MetricInputError, match=re.escape("takes vectors (N, 2), laid out")):
        vector_judge.predict(np.zeros((4, 3), np.float32))
    with pytest.raises(MetricInputError, match="NaN or inf in 1 of 2 rows"):
        vector_judge.predict(np.array([[0.0, np.nan], [1.0, 2.0]], np.float32))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": np.zeros(5, np.int64)}, MetricInputError, "labels must be 1-D with one label"),
        ({"labels": np.zeros(400)}, MetricInputError, "labels must be integers 0..K-1; found"),
        ({"n_labels": 3}, MetricInputError, r"labels must lie in 0\.\.2 \(n_labels = 3\); found 0"),
        ({"labels": np.zeros(400, int)}, MetricInputError, "a judge needs at least 2 labels"),
        ({"heldout": 1.0}, MetricInputError, "heldout must be a fraction between 0 and 1"),
        ({"heldout": 0.001}, MetricInputError, "leaves 1 held out and 399 to train on"),
        ({"kind": "resnet"}, ModelError, "kind must be one of auto, cnn, mlp; got 'resnet'"),
        ({"device": "tpu"}, ModelError, "--device must be one of"),
        ({"epochs": 0}, MetricInputError, "epochs must be at least 1"),
        ({"x": np.zeros((400, 1, 4, 4), np.float32)}, MetricInputError, "at least 8×8 pixels"),
        ({"x": np.zeros((400, 8), np.float32), "kind": "cnn"}, MetricInputError, "kind='mlp'"),
        ({"x": np.zeros((400, 8, 8), np.float32)}, MetricInputError, r"found shape \(400, 8, 8\)"),
    ],
)
def test_bad_training_input_is_refused(images, kwargs, error, message):
    args = {"x": images[0], "labels": images[1], **kwargs}
    with pytest.raises(error, match=message):
        train_judge(args.pop("x"), args.pop("labels"), **args)


def test_a_label_with_one_row_cannot_be_stratified(images):
    x, y = images
    y = y.copy()
    y[0] = 4
    with pytest.raises(MetricInputError, match=r"at least 2 rows per label; label\(s\) 4 have 1"):
        train_judge(x, y)


def test_progress_runs_from_zero_to_one(vectors):
    seen: list[float] = []
    train_judge(*vectors, epochs=30, progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) > 10
    assert all(a <= b for a, b in itertools.pairwise(seen))


def test_max_seconds_stops_training(images):
    judge = train_judge(*images, epochs=100_000, max_seconds=0.2)
    assert judge.stopped_by_time and judge.epochs < 100_000
    assert judge.seconds < 5 and 0.0 <= judge.heldout_accuracy <= 1.0


def test_default_epochs_scale_with_the_data():
    assert default_epochs(400) == 60  # capped (100 epochs would see 40,000 rows)
    assert default_epochs(3200) == 13  # ceil(40,000 / 3,200)
    assert default_epochs(50_000) == 2
    assert default_epochs(200_000) == 2  # never fewer


def test_classifier_trains_on_everything_without_a_heldout_part(images):
    x, y = images
    # Generated samples may miss a label: here label 4 of 5 never occurs.
    clf = train_classifier(x, y, n_labels=5, epochs=20)
    assert isinstance(clf, Judge)
    assert clf.heldout_accuracy is None and clf.heldout_index.size == 0
    assert np.array_equal(clf.train_index, np.arange(len(y)))
    assert clf.predict_proba(x).shape == (len(y), 5)
    test_x, test_y = patterns(200, seed=7)
    assert np.mean(clf.predict(test_x) == test_y) >= 0.95


def test_classifier_and_judge_share_the_training(images):
    # The same rows, seed and epochs through either entry point give the same network.
    x, y = images
    judge = train_judge(x, y, epochs=2)
    clf = train_classifier(x[judge.train_index], y[judge.train_index], n_labels=4, epochs=2)
    assert np.array_equal(judge.predict_proba(x), clf.predict_proba(x))


# -- ONNX judges -------------------------------------------------------------------------------
class TwoHeads(nn.Module):
    """A tiny image classifier returning (logits (B, 3), features (B, 16))."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 16)
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        return self.head(feats), feats


class LinearJudge(nn.Module):
    """Vectors (B, 6) -> logits (B, 4)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class Spatial(nn.Module):
    """Logits with a trailing axis: (B, 4, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :4].unsqueeze(-1)


def export(module: nn.Module, path: Path, example, *, outputs: list[str], axes=None) -> Path:
    """Export as the reference models do: legacy exporter, opset 17, IR version 8.

    The batch axis is dynamic unless ``axes`` gives the dynamic axes.
    """
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=outputs,
            dynamic_axes=axes or {name: {0: "batch"} for name in ["x", *outputs]},
            opset_version=17,
        )
    proto = onnx.load(str(path))
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    model = TwoHeads().eval()
    path = tmp_path_factory.mktemp("judge") / "two.onnx"
    return model, export(model, path, torch.zeros(2, 1, 8, 8), outputs=["out_a", "out_b"])


def test_onnx_judge_matches_torch(two_heads):
    model, path = two_heads
    x = np.random.default_rng(0).random((50, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        logits, feats = (t.double().numpy() for t in model(torch.from_numpy(x)))
    judge = OnnxJudge(path, device="cpu")
    # Neither name says which is which: the narrower output (3 < 16) is the logits.
    assert judge.n_labels == 3 and judge.feature_dim == 16 and judge.kind == "onnx"
    assert judge.heldout_accuracy is None and judge.provider == "CPUExecutionProvider"
    assert judge.input_shape == (1, 8, 8)
    assert np.array_equal(judge.predict(x), logits.argmax(axis=1))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(judge.predict_proba(x), expected, atol=1e-5)
    np.testing.assert_allclose(judge.features(x), feats, atol=1e-5)
    assert judge.predict_proba(x).dtype == np.float64 and judge.predict(x).dtype == np.int64


def test_onnx_outputs_by_name_and_override(tmp_path):
    model = TwoHeads()
    named = export(model, tmp_path / "named.onnx", torch.zeros(2, 1, 8, 8),
                   outputs=["embedding", "class_scores"])  # fmt: skip
    # TwoHeads returns its logits (3 wide) first, here misnamed "embedding": the names beat
    # the widths, so "embedding" is taken for the features, until logits_output says otherwise.
    judge = OnnxJudge(named, device="cpu")
    assert judge.n_labels == 16 and judge.feature_dim == 3
    swapped = OnnxJudge(named, device="cpu", logits_output="embedding")
    assert swapped.n_labels == 3 and swapped.feature_dim == 16
    with pytest.raises(ModelError, match=re.escape("has no output 'logit' (logits_output)")):
        OnnxJudge(named, device="cpu", logits_output="logit")


def test_onnx_judge_with_logits_only(tmp_path):
    model = LinearJudge()
    path = export(model, tmp_path / "lin.onnx", torch.zeros(2, 6), outputs=["logits"])
    judge = OnnxJudge(path, device="cpu")
    x = np.random.default_rng(1).normal(size=(9, 6)).astype(np.float32)
    assert judge.n_labels == 4
    np.testing.assert_array_equal(judge.features(x), judge._run(x, "logits", 4))
    with torch.no_grad():
        np.testing.assert_allclose(judge.features(x), model(torch.from_numpy(x)).numpy(), 1e-5)
    with pytest.raises(ModelError, match=re.escape("takes (N, 6); the data has shape (9, 5).")):
        judge.predict(x[:, :5])


def test_onnx_judge_errors(tmp_path):
    missing = tmp_path / "missing.onnx"
    with pytest.raises(ModelError, match=re.escape(f"judge model file {missing} does not exist.")):
        OnnxJudge(missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a model at all" * 10)
    with pytest.raises(ModelError, match=re.escape(f"{garbage} is not a readable ONNX model")) as e:
        OnnxJudge(garbage)
    assert "\n" not in str(e.value)
    spatial = export(Spatial(), tmp_path / "spatial.onnx", torch.zeros(2, 6), outputs=["logits"])
    with pytest.raises(ModelError, match=r"output 'logits' has shape \(\?, 4, 1\); a judge's"):
        OnnxJudge(spatial, device="cpu")


def test_onnx_judge_refuses_inputs_it_cannot_feed(tmp_path):
    class TwoInputs(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    path = tmp_path / "two_inputs.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TwoInputs(), (torch.zeros(2, 3), torch.zeros(2, 3)), str(path), dynamo=False,
            input_names=["x", "y"], output_names=["logits"], opset_version=17,
        )  # fmt: skip
    with pytest.raises(ModelError, match="must take one float input, images"):
        OnnxJudge(path, device="cpu")


def free_width_graph(path: Path) -> Path:
    """x (N, 6) -> logits (N, K): the first max(x) columns of x @ w, so K is not fixed."""
    ints = {"one": [1], "big": [2**62], "zeros": [0, 0]}
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"]),
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Cast", ["top"], ["top_int"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["top_int", "one"], ["top_1"]),
            helper.make_node("Concat", ["big", "top_1"], ["ends"], axis=0),
            helper.make_node("Slice", ["m", "zeros", "ends"], ["logits"]),
        ],
        "judge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "K"])],
        initializer=[
            numpy_helper.from_array(np.ones((6, 4), np.float32), "w"),
            *(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_output_width_must_be_fixed(tmp_path):
    path = free_width_graph(tmp_path / "free.onnx")
    with pytest.raises(ModelError, match=r"output 'logits' has shape \(\?, \?\), its width not"):
        OnnxJudge(path, device="cpu")


class Twins(nn.Module):
    """Two outputs of the same width (B, 4): nothing but names can tell them apart."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :4], x[:, 2:]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {},
            "cannot tell which output of .* holds the logits \\(a \\(\\?, 4\\), b \\(\\?, 4\\)\\)",
        ),
        ({"logits_output": "a", "features_output": "a"}, "both name 'a'"),
    ],
)
def test_twin_outputs_need_names(tmp_path, kwargs, message):
    path = export(Twins(), tmp_path / "twins.onnx", torch.zeros(2, 6), outputs=["a", "b"])
    with pytest.raises(ModelError, match=message):
        OnnxJudge(path, device="cpu", **kwargs)
    judge = OnnxJudge(path, device="cpu", features_output="a")
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    np.testing.assert_array_equal(judge.features(x), x[:, :4])
    np.testing.assert_array_equal(judge.predict(x), [3, 3])  # b = x[:, 2:], largest last


def test_features_output_on_a_one_output_model(tmp_path):
    path = export(LinearJudge(), tmp_path / "lin.onnx", torch.zeros(2, 6), outputs=["logits"])
    with pytest.raises(ModelError, match="has one output, 'logits', which holds the logits"):
        OnnxJudge(path, device="cpu", features_output="logits")
