"""Reference VAEs bundled with latentdiag: a baseline conditional VAE, the disentangled
conditional VAE with a partitioned latent space, and β-VAE / β-TCVAE to compare with; one
training loop for all of them.

Depends on the latentdiag core; the core never imports this package. Importing this package
is light: torch is imported by the functions that need it.

Stable API (used by ``latentdiag embed`` and the report)::

    model, config = load_run(run_dir)              # the trained model, eval mode, and RunConfig
    encoder, info = load_encoder(run_dir)          # encoder(x, labels) -> (mu, logvar)

The models train on images (conv nets, Bernoulli likelihood) and on feature vectors (MLP nets,
Gaussian or negative binomial likelihood), chosen from the data.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reference_models.base import EncoderModule, ReferenceVAE
    from reference_models.config import RunConfig

MODEL_NAMES = ("baseline", "disentangled", "beta-vae", "beta-tcvae")

__all__ = ["MODEL_NAMES", "load_encoder", "load_run"]


def load_run(
    run_dir: str | os.PathLike[str], *, device: Any = "cpu"
) -> tuple[ReferenceVAE, RunConfig]:
    """Load a trained reference model from its run directory (safetensors + JSON, no pickle).

    Args:
        run_dir: A directory written by ``latentdiag train``.
        device: Where to put the model.

    Returns:
        (model in eval mode, its RunConfig). ``model.spec`` holds the data facts (channels,
        size, label names).

    Raises:
        ModelError: The directory holds no readable reference model.
    """
    import torch

    from latentdiag.errors import ModelError
    from reference_models.checkpoint import load_weights
    from reference_models.registry import get_model_class

    state, config, spec = load_weights(run_dir)
    model = get_model_class(config.model.name)(config.model, spec)
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise ModelError(
            f"the weights in {run_dir} do not fit a {config.model.name} model built from its "
            f"config.json ({mismatch}); the run was written by another version of latentdiag "
            "or its files were changed: train it again."
        )
    model.load_state_dict(state)
    model.to(torch.device(device)).eval()
    return model, config


def load_encoder(
    run_dir: str | os.PathLike[str], *, device: Any = "cpu"
) -> tuple[EncoderModule, dict[str, Any]]:
    """The encoder of a trained run as a module ``(x, labels) -> (mu, logvar)``, and its facts.

    ``x``: float (B, C, H, W) in [0, 1] — or, for a run trained on vectors, float (B, F), the
    values as the data stores them (the encoder scales them itself); ``labels``: int64 (B,)
    (ignored when the encoder is unconditional).

    Returns:
        (encoder in eval mode, info) with info keys ``model``, ``conditional``, ``channels``,
        ``size``, ``label_names``, ``partitions`` ({name: [start, stop]}), ``latent_dim``; a
        run trained on vectors has ``features`` (F) and ``likelihood`` instead of
        ``channels`` and ``size``.

    Raises:
        ModelError: The directory holds no readable reference model.
    """
    model, config = load_run(run_dir, device=device)
    encoder = model.encoder_module().eval()
    spec = model.spec
    shape: dict[str, Any] = (
        {"features": spec.n_features, "likelihood": model.likelihood.name}
        if spec.is_vectors
        else {"channels": spec.channels, "size": spec.size}
    )
    info = {
        "model": config.model.name,
        "conditional": bool(model.conditional),
        **shape,
        "label_names": list(spec.label_names),
        "partitions": {k: [a, b] for k, (a, b) in model.partitions().items()},
        "latent_dim": model.latent_dim,
    }
    return encoder, info


def _state_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str:
    """What keeps ``found`` from loading into a model whose state is ``expected`` ("" if fine)."""
    parts = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        k for k in expected if k in found and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{what}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts)
