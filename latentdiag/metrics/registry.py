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
    "NEEDS",
    "SECTIONS",
    "GraphCache",
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
# ``mixing`` holds the batch-correction metrics (they need a batch column).
SECTIONS = ("separation", "batch_separation", "mixing", "information", "disentanglement")
# What a declaration can need of the data.
NEEDS = ("labels", "batch", "logvar", "factors", "pre")
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


class GraphCache:
    """One exact k-NN graph of a (sub)space's ``mu``, built on first use, shared by its metrics.

    Built with ``GRAPH_K`` neighbours (the largest neighbourhood the graph metrics use, capped
    at n − 1) so that smaller neighbourhoods are views of it; thread-safe, since the suite
    runs metrics on two threads.
    """

    GRAPH_K = 89  # scIB's 90 neighbours count the cell itself

    def __init__(self, mu: np.ndarray, device: str = "cpu") -> None:
        import threading

        self._mu = mu
        self._device = device
        self._lock = threading.Lock()
        self._graph: Any = None

    def get(self, k: int) -> Any:
        from latentdiag.metrics.knn_graph import exact_knn_graph

        with self._lock:
            if self._graph is None or self._graph.k < k:
                want = min(max(k, self.GRAPH_K), self._mu.shape[0] - 1)
                device = "cpu" if self._device in ("cpu", "mps") else self._device
                self._graph = exact_knn_graph(self._mu, want, device=device)
            graph = self._graph
        return graph if graph.k == k else graph.subset(k)


@dataclass(frozen=True)
class Space:
    """The inputs of one latent (sub)space, as a metric's ``plan`` receives them.

    For the ``batch_separation`` section the separation metrics are planned with the batch
    column as ``labels`` (and its names as ``label_names``). :meth:`graph` gives the exact
    k-NN graph of ``mu``, computed once per (sub)space and shared by every metric that asks.
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
    batch: np.ndarray | None = None
    batch_names: Sequence[str] | None = None
    graphs: GraphCache | None = None
    pre: np.ndarray | None = None  # the embedding before integration (mixing.pcr_comparison)

    def graph(self, k: int) -> Any:
        """The exact k-NN graph of ``mu`` with ``k`` neighbours per row (a ``KNNGraph``)."""
        cache = self.graphs if self.graphs is not None else GraphCache(self.mu, self.device)
        return cache.get(k)

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
        needs: What the data must have: ``"labels"`` (every separation metric), ``"batch"``
            (every mixing metric), ``"logvar"``, ``"factors"`` (every disentanglement
            metric), ``"pre"`` (an embedding before integration, for PCR comparison). A
            missing need skips the metric with the standard reason before ``plan`` is
            called.
        extras: Keys the step writes beside ``key`` (``silhouette_per_label``...).
        side_lane: It runs numpy or scikit-learn code that releases the GIL only in part, and
            no parallel numba kernel: the suite runs it on a second thread beside the numba
            kernels (which launch one at a time, from the main lane).
        own_lane: It is long and spreads itself over threads (DCI's boosting: its factors'
            fits go to one shared pool): the suite starts each such task at once on a thread
            of its own, so that the pool fills the cores the other lanes leave idle instead
            of waiting for its turn.
        shown: How the report presents its numbers: dotted path of the metrics dict (under
            the section; ``*`` for a label or partition name) -> :class:`MetricInfo`.
            ``headline`` paths are the report's tables; the others explain secondary keys.
        headline: Which ``shown`` paths the report's tables list, in order.
        rank: Its place among the report's rows of its section (default: registry order).
        by_batch: A separation metric that also runs with the batch column as the grouping
            (``batch_separation``); ``False`` for those that use labels and batch together.
        label_as_batch: A mixing metric that, in a partition of a file without a batch key,
            runs with the label as the batch (iLISI: does z_shared mix the modalities?).
    """

    section: str
    key: str
    plan: Callable[[Space], Step | str]
    cost: float = 1.0
    needs: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    side_lane: bool = False
    own_lane: bool = False
    shown: Mapping[str, MetricInfo] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    rank: float | None = None
    by_batch: bool = True
    label_as_batch: bool = False

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
            "section must be separation, mixing, information or disentanglement; got "
            f"{spec.section!r}"
        )
    unknown = [n for n in spec.needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"{spec.full_key}: unknown needs {unknown}; known: {', '.join(NEEDS)}")
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
