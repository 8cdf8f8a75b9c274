"""A trained reference model's decoder as a :class:`latentdiag.generation.decoders.Decoder`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from latentdiag.generation.decoders import CallableDecoder
from reference_models import load_run

__all__ = ["reference_decoder"]


def reference_decoder(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> CallableDecoder:
    """The decoder of a run from ``latentdiag train``, with the model's own prior.

    Images come out as Bernoulli means in [0, 1]; vectors as the likelihood's mean in the
    data's units (counts: at the median library size of the real data, set by
    :meth:`CallableDecoder.fit_data`). The prior is the model's: N(0, I), or for the
    disentangled model with a conditional prior, N(prior_mu[label], I) on z_modality.

    Raises:
        ModelError: The directory holds no readable reference model.
    """
    from latentdiag.runners.device import resolve_torch_device

    dev = torch.device(resolve_torch_device(device))
    model, config = load_run(run_dir, device=dev)
    spec = model.spec
    state: dict[str, Any] = {"library": 1.0}

    @torch.no_grad()
    def decode(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        zt = torch.as_tensor(z, device=dev)
        yt = torch.as_tensor(y, dtype=torch.long, device=dev)
        out = model.decode(zt, yt)  # an unconditional decoder (beta-VAE) ignores the label
        if model.likelihood.name == "nb":
            lib = torch.zeros(zt.shape[0], int(out.shape[1]), device=dev)
            lib[:, 0] = float(state["library"])
            return model.likelihood.mean(out, lib).float().cpu().numpy()
        return model.likelihood.mean(out).float().cpu().numpy()

    def prior(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        yt = torch.as_tensor(labels, dtype=torch.long, device=dev)
        return model.sample_latents(len(labels), yt, gen).float().cpu().numpy()

    def fit_data(x: np.ndarray) -> None:
        if model.likelihood.name == "nb" and x.ndim == 2:
            state["library"] = float(max(1.0, np.median(x.sum(axis=1))))

    names = list(spec.label_names)
    decoder = CallableDecoder(
        decode,
        latent_dim=model.latent_dim,
        n_labels=len(names) or None,
        label_names=names or None,
        description=f"reference {config.model.name} run {os.fspath(run_dir)} (torch {dev})",
        prior=prior,
        fit=fit_data,
    )
    # What DATA is read as, unless --size / --channels say otherwise (images only).
    decoder.image_size = None if spec.is_vectors else int(spec.size)
    decoder.image_channels = None if spec.is_vectors else int(spec.channels)
    return decoder
