"""Requirements on metrics, such as ``separation.silhouette>=0.5``: parse, then evaluate.

A requirement is ``KEY OP NUMBER`` with OP one of ``>= <= > < == !=``. KEY is a dotted path
into the metrics dict of :func:`~latentdiag.metrics.suite.compute_metrics`; a section name may
be left out where it is unambiguous (``partitions.shared.linear_probe_accuracy`` means
``partitions.shared.separation.linear_probe_accuracy``, ``silhouette`` means
``separation.silhouette``), and a list element is addressed by its index
(``information.mi_per_dim.3``).

A key that names a metric the data could not support (listed under ``skipped``) makes its
requirement fail with that reason; a key that names nothing known is a
:class:`~latentdiag.errors.ConfigError` listing the closest keys.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latentdiag.errors import ConfigError

__all__ = [
    "GENERATION_KEYS",
    "CheckResult",
    "Requirement",
    "check_requirements",
    "flatten_metrics",
    "parse_requirement",
    "required_keys",
    "validate_requirements",
]

_OPS: dict[str, Any] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_PATTERN = re.compile(
    r"^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>\S+)\s*$"
)
# Sections a key may leave out (``silhouette`` is ``separation.silhouette``); batch_separation
# is always written out, so that a requirement on the batch cannot be mistaken for one on
# the label.
_SECTIONS = ("separation", "information", "disentanglement")
_NAMED_ONLY = ("batch_separation",)


@dataclass(frozen=True)
class Requirement:
    """One parsed requirement: ``key op threshold``."""

    key: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.key}{self.op}{_fmt(self.threshold)}"


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one requirement.

    Attributes:
        key: The requirement's key as written.
        op: The comparison.
        threshold: The number compared against.
        value: The metric's value (None when it could not be computed).
        passed: Whether the requirement holds.
        resolved_key: The full dotted key the requirement was matched to.
        reason: Why the value is missing, when it is.
    """

    key: str
    op: str
    threshold: float
    value: float | None
    passed: bool
    resolved_key: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fmt(x: float) -> str:
    return repr(x) if not float(x).is_integer() else str(int(x))


def parse_requirement(text: str) -> Requirement:
    """Parse ``KEY OP NUMBER``, e.g. ``separation.silhouette>=0.5``.

    Args:
        text: The requirement.

    Returns:
        The parsed :class:`Requirement`.

    Raises:
        ConfigError: The text is not ``KEY OP NUMBER`` or the number is not finite.
    """
    match = _PATTERN.match(str(text))
    if match is None:
        raise ConfigError(
            f"requirement {text!r} is not of the form KEY OP NUMBER, e.g. "
            "'separation.silhouette>=0.5' (OP one of >=, <=, >, <, ==, !=)."
        )
    try:
        threshold = float(match["value"])
    except ValueError:
        raise ConfigError(
            f"requirement {text!r}: {match['value']!r} is not a number; expected e.g. "
            "'separation.silhouette>=0.5'."
        ) from None
    if not math.isfinite(threshold):
        raise ConfigError(f"requirement {text!r}: the threshold must be a finite number.")
    return Requirement(key=match["key"], op=match["op"], threshold=threshold)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of the metrics dict by dotted key (list elements by index)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in ("skipped", "settings"):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, path + "."))
        elif isinstance(value, (list, tuple)) and value and not isinstance(value[0], Mapping):
            out[path] = value
            for i, item in enumerate(value):
                if isinstance(item, (list, tuple)):
                    for j, sub in enumerate(item):
                        out[f"{path}.{i}.{j}"] = sub
                else:
                    out[f"{path}.{i}"] = item
        else:
            out[path] = value
    return out


def _candidates(key: str, partitions: Iterable[str]) -> list[str]:
    """Full keys a possibly abbreviated key may stand for (a section name left out)."""
    parts = key.split(".")
    out = [key]
    if parts[0] == "partitions" and len(parts) >= 3:
        head, rest = parts[:2], parts[2:]
        if rest[0] not in (*_SECTIONS, *_NAMED_ONLY):
            out += [".".join([*head, s, *rest]) for s in _SECTIONS]
    elif parts[0] not in (
        *_SECTIONS,
        *_NAMED_ONLY,
        "partitions",
        "leakage",
        "n_samples",
        "latent_dim",
        "generation",
    ):
        out += [".".join([s, *parts]) for s in _SECTIONS]
    return out


def _skip_reason(full_key: str, skipped: Sequence[Mapping[str, str]]) -> str | None:
    for entry in skipped:
        target = entry.get("metric") or entry.get("section") or ""
        if full_key == target or full_key.startswith(target + "."):
            return str(entry.get("reason", "skipped"))
    return None


def _known_keys(partitions: Iterable[str]) -> list[str]:
    """Every key compute_metrics can produce, for telling a typo from a skipped metric."""
    from latentdiag.metrics.registry import registered
    from latentdiag.metrics.suite import metric_keys

    specs = registered()
    # The numbers each declaration says it writes (centroid_distance.mean, dci.completeness...).
    shown = [p for spec in specs for p in spec.shown if "*" not in p]
    base = [*metric_keys(extras=True), *shown, *_CONTAINERS]
    # The separation keys again, by batch (silhouette_per_label is silhouette_per_batch there).
    for spec in specs:
        if spec.section != "separation" or not spec.by_batch:
            continue
        own = [f"separation.{spec.key}", *(f"separation.{k}" for k in spec.extras)]
        own += [p for p in spec.shown if "*" not in p and p.startswith("separation.")]
        base += [
            "batch_separation." + p[len("separation.") :].replace("_per_label", "_per_batch")
            for p in own
        ]
    base = list(dict.fromkeys(base))
    leak = ["linear_probe_accuracy", "chance_accuracy", "probe_above_chance", "mi_sum"]
    leak += [f"batch_{k}" for k in ("linear_probe_accuracy", "chance_accuracy")]
    leak += ["batch_probe_above_chance"]
    keys = ["n_samples", "latent_dim", *base, *GENERATION_KEYS]
    for name in partitions:
        keys += [f"partitions.{name}.{k}" for k in base]
        keys += [f"leakage.{name}.{k}" for k in [*leak, "mi_sum_normalized"]]
    return keys


def required_keys(requirements: Sequence[str | Requirement]) -> list[str]:
    """Every full key the requirements may refer to: what a computation must include.

    Raises:
        ConfigError: A requirement is malformed.
    """
    parsed = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    out: list[str] = []
    for req in parsed:
        out += [c for c in _candidates(req.key, ()) if c not in out]
    return out


def validate_requirements(
    requirements: Sequence[str | Requirement], partitions: Iterable[str] = ()
) -> list[Requirement]:
    """Parse requirements and make sure each names a metric latentdiag can compute.

    Lets a gate fail fast, before any metric is computed, on a typo in a key.

    Args:
        requirements: Requirement strings or parsed requirements.
        partitions: Names of the latent subspaces of the file.

    Returns:
        The parsed requirements.

    Raises:
        ConfigError: A requirement is malformed or names no known metric (the message lists
            the closest known keys).
    """
    parsed = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    names = list(partitions)
    known = set(_known_keys(names))
    for req in parsed:
        cands = _candidates(req.key, names)
        if any(c in known or _indexed(c, known) for c in cands):
            continue
        close = difflib.get_close_matches(req.key, sorted(known), n=5)
        hint = (
            f" Closest: {', '.join(close)}."
            if close
            else " Known keys include separation.silhouette, separation.centroid_distance.min, "
            "information.active_units, disentanglement.mig (docs/metrics.md lists them all)."
        )
        raise ConfigError(f"requirement {req}: latentdiag has no metric {req.key!r}.{hint}")
    return parsed


#: The numbers of a gencheck result (``latentdiag gencheck``), checked against its JSON.
_GENERATION_SCORES = ("frechet_distance", "kid", "precision", "recall", "density", "coverage")
GENERATION_KEYS = (
    "generation.condition_accuracy",
    "generation.chance_accuracy",
    "generation.cas",
    "generation.cas_real",
    "generation.condition_sensitivity",
    "generation.judge.heldout_accuracy",
    "generation.condition_accuracy_per_label",
    *(f"generation.{k}.mean" for k in _GENERATION_SCORES),
    *(f"generation.{k}.per_label" for k in _GENERATION_SCORES),
)

# Keys holding a list or a table, whose entries a requirement may name by index or label.
_CONTAINERS = (
    "generation.condition_accuracy_per_label",
    *(f"generation.{k}.per_label" for k in _GENERATION_SCORES),
    "separation.silhouette_per_label",
    "separation.silhouette_ci",
    "separation.centroid_distance.matrix",
    "batch_separation.silhouette_per_batch",
    "batch_separation.silhouette_ci",
    "batch_separation.centroid_distance.matrix",
    "information.mi_per_dim",
    "information.mi_per_dim_normalized",
    "information.kl_per_dim",
    "disentanglement.dci.importance",
)


def _indexed(key: str, known: set[str]) -> bool:
    """Whether ``key`` names an entry of a known list or table (``information.mi_per_dim.3``)."""
    for container in _CONTAINERS:
        for full in [k for k in known if k == container or k.endswith("." + container)]:
            if key.startswith(full + ".") and key[len(full) + 1 :]:
                return True
    return False


def check_requirements(
    metrics: Mapping[str, Any], requirements: Sequence[str | Requirement]
) -> list[CheckResult]:
    """Evaluate requirements against a metrics dict.

    Args:
        metrics: The dict of :func:`~latentdiag.metrics.suite.compute_metrics`.
        requirements: Requirement strings or parsed :class:`Requirement` objects.

    Returns:
        One :class:`CheckResult` per requirement, in order. A metric that was skipped (or is
        NaN) fails its requirement, with the reason.

    Raises:
        ConfigError: A requirement is malformed, names an unknown key (the message lists the
            closest known keys), or names a value that is not a number (a table or list).
    """
    parsed = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    flat = flatten_metrics(metrics)
    partitions = list((metrics.get("partitions") or {}).keys())
    skipped = list(metrics.get("skipped") or [])
    known = _known_keys(partitions)
    results = []
    for req in parsed:
        cands = _candidates(req.key, partitions)
        hit = next((c for c in cands if c in flat), None)
        for c in cands if hit is None else ():
            children = sorted(
                {k[len(c) + 1 :].split(".")[0] for k in flat if k.startswith(c + ".")}
            )
            if children:
                raise ConfigError(
                    f"requirement {req}: {c!r} is a table, not a number; name one of its "
                    f"entries: {', '.join(f'{c}.{child}' for child in children[:6])}."
                )
        if hit is None:
            reason = next((r for c in cands if (r := _skip_reason(c, skipped)) is not None), None)
            known_set = set(known)
            target = next((c for c in cands if c in known_set or _indexed(c, known_set)), None)
            if reason is None and target is None:
                close = difflib.get_close_matches(req.key, sorted(set(flat) | set(known)), n=5)
                hint = f" Closest: {', '.join(close)}." if close else ""
                raise ConfigError(f"requirement {req}: no metric {req.key!r} in the results.{hint}")
            results.append(
                CheckResult(
                    key=req.key,
                    op=req.op,
                    threshold=req.threshold,
                    value=None,
                    passed=False,
                    resolved_key=target or cands[0],
                    reason=reason or "not computed for this file",
                )
            )
            continue
        value = flat[hit]
        if isinstance(value, bool) or (not isinstance(value, (int, float)) and value is not None):
            raise ConfigError(
                f"requirement {req}: {hit!r} is not a single number (it holds "
                f"{type(value).__name__}); name one entry, e.g. {hit}.0."
            )
        if value is None or math.isnan(float(value)):
            results.append(
                CheckResult(
                    key=req.key,
                    op=req.op,
                    threshold=req.threshold,
                    value=None,
                    passed=False,
                    resolved_key=hit,
                    reason="the value is undefined (NaN)",
                )
            )
            continue
        passed = bool(_OPS[req.op](float(value), req.threshold))
        results.append(
            CheckResult(
                key=req.key,
                op=req.op,
                threshold=req.threshold,
                value=float(value),
                passed=passed,
                resolved_key=hit,
            )
        )
    return results
