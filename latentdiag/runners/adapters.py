"""Reading (mu, logvar) out of what a VAE's encoder returns.

VAE code comes with its own conventions. These adapters cover the common ones:

========================================  =============================================
the encoder returns                       read as
========================================  =============================================
a tensor                                  mu (a deterministic embedding), no logvar
``(mu, logvar)`` tuple or ``[mu, logvar]``  mu, logvar
a list of ``(mu, logvar)`` pairs          levels of a hierarchical VAE, concatenated;
                                          partitions ``level0``, ``level1``, ...
an object with ``.latent_dist``           diffusers' ``AutoencoderKLOutput``:
                                          ``latent_dist.mean`` / ``latent_dist.logvar``
an object with ``.mean`` and ``.logvar``  diffusers' ``DiagonalGaussianDistribution``
an object with ``.embedding``             pythae's ``ModelOutput``:
                                          ``embedding`` / ``log_covariance``
``torch.distributions.Normal``            ``loc``, ``2 log scale`` (``Independent`` unwrapped)
a mapping                                 keys by the naming conventions below
========================================  =============================================

Output and key names are matched case-insensitively, ignoring a scope prefix (``encoder/``)
and a TensorFlow ``:0`` suffix: ``mean, mu, loc, z_mean, ...`` are means; ``logvar, log_var,
z_log_var, ...`` log-variances; ``log_sigma, log_std, ...`` log standard deviations
(logvar = 2·x); ``sigma, std, scale, ...`` standard deviations (logvar = 2·log x);
``var, variance`` variances (logvar = log x).

Spatial latents (C × H × W, e.g. a diffusers VAE) are flattened (d = C·H·W) or averaged over
positions (d = C), per ``spatial``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from latentdiag.errors import ModelError

__all__ = [
    "LOGVAR_KINDS",
    "convert_to_logvar",
    "name_role",
    "read_output",
]

_MEAN_NAMES = {
    "mean", "mu", "loc", "z_mean", "z_mu", "mu_z", "zmean", "qz_mean", "q_mean", "latent_mean",
    "posterior_mean", "means", "embedding", "z_loc", "mean_z",
}  # fmt: skip
_LOGVAR_NAMES = {
    "logvar", "log_var", "z_log_var", "z_logvar", "logvar_z", "log_variance", "logvariance",
    "log_covariance", "latent_logvar", "posterior_logvar", "qz_logvar", "lv", "log_var_z",
}  # fmt: skip
_LOG_SIGMA_NAMES = {
    "log_sigma", "logsigma", "log_std", "logstd", "z_log_sigma", "z_log_std", "log_scale",
    "logscale", "z_logstd", "log_stddev",
}  # fmt: skip
_SIGMA_NAMES = {"sigma", "std", "scale", "stddev", "z_sigma", "z_std", "z_scale", "sd"}
_VARIANCE_NAMES = {"var", "variance", "z_var", "z_variance"}

LOGVAR_KINDS = ("logvar", "log_sigma", "sigma", "variance")
# (mu, logvar or None, partitions found, adapter name)
_Found = tuple[Any, Any | None, dict[str, tuple[int, int]], str]


def _normal_name(name: str) -> str:
    base = re.split(r"[/.]", name.strip())[-1]
    return re.sub(r":\d+$", "", base).lower()


def name_role(name: str) -> str | None:
    """What a named output holds by convention.

    Returns:
        ``mu``, ``logvar``, ``log_sigma``, ``sigma``, ``variance``, or None when the name
        follows no convention.
    """
    n = _normal_name(name)
    for role, names in (
        ("mu", _MEAN_NAMES),
        ("logvar", _LOGVAR_NAMES),
        ("log_sigma", _LOG_SIGMA_NAMES),
        ("sigma", _SIGMA_NAMES),
        ("variance", _VARIANCE_NAMES),
    ):
        if n in names:
            return role
    return None


def convert_to_logvar(x: Any, kind: str) -> Any:
    """log σ² from a log-variance, log-sigma, sigma or variance (numpy or torch)."""
    if kind == "logvar":
        return x
    if kind == "log_sigma":
        return 2.0 * x
    if kind == "sigma":
        return 2.0 * _log(x)
    if kind == "variance":
        return _log(x)
    raise ModelError(f"unknown logvar kind {kind!r}; expected one of {', '.join(LOGVAR_KINDS)}.")


def _log(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(x)
    return x.log()


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "detach")


def _describe(out: Any) -> str:
    if _is_tensor(out):
        return f"tensor{tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        inner = ", ".join(_describe(o) for o in out[:4])
        more = ", ..." if len(out) > 4 else ""
        return f"{type(out).__name__} of {len(out)} [{inner}{more}]"
    if isinstance(out, Mapping):
        return f"mapping with keys {sorted(map(str, out))[:8]}"
    return type(out).__name__


def read_output(
    out: Any, *, spatial: str = "flatten", channels_last: bool = False
) -> tuple[Any, Any | None, dict[str, tuple[int, int]], str]:
    """Find (mu, logvar) in an encoder's output.

    Args:
        out: What the encoder returned.
        spatial: ``flatten`` or ``mean`` for latents with spatial dimensions.
        channels_last: The output's channel axis is the last one.

    Returns:
        ``(mu, logvar, partitions, adapter)``: mu (B, d) and logvar (B, d) or None as torch
        tensors; partitions found in the output (hierarchical levels); the adapter's name.

    Raises:
        ModelError: The output follows none of the conventions.
    """
    mu, logvar, partitions, adapter = _find(out)
    mu = _flat(mu, spatial, channels_last)
    if logvar is not None:
        logvar = _flat(logvar, spatial, channels_last)
        if tuple(logvar.shape) != tuple(mu.shape):
            raise ModelError(
                f"the model's logvar has shape {tuple(logvar.shape)} but its mu has "
                f"{tuple(mu.shape)}; they must match."
            )
    return mu, logvar, partitions, adapter


def _flat(x: Any, spatial: str, channels_last: bool) -> Any:
    if x.ndim == 2:
        return x
    if x.ndim == 1:
        return x.reshape(x.shape[0], 1)
    if channels_last:
        x = x.movedim(-1, 1)
    if spatial == "mean":
        return x.reshape(x.shape[0], x.shape[1], -1).mean(dim=2)
    return x.reshape(x.shape[0], -1)


def _find(out: Any) -> _Found:
    if _is_tensor(out):
        return out, None, {}, "tensor (deterministic)"
    # diffusers: AutoencoderKLOutput(latent_dist=DiagonalGaussianDistribution)
    if hasattr(out, "latent_dist"):
        dist = out.latent_dist
        return dist.mean, dist.logvar, {}, "diffusers latent_dist"
    if (
        hasattr(out, "mean")
        and hasattr(out, "logvar")
        and _is_tensor(getattr(out, "mean", None))
        and _is_tensor(getattr(out, "logvar", None))
    ):
        return out.mean, out.logvar, {}, "mean/logvar attributes"
    # pythae: ModelOutput(embedding=..., log_covariance=...) (a dict with attribute access)
    emb = out.get("embedding") if isinstance(out, Mapping) else getattr(out, "embedding", None)
    if _is_tensor(emb):
        if isinstance(out, Mapping):
            logcov = out.get("log_covariance")
        else:
            logcov = getattr(out, "log_covariance", None)
        return emb, logcov if _is_tensor(logcov) else None, {}, "pythae embedding/log_covariance"
    # torch.distributions: Independent(Normal) or Normal
    dist = getattr(out, "base_dist", out)
    if _is_tensor(getattr(dist, "loc", None)) and _is_tensor(getattr(dist, "scale", None)):
        return (
            dist.loc,
            convert_to_logvar(dist.scale, "sigma"),
            {},
            "torch.distributions (loc, scale)",
        )
    if isinstance(out, Mapping):
        return _from_mapping(out)
    if isinstance(out, (tuple, list)):
        return _from_sequence(out)
    raise ModelError(
        f"cannot read (mu, logvar) from the model's output ({_describe(out)}); latentdiag reads "
        "a tensor, (mu, logvar), diffusers' latent_dist, pythae's embedding/log_covariance, a "
        "torch Normal or a dict of mu/logvar; wrap the model in a factory that returns one."
    )


def _from_mapping(out: Mapping[str, Any]) -> _Found:
    roles: dict[str, tuple[str, Any]] = {}
    for key, value in out.items():
        role = name_role(str(key))
        if role is not None and _is_tensor(value) and role not in roles:
            roles[role] = (str(key), value)
    if "mu" not in roles:
        raise ModelError(
            f"the model returned a mapping with keys {sorted(map(str, out))} and none is a mean "
            "(mu, mean, loc, z_mean, embedding, ...); wrap it in a factory that returns "
            "(mu, logvar)."
        )
    logvar = None
    for kind in LOGVAR_KINDS:
        if kind in roles:
            logvar = convert_to_logvar(roles[kind][1], kind)
            break
    return roles["mu"][1], logvar, {}, "mapping " + "/".join(k for k, _ in roles.values())


def _from_sequence(out: tuple[Any, ...] | list[Any]) -> _Found:
    items = list(out)
    if len(items) == 1:
        return _find(items[0])
    if len(items) == 2 and all(_is_tensor(t) for t in items):
        return items[0], items[1], {}, "(mu, logvar)"
    if items and all(
        isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_tensor(t) for t in p)
        for p in items
    ):
        # A hierarchical VAE: one (mu, logvar) per level; concatenate, one partition each.
        import torch

        mus = [p[0].reshape(p[0].shape[0], -1) for p in items]
        logvars = [p[1].reshape(p[1].shape[0], -1) for p in items]
        parts: dict[str, tuple[int, int]] = {}
        start = 0
        for i, m in enumerate(mus):
            parts[f"level{i}"] = (start, start + int(m.shape[1]))
            start += int(m.shape[1])
        return torch.cat(mus, dim=1), torch.cat(logvars, dim=1), parts, "levels of (mu, logvar)"
    raise ModelError(
        f"cannot read (mu, logvar) from the model's output, a {_describe(out)}; latentdiag "
        "reads (mu, logvar) or a list of (mu, logvar) pairs; give a factory whose encode() "
        "returns one of these."
    )
