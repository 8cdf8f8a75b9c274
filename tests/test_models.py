"""Reference models at tiny sizes: losses, one optimisation step, configs, save / load."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from latentdiag.errors import ConfigError
from reference_models import MODEL_NAMES
from reference_models.base import DataSpec
from reference_models.config import (
    DataConfig,
    RunConfig,
    build_config,
    config_from_dict,
    parse_overrides,
)
from reference_models.losses import (
    between_label_share,
    grad_reverse,
    kl_normal,
    separation_hinge,
    supervised_contrastive,
    tc_decomposition,
)
from reference_models.registry import MODEL_NAMES as REGISTRY_NAMES
from reference_models.registry import get_model_class

LABELS = ("a", "b", "c", "d")


def _batch(
    channels: int = 1, size: int = 16, b: int = 16, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(b, channels, size, size, generator=g),
        "label": torch.arange(b) % len(LABELS),
    }


def _model(name: str, channels: int = 1, size: int = 16, **model_fields: object):
    cfg = build_config(model=name, overrides={"model": {"base_channels": 8, **model_fields}})
    spec = DataSpec(channels=channels, size=size, label_names=LABELS, n_train=64)
    torch.manual_seed(0)
    return get_model_class(name)(cfg.model, spec)


# -- one optimisation step -------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_step_gives_finite_loss_and_moves_every_weight(name: str, channels: int) -> None:
    model = _model(name, channels=channels)
    opt = torch.optim.AdamW(model.param_groups(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    parts = model(_batch(channels))
    assert "loss" in parts
    for key, value in parts.items():
        assert value.ndim == 0 and math.isfinite(float(value.detach())), (key, value)
    opt.zero_grad()
    parts["loss"].backward()
    opt.step()
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    trainable = {k for k, p in model.named_parameters()}
    # Every trainable weight takes part in the loss (DDP without find_unused_parameters needs it).
    assert trainable <= moved, sorted(trainable - moved)


def test_disentangled_optional_terms_take_part() -> None:
    plain = _model("disentangled")
    assert plain.classifier is None and "adv" not in plain(_batch())
    model = _model("disentangled", adversarial_weight=1.0, invariance_weight=1.0)
    groups = model.param_groups()
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    parts = model(_batch())
    assert {"adv", "adv_acc", "inv"} <= set(parts)
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.classifier.parameters())


@pytest.mark.parametrize("size", [32, 64, 128])
def test_encoder_and_decoder_shapes_at_each_supported_size(size: int) -> None:
    model = _model("baseline", channels=3, size=size).eval()
    x = torch.rand(2, 3, size, size)
    y = torch.tensor([0, 3])
    mu, logvar = model.encode(x, y)
    assert mu.shape == logvar.shape == (2, 16)
    assert model.decode(mu, y).shape == (2, 3, size, size)


def test_disentangled_partitions_and_heads_follow_the_label() -> None:
    model = _model("disentangled").eval()
    assert model.partitions() == {"shared": (0, 8), "modality": (8, 16)}
    z = torch.zeros(2, 16)
    out_a = model.decode(z, torch.tensor([0, 1]))
    out_b = model.decode(z, torch.tensor([1, 0]))
    # Each row is decoded by its own label's head: swapping labels swaps the rows.
    torch.testing.assert_close(out_a[0], out_b[1])
    assert not torch.allclose(out_a[0], out_a[1])


def test_the_fused_heads_equal_each_head_run_on_its_own_rows() -> None:
    from reference_models.nets import ConvDecoder

    torch.manual_seed(0)
    dec = ConvDecoder(
        channels=3, size=32, latent_dim=6, base_channels=8, max_channels=32, n_labels=4,
        n_heads=4,
    )  # fmt: skip
    z = torch.randn(10, 6)
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 1, 1])
    out = dec(z, labels)
    h = dec.trunk(dec.fc(torch.cat([z, dec.embed(labels)], 1)).view(10, dec.c0, 4, 4))
    for i, k in enumerate(labels.tolist()):
        alone = dec.heads[k](h[i : i + 1])[0]  # the head of the row's label, alone
        torch.testing.assert_close(out[i], alone, rtol=1e-6, atol=1e-6)
    assert out.shape == (10, 3, 32, 32)


def test_disentangled_calibrate_sets_exact_label_means() -> None:
    model = _model("disentangled").eval()
    batch = _batch(b=32)
    model.calibrate([batch], reduce=lambda t: t)
    raw, _ = model.encoder(batch["image"], batch["label"])
    for k in range(len(LABELS)):
        rows = raw[batch["label"] == k]
        torch.testing.assert_close(model.shared_mean[k], rows[:, :8].mean(0))
        torch.testing.assert_close(model.prior_mu[k], rows[:, 8:].mean(0))
    mu, _ = model.encode(batch["image"], batch["label"])
    for k in range(len(LABELS)):  # centred: every label's mean z_shared is 0
        torch.testing.assert_close(
            mu[batch["label"] == k, :8].mean(0), torch.zeros(8), atol=1e-5, rtol=0
        )


def test_disentangled_z_modality_is_read_from_the_image_alone() -> None:
    """The label feeds z_shared only: z_modality's separation cannot be copied from the input."""
    model = _model("disentangled").eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        mu_a, lv_a = model.encode(x, torch.tensor([0, 1, 2, 3]))
        mu_b, lv_b = model.encode(x, torch.tensor([3, 2, 1, 0]))
    torch.testing.assert_close(mu_a[:, 8:], mu_b[:, 8:])
    torch.testing.assert_close(lv_a[:, 8:], lv_b[:, 8:])
    assert not torch.allclose(mu_a[:, :8], mu_b[:, :8])  # z_shared is conditional
    # The seed's variant, where the label also feeds z_modality, stays available.
    leaky = _model("disentangled", modality_from_image=False).eval()
    with torch.no_grad():
        a = leaky.encode(x, torch.tensor([0, 1, 2, 3]))[0]
        b = leaky.encode(x, torch.tensor([3, 2, 1, 0]))[0]
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_unconditional_models_ignore_labels() -> None:
    for name in ("beta-vae", "beta-tcvae"):
        model = _model(name).eval()
        assert not model.conditional and not model.needs_labels
        x = torch.rand(3, 1, 16, 16)
        a = model.encode(x, torch.tensor([0, 1, 2]))[0]
        b = model.encode(x, None)[0]
        torch.testing.assert_close(a, b)


# -- loss terms ------------------------------------------------------------------------------


def test_kl_normal_closed_form() -> None:
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # 0.5·(μ² + σ² − log σ² − 1): [0.5·1, 0.5·(4 − ln 4 − 1)]
    expected = torch.tensor([[0.5, 0.5 * (3.0 - math.log(4.0))]])
    torch.testing.assert_close(kl_normal(mu, logvar), expected)
    torch.testing.assert_close(
        kl_normal(mu, logvar, torch.tensor([[1.0, 0.0]]))[0, 0], torch.tensor(0.0)
    )


def test_separation_hinge_is_bounded_and_zero_beyond_the_margin() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    near = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])  # centroids 5 apart
    loss, dist = separation_hinge(near, labels, n_labels=2, margin=10.0)
    assert float(dist) == pytest.approx(5.0)
    assert float(loss) == pytest.approx(5.0)  # relu(10 − 5)
    far = near * 3  # 15 apart
    loss, _ = separation_hinge(far.requires_grad_(), labels, n_labels=2, margin=10.0)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert far.grad is None or float(far.grad.abs().sum()) == 0.0
    # One label in the batch: nothing to separate.
    loss, _ = separation_hinge(near[:2], labels[:2], n_labels=2, margin=10.0)
    assert float(loss) == 0.0


def test_supervised_contrastive_hand_case() -> None:
    # Two pairs on orthogonal axes: each anchor has one positive (similarity 1) and two
    # negatives (similarity 0); loss = −log(e^{1/τ} / (e^{1/τ} + 2)).
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2.0))
    assert float(supervised_contrastive(z, labels, temperature=tau)) == pytest.approx(
        expected, rel=1e-5
    )
    # No positives anywhere: zero.
    assert float(supervised_contrastive(z[:2], torch.tensor([0, 1]), temperature=tau)) == 0.0


def test_between_label_share_zero_for_equal_means_and_linear_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 3, generator=g)
    labels = torch.arange(400) % 4
    for k in range(4):  # make every label's mean exactly equal
        z[labels == k] -= z[labels == k].mean(0)
    assert float(between_label_share(z, labels, n_labels=4)) == pytest.approx(0.0, abs=1e-6)
    shifted = z.clone()
    shifted[labels == 1, 0] += 1.0
    v = float(between_label_share(shifted, labels, n_labels=4))
    assert 0.0 < v <= 3.0  # bounded by min(d, K − 1)
    a = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 0.0], [1.0, 0.0, 3.0]])
    assert float(between_label_share(shifted @ a, labels, n_labels=4)) == pytest.approx(v, rel=1e-3)


def test_tc_decomposition_sums_to_the_kl_estimate() -> None:
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g) * 0.3
    z = mu + torch.randn(32, 4, generator=g) * torch.exp(0.5 * logvar)
    parts = tc_decomposition(z, mu, logvar, dataset_size=1000)
    # MI + TC + dim-KL telescopes to mean(log q(z|x) − log p(z)).
    log_q = (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(1)
    log_p = (-0.5 * (math.log(2 * math.pi) + z**2)).sum(1)
    total = parts["mi"] + parts["tc"] + parts["dim_kl"]
    torch.testing.assert_close(total, (log_q - log_p).mean(), rtol=1e-4, atol=1e-4)
    assert float(parts["tc"]) >= -1e-4  # a log-sum-exp inequality: TC estimate is ≥ 0


def test_grad_reverse_flips_the_gradient() -> None:
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 2.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-2.0, -4.0, -6.0]))


# -- configuration ---------------------------------------------------------------------------


def test_registry_and_package_agree_on_model_names() -> None:
    assert tuple(MODEL_NAMES) == tuple(REGISTRY_NAMES)


def test_config_defaults_file_and_overrides(tmp_path) -> None:
    cfg = build_config(model="disentangled")
    assert cfg.model.name == "disentangled" and cfg.model.margin == 15.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]
    toml = tmp_path / "run.toml"
    toml.write_text('[model]\nname = "disentangled"\nmargin = 20\n[train]\nepochs = 3\n')
    cfg = build_config(file=toml, overrides=parse_overrides(["train.lr=1e-3", "model.margin=25"]))
    assert (cfg.model.margin, cfg.train.epochs, cfg.train.lr) == (25.0, 3, 1e-3)
    again = config_from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train": {"epochs": "two"}}, "train.epochs must be an integer; got 'two'."),
        ({"train": {"epoch": "2"}}, "unknown field(s) train.epoch; [train] has batch_size"),
        ({"data": {"size": "48"}}, "data.size must be one of 16, 32, 64, 128, 256; got 48."),
        ({"model": {"name": "vqvae"}}, "unknown model 'vqvae'"),
        ({"model": {"shared_dim": "16"}}, "model.shared_dim must be between 1 and"),
        ({"model": {"margin": "-1"}}, "model.margin and model.temperature must be positive"),
    ],
)
def test_bad_config_values_are_named(overrides: dict, message: str) -> None:
    overrides.setdefault("model", {}).setdefault("name", "disentangled")
    with pytest.raises(ConfigError) as info:
        build_config(overrides=overrides)
    assert message in str(info.value)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match=r"must look like section\.field=value"):
        parse_overrides(["lr=1e-3"])


def test_bad_config_file(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid json"):
        build_config(file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(file=tmp_path / "missing.json")


def test_run_config_sections_are_frozen_dataclasses() -> None:
    cfg = RunConfig()
    assert isinstance(cfg.data, DataConfig)
    assert np.isclose(cfg.data.heldout, 0.2)
