"""The reconstruction term p(x | z): one module per likelihood, chosen from the data.

Every likelihood turns the decoder's output into a negative log-likelihood in nats per sample
(summed over pixels or features) and into a reconstruction in the data's own units:

- ``bernoulli`` (images in [0, 1]): the decoder's output are logits; no parameters.
- ``gaussian`` (continuous features): the decoder gives the mean in standardized units (the
  training split's per-feature mean and standard deviation, buffers); each feature has a
  *learned* standard deviation, one parameter per feature shared by every sample
  (homoscedastic, as in a probabilistic PCA), initialised to the feature's own spread. The
  NLL is that of the raw values (the standardization's Jacobian is included), so it is
  comparable across runs on the same data.
- ``nb`` (non-negative integer counts): the negative binomial of scVI (Lopez et al. 2018). The
  decoder gives logits of each feature's share ρ of a row's counts; the mean is ρ · l with l
  the row's observed library size (total counts), so the decoder need not learn the library
  size and z need not carry it. One learned inverse dispersion θ per feature.

``model.likelihood = "auto"`` picks ``nb`` when every training value is a non-negative integer
(``DataSpec.counts``), else ``gaussian``; images always take ``bernoulli``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from latentdiag.errors import ConfigError
from reference_models.config import LIKELIHOODS
from reference_models.losses import bce_reconstruction, gaussian_nll, negative_binomial_nll
from reference_models.mlp import FeatureStats, library_size

__all__ = [
    "LIKELIHOODS",
    "Bernoulli",
    "Gaussian",
    "Likelihood",
    "NegativeBinomial",
    "make_likelihood",
    "resolve_likelihood",
]


class Likelihood(nn.Module):
    """p(x | decoder output); ``nll`` in nats per sample, ``mean`` in the data's units."""

    name: ClassVar[str]

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        """(B,) negative log-likelihood of each row of x, summed over its values."""
        raise NotImplementedError

    def mean(self, out: Tensor, x: Tensor | None = None) -> Tensor:
        """The reconstruction E[x | z], shaped like x (``x`` gives the library size of counts)."""
        raise NotImplementedError

    def fit(self, stats: FeatureStats) -> None:
        """Take the training split's statistics (vector likelihoods; images have none)."""


class Bernoulli(Likelihood):
    """Images in [0, 1]: Bernoulli on grey levels, logits from the decoder."""

    name = "bernoulli"

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        return bce_reconstruction(out, x)

    def mean(self, out: Tensor, x: Tensor | None = None) -> Tensor:
        return torch.sigmoid(out.float())


class Gaussian(Likelihood):
    """Continuous features: N(loc + scale · out, (scale · σ)²) per feature, σ learned."""

    name = "gaussian"
    loc: Tensor
    scale: Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(n_features))  # (F,) training mean
        self.register_buffer("scale", torch.ones(n_features))  # (F,) training std
        self.log_sigma = nn.Parameter(torch.zeros(n_features))  # (F,) in standardized units

    def fit(self, stats: FeatureStats) -> None:
        self.loc.copy_(stats.mean)
        self.scale.copy_(stats.std)

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        log_scale = self.log_sigma + torch.log(self.scale)  # (F,) raw units
        return gaussian_nll(x.float(), self.mean(out), log_scale)

    def mean(self, out: Tensor, x: Tensor | None = None) -> Tensor:
        return self.loc + self.scale * out.float()


class NegativeBinomial(Likelihood):
    """Counts: NB(mean ρ · l, inverse dispersion θ) per feature; ρ = softmax(out), l observed."""

    name = "nb"
    # θ stays in [e^-8, e^8]: beyond that lgamma in float32 loses the digits the NLL needs,
    # and the distribution is indistinguishable from its Poisson or geometric-like limits.
    _LOG_THETA_RANGE = (-8.0, 8.0)

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.log_theta = nn.Parameter(torch.zeros(n_features))  # (F,)

    def _log_mean(self, out: Tensor, x: Tensor) -> Tensor:
        return torch.log_softmax(out.float(), dim=-1) + torch.log(library_size(x.float()))

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        log_theta = self.log_theta.clamp(*self._LOG_THETA_RANGE)
        return negative_binomial_nll(x.float(), self._log_mean(out, x), log_theta)

    def mean(self, out: Tensor, x: Tensor | None = None) -> Tensor:
        if x is None:
            raise ValueError("the negative binomial's mean needs the observed library size")
        return torch.exp(self._log_mean(out, x))


def resolve_likelihood(choice: str, *, kind: str, counts: bool, source: str = "") -> str:
    """The likelihood a model uses: ``bernoulli``, ``gaussian`` or ``nb``.

    Args:
        choice: ``model.likelihood``: ``auto``, ``gaussian`` or ``nb``.
        kind: The data's kind, ``images`` or ``vectors``.
        counts: Every training value is a non-negative integer.
        source: The data, for messages.

    Raises:
        ConfigError: A vector likelihood for images, or ``nb`` for values that are not counts.
    """
    if choice not in LIKELIHOODS:
        raise ConfigError(
            f"model.likelihood must be one of {', '.join(LIKELIHOODS)}; got {choice!r}."
        )
    if kind != "vectors":
        if choice != "auto":
            raise ConfigError(
                f"model.likelihood={choice} applies to vector data; images always use the "
                "Bernoulli likelihood: leave model.likelihood at auto."
            )
        return "bernoulli"
    if choice == "nb" and not counts:
        raise ConfigError(
            f"model.likelihood=nb needs non-negative integer counts, but {source or 'the data'} "
            "holds other values; use model.likelihood=gaussian (or auto)."
        )
    if choice == "auto":
        return "nb" if counts else "gaussian"
    return choice


def make_likelihood(name: str, n_features: int) -> Likelihood:
    """The module of a resolved likelihood (see :func:`resolve_likelihood`)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian":
        return Gaussian(n_features)
    assert name == "nb", name
    return NegativeBinomial(n_features)
