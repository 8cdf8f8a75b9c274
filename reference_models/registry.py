"""Model names -> classes; modules are imported on first use."""

from __future__ import annotations

import importlib

from latentdiag.errors import ConfigError
from reference_models.base import ReferenceVAE

__all__ = ["MODEL_NAMES", "get_model_class"]

_MODELS = {
    "baseline": "reference_models.models.baseline:ConditionalVAE",
    "disentangled": "reference_models.models.disentangled:DisentangledConditionalVAE",
    "beta-vae": "reference_models.models.betavae:BetaVAE",
    "beta-tcvae": "reference_models.models.betavae:BetaTCVAE",
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def get_model_class(name: str) -> type[ReferenceVAE]:
    """The model class registered under ``name``.

    Raises:
        ConfigError: No model has that name.
    """
    target = _MODELS.get(name)
    if target is None:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}.")
    module, attr = target.split(":")
    cls: type[ReferenceVAE] = getattr(importlib.import_module(module), attr)
    return cls
