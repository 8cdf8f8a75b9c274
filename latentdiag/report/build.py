"""``build_report``: one or more latents files in, a folder with a readable report out.

The output folder holds::

    report.html        self-contained page (figures embedded, no scripts, nothing loaded)
    metrics.json       the metrics JSON (one file), or {"files": [...]} (several)
    figures/<name>/    every figure as a PNG
    projector/         TensorBoard Projector TSV pairs (with export_projector=True)

Everything is computed in memory first; only then is the folder written, with the old
``report.html`` removed first and the new one moved into place last. A run that fails or is
killed therefore never leaves a half-written report that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentdiag import __version__
from latentdiag._json import to_jsonable
from latentdiag.atomic import atomic_path, atomic_write_text, folder_lock
from latentdiag.errors import ReportError
from latentdiag.report.draw import draw_file, draw_projections, start_background_projections
from latentdiag.report.html import Outcome, PageInfo, render_page
from latentdiag.report.palette import LabelStyle
from latentdiag.report.projections import METHODS, stratified_sample
from latentdiag.report.sections import Extras, FileReport, Panel, measure_file, shared_limits
from latentdiag.store import LatentSource, open_latents

__all__ = ["DEFAULT_SAMPLE", "ReportResult", "build_report", "default_names"]

# Rows drawn for projections and silhouette bars: t-SNE and UMAP on 2,000 points take a few
# seconds each, and a scatter of more points is no easier to read.
DEFAULT_SAMPLE = 2000
_PROJECTOR_ROWS = 10_000


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        out_dir: The report folder.
        html: ``out_dir/report.html``.
        metrics_json: ``out_dir/metrics.json``.
        figures: Every PNG written.
        projector: The Projector TSV files written (empty unless asked for).
        names: The name of each file in the report, in order.
        outcomes: File name -> the outcome of each ``require`` entry.
        skipped: ``"name: section — title: reason"`` for every figure that was skipped.
        sample_sizes: File name -> rows in the sample that projections were drawn on.
        elapsed_s: Wall time of the whole build, in seconds.
    """

    out_dir: Path
    html: Path
    metrics_json: Path
    figures: list[Path] = field(default_factory=list)
    projector: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    sample_sizes: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool | None:
        """Whether every requirement held for every file; ``None`` when none were given."""
        all_outcomes = [o for outs in self.outcomes.values() for o in outs]
        if not all_outcomes:
            return None
        return all(o.passed is True for o in all_outcomes)


def default_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Names for files the user did not name: the file stem, or ``folder/stem`` when two
    stems clash (e.g. ``runs/baseline/latents.h5`` and ``runs/disentangled/latents.h5``)."""
    ps = [Path(p) for p in paths]
    names = [p.stem for p in ps]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem for p in ps]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _check_options(
    paths: Sequence[str | os.PathLike[str]],
    names: Sequence[str] | None,
    projection: Sequence[str],
    sample: int,
) -> tuple[list[str], tuple[str, ...]]:
    if not paths:
        raise ReportError("no latents file given; pass at least one latents file (.h5).")
    if names is None or len(names) == 0:
        chosen = default_names(paths)
    else:
        chosen = [" ".join(str(n).split()) for n in names]
        if len(chosen) != len(paths):
            raise ReportError(
                f"got {len(chosen)} names for {len(paths)} latents files; give one --name per "
                "file, in the same order, or none."
            )
        if any(not n for n in chosen):
            raise ReportError("a file name (--name) is empty; give each file a non-empty name.")
        if len(set(chosen)) != len(chosen):
            raise ReportError(f"file names (--name) must differ from each other; got {chosen}.")
    methods = tuple(dict.fromkeys(str(m).lower() for m in projection))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ReportError(
            f"unknown projection {bad[0]!r}; expected one or more of {', '.join(METHODS)}."
        )
    if sample < 10:
        raise ReportError(f"the projection sample must be at least 10 rows; got {sample}.")
    return chosen, methods


def _docs_url() -> str | None:
    """A link to docs/metrics.md when the package runs from a source checkout that has it."""
    import latentdiag

    page = Path(latentdiag.__file__).resolve().parent.parent / "docs" / "metrics.md"
    return page.as_uri() if page.is_file() else None


def build_report(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    projection: Sequence[str] = METHODS,
    sample: int = DEFAULT_SAMPLE,
    metrics_sample: int | None = None,
    require: Sequence[str] = (),
    seed: int = 0,
    device: str = "auto",
    export_projector: bool = False,
    extras: Extras | None = None,
    docs_url: str | None = None,
    progress: Callable[[str], None] | None = None,
    label_key: str | None = None,
    batch_key: str | None = None,
    obsm: str | None = None,
    logvar_obsm: str | None = None,
    exhaustive: bool = False,
    pre_obsm: str | None = None,
    generation: Sequence[str | os.PathLike[str] | None] = (),
    explore: bool = False,
    track: Sequence[str | os.PathLike[str] | None] = (),
) -> ReportResult:
    """Write a report on one or more latents files into ``out_dir``.

    Args:
        paths: Latents files; with two or more, the first is the baseline of the comparison.
        out_dir: Report folder, created if missing. The report owns ``report.html``,
            ``metrics.json``, ``figures/``, ``projector/`` and ``explore/`` inside it and
            replaces them.
        names: A name per file for the report (default: the file stems).
        projection: Any of ``"pca"``, ``"umap"``, ``"tsne"``; empty for none.
        sample: Rows of the stratified sample that projections and silhouette bars are drawn
            on (all rows when a file has fewer).
        metrics_sample: Passed to ``compute_metrics(sample=...)``; ``None`` keeps its default.
        require: Requirements such as ``"separation.silhouette>=0.5"``, checked against every
            file and shown as pass or fail in the summary.
        seed: Seed of every random choice (samples, t-SNE, UMAP).
        device: Where the metrics compute (``auto``, ``cpu``, ``cuda``, ``mps``).
        export_projector: Also write TensorBoard Projector TSV pairs.
        extras: Called with each open store; returns reference-model images or ``None``.
        docs_url: Where docs/metrics.md is for the metric links (default: the source
            checkout's copy when present; otherwise the report names the page without a link).
        progress: Receives one line per step.
        label_key: The column whose groups should separate, in every file (default: each
            file's label).
        batch_key: The column whose groups should mix, in every file; adds the "Mixing of
            batches" section.
        obsm: For ``.h5ad`` files: the obsm key of the embedding.
        logvar_obsm: For ``.h5ad`` files: the obsm key of the log-variances.
        exhaustive: Passed to ``compute_metrics`` (every metric on every dimension).
        pre_obsm: For ``.h5ad`` files: the obsm key of the embedding before integration
            (enables ``mixing.pcr_comparison``).
        generation: gencheck results (folders from ``gencheck -o DIR``), one per file in
            order (``None`` for a file without one): the "Conditional generation" section,
            and ``generation.*`` in metrics.json and the requirements.
        track: ``latentdiag.track`` logs (a folder with track.jsonl, or the file), one per
            file in order: the "Metrics during training" section. A file written by a
            reference run shows its run's log without this.
        explore: Also write ``explore/<name>.html`` per file (``latentdiag explore``'s page,
            PCA of every row up to 100,000) and link it from the summary.

    Returns:
        A :class:`ReportResult`.

    Raises:
        ReportError: Bad options, or the folder cannot be written.
        StoreError: A latents file is missing or not valid.
        MetricInputError: A file's arrays cannot be measured (e.g. NaN in mu).
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    chosen, methods = _check_options(paths, names, projection, sample)
    requirements = _parse_requirements(require)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file; the report needs a folder (-o DIR).")
    gen_results = _read_generation(generation, len(paths))
    track_logs = _read_tracks(track, len(paths))

    stores = []
    try:
        for p in paths:  # open them all first: a bad file fails before any long work
            stores.append(
                open_latents(
                    p,
                    label_key=label_key,
                    batch_key=batch_key,
                    obsm=obsm,
                    logvar_obsm=logvar_obsm,
                    pre_obsm=pre_obsm,
                )
            )
        _check_requirement_keys(requirements, stores)
        style = LabelStyle.from_names(s.label_names if s.has_labels else None for s in stores)
        batch_style = LabelStyle.from_names(s.batch_names for s in stores)
        # The slow projections start now and run while the metrics are computed.
        background = [
            start_background_projections(s, projections=methods, sample=sample, seed=seed)
            for s in stores
        ]
        # While a file's last metrics (DCI's boosting) finish: its projections are drawn, then
        # the next file is measured (its DCI fits join the same pool), and at the last file
        # every figure is drawn (none shows DCI).
        drawn: dict[int, Any] = {}
        # Each file's report: first early (its metrics all but DCI's), then the same object
        # completed by measure_file.
        files: dict[int, FileReport] = {}
        projector_text: list[tuple[str, str, str]] = []
        figures_drawn: list[bool] = []

        def draw_figures(measured: list[FileReport]) -> None:
            for report, gen in zip(measured, gen_results, strict=True):
                if gen is not None:
                    _add_generation(report, gen)
            for report, store, log in zip(measured, stores, track_logs, strict=True):
                _add_track(report, store, log)
            limits = shared_limits(measured)
            for i, (store, report, started) in enumerate(
                zip(stores, measured, background, strict=True)
            ):
                draw_file(
                    report,
                    store,
                    style=style,
                    batch_style=batch_style,
                    projections=methods,
                    sample=sample,
                    seed=seed,
                    extras=extras,
                    limits=limits,
                    progress=say,
                    background=started,
                    drawn_projections=drawn.get(i),
                )
                if export_projector:
                    projector_text.append((report.name, *_projector_files(store, seed)))
            figures_drawn.append(True)

        def measure(i: int) -> None:
            files[i] = measure_file(
                stores[i],
                chosen[i],
                metrics_sample=metrics_sample,
                seed=seed,
                device=device,
                progress=say,
                exhaustive=exhaustive,
                while_waiting=while_measuring(i),
            )

        def while_measuring(i: int) -> Callable[[FileReport], None]:
            def draw(report: FileReport) -> None:
                files[i] = report
                drawn[i] = draw_projections(
                    stores[i],
                    chosen[i],
                    label_names=stores[i].label_names if stores[i].has_labels else None,
                    label_key=stores[i].label_key,
                    style=style,
                    projections=methods,
                    sample=sample,
                    seed=seed,
                    progress=say,
                    background=background[i],
                )
                if i + 1 < len(stores):
                    measure(i + 1)
                else:
                    draw_figures([files[j] for j in range(len(stores))])

            return draw

        measure(0)
        reports = [files[i] for i in range(len(stores))]
        if not figures_drawn:
            draw_figures(reports)
    finally:
        for s in stores:
            s.close()

    outcomes = {r.name: _evaluate(requirements, r.metrics) for r in reports}
    slugs = _slugs(chosen)
    figure_files: dict[Path, bytes] = {}
    figure_paths: dict[tuple[int, str], str] = {}
    used: set[str] = set()
    for i, (report, slug) in enumerate(zip(reports, slugs, strict=True)):
        for panel in report.panels:
            if panel.png is None:
                continue
            base = _slug(f"{panel.section}-{panel.kind}")
            rel = f"figures/{slug}/{base}.png"
            k = 2
            while rel in used:
                rel = f"figures/{slug}/{base}-{k}.png"
                k += 1
            used.add(rel)
            figure_paths[(i, f"{panel.section}/{panel.kind}")] = rel
            figure_files[out / rel] = panel.png
    projector_files: dict[Path, str] = {}
    by_name = {name: (vectors, meta) for name, vectors, meta in projector_text}
    for name, slug in zip(chosen, slugs, strict=True):
        if name not in by_name:
            continue
        vectors, meta = by_name[name]
        projector_files[out / "projector" / f"{slug}-vectors.tsv"] = vectors
        projector_files[out / "projector" / f"{slug}-metadata.tsv"] = meta

    explore_files: dict[Path, bytes] = {}
    if explore:
        explore_files = _explore_pages(
            paths, slugs, out, seed=seed, label_key=label_key, batch_key=batch_key,
            obsm=obsm, logvar_obsm=logvar_obsm, say=say,
        )  # fmt: skip
    from latentdiag.report.scib_table import scib_table

    ranking = scib_table([(r.name, r.metrics) for r in reports])
    scib_png = None
    if ranking is not None:
        from latentdiag.report import figures as fg

        scib_png = fg.to_png(fg.scib_table_figure(ranking))
        figure_files[out / "figures" / "scib-ranking.png"] = scib_png
    info = PageInfo(
        version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        seed=seed,
        projections=methods,
        docs_url=docs_url if docs_url is not None else _docs_url(),
        figure_paths=figure_paths,
        projector_files=[str(p.relative_to(out)) for p in projector_files],
        scib_png=scib_png,
        scib_path="figures/scib-ranking.png",
        explore_pages=[
            (name, str(p.relative_to(out))) for name, p in zip(chosen, explore_files, strict=False)
        ],
    )
    say("writing the report")
    page = render_page(reports, outcomes, info)
    metrics_doc = _metrics_document(reports, outcomes)
    _write(out, figure_files, projector_files, metrics_doc, page, explore_files)
    result = ReportResult(
        out_dir=out,
        html=out / "report.html",
        metrics_json=out / "metrics.json",
        figures=list(figure_files),
        projector=list(projector_files),
        names=chosen,
        outcomes=outcomes,
        skipped=[
            f"{r.name}: {p.section} — {p.title}: {p.skipped}"
            for r in reports
            for p in r.panels
            if p.skipped
        ],
        sample_sizes={r.name: r.sample_size for r in reports},
        elapsed_s=time.perf_counter() - t0,
    )
    return result


def _one_per_file(given: Sequence[Any], n_files: int, what: str, read: Any) -> list[Any]:
    """``read(item)`` for each of at most ``n_files`` items given in the files' order (None
    for the files after them), before any long work."""
    from latentdiag.errors import ConfigError

    items = list(given)
    if len(items) > n_files:
        raise ReportError(
            f"{len(items)} {what} for {n_files} latents file(s); give at most one per file, "
            "in the files' order."
        )
    try:
        return [None if g is None else read(g) for g in items] + [None] * (n_files - len(items))
    except ConfigError as exc:
        raise ReportError(str(exc)) from None


def _read_generation(generation: Sequence[Any], n_files: int) -> list[Any]:
    """One gencheck result (or None) per file."""
    from latentdiag.report.generation import read_gencheck

    return _one_per_file(generation, n_files, "--generation results", read_gencheck)


def _read_tracks(track: Sequence[Any], n_files: int) -> list[Any]:
    """One track log (its path and records, or None) per file."""
    from latentdiag.track import read_track

    return _one_per_file(track, n_files, "--track logs", lambda g: (Path(g), read_track(g)))


def _add_track(report: Any, store: Any, log: Any) -> None:
    """The "Metrics during training" figure: the given log, or the reference run's own."""
    from latentdiag.report import figures as fg
    from latentdiag.report.generation import track_figure
    from latentdiag.track import TRACK_FILE, read_track_lenient

    if log is None:
        prov = store.provenance or {}
        run_dir = prov.get("run_dir") if prov.get("kind") == "reference-run" else None
        path = Path(str(run_dir)) / TRACK_FILE if run_dir else None
        if path is None or not path.is_file():
            return
        records = read_track_lenient(path)
        if not records:
            return
        log = (path, records)
    path, records = log
    report.panels.append(
        Panel(
            "training",
            "track",
            "Metrics during training",
            f"{len(records)} evaluations logged by latentdiag.track in {path} (epochs "
            f"{records[0]['epoch']}–{records[-1]['epoch']}); a line per subspace.",
            fg.to_png(track_figure(records, title="Metrics on the validation set, by epoch")),
        )
    )


def _add_generation(report: Any, gen: Any) -> None:
    """The gencheck result's numbers and figures, in a file's report."""
    from latentdiag.report import figures as fg
    from latentdiag.report.generation import confusion_figure, samples_figure

    section = gen.section
    report.metrics["generation"] = section
    report.generation_notes = list(gen.notes)
    acc, chance = section["condition_accuracy"], section["chance_accuracy"]
    judge = section["judge"]["heldout_accuracy"]

    def drawn(name: str) -> bytes | None:
        """The figure gencheck already drew (written before generation.json), if it is there."""
        path = gen.path / name
        return path.read_bytes() if path.is_file() else None

    if gen.generated or drawn("samples.png"):
        report.panels.append(
            Panel(
                "generation",
                "samples",
                "Samples generated per label, beside real ones",
                f"Left: real held-out samples of each label; right: samples the decoder "
                f"generated for it ({section['decoder']}, z from the {section['latents_from']}).",
                drawn("samples.png")
                or fg.to_png(
                    samples_figure(gen.generated, gen.real, title="Real and generated per label")
                ),
            )
        )
    else:
        report.panels.append(
            Panel(
                "generation",
                "samples",
                "Samples generated per label, beside real ones",
                skipped=f"{gen.path} holds no samples.npz (only generation.json).",
            )
        )
    report.panels.append(
        Panel(
            "generation",
            "confusion",
            "What the judge sees in the samples of each label",
            f"Rows: the label asked for; columns: the label the judge sees. Condition accuracy "
            f"{acc:.3f} against chance {chance:.3f}; the judge names real held-out samples "
            f"right {judge:.1%} of the time.",
            drawn("confusion.png")
            or fg.to_png(
                confusion_figure(
                    section["confusion_matrix"], section["label_names"], title="Judged labels"
                )
            ),
        )
    )


def _explore_pages(
    paths: Sequence[Any], slugs: Sequence[str], out: Path, *, seed: int, say: Any, **keys: Any
) -> dict[Path, bytes]:
    """Each file's explorer page (in a scratch folder first), by its path in the report."""
    import tempfile

    from latentdiag.report.explore import build_explorer

    pages: dict[Path, bytes] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path, slug in zip(paths, slugs, strict=True):
            say(f"writing the explorer page of {slug}")
            page = build_explorer(path, Path(scratch) / f"{slug}.html", seed=seed, **keys)
            pages[out / "explore" / f"{slug}.html"] = page.path.read_bytes()
    return pages


def _projector_files(store: LatentSource, seed: int) -> tuple[str, str]:
    from latentdiag.report.projector import projector_tsv

    labels = store.labels
    rows = stratified_sample(store.n_samples, _PROJECTOR_ROWS, labels=labels, random_state=seed)
    return projector_tsv(
        store.mu,
        rows,
        labels=labels,
        label_names=store.label_names,
        sample_ids=store.sample_ids,
        # The label is the first metadata column already.
        columns={k: c for k, c in store.columns.items() if k != store.label_key},
    )


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return s[:60] or "file"


def _slugs(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        s = _slug(name)
        base, k = s, 2
        while s in out:
            s = f"{base}-{k}"
            k += 1
        out.append(s)
    return out


# -- requirements -------------------------------------------------------------------------
def _parse_requirements(require: Sequence[str]) -> list[Any]:
    from latentdiag.metrics.check import parse_requirement

    return [parse_requirement(text) for text in require]


def _check_requirement_keys(requirements: Sequence[Any], stores: Sequence[LatentSource]) -> None:
    """Refuse a requirement on a metric no file could have, before any long computation.

    The partitions of every file are offered at once, so a requirement on a subspace that only
    some of the compared files have passes here (and reads "not in this file" for the others).
    """
    if not requirements:
        return
    from latentdiag.metrics.check import check_requirements

    names: dict[str, dict[str, Any]] = {name: {} for s in stores for name in s.partitions}
    check_requirements({"partitions": names}, requirements)  # raises ConfigError on a typo


def _evaluate(requirements: Sequence[Any], metrics: dict[str, Any]) -> list[Outcome]:
    from latentdiag.errors import ConfigError
    from latentdiag.metrics.check import check_requirements

    outcomes = []
    for req in requirements:
        try:
            (res,) = check_requirements(metrics, [req])
        except ConfigError as exc:
            # A key another compared file has (e.g. a partition this file lacks).
            outcomes.append(Outcome(str(req), req.key, None, None, f"not in this file: {exc}"))
            continue
        if res.value is None:
            detail = f"{res.resolved_key}: {res.reason}"
        else:
            detail = f"{res.resolved_key} = {res.value:.4g}, needs {res.op} {res.threshold:g}"
        outcomes.append(
            Outcome(
                text=str(req),
                path=str(res.resolved_key),
                value=res.value,
                passed=bool(res.passed) if res.value is not None else None,
                detail=detail,
            )
        )
    return outcomes


# -- writing ------------------------------------------------------------------------------
def _metrics_document(
    reports: Sequence[FileReport], outcomes: dict[str, list[Outcome]]
) -> dict[str, Any]:
    def with_requirements(r: FileReport) -> dict[str, Any]:
        doc = dict(r.metrics)
        if outcomes.get(r.name):
            doc["requirements"] = [o.__dict__ for o in outcomes[r.name]]
        return doc

    if len(reports) == 1:
        return with_requirements(reports[0])
    from latentdiag.report.scib_table import scib_table

    doc: dict[str, Any] = {
        "files": [
            {"name": r.name, "path": r.path, "metrics": with_requirements(r)} for r in reports
        ]
    }
    table = scib_table([(r.name, r.metrics) for r in reports])
    if table is not None:
        doc["scib_table"] = table
    return doc


def _replace_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _replace_tree(target: Path, files: dict[Path, bytes]) -> None:
    """Write ``files`` (all under ``target``) into a fresh folder, then swap it in."""
    with atomic_path(target) as tmp:
        tmp.mkdir()
        for path, data in files.items():
            dest = tmp / path.relative_to(target)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)


def _write(
    out: Path,
    figures: dict[Path, bytes],
    projector: dict[Path, str],
    metrics_doc: dict[str, Any],
    page: str,
    explore: dict[Path, bytes] | None = None,
) -> None:
    """Write the report's files into ``out``, after checking they fit, under an exclusive lock
    on the folder: two reports into one folder write one after the other, and the folder ends
    as the later one's whole report."""
    from latentdiag.store._common import check_room

    need = sum(len(b) for b in figures.values()) + sum(len(t) for t in projector.values())
    need += sum(len(b) for b in (explore or {}).values()) + 2 * len(page)
    try:
        check_room(out / "report.html", need, what="the report")
        out.mkdir(parents=True, exist_ok=True)
        with folder_lock(out):
            # The old page goes first and the new one comes last: in between, the folder
            # holds no report.html, so a crash cannot leave a page that disagrees with its
            # figures.
            (out / "report.html").unlink(missing_ok=True)
            _replace_tree(out / "figures", figures)
            if projector:
                tree = {p: t.encode("utf-8") for p, t in projector.items()}
                _replace_tree(out / "projector", tree)
            if explore:
                _replace_tree(out / "explore", explore)
            text = json.dumps(to_jsonable(metrics_doc), indent=2, allow_nan=False)
            _replace_text(out / "metrics.json", text + "\n")
            _replace_text(out / "report.html", page)
    except OSError as exc:
        raise ReportError(
            f"cannot write the report into {out}: {exc.strerror or exc}; choose a folder you "
            "can write to."
        ) from None
