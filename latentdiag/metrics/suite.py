"""Every metric a latents file allows, as one nested dict with the keys of DESIGN.md.

:func:`compute_metrics` works on arrays, :func:`compute_metrics_for_store` on a latents file.
Metrics the data cannot support (no labels, no logvar, no factors, a single label...) are
left out of the sections and listed under ``skipped`` with the reason; one failing metric never
stops the others. The result is plain Python (floats, lists, dicts), ready for JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from latentdiag.errors import MetricInputError
from latentdiag.metrics._steps import PROBE_MAX_SAMPLES, WIDE_DIMS
from latentdiag.metrics._validation import check_factors, check_latents, check_logvar
from latentdiag.metrics.registry import SECTIONS, GraphCache, MetricSpec, Space, registered
from latentdiag.partitions import check_partitions

__all__ = [
    "PROBE_MAX_SAMPLES",
    "ProgressCallback",
    "compute_metrics",
    "compute_metrics_for_store",
    "metric_keys",
]

ProgressCallback = Callable[[str, float], None]

_NO_LOGVAR = "no logvar: the latents come without /logvar (a deterministic encoder?)"
_NO_PRE = (
    "no embedding before integration: give one (e.g. the PCA of the counts) with --pre-obsm "
    "KEY to compare the batch's share of the variance before and after"
)


def _plan() -> list[tuple[str, MetricSpec]]:
    """(section, declaration) of every step, in order: the registered metrics, with the
    separation ones again under ``batch_separation`` (the batch column as the grouping)."""
    specs = registered()
    separation = [s for s in specs if s.section == "separation"]
    return [
        *(("separation", s) for s in separation),
        *(("batch_separation", s) for s in separation if s.by_batch),
        *((s.section, s) for s in specs if s.section != "separation"),
    ]


# leakage.<name>.<key> comes from these metrics of partitions.<name>.
_LEAKAGE_SOURCES = (
    "separation.linear_probe_accuracy",
    "information.mi_per_dim",
    "batch_separation.linear_probe_accuracy",
)


def metric_keys(*, extras: bool = False) -> list[str]:
    """The dotted keys of the metrics (``separation.silhouette``, ...).

    Args:
        extras: Also list the keys written beside the headline ones (``mi_sum``, ...).
    """
    out = []
    for section, spec in _plan():
        out.append(f"{section}.{spec.key}")
        if extras and section == "batch_separation" and spec.key == "silhouette":
            out.append(f"{section}.silhouette_per_batch")
        if extras:
            out += [f"{section}.{k}" for k in spec.extras]
    return [*out, *SCORE_KEYS]


def _matches(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".") or prefix.startswith(key + ".")


@dataclass
class _Run:
    """Shared state of one computation: where results and skip reasons go, and progress."""

    include: tuple[str, ...] | None
    progress: ProgressCallback | None
    total: float = 1.0
    done: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)

    def wanted(self, prefix: str, section: str, spec: MetricSpec) -> bool:
        """Whether the step ``prefix + section.key`` (or a key it writes) was asked for."""
        if self.include is None:
            return True
        key = spec.key
        names = (key, *spec.extras)
        if section == "batch_separation" and key == "silhouette":
            names = (*names, "silhouette_per_batch")
        full = [f"{prefix}{section}.{name}" for name in names]
        for p in self.include:
            if p.startswith("leakage."):
                # leakage.<name>... needs the probe and the MI of partitions.<name>.
                part = p.split(".")[1] if p.count(".") >= 1 else ""
                sources = [f"partitions.{part}.{src}" for src in _LEAKAGE_SOURCES]
                if any(_matches(f, src) for f in full for src in sources):
                    return True
            elif p == f"{prefix}scores" or p.startswith(f"{prefix}scores."):
                # scores.* need every metric they average, of this space.
                if f"{section}.{key}" in _SCORE_SOURCES:
                    return True
            elif any(_matches(f, p) for f in full):
                return True
        return False

    def report(self, name: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(name, min(1.0, fraction))

    def apply(self, out: dict[str, Any], task: _Task, *, keep: bool = False) -> None:
        """Write a finished step's value into ``out`` (a MetricInputError becomes a skip).

        ``keep``: leave the task's value as it is (a provisional assembly; the final one comes
        later and takes the step's skips and notes out of it).
        """
        if task.error is not None:
            self.skipped.append({"metric": task.full, "reason": " ".join(str(task.error).split())})
            return
        value = task.value
        if keep and isinstance(value, dict):
            value = dict(value)
        if isinstance(value, dict):
            # A step may say how it ran: what it skipped, how it reduced the data.
            section = task.full.rsplit(".", 1)[0]
            for name, reason in value.pop("_skipped", ()):
                self.skipped.append({"metric": f"{section}.{name}", "reason": reason})
            for note in value.pop("_notes", ()):
                self.notes.append({"metric": task.full, "note": note})
        if isinstance(value, dict) and task.key in value:
            out.update(value)  # a step that fills several keys (value + extras)
        else:
            out[task.key] = value


@dataclass
class _Task:
    """One metric of one (sub)space: planned, then run on a lane, then applied in plan order."""

    key: str
    full: str
    cost: float
    fn: Callable[[Callable[[float], None]], Any]
    lane: str = "main"  # "main", "side" (numpy steps) or "own" (self-parallel, long)
    value: Any = None
    error: MetricInputError | None = None
    done: bool = False


def _execute(
    run: _Run,
    tasks: Sequence[_Task],
    *,
    parallel: bool,
    while_waiting: Callable[[Callable[[], None]], None] | None = None,
) -> None:
    """Run every task; when ``parallel``, the side-lane ones (numpy steps) on one worker
    thread and each own-lane one (DCI, whose fits share a pool) on a thread of its own, all
    started at once beside the main lane (the parallel numba kernels). Values do not depend on
    the lanes: each task computes alone from its inputs.

    Progress is reported from this thread only: the workers' completions are counted under a
    lock and reported as the main lane moves on, or while it waits for the workers.
    ``while_waiting`` runs on this thread once the main lane is done, before it waits for
    the workers: the caller's own work overlaps theirs (it may launch parallel numba kernels;
    the workers launch none). It receives a function that waits for the side lane, after which
    every task but the own-lane ones is done.
    """
    import threading

    from threadpoolctl import threadpool_limits

    lock = threading.Lock()
    running: dict[str, tuple[float, float]] = {}  # full key -> (cost, fraction done), now running

    def report(key: str) -> None:
        with lock:
            done = run.done + sum(cost * frac for cost, frac in running.values())
        run.report(key, done / run.total)

    def run_one(task: _Task, main: bool) -> None:
        with lock:
            running[task.full] = (task.cost, 0.0)

        def inner(fraction: float) -> None:
            with lock:
                running[task.full] = (task.cost, min(1.0, fraction))
            if main:
                report(task.full)

        if main:
            report(task.full)
        try:
            task.value = task.fn(inner)
        except MetricInputError as exc:
            task.error = exc
        with lock:
            del running[task.full]
            run.done += task.cost
            task.done = True
        if main:
            report(task.full)

    lanes: dict[str, list[_Task]] = {"main": [], "side": [], "own": []}
    for t in tasks:
        lanes[t.lane if parallel else "main"].append(t)
    # Each own-lane task on its own thread (their fits share one pool, which keeps the cores
    # busy to the end); the side lane's tasks one after another on one thread.
    workers = [[t] for t in lanes["own"]] + ([lanes["side"]] if lanes["side"] else [])
    failure: list[BaseException] = []

    def wait_for(threads: Sequence[threading.Thread]) -> None:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
                with lock:
                    current = next(iter(running), None)
                if current is not None:
                    report(current)
        if failure:
            raise failure[0]

    def worker(lane: list[_Task]) -> None:
        try:
            for task in lane:
                run_one(task, main=False)
        except BaseException as exc:  # re-raised on the main thread
            failure.append(exc)

    # BLAS on one thread: every matrix here is small (n × d), and on a shared machine
    # OpenBLAS's spinning threads can make a 10 ms product take seconds. The numba kernels
    # keep all their threads.
    with threadpool_limits(limits=1, user_api="blas"):
        threads = [
            threading.Thread(target=worker, args=(lane,), name="latentdiag-metrics", daemon=True)
            for lane in workers
        ]
        for thread in threads:
            thread.start()
        for task in lanes["main"]:
            run_one(task, main=True)
        if while_waiting is not None:
            side = threads[len(lanes["own"]) :]  # the side lane's thread, if any
            while_waiting(lambda: wait_for(side))
        wait_for(threads)


def _plan_space(
    run: _Run,
    prefix: str,
    mu: np.ndarray,
    labels: np.ndarray | None,
    label_names: Sequence[str] | None,
    logvar: np.ndarray | None,
    factors: np.ndarray | None,
    factor_names: Sequence[str] | None,
    sample: int | None,
    seed: int,
    device: str,
    batch: np.ndarray | None = None,
    batch_names: Sequence[str] | None = None,
    why_no_labels: str = "no labels: the latents come without /labels",
    exhaustive: bool = False,
    labels_as_batch: bool = False,
    pre: np.ndarray | None = None,
) -> list[tuple[Any, ...]]:
    """The steps for one latent (sub)space, in the order of its sections and keys.

    ``labels_as_batch`` (a partition of a file without a batch key): the mixing metrics
    declared ``label_as_batch`` run with the label as the batch — does z_shared mix the
    modalities? — and say so in a note.

    Each entry is ``("skip", entry)`` (a reason the data cannot support a metric or section)
    or ``("task", section, task)``; :func:`_assemble` turns them into the sections once every
    task has run.
    """
    entries: list[tuple[Any, ...]] = []
    no_batch = "no batch: choose the column that should mix with --batch-key COL"
    has = {
        "separation": labels is not None,
        "batch_separation": batch is not None,
        "mixing": batch is not None,
        "disentanglement": factors is not None,
    }
    why = {
        "separation": why_no_labels,
        "batch_separation": no_batch,
        "mixing": no_batch,
        "disentanglement": "no factors: the latents come without /factors",
    }
    missing = {
        "labels": None if labels is not None else why_no_labels,
        "batch": None if batch is not None else no_batch,
        "logvar": None if logvar is not None else _NO_LOGVAR,
        "factors": None if factors is not None else why["disentanglement"],
        "pre": None if pre is not None else _NO_PRE,
    }
    graphs = GraphCache(mu, device)  # one exact k-NN graph of this space, built on first use
    plan = _plan()
    for section in SECTIONS:
        steps = [sp for sec, sp in plan if sec == section and run.wanted(prefix, sec, sp)]
        if not steps:
            continue
        stand_in = section == "mixing" and batch is None and labels_as_batch and labels is not None
        if stand_in:
            run.done += sum(sp.cost for sp in steps if not sp.label_as_batch)
            steps = [sp for sp in steps if sp.label_as_batch]
        if not has.get(section, True) and not stand_in:
            if section not in ("batch_separation", "mixing") or run.include is not None:
                # No batch key is the common case: said once, in the settings, not per space.
                entries.append(("skip", {"section": f"{prefix}{section}", "reason": why[section]}))
            run.done += sum(sp.cost for sp in steps)
            continue
        grouping = section == "batch_separation"
        space = Space(
            mu=mu,
            labels=batch if grouping else labels,
            label_names=batch_names if grouping else label_names,
            logvar=logvar,
            factors=factors,
            factor_names=factor_names,
            sample=sample,
            seed=seed,
            device=device,
            exhaustive=exhaustive,
            batch=labels if stand_in else batch,
            batch_names=label_names if stand_in else batch_names,
            graphs=graphs,
            pre=pre,
        )
        for spec in steps:
            key, cost = spec.key, spec.cost
            full = f"{prefix}{section}.{key}"
            # The first need the data lacks skips the metric with its standard reason.
            # (By batch, the batch column stands in for the labels.)
            lacks = {**missing, "labels": missing["batch"]} if grouping else missing
            if stand_in:
                lacks = {**missing, "batch": None}
            lacking = [lacks[need] for need in spec.needs if lacks[need] is not None]
            if lacking and lacking[0] == no_batch and run.include is None:
                # No batch key is the common case: said once, in the settings, not per metric.
                run.done += cost
                continue
            fn: Any = lacking[0] if lacking else spec.plan(space)
            if isinstance(fn, str):
                reason = why_no_labels if fn.startswith("no labels") else fn
                entries.append(("skip", {"metric": full, "reason": reason}))
                run.done += cost
                continue
            lane = "own" if spec.own_lane else "side" if spec.side_lane else "main"
            entries.append(("task", section, _Task(key, full, cost, fn, lane)))
            if stand_in:
                note = (
                    "with the label as the batch (no --batch-key): near 1 when this subspace "
                    "mixes the labels, as a shared subspace should; near 0 when it separates them"
                )
                entries.append(("note", {"metric": full, "note": note}))
    return entries


def _assemble(
    run: _Run, entries: Sequence[tuple[Any, ...]], *, provisional: bool = False
) -> dict[str, Any]:
    """The sections of one (sub)space from its planned entries, their tasks run.

    ``provisional``: some tasks may still be running; they are left out, and the finished
    ones' values are not changed (``run`` should then be a copy).
    """
    sections: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry[0] == "skip":
            run.skipped.append(entry[1])
        elif entry[0] == "note":
            run.notes.append(entry[1])
        elif not provisional or entry[2].done:
            run.apply(sections.setdefault(entry[1], {}), entry[2], keep=provisional)
    result: dict[str, Any] = {}
    for section in SECTIONS:
        sec = sections.get(section, {})
        if section == "batch_separation" and "silhouette_per_label" in sec:
            sec["silhouette_per_batch"] = sec.pop("silhouette_per_label")
        if sec:
            result[section] = sec
    return result


# scIB's aggregates (scib-metrics' Benchmarker): the mean of the batch-correction scores, the
# mean of the bio-conservation scores (the label silhouette rescaled to 0-1 among them), and
# 0.4 · batch + 0.6 · bio. Without min-max scaling across embeddings: one file is scored alone.
SCORE_KEYS = ("scores.batch_correction", "scores.bio_conservation", "scores.total")
_BATCH_SCORES = ("bras", "ilisi", "kbet", "graph_connectivity", "pcr_comparison")
_BIO_SCORES = ("isolated_labels", "nmi", "ari", "silhouette", "clisi")
# The steps the scores average (nmi writes ari).
_SCORE_SOURCES = frozenset(
    {f"mixing.{k}" for k in (*_BATCH_SCORES, "silhouette_batch")}
    | {f"separation.{k}" for k in _BIO_SCORES if k != "ari"}
)


def _scores(sub: Mapping[str, Any]) -> dict[str, Any] | None:
    """scIB's batch-correction, bio-conservation and total scores of one (sub)space, or None
    when no mixing metric ran (no batch key)."""
    mix = sub.get("mixing", {})
    sep = sub.get("separation", {})
    batch = {k: mix[k] for k in _BATCH_SCORES if isinstance(mix.get(k), (int, float))}
    if "bras" not in batch and isinstance(mix.get("silhouette_batch"), (int, float)):
        batch["silhouette_batch"] = mix["silhouette_batch"]
    if not batch:
        return None
    bio = {k: sep[k] for k in _BIO_SCORES if isinstance(sep.get(k), (int, float))}
    if "silhouette" in bio:
        bio["silhouette"] = (bio["silhouette"] + 1.0) / 2.0  # scib's silhouette_label
    out: dict[str, Any] = {"batch_correction": float(np.mean(list(batch.values())))}
    if bio:
        out["bio_conservation"] = float(np.mean(list(bio.values())))
        out["total"] = 0.4 * out["batch_correction"] + 0.6 * out["bio_conservation"]
    out["components"] = {"batch_correction": list(batch), "bio_conservation": list(bio)}
    return out


def _leakage(sub: dict[str, Any]) -> dict[str, Any] | None:
    """How much label (and batch) information one subspace holds: probe vs chance, summed MI."""
    sep = sub.get("separation", {})
    info = sub.get("information", {})
    out: dict[str, Any] = {}
    if "linear_probe_accuracy" in sep:
        acc, chance = sep["linear_probe_accuracy"], sep["chance_accuracy"]
        out["linear_probe_accuracy"] = acc
        out["chance_accuracy"] = chance
        # 0 = chance, 1 = perfect: the share of the label a linear read-out recovers.
        out["probe_above_chance"] = (acc - chance) / (1.0 - chance) if chance < 1 else 0.0
    if "mi_sum" in info:
        out["mi_sum"] = info["mi_sum"]
        out["mi_sum_normalized"] = info["mi_sum"] / info["label_entropy"]
    bsep = sub.get("batch_separation", {})
    if "linear_probe_accuracy" in bsep:
        acc, chance = bsep["linear_probe_accuracy"], bsep["chance_accuracy"]
        out["batch_linear_probe_accuracy"] = acc
        out["batch_chance_accuracy"] = chance
        out["batch_probe_above_chance"] = (acc - chance) / (1.0 - chance) if chance < 1 else 0.0
    return out or None


def compute_metrics(
    mu: Any,
    *,
    labels: Any = None,
    label_names: Sequence[str] | None = None,
    logvar: Any = None,
    factors: Any = None,
    factor_names: Sequence[str] | None = None,
    partitions: Mapping[str, Sequence[int]] | None = None,
    sample: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    include: Collection[str] | None = None,
    batch: Any = None,
    batch_names: Sequence[str] | None = None,
    label_key: str | None = None,
    batch_key: str | None = None,
    why_no_labels: str | None = None,
    exhaustive: bool = False,
    parallel: bool = True,
    pre_embedding: Any = None,
    while_waiting: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Compute every metric the inputs allow, for the whole space and each named subspace.

    Args:
        mu: Latent means, shape (n_samples, latent_dim).
        labels: Group labels, one per row (enables separation, MI and leakage): what should
            separate.
        label_names: Names of integer labels 0..k-1.
        logvar: Posterior log-variances, like ``mu`` (enables posterior TC and KL).
        factors: Ground-truth factors (n_samples, n_factors) (enables disentanglement).
        factor_names: Names of the factors.
        partitions: Named latent subspaces, name -> (start, stop).
        sample: Estimate the silhouette from this many stratified rows, with a bootstrap
            confidence interval; ``None`` computes it exactly.
        seed: Seed of every random choice (folds, samples, noise).
        device: Where the silhouette runs: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        progress: Called with (metric key, overall fraction done) as work proceeds.
        include: Compute only these dotted keys or prefixes (e.g. ``separation.silhouette``,
            ``information``); ``None`` computes everything.
        batch: Batch groups, one per row: what should mix. Enables ``batch_separation`` (the
            separation metrics by batch) and the batch rows of ``leakage``.
        batch_names: Names of integer batches 0..b-1.
        label_key: The column that gave ``labels``, recorded in the result.
        batch_key: The column that gave ``batch``, recorded in the result.
        why_no_labels: The reason given for skipping separation when ``labels`` is None.
        exhaustive: Compute every metric on every dimension and the probes on up to
            ``PROBE_MAX_SAMPLES`` rows, however long it takes. By default a cost model keeps
            wide latents (more than ``WIDE_DIMS`` dimensions) to seconds: the probes run on
            fewer rows, the posterior TC on the most active dimensions, and DCI and the
            discrete SAP are skipped, each said under ``notes`` or ``skipped``.
        pre_embedding: The embedding before integration (n_samples, any width), e.g. the PCA
            of the counts: enables ``mixing.pcr_comparison`` (with a batch).
        parallel: Run the numpy steps (linear probe, SAP, FactorVAE, Davies-Bouldin,
            Calinski-Harabasz) on a second thread beside the numba kernels of the others, and
            DCI's boosting on threads of its own from the start. The values are the same
            either way; only the wall time differs.
        while_waiting: Called once, on this thread, when the steps that launch parallel
            numba kernels are done and the others (DCI's boosting above all) may still be
            running: the caller's own work then overlaps theirs (the report draws its
            projections and figures). It may launch parallel numba kernels itself. It receives
            a function that waits for the short numpy steps and returns the metrics known
            then: this function's result without the keys still computing (DCI's), each
            other value as it will be returned.

    Returns:
        A dict with ``n_samples``, ``latent_dim``, the ``separation`` / ``information`` /
        ``disentanglement`` sections, ``partitions.<name>.<section>...``, ``leakage.<name>``,
        ``skipped`` (list of {"metric" or "section", "reason"}) and ``settings``.

    Raises:
        MetricInputError: ``mu`` is not a finite 2-D array, or labels / logvar / factors /
            partitions do not match it.
    """
    arr = check_latents(mu, name="mu")
    n, d = arr.shape
    y: np.ndarray | None = None
    if labels is not None:
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != n:
            raise MetricInputError(
                f"labels must be 1-D with one label per row ({n:,}); found shape {y.shape}."
            )
    b: np.ndarray | None = None
    if batch is not None:
        b = np.asarray(batch)
        if b.ndim != 1 or b.shape[0] != n:
            raise MetricInputError(
                f"batch must be 1-D with one batch per row ({n:,}); found shape {b.shape}."
            )
    lv = None if logvar is None else check_logvar(logvar, arr)
    pre = None
    if pre_embedding is not None:
        pre = check_latents(pre_embedding, name="pre_embedding")
        if pre.shape[0] != n:
            raise MetricInputError(
                f"pre_embedding must have one row per row of mu ({n:,}); found {pre.shape[0]:,}."
            )
    fac = None if factors is None else check_factors(factors, n)
    parts = check_partitions(partitions, d, error=MetricInputError)
    from latentdiag.metrics.silhouette import resolve_device

    resolved = resolve_device(device)  # a GPU asked for and missing fails here, not later
    wanted = tuple(include) if include is not None else None
    run = _Run(include=wanted, progress=progress)
    spaces = 1 + len(parts)
    run.total = spaces * sum(spec.cost for _, spec in _plan())

    def space(prefix: str, dims: slice) -> list[tuple[Any, ...]]:
        return _plan_space(
            run,
            prefix,
            arr[:, dims],
            y,
            label_names,
            None if lv is None else lv[:, dims],
            fac,
            factor_names,
            sample,
            seed,
            resolved,
            batch=b,
            batch_names=batch_names,
            why_no_labels=why_no_labels or "no labels: the latents come without /labels",
            exhaustive=exhaustive,
            labels_as_batch=prefix.startswith("partitions."),
            pre=pre,
        )

    plans = [space("", slice(None))]
    plans += [space(f"partitions.{name}.", slice(a, b)) for name, (a, b) in parts.items()]

    def finish(provisional: bool) -> dict[str, Any]:
        """The metrics dict from the tasks run (``provisional``: those finished so far)."""
        r = replace(run, skipped=list(run.skipped), notes=list(run.notes)) if provisional else run
        result: dict[str, Any] = {"n_samples": n, "latent_dim": d}
        result["label_key"] = label_key if y is not None else None
        result["batch_key"] = batch_key if b is not None else None
        result.update(_assemble(r, plans[0], provisional=provisional))
        scores = _scores(result)
        if scores is not None:
            result["scores"] = scores
        if parts:
            result["partitions"] = {}
            result["leakage"] = {}
            for plan, (name, (start, stop)) in zip(plans[1:], parts.items(), strict=True):
                sub = _assemble(r, plan, provisional=provisional)
                sub_scores = _scores(sub) if b is not None else None  # no scores of a stand-in
                if sub_scores is not None:
                    sub["scores"] = sub_scores
                sub["dims"] = [start, stop]
                result["partitions"][name] = sub
                leak = _leakage(sub)
                if leak is not None:
                    result["leakage"][name] = leak
            if not result["leakage"]:
                del result["leakage"]
            if not any(k in sub for sub in result["partitions"].values() for k in SECTIONS):
                del result["partitions"]  # nothing asked for (include) in any subspace
        if not provisional:
            r.report("done", 1.0)
        result["skipped"] = r.skipped
        result["notes"] = r.notes
        result["settings"] = {
            "sample": sample,
            "seed": seed,
            "device": resolved,
            "probe_max_samples": PROBE_MAX_SAMPLES,
            "exhaustive": exhaustive,
            "wide_dims": WIDE_DIMS,
            "mi_n_neighbors": 3,
            "histogram_bins": 20,
        }
        if b is not None:
            from latentdiag.metrics.scib import N_NEIGHBORS

            # scIB's neighbourhoods (each counts the cell itself), all read from one exact graph.
            result["settings"]["scib_neighbors"] = {k: min(v, n) for k, v in N_NEIGHBORS.items()}
        if label_names is not None:
            result["label_names"] = list(label_names)
        if batch_names is not None and b is not None:
            result["batch_names"] = list(batch_names)
        if factor_names is not None:
            result["factor_names"] = list(factor_names)
        return result

    def hook(wait_side: Callable[[], None]) -> None:
        assert while_waiting is not None

        def known() -> dict[str, Any]:
            wait_side()
            return finish(provisional=True)

        while_waiting(known)

    _execute(
        run,
        [e[2] for plan in plans for e in plan if e[0] == "task"],
        parallel=parallel,
        while_waiting=hook if while_waiting is not None else None,
    )
    return finish(provisional=False)


def compute_metrics_for_store(
    store: Any,
    *,
    label_key: str | None = None,
    batch_key: str | None = None,
    obsm: str | None = None,
    logvar_obsm: str | None = None,
    pre_obsm: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`compute_metrics` on a latents file (a path or an open ``LatentStore``).

    Args:
        store: Path of a latents file or ``.h5ad`` file, an ``AnnData`` object, or an open
            :class:`~latentdiag.store.LatentSource` (opened with the label and batch chosen).
        label_key: With a path or AnnData: the column that should separate (default: the
            file's label).
        batch_key: With a path or AnnData: the column that should mix.
        obsm: With an ``.h5ad`` path or AnnData: the obsm key of the embedding.
        logvar_obsm: With an ``.h5ad`` path or AnnData: the obsm key of the log-variances.
        pre_obsm: With an ``.h5ad`` path or AnnData: the obsm key of the embedding before
            integration (enables ``mixing.pcr_comparison``).
        **kwargs: ``sample``, ``seed``, ``device``, ``progress``, ``include`` as in
            :func:`compute_metrics`.

    Returns:
        The metrics dict, with ``file`` set to the path (and ``obsm`` for AnnData).

    Raises:
        StoreError: The file cannot be read as a latents file.
        ConfigError: A key names no column, or one unfit to group by.
        MetricInputError: Its arrays cannot be measured (non-finite values, ...).
    """
    from latentdiag.store import LatentSource, open_latents

    if not isinstance(store, LatentSource):
        with open_latents(
            store,
            label_key=label_key,
            batch_key=batch_key,
            obsm=obsm,
            logvar_obsm=logvar_obsm,
            pre_obsm=pre_obsm,
        ) as opened:
            return compute_metrics_for_store(opened, **kwargs)
    if (label_key, batch_key, obsm, logvar_obsm, pre_obsm) != (None,) * 5:
        raise MetricInputError(
            "label_key, batch_key, obsm, logvar_obsm and pre_obsm are chosen when a file is "
            "opened; give them to open_latents(), or pass a path here."
        )
    result = compute_metrics(
        store.mu,
        labels=store.labels,
        label_names=store.label_names,
        logvar=store.logvar,
        factors=store.factors,
        factor_names=store.factor_names if store.has_factors else None,
        partitions=store.partitions,
        batch=store.batch,
        batch_names=store.batch_names,
        label_key=store.label_key,
        batch_key=store.batch_key,
        why_no_labels=no_label_reason(store),
        pre_embedding=store.pre_embedding,
        **kwargs,
    )
    head: dict[str, Any] = {"file": str(store.path)}
    obsm_key = getattr(store, "obsm_key", None)
    if obsm_key is not None:
        head["obsm"] = obsm_key
    if store.pre_obsm_key is not None:
        head["pre_obsm"] = store.pre_obsm_key
    return {**head, **result}


def no_label_reason(store: Any) -> str:
    """Why a file has no label to separate by, and what to pass."""
    from latentdiag.columns import describe_columns

    columns = {k: c for k, c in store.columns.items()}
    if not columns:
        return "no labels: the latents come without /labels"
    return (
        "no label chosen: the file has no default label; choose the column that should "
        f"separate with --label-key COL (columns: {describe_columns(columns)})"
    )
