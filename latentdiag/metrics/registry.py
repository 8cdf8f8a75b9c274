"""One declaration per metric: what it needs, what it costs, how it runs, how it is shown.

A :class:`MetricSpec` is everything latentdiag knows about one metric: its key and section in
the metrics dict, the data it needs (labels, logvar, factors), its relative cost, the keys it
writes beside its own, whether it runs scikit-learn code (and so goes on the suite's second
thread), how it runs on one latent (sub)space, and how the report and the docs present each
number it writes. :func:`~latentdiag.metrics.suite.compute_metrics` runs the registered
metrics in order, ``check`` accepts their keys, and the report explains and ranks them from
the same declarations; adding a metric means declaring it here (the built-in ones are in
:mod:`latentdiag.metrics.declarations`) and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "SECTIONS",
    "MetricInfo",
    "MetricSpec",
    "Space",
    "Step",
    "register",
    "registered",
    "spec_for",
    "temporarily_registered",
]

# The sections of the metrics dict, in order. ``batch_separation`` holds the separation
# metrics again with the batch column as the grouping; it has no declarations of its own.
SECTIONS = ("separation", "batch_separation", "information", "disentanglement")
# A metric's computation on one space: called with a progress callback (fraction done),
# returns its value, or a dict of its value and the keys it writes beside it. A dict may also
# carry "_notes" (how the data was reduced) and "_skipped" ((key, reason) pairs).
Step = Callable[[Callable[[float], None]], Any]


@dataclass(frozen=True)
class MetricInfo:
    """How the report presents one number.

    Attributes:
        title: Plain name.
        direction: ``"higher"`` or ``"lower"`` (is better), or ``None`` where neither is.
        range: The values it can take, in words.
        explanation: One sentence a newcomer can read.
        anchor: Section anchor in docs/metrics.md (GitHub's slug of the heading).
        doc_section: That section's name, for link text.
    """

    title: str
    direction: str | None
    range: str
    explanation: str
    anchor: str
    doc_section: str


@dataclass(frozen=True)
class Space:
    """The inputs of one latent (sub)space, as a metric's ``plan`` receives them.

    For the ``batch_separation`` section the separation metrics are planned with the batch
    column as ``labels`` (and its names as ``label_names``).
    """

    mu: np.ndarray
    labels: np.ndarray | None
    label_names: Sequence[str] | None
    logvar: np.ndarray | None
    factors: np.ndarray | None
    factor_names: Sequence[str] | None
    sample: int | None
    seed: int
    device: str
    exhaustive: bool = False

    @property
    def n(self) -> int:
        return int(self.mu.shape[0])

    @property
    def d(self) -> int:
        return int(self.mu.shape[1])


@dataclass(frozen=True)
class MetricSpec:
    """One metric, declared.

    Attributes:
        section: ``separation``, ``information`` or ``disentanglement``. Separation metrics
            also run by batch (``batch_separation``) when a batch column is given.
        key: Its key in the section (``silhouette``).
        plan: Given a :class:`Space`, the :data:`Step` that computes the metric there, or a
            string saying why it cannot run on this data (no logvar, too costly...).
        cost: Relative cost, for the progress bar.
        needs: What the data must have: ``"labels"`` (every separation metric),
            ``"logvar"``, ``"factors"`` (every disentanglement metric). A missing need skips
            the metric with the standard reason before ``plan`` is called.
        extras: Keys the step writes beside ``key`` (``silhouette_per_label``...).
        side_lane: It runs scikit-learn estimators (Python-level loops around compiled
            fits): the suite runs it on a second thread beside the numba kernels.
        shown: How the report presents its numbers: dotted path of the metrics dict (under
            the section; ``*`` for a label or partition name) -> :class:`MetricInfo`.
            ``headline`` paths are the report's tables; the others explain secondary keys.
        headline: Which ``shown`` paths the report's tables list, in order.
        rank: Its place among the report's rows of its section (default: registry order).
    """

    section: str
    key: str
    plan: Callable[[Space], Step | str]
    cost: float = 1.0
    needs: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    side_lane: bool = False
    shown: Mapping[str, MetricInfo] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    rank: float | None = None

    @property
    def full_key(self) -> str:
        return f"{self.section}.{self.key}"


_REGISTRY: list[MetricSpec] = []
_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from latentdiag.metrics import declarations  # noqa: F401  (registers the built-ins)


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric after those registered so far (its key must be new in its section).

    Raises:
        ValueError: An unknown section, a key already registered, or a headline path it does
            not show.
    """
    if spec.section not in SECTIONS or spec.section == "batch_separation":
        raise ValueError(
            f"section must be separation, information or disentanglement; got {spec.section!r}"
        )
    if any(s.section == spec.section and s.key == spec.key for s in _REGISTRY):
        raise ValueError(f"{spec.full_key} is already registered")
    missing = [p for p in spec.headline if p not in spec.shown]
    if missing:
        raise ValueError(f"{spec.full_key}: headline paths {missing} have no MetricInfo in shown")
    _REGISTRY.append(spec)
    return spec


def registered() -> tuple[MetricSpec, ...]:
    """Every registered metric, in the order the suite runs them."""
    _load_builtins()
    return tuple(_REGISTRY)


def spec_for(section: str, key: str) -> MetricSpec:
    """The declaration of ``section.key`` (``batch_separation`` maps to ``separation``).

    Raises:
        KeyError: No such metric.
    """
    if section == "batch_separation":
        section = "separation"
    for spec in registered():
        if spec.section == section and spec.key == key:
            return spec
    raise KeyError(f"{section}.{key}")


@contextmanager
def temporarily_registered(spec: MetricSpec) -> Iterator[MetricSpec]:
    """Register ``spec`` for the duration of a ``with`` block (for tests and experiments)."""
    _load_builtins()
    register(spec)
    try:
        yield spec
    finally:
        _REGISTRY.remove(spec)
