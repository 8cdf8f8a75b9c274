"""gencheck: a decoder that ignores its label scores chance, a faithful one ≈ 1, a swapped one
shows the swap; the ONNX and factory conventions; each bad input is one Error line."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from latentdiag.cli import cli as main
from latentdiag.errors import DataError, ModelError
from latentdiag.generation.decoders import CallableDecoder, OnnxDecoder, as_samples
from latentdiag.generation.gencheck import (
    condition_sensitivity,
    confusion_matrix,
    run_gencheck,
)

K, S, D = 4, 12, 6
NAMES = ["a", "b", "c", "d"]


def _images(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c: a bright horizontal band at rows 3c..3c+2, plus noise: easy to tell apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), n_per)
    x = rng.uniform(0.0, 0.3, size=(len(y), 1, S, S)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, 3 * c : 3 * c + 3, :] += 0.6
    return np.clip(x, 0, 1), y


X, Y = _images(60, seed=0)
POOL, POOL_Y = _images(40, seed=1)  # what the stub decoders return: other real images


def _pick(z: np.ndarray, n: int) -> np.ndarray:
    """A deterministic choice of one of n items per latent (changes with z)."""
    return (np.abs(z[:, 0]) * 1e6).astype(np.int64) % n


def faithful(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A real image of the label asked for, chosen by z."""
    out = np.empty((len(y), 1, S, S), np.float32)
    for c in np.unique(y):
        rows = np.flatnonzero(c == POOL_Y)
        mask = y == c
        out[mask] = POOL[rows[_pick(z[mask], len(rows))]]
    return out


def ignores_label(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return POOL[_pick(z, len(POOL))]


def swaps_a_and_b(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return faithful(z, np.choose(y, [1, 0, 2, 3]))


def _decoder(fn: Any, **kw: Any) -> CallableDecoder:
    return CallableDecoder(fn, latent_dim=D, n_labels=K, **kw)


@pytest.fixture(scope="module")
def judge() -> Any:
    from latentdiag.generation.judge import train_judge

    return train_judge(X, Y, n_labels=K, seed=0)


def _run(fn: Any, judge: Any, **kw: Any) -> Any:
    return run_gencheck(_decoder(fn), X, Y, NAMES, n_per_label=30, judge=judge, **kw)


def test_the_judge_tells_real_labels_apart(judge: Any) -> None:
    assert judge.heldout_accuracy >= 0.95


def test_a_faithful_decoder_scores_near_one(judge: Any) -> None:
    result = _run(faithful, judge)
    g = result.section
    assert g["condition_accuracy"] >= 0.95
    assert g["cas"] >= 0.9  # a classifier trained on its samples reads real images
    assert g["condition_sensitivity"] > 0.5
    assert g["judge"]["heldout_accuracy"] >= 0.95 and g["judge"]["reliable"]
    assert set(g["precision"]["per_label"]) == set(NAMES)
    assert g["precision"]["mean"] > 0.5 and g["coverage"]["mean"] > 0.3
    assert result.generated["a"].shape == (8, 1, S, S)
    json.dumps(result.to_json(), allow_nan=False)  # JSON-ready


def test_a_decoder_that_ignores_the_label_scores_chance(judge: Any) -> None:
    g = _run(ignores_label, judge).section
    assert g["chance_accuracy"] == 0.25
    assert abs(g["condition_accuracy"] - 0.25) < 0.12
    assert g["condition_sensitivity"] == 0.0  # same z, any label: the same image
    assert g["cas"] < 0.5


def test_a_decoder_that_swaps_two_labels_shows_the_swap(judge: Any) -> None:
    g = _run(swaps_a_and_b, judge).section
    cm = np.array(g["confusion_matrix"])
    assert cm[0, 1] >= 27 and cm[1, 0] >= 27  # of 30: asked a, judged b; asked b, judged a
    assert cm[2, 2] >= 27 and cm[3, 3] >= 27
    assert g["condition_accuracy_per_label"]["a"] < 0.1


def test_a_judge_that_cannot_tell_labels_apart_is_flagged() -> None:
    rng = np.random.default_rng(3)
    noise = rng.uniform(size=X.shape).astype(np.float32)
    result = run_gencheck(_decoder(faithful), noise, Y, NAMES, n_per_label=10, cas=False)
    assert not result.section["judge"]["reliable"]
    assert any("unreliable" in n for n in result.notes)


def test_condition_sensitivity_and_confusion_by_hand() -> None:
    # Two labels, three z: the label adds 1 to every feature, z adds 0, 2, 4.
    out = np.array([[[0.0], [2.0], [4.0]], [[1.0], [3.0], [5.0]]])
    # Var over labels per z: 0.5 (ddof 1); over z per label: 4.
    assert condition_sensitivity(out) == pytest.approx(0.5 / 4.0)
    assert condition_sensitivity(np.ones((2, 3, 1))) is None
    cm = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert cm.tolist() == [[1, 1], [0, 2]]


def test_labels_are_matched_by_name_in_any_order(judge: Any) -> None:
    # The decoder knows the labels in another order: asked "a" is its index 3.
    order = ["d", "c", "b", "a"]

    def fn(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return faithful(z, np.array([NAMES.index(order[i]) for i in y]))

    dec = CallableDecoder(fn, latent_dim=D, label_names=order)
    g = run_gencheck(dec, X, Y, NAMES, n_per_label=20, judge=judge, cas=False).section
    assert g["condition_accuracy"] >= 0.95


def test_bad_decoders_are_one_clear_error(judge: Any) -> None:
    with pytest.raises(ModelError, match="takes 3 labels but DATA has 4"):
        run_gencheck(CallableDecoder(faithful, latent_dim=D, n_labels=3), X, Y, NAMES)
    with pytest.raises(ModelError, match="are not DATA's"):
        run_gencheck(CallableDecoder(faithful, latent_dim=D, label_names=list("abcz")), X, Y, NAMES)
    wrong = _decoder(lambda z, y: np.zeros((len(y), 1, S + 1, S), np.float32))
    with pytest.raises(ModelError, match=r"\(1, 13, 12\) per sample, but the data's items"):
        run_gencheck(wrong, X, Y, NAMES, judge=judge, n_per_label=4)
    big = _decoder(lambda z, y: faithful(z, y) * 5.0)
    with pytest.raises(ModelError, match="outside \\[0, 1\\]; if they are logits"):
        run_gencheck(big, X, Y, NAMES, judge=judge, n_per_label=4)
    with pytest.raises(DataError, match="at least 2 real samples"):
        run_gencheck(_decoder(faithful), X[:5], np.array([0, 0, 1, 2, 3]), NAMES)


def test_output_layouts_are_read() -> None:
    img = np.random.default_rng(0).uniform(size=(3, 2, 5, 5)).astype(np.float32)
    assert np.array_equal(as_samples(img.transpose(0, 2, 3, 1), (2, 5, 5), "probs"), img)
    assert as_samples(img[:, 0], (1, 5, 5), "probs").shape == (3, 1, 5, 5)
    assert np.array_equal(as_samples(img.reshape(3, -1), (2, 5, 5), "probs"), img)
    logits = as_samples(np.zeros((3, 1, 5, 5)), (1, 5, 5), "logits")
    assert np.allclose(logits, 0.5)
    vec = as_samples(np.arange(6.0).reshape(2, 3) - 10, (3,), "probs")  # vectors: any units
    assert vec.min() == -10
    with pytest.raises(ModelError, match="NaN or inf"):
        as_samples(np.full((2, 3), np.nan), (3,), "probs")


# -- ONNX decoders and the command line --------------------------------------------------


def _export_decoder(path: Path, *, one_hot: bool) -> None:
    """A torch decoder: the label picks a band (as in the data), z shifts the noise."""
    import onnx
    import torch
    from torch import nn

    class Dec(nn.Module):
        def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            onehot = label if one_hot else nn.functional.one_hot(label, K).float()
            rows = torch.arange(S).float()
            band = (
                (rows[None, :] >= 3 * torch.arange(K)[:, None])
                & (rows[None, :] < 3 * torch.arange(K)[:, None] + 3)
            ).float()  # (K, S)
            img = (onehot @ band)[:, :, None].expand(-1, S, S) * 0.6  # (B, S, S)
            noise = torch.sigmoid(z[:, :1, None]).expand(-1, S, S) * 0.3
            return (img + noise)[:, None]  # (B, 1, S, S)

    z = torch.zeros(2, D)
    y = torch.eye(K)[:2] if one_hot else torch.zeros(2, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Dec(),
            (z, y),
            str(path),
            input_names=["z", "label"],
            output_names=["x"],
            dynamic_axes={"z": {0: "b"}, "label": {0: "b"}, "x": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    proto.ir_version = 8
    onnx.save(proto, str(path))


@pytest.mark.parametrize("one_hot", [False, True])
def test_an_onnx_decoder_follows_the_convention(tmp_path: Path, judge: Any, one_hot: bool) -> None:
    path = tmp_path / "dec.onnx"
    _export_decoder(path, one_hot=one_hot)
    dec = OnnxDecoder(path, device="cpu")
    assert dec.latent_dim == D and dec.provider == "CPUExecutionProvider"
    assert dec.n_labels == (K if one_hot else None)
    g = run_gencheck(dec, X, Y, NAMES, n_per_label=20, judge=judge, cas=False).section
    assert g["condition_accuracy"] >= 0.95
    assert "ONNX decoder dec.onnx" in g["decoder"]


def test_onnx_decoder_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        OnnxDecoder(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        OnnxDecoder(bad)
    path = tmp_path / "dec.onnx"
    _export_decoder(path, one_hot=False)
    with pytest.raises(ModelError, match="has no input 'latent'"):
        OnnxDecoder(path, latent_input="latent")


def _data(tmp_path: Path, labelled: bool = True) -> Path:
    from latentdiag.data import write_dataset

    return write_dataset(
        tmp_path / "real.npz", X, Y if labelled else None, NAMES if labelled else None
    )


FACTORY = """
import numpy as np
S, K = {S}, {K}

class Faithful:
    latent_dim = {D}
    n_labels = K
    label_names = {NAMES!r}

    def decode(self, z, y):
        z = np.asarray(z); y = np.asarray(y)
        x = np.full((len(y), 1, S, S), 0.15, np.float32)
        x += (np.abs(z[:, :1, None, None]) % 1.0) * 0.1
        for i, c in enumerate(y):
            x[i, 0, 3 * c : 3 * c + 3] += 0.6
        return x

def make(shift=0):
    return Faithful()
"""


@pytest.fixture()
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "gen_factory.py").write_text(FACTORY.format(S=S, K=K, D=D, NAMES=NAMES))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("gen_factory", None)
    return "gen_factory:make"


def test_cli_end_to_end_with_check_and_report(tmp_path: Path, factory: str) -> None:
    from latentdiag.store import write_latents

    data = _data(tmp_path)
    out = tmp_path / "gen"
    runner = CliRunner()
    res = runner.invoke(
        main, ["gencheck", factory, str(data), "-n", "20", "-o", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    g = doc["generation"]
    assert g["condition_accuracy"] >= 0.95 and g["judge"]["heldout_accuracy"] >= 0.9
    assert {p.name for p in out.iterdir()} == {
        "generation.json",
        "samples.npz",
        "samples.png",
        "confusion.png",
    }
    assert json.loads((out / "generation.json").read_text())["generation"] == g

    ok = runner.invoke(main, ["check", str(out), "--require", "generation.condition_accuracy>=0.9"])
    assert ok.exit_code == 0, ok.output
    fail = runner.invoke(main, ["check", str(out), "--require", "generation.cas>=1.01"])
    assert fail.exit_code == 1 and "FAIL" in fail.output
    gate = runner.invoke(
        main, ["gencheck", factory, str(data), "-n", "10", "--require", "generation.cas>1.5"]
    )
    assert gate.exit_code == 1 and "FAIL" in gate.output

    latents = tmp_path / "lat.h5"
    write_latents(latents, np.random.default_rng(0).normal(size=(len(Y), 3)), labels=Y,
                  label_names=NAMES)  # fmt: skip
    rep = runner.invoke(
        main,
        ["report", str(latents), "-o", str(tmp_path / "r"), "--projection", "pca",
         "--generation", str(out), "--require", "generation.condition_accuracy>=0.9"],
    )  # fmt: skip
    assert rep.exit_code == 0, rep.output
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Conditional generation" in html and "Condition accuracy" in html
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["generation"]["condition_accuracy"] == g["condition_accuracy"]
    assert "pass" in rep.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{data_unlabelled}"], "has no labels; gencheck judges"),
        (["{data}", "--latent-dim", "0", "--output", "probs", "--model-kwargs", "[1]"],
         "--model-kwargs must be a JSON object"),
        (["{data}", "--require", "silhouette>=0.5"], "gencheck checks generation.\\* keys"),
    ],
)  # fmt: skip
def test_cli_bad_inputs_are_one_error_line(
    tmp_path: Path, factory: str, args: list[str], message: str
) -> None:
    data = _data(tmp_path)
    unlabelled = tmp_path / "u"
    unlabelled.mkdir()
    plain = _data(unlabelled, labelled=False)
    argv = [a.format(data=data, data_unlabelled=plain) for a in args]
    res = CliRunner().invoke(main, ["gencheck", factory, *argv])
    assert res.exit_code in (1, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    import re

    assert re.search(message, res.output), res.output


def test_cli_missing_decoder_and_wrong_shape(tmp_path: Path, factory: str) -> None:
    data = _data(tmp_path)
    res = CliRunner().invoke(main, ["gencheck", str(tmp_path / "nope.onnx"), str(data)])
    assert res.exit_code == 1 and "Error: decoder file" in res.output
    # The data read at another size than the decoder generates.
    res = CliRunner().invoke(main, ["gencheck", factory, str(data), "--size", "16", "-n", "4"])
    assert res.exit_code == 1
    assert "per sample, but the data's items are images" in res.output
    assert "Traceback" not in res.output


def test_gencheck_help_teaches() -> None:
    res = CliRunner().invoke(main, ["gencheck", "--help"])
    assert res.exit_code == 0
    text = textwrap.dedent(res.output)
    for word in ("condition accuracy", "--judge", "--latents", "--output", "Examples"):
        assert word in text


# -- reference runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from reference_models.config import build_config
    from reference_models.trainer import train

    root = tmp_path_factory.mktemp("gencheck-runs")
    images = {
        "model": {"base_channels": 8},
        "data": {"n": 64, "size": 16},
        "train": {"batch_size": 16, "epochs": 1, "device": "cpu"},
    }
    vectors = {
        "model": {"hidden_dim": 16, "latent_dim": 6},
        "data": {"n": 96, "source": "synthetic-counts"},
        "train": {"batch_size": 16, "epochs": 1, "warmup_steps": 2, "device": "cpu"},
    }
    runs = {}
    for name, model, overrides in (
        ("disentangled", "disentangled", images),
        ("beta-vae", "beta-vae", images),
        ("counts", "baseline", vectors),
    ):
        runs[name] = root / name
        train(build_config(model=model, overrides=overrides), runs[name])
    return runs


def _gencheck_json(*argv: str) -> dict[str, Any]:
    res = CliRunner().invoke(main, ["gencheck", *argv, "-n", "8", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["generation"]


def test_a_reference_run_is_checked_at_its_own_image_size(reference_runs: dict[str, Path]) -> None:
    g = _gencheck_json(str(reference_runs["disentangled"]), "synthetic", "--n", "160")
    assert "reference disentangled run" in g["decoder"] and g["latents_from"] == "prior"
    assert g["label_names"] == ["chest_xray", "oct", "pathology", "dermatoscopy"]
    assert g["judge"]["kind"] == "cnn" and sum(map(sum, g["confusion_matrix"])) == 32
    assert 0.0 <= g["condition_accuracy"] <= 1.0 and g["condition_sensitivity"] > 0


def test_an_unconditional_decoder_has_no_condition_sensitivity(
    reference_runs: dict[str, Path],
) -> None:
    g = _gencheck_json(str(reference_runs["beta-vae"]), "synthetic", "--n", "160")
    assert g["condition_sensitivity"] == 0.0  # beta-VAE's decoder never sees the label


def test_a_counts_run_generates_vectors_judged_by_an_mlp(reference_runs: dict[str, Path]) -> None:
    g = _gencheck_json(str(reference_runs["counts"]), "synthetic-counts", "--n", "200")
    assert g["judge"]["kind"] == "mlp" and g["judge"]["heldout_accuracy"] > 0.5
    assert g["frechet_distance"]["mean"] is not None


def test_latents_from_a_latents_file(tmp_path: Path, factory: str) -> None:
    from latentdiag.store import write_latents

    data = _data(tmp_path)
    pool = tmp_path / "z.h5"
    write_latents(pool, np.random.default_rng(0).normal(size=(50, D)).astype(np.float32))
    res = CliRunner().invoke(
        main, ["gencheck", factory, str(data), "--latents", str(pool), "-n", "8", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["generation"]["latents_from"] == "encoder"
    small = tmp_path / "z3.h5"
    write_latents(small, np.zeros((5, 3), np.float32) + np.arange(3))
    res = CliRunner().invoke(main, ["gencheck", factory, str(data), "--latents", str(small)])
    assert res.exit_code == 1 and "encoder and decoder must share z" in res.output


def test_check_says_where_generation_requirements_are_answered(tmp_path: Path) -> None:
    from latentdiag.store import write_latents

    latents = tmp_path / "lat.h5"
    write_latents(latents, np.random.default_rng(0).normal(size=(40, 3)), labels=np.arange(40) % 2,
                  label_names=["x", "y"])  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(main, ["check", str(latents), "--require", "generation.cas>=0.5"])
    assert res.exit_code == 2 and "pass --generation DIR" in res.output
    gen = tmp_path / "generation.json"
    gen.write_text(json.dumps({"generation": {"condition_accuracy": 0.9, "chance_accuracy": 0.5,
                                              "confusion_matrix": [[9, 1], [1, 9]], "judge": {},
                                              "label_names": ["x", "y"], "cas": 0.8}}))  # fmt: skip
    res = runner.invoke(main, ["check", str(gen), "--require", "silhouette>=0.1"])
    assert res.exit_code == 2 and "answers requirements on generation.* only" in res.output
    both = runner.invoke(
        main,
        ["check", str(latents), "--generation", str(gen), "--require", "generation.cas>=0.7",
         "--require", "silhouette>=-1", "--json"],
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    results = json.loads(both.stdout)["results"]
    assert [r["resolved_key"] for r in results] == ["generation.cas", "separation.silhouette"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    res = runner.invoke(main, ["check", str(bad), "--require", "generation.cas>=0.7"])
    assert res.exit_code == 1 and "is not a gencheck result" in res.output
