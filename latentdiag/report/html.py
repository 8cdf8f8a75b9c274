"""The report page: one self-contained HTML file, readable offline, with no scripts at all.

Images are embedded as ``data:`` URIs, styles are inline, and fonts are the reader's own, so the
page loads nothing from anywhere. Every string that comes from a user or a file (label, factor,
partition and file names, paths, provenance values, reasons) passes through :func:`esc`
(``html.escape`` with quotes), so a label named ``<script>`` is shown as text.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latentdiag.report.catalog import (
    DOCS_PAGE,
    GENERATION,
    HEADLINE,
    LEAKAGE_DOC,
    METRICS,
    MetricInfo,
    get_path,
    info_for,
)
from latentdiag.report.palette import BETTER, WORSE
from latentdiag.report.sections import SECTIONS, FileReport, Panel
from latentdiag.report.style import CSS
from latentdiag.report.text import (
    INTROS,
    LEAKAGE_COLUMNS,
    NOT_METRICS,
    NOT_REQUESTED,
    PARTITION_COMPARED,
    delta_cell,
    describe,
    direction,
    esc,
    fmt_value,
    interval,
    is_number,
    short,
    verdict,
)

__all__ = ["Outcome", "PageInfo", "esc", "render_page"]


@dataclass(frozen=True)
class Outcome:
    """One ``--require`` checked against one file.

    Attributes:
        text: The requirement as the user wrote it.
        path: The metric path it reads.
        value: The file's value of that metric (``None`` when missing).
        passed: Whether it holds; ``None`` when the metric is missing.
        detail: A plain sentence on the result.
    """

    text: str
    path: str
    value: float | None
    passed: bool | None
    detail: str


@dataclass(frozen=True)
class PageInfo:
    """Report-wide facts shown in the header and footer."""

    version: str
    created: str
    seed: int
    projections: tuple[str, ...]
    docs_url: str | None
    figure_paths: Mapping[tuple[int, str], str]
    projector_files: Sequence[str] = ()
    # (file name, path of its explorer page relative to the report), with --explore.
    explore_pages: Sequence[tuple[str, str]] = ()
    scib_png: bytes | None = None  # the scIB ranking as an image, with several files
    scib_path: str = ""


class _Page:
    def __init__(
        self,
        files: Sequence[FileReport],
        outcomes: Mapping[str, Sequence[Outcome]],
        info: PageInfo,
    ) -> None:
        self.files = files
        self.outcomes = outcomes
        self.info = info
        self.out: list[str] = []

    # -- helpers --------------------------------------------------------------------------
    def w(self, *parts: str) -> None:
        self.out.extend(parts)

    def doc_link(self, info: MetricInfo | None) -> str:
        if info is None:
            return ""
        return self.doc_ref(info.anchor, info.doc_section)

    def doc_ref(self, anchor: str, section: str) -> str:
        text = f"{DOCS_PAGE} § {section}"
        if self.info.docs_url:
            href = f"{self.info.docs_url}#{anchor}"
            return f' <a class="doc" href="{esc(href)}">{esc(text)}</a>'
        return f' <span class="doc">see {esc(text)}</span>'

    def metric_cell(self, path: str) -> str:
        info = info_for(path)
        title = info.title if info else path
        prefix, explanation = "", ""
        parts = path.split(".")
        if parts[0] == "partitions" and len(parts) > 2:
            # The same metric on the whole space carries the explanation; one is enough.
            prefix = f'<span class="tag">{esc(parts[1])}</span> '
        elif info:
            explanation = f'<div class="explain">{esc(info.explanation)}{self.doc_link(info)}</div>'
        return (
            f'<td class="metric">{prefix}<b>{esc(title)}</b> '
            f"<code>{esc(path)}</code>{explanation}</td>"
        )

    def img(self, panel: Panel, file_index: int) -> str:
        assert panel.png is not None
        data = base64.b64encode(panel.png).decode("ascii")
        name = self.info.figure_paths.get((file_index, f"{panel.section}/{panel.kind}"), "")
        file_note = f' <span class="path">({esc(name)})</span>' if name else ""
        return (
            f'<img src="data:image/png;base64,{data}" alt="{esc(panel.title)}">'
            f"<figcaption>{esc(panel.caption)}{file_note}</figcaption>"
        )

    # -- page -----------------------------------------------------------------------------
    def render(self) -> str:
        names = ", ".join(f.name for f in self.files)
        self.w(
            '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>latentdiag report: {esc(names)}</title>\n<style>{CSS}</style>\n",
            "</head>\n<body>\n",
        )
        self.header()
        self.summary()
        if len(self.files) > 1:
            self.comparison()
            self.scib_ranking()
        self.files_table()
        for section_id, title in SECTIONS.items():
            self.section(section_id, title)
        self.all_metrics()
        self.skipped()
        self.footer()
        self.w("</body>\n</html>\n")
        return "".join(self.out)

    def header(self) -> None:
        title = "Latent space report" if len(self.files) == 1 else "Latent space comparison"
        self.w(f"<header><h1>{esc(title)}</h1>")
        self.w('<p class="files">')
        self.w(
            " · ".join(
                f'<span class="fname">{esc(f.name)}</span> <span class="path">{esc(f.path)}</span>'
                for f in self.files
            )
        )
        self.w("</p>")
        links = [("summary", "Summary")]
        if len(self.files) > 1:
            links.append(("comparison", "Comparison"))
        links += [("files", "Files"), *SECTIONS.items(), ("metrics", "All metrics")]
        links.append(("skipped", "Skipped"))
        self.w("<nav>" + " ".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t in links) + "</nav>")
        self.w("</header>\n")

    def summary(self) -> None:
        self.w('<section id="summary"><h2>Summary</h2>')
        if any(self.outcomes.values()):
            failed = [
                f.name
                for f in self.files
                if any(o.passed is not True for o in self.outcomes.get(f.name, []))
            ]
            if failed:
                self.w(
                    '<p class="banner fail">Requirements <b>not met</b> by '
                    f"{esc(', '.join(failed))}; see the requirements table below.</p>"
                )
            else:
                self.w('<p class="banner pass">Every requirement is met.</p>')
        if self.info.explore_pages:
            links = ", ".join(
                f'<a href="{esc(rel)}">{esc(name)}</a>' for name, rel in self.info.explore_pages
            )
            self.w(
                '<p class="explore">Every point, interactive (colour by any column, hover for '
                f"values and images, select to count): {links}.</p>"
            )
        if len(self.files) == 1:
            self.summary_one(self.files[0])
        else:
            self.summary_many()
        for f in self.files:
            self.requirements_table(f)
        self.w("</section>\n")

    def gaps(self, f: FileReport) -> None:
        """One line naming the sections this file cannot support, and why in short."""
        reasons: dict[str, str] = {}
        for p in f.panels:
            if p.skipped and p.section not in reasons and p.section != "reference":
                reasons[p.section] = p.skipped.split(":")[0].rstrip(".")
        if reasons:
            parts = "; ".join(f"{SECTIONS[s].lower()}: {r.lower()}" for s, r in reasons.items())
            who = f"{f.name} — " if len(self.files) > 1 else ""
            self.w(
                f'<p class="gaps">{esc(who)}Not everything can be shown ({esc(parts)}); '
                'see <a href="#skipped">Skipped</a>.</p>'
            )

    def summary_one(self, f: FileReport) -> None:
        self.w(f'<p class="lead">{esc(describe(f))}</p>')
        self.gaps(f)
        items = [p for p in HEADLINE if is_number(get_path(f.metrics, p))]
        if not items:
            self.w(
                '<p class="note">No headline metric could be computed for this file; see the '
                "skipped sections below.</p>"
            )
            return
        self.w('<ul class="headline">')
        for path in items:
            value = get_path(f.metrics, path)
            info = METRICS[path]
            words = verdict(path, value, f)
            self.w(
                f'<li><span class="mname" title="{esc(info.explanation)}">{esc(info.title)}</span> '
                f'<span class="value">{esc(fmt_value(value))}</span>{esc(interval(f, path))} '
                f'<span class="dir">({esc(direction(info))}; {esc(info.range)})</span>'
                + (f'<span class="words">: {esc(words)}</span>' if words else "")
                + self.outcome_badges(f, path)
                + "</li>"
            )
        self.w("</ul>")
        self.w(
            '<p class="explain">Hover a metric for its meaning; the tables below explain each '
            "one and link to its definition in docs/metrics.md.</p>"
        )

    def summary_many(self) -> None:
        base = self.files[0]
        self.w('<ul class="leads">')
        for f in self.files:
            self.w(f"<li>{esc(describe(f))}</li>")
        self.w("</ul>")
        items = [p for p in HEADLINE if any(is_number(get_path(f.metrics, p)) for f in self.files)]
        if items:
            self.w('<table class="delta headline-table"><tr><th>headline</th><th>better</th>')
            self.w(f"<th>{esc(base.name)}</th>")
            for f in self.files[1:]:
                self.w(f"<th>{esc(f.name)}</th><th>{esc(base.name)} → {esc(f.name)}</th>")
            self.w("</tr>")
            for path in items:
                info = METRICS[path]
                v0 = get_path(base.metrics, path)
                self.w(
                    f'<tr><td><span class="mname" title="{esc(info.explanation)}">'
                    f"{esc(info.title)}</span></td><td>{esc(info.direction or '')}</td>"
                    f'<td class="num">{esc(fmt_value(v0))}{self.outcome_badges(base, path)}</td>'
                )
                for f in self.files[1:]:
                    v = get_path(f.metrics, path)
                    self.w(
                        f'<td class="num">{esc(fmt_value(v))}{self.outcome_badges(f, path)}</td>',
                        delta_cell(base.name, f.name, v0, v, info),
                    )
                self.w("</tr>")
            self.w("</table>")
            self.w(
                '<p class="explain">Hover a metric for its meaning; the tables below explain '
                "each one and link to its definition in docs/metrics.md.</p>"
            )
        words = []
        for f in self.files:
            said = [
                f"{METRICS[p].title} {fmt_value(get_path(f.metrics, p))}: "
                f"{verdict(p, get_path(f.metrics, p), f)}"
                for p in ("separation.silhouette", "separation.knn_accuracy")
                if is_number(get_path(f.metrics, p))
            ]
            if said:
                words.append(f"<li><b>{esc(f.name)}</b> — {esc('; '.join(said))}.</li>")
        if words:
            self.w('<p>In plain words:</p><ul class="words">', *words, "</ul>")
        for f in self.files:
            self.gaps(f)

    def requirements_table(self, f: FileReport) -> None:
        outs = self.outcomes.get(f.name, [])
        if not outs:
            return
        who = f" — {esc(f.name)}" if len(self.files) > 1 else ""
        self.w(f"<h3>Requirements{who}</h3>")
        self.w('<table class="req"><tr><th>requirement</th><th>value</th><th>result</th></tr>')
        for o in outs:
            cls = "pass" if o.passed else "fail"
            word = "pass" if o.passed else ("fail" if o.passed is False else "missing")
            self.w(
                f"<tr><td><code>{esc(o.text)}</code></td>"
                f'<td class="num">{esc(fmt_value(o.value))}</td>'
                f'<td class="{cls}"><b>{esc(word)}</b> {esc(o.detail)}</td></tr>'
            )
        self.w("</table>")

    def outcome_badges(self, f: FileReport, path: str) -> str:
        out = []
        for o in self.outcomes.get(f.name, []):
            if o.path != path:
                continue
            cls = "pass" if o.passed else "fail"
            word = "PASS" if o.passed else "FAIL"
            out.append(f' <span class="badge {cls}">{word} <code>{esc(o.text)}</code></span>')
        return "".join(out)

    def comparison(self) -> None:
        base = self.files[0]
        self.w('<section id="comparison"><h2>Comparison</h2>')
        self.w(
            f"<p>Each file against <b>{esc(base.name)}</b>. "
            f'<span style="color:{BETTER}">▲▼ better</span> and '
            f'<span style="color:{WORSE}">▲▼ worse</span> follow each metric\'s direction; '
            "the arrow shows whether the value went up or down.</p>"
        )
        paths = [p for p in METRICS if any(is_number(get_path(f.metrics, p)) for f in self.files)]
        paths += [p for p in self.partition_paths() if p.split(".", 2)[2] in PARTITION_COMPARED]
        self.w('<table class="delta"><tr><th>metric</th><th>better</th>')
        self.w(f"<th>{esc(base.name)}</th>")
        for f in self.files[1:]:
            self.w(f"<th>{esc(f.name)}</th><th>change</th>")
        self.w("</tr>")
        for path in paths:
            info = info_for(path)
            self.w("<tr>", self.metric_cell(path))
            self.w(f"<td>{esc(info.direction if info and info.direction else '')}</td>")
            v0 = get_path(base.metrics, path)
            self.w(f'<td class="num">{esc(fmt_value(v0))}</td>')
            for f in self.files[1:]:
                v = get_path(f.metrics, path)
                self.w(f'<td class="num">{esc(fmt_value(v))}</td>')
                self.w(delta_cell(base.name, f.name, v0, v, info))
            self.w("</tr>")
        self.w("</table></section>\n")

    def scib_ranking(self) -> None:
        """scIB's ranked table (files with a batch key): embeddings as rows, best in bold."""
        from latentdiag.report.scib_table import scib_table

        table = scib_table([(f.name, f.metrics) for f in self.files])
        if table is None:
            return
        self.w('<section id="scib"><h2>scIB ranking</h2>')
        self.w(
            "<p>The files ranked by scIB's total score (0.4 · batch correction + 0.6 · bio "
            "conservation), as scib-metrics' Benchmarker ranks embeddings; every column is "
            "0 to 1, higher better, the best of each in bold. Values are each file's own, not "
            "min-max scaled across the files.</p>"
        )
        self.w('<table class="delta"><tr><th>rank</th><th>file</th>')
        for c in table["columns"]:
            self.w(f'<th title="{esc(c["group"])}">{esc(c["title"])}</th>')
        self.w("</tr>")
        for row in table["rows"]:
            self.w(f'<tr><td class="num">{row["rank"]}</td><td>{esc(row["name"])}</td>')
            for c in table["columns"]:
                v = row["values"][c["key"]]
                text = esc(fmt_value(v)) if v is not None else "—"
                if row["name"] in table["best"].get(c["key"], ()):
                    text = f"<b>{text}</b>"
                self.w(f'<td class="num">{text}</td>')
            self.w("</tr>")
        self.w("</table>")
        if self.info.scib_png is not None:
            data = base64.b64encode(self.info.scib_png).decode("ascii")
            path = f' <span class="path">({esc(self.info.scib_path)})</span>'
            self.w(
                f'<figure><img src="data:image/png;base64,{data}" alt="scIB ranking">'
                f"<figcaption>The same table as an image.{path}</figcaption></figure>"
            )
        self.w("</section>\n")

    def files_table(self) -> None:
        self.w('<section id="files"><h2>Files</h2><table class="files">')
        self.w(
            "<tr><th>name</th><th>path</th><th>samples</th><th>dims</th><th>labels</th>"
            "<th>batches</th><th>logvar</th><th>factors</th><th>partitions</th>"
            "<th>provenance</th></tr>"
        )

        def groups(key: str | None, counts: Mapping[str, int] | None) -> str:
            if not counts:
                return "none"
            head = f"{key}: " if key else ""
            return head + ", ".join(f"{n} ({c:,})" for n, c in counts.items())

        for f in self.files:
            labels = groups(f.label_key, f.label_counts)
            batches = groups(f.batch_key, f.batch_counts)
            parts = ", ".join(f"{n} [{a}, {b})" for n, (a, b) in f.partitions.items()) or "none"
            prov = "; ".join(f"{k}: {short(v)}" for k, v in f.provenance.items() if k != "config")
            self.w(
                f'<tr><td><b>{esc(f.name)}</b></td><td class="path">{esc(f.path)}</td>'
                f'<td class="num">{f.n_samples:,}</td><td class="num">{f.latent_dim}</td>'
                f"<td>{esc(labels)}</td><td>{esc(batches)}</td>"
                f"<td>{'yes' if f.has_logvar else 'no'}</td>"
                f"<td>{esc(', '.join(f.factor_names) if f.factor_names else 'none')}</td>"
                f'<td>{esc(parts)}</td><td class="prov">{esc(prov) or "none"}</td></tr>'
            )
        self.w("</table></section>\n")

    def section(self, section_id: str, title: str) -> None:
        kinds: list[str] = []
        for f in self.files:
            for panel in f.panels:
                if panel.section == section_id and panel.kind not in kinds:
                    kinds.append(panel.kind)
        self.w(f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>')
        self.w(INTROS.get(section_id, ""))
        if not kinds:
            self.w(f'<p class="skip">Skipped: {esc(NOT_REQUESTED[section_id])}</p></section>\n')
            return
        for kind in kinds:
            by_file = [
                next((p for p in f.panels if p.section == section_id and p.kind == kind), None)
                for f in self.files
            ]
            heading = next(q.title for q in by_file if q is not None)
            self.w(f'<h3>{esc(heading)}</h3><div class="row">')
            for i, (f, p) in enumerate(zip(self.files, by_file, strict=True)):
                who = f'<div class="who">{esc(f.name)}</div>' if len(self.files) > 1 else ""
                if p is None:
                    self.w(f'<figure>{who}<p class="skip">Not in this file.</p></figure>')
                elif p.png is None:
                    self.w(
                        f'<figure class="skipped">{who}<p class="skip">Skipped: '
                        f"{esc(p.skipped)}</p></figure>"
                    )
                else:
                    self.w(f"<figure>{who}{self.img(p, i)}</figure>")
            self.w("</div>")
        self.section_table(section_id)
        self.w("</section>\n")

    def section_table(self, section_id: str) -> None:
        prefix = {
            "separation": "separation.",
            "mixing": "batch_separation.",
            "information": "information.",
            "disentanglement": "disentanglement.",
        }.get(section_id)
        if section_id == "partitions":
            self.leakage()
            return
        if section_id == "generation":
            paths = [
                p for p in GENERATION if any(is_number(get_path(f.metrics, p)) for f in self.files)
            ]
            if paths:
                self.metric_table(paths)
            for f in self.files:
                for note in f.generation_notes:
                    who = f"{f.name}: " if len(self.files) > 1 else ""
                    self.w(f'<p class="explain">{esc(who)}Note: {esc(note)}</p>')
            return
        if prefix is None:
            return
        paths = [
            p
            for p in METRICS
            if p.startswith(prefix) and any(is_number(get_path(f.metrics, p)) for f in self.files)
        ]
        if paths:
            self.metric_table(paths)

    def metric_table(self, paths: Sequence[str]) -> None:
        self.w('<table class="metrics"><tr><th>metric</th><th>better</th>')
        for f in self.files:
            self.w(f"<th>{esc(f.name)}</th>")
        self.w("</tr>")
        for path in paths:
            info = info_for(path)
            self.w("<tr>", self.metric_cell(path))
            self.w(f"<td>{esc(info.direction if info and info.direction else '')}</td>")
            for f in self.files:
                self.w(f'<td class="num">{esc(fmt_value(get_path(f.metrics, path)))}</td>')
            self.w("</tr>")
        self.w("</table>")

    def leakage(self) -> None:
        for f in self.files:
            table = f.metrics.get("leakage")
            if not isinstance(table, Mapping) or not table:
                continue
            who = f" — {esc(f.name)}" if len(self.files) > 1 else ""
            self.w(f"<h3>Leakage summary{who}</h3>")
            self.w(
                '<p class="explain">How much of the label each subspace gives away. A subspace '
                "meant to be shared by every label should read near 0 in both scaled columns; "
                "one meant to hold the label should read near 1. See "
                f"{self.doc_ref(*LEAKAGE_DOC).strip()}.</p>"
            )
            columns = list(LEAKAGE_COLUMNS)
            for node in table.values():
                if isinstance(node, Mapping):
                    columns += [k for k in node if k not in columns]
            self.w('<table class="metrics"><tr><th>subspace</th>')
            for key in columns:
                self.w(f"<th>{esc(LEAKAGE_COLUMNS.get(key, key))}</th>")
            self.w("</tr>")
            for part, node in table.items():
                dims = f.partitions.get(str(part))
                span = f" [{dims[0]}, {dims[1]})" if dims else ""
                self.w(f"<tr><td><b>{esc(part)}</b>{esc(span)}</td>")
                for key in columns:
                    value = node.get(key) if isinstance(node, Mapping) else None
                    self.w(f'<td class="num">{esc(fmt_value(value))}</td>')
                self.w("</tr>")
            self.w("</table>")
        paths = self.partition_paths()
        if paths:
            self.w("<h3>Metrics per subspace</h3>")
            self.metric_table(paths)

    def partition_paths(self) -> list[str]:
        """Catalogued per-subspace metric paths of any file: by subspace, then catalog order."""
        present = {p for f in self.files for p in _partition_scalar_paths(f.metrics)}
        parts: list[str] = []
        for f in self.files:
            for name in f.partitions:
                if name not in parts:
                    parts.append(name)
        return [
            f"partitions.{name}.{key}"
            for name in parts
            for key in METRICS
            if f"partitions.{name}.{key}" in present
        ]

    def all_metrics(self) -> None:
        from latentdiag.report.catalog import scalar_paths

        paths: list[str] = []
        for f in self.files:
            shown = {k: v for k, v in f.metrics.items() if k not in NOT_METRICS}
            for p in scalar_paths(shown):
                if p not in paths:
                    paths.append(p)
        self.w('<section id="metrics"><h2>All metrics</h2>')
        self.w(
            "<p>Every number in the metrics JSON (<code>metrics.json</code> beside this page), "
            "with its explanation.</p>"
        )
        self.metric_table(paths)
        self.w("</section>\n")

    def skipped(self) -> None:
        self.w('<section id="skipped"><h2>Skipped</h2>')
        items: list[str] = []
        for f in self.files:
            who = f"{esc(f.name)}: " if len(self.files) > 1 else ""
            for p in f.panels:
                if p.skipped:
                    items.append(
                        f"<li>{who}<b>{esc(SECTIONS[p.section])} — {esc(p.title)}</b>: "
                        f"{esc(p.skipped)}</li>"
                    )
            for entry in f.metrics.get("skipped") or []:
                if isinstance(entry, Mapping):
                    what = ", ".join(str(v) for k, v in entry.items() if k != "reason")
                    items.append(
                        f"<li>{who}<b>metric {esc(what)}</b>: {esc(entry.get('reason', ''))}</li>"
                    )
        if items:
            self.w("<ul>", *items, "</ul>")
        else:
            self.w("<p>Nothing was skipped.</p>")
        notes = [
            f"<li>{esc(f.name) + ': ' if len(self.files) > 1 else ''}<b>metric "
            f"{esc(entry.get('metric', ''))}</b>: {esc(entry.get('note', ''))}</li>"
            for f in self.files
            for entry in f.metrics.get("notes") or []
            if isinstance(entry, Mapping)
        ]
        if notes:
            self.w("<h3>Computed on a reduction</h3><ul>", *notes, "</ul>")
        self.w("</section>\n")

    def footer(self) -> None:
        i = self.info
        extra = ""
        if i.projector_files:
            extra = (
                "<br>TensorBoard Projector files (load them at projector.tensorflow.org or in "
                "TensorBoard): " + ", ".join(f"<code>{esc(p)}</code>" for p in i.projector_files)
            )
        self.w(
            f"<footer>Made by latentdiag {esc(i.version)} on {esc(i.created)} · seed {i.seed} "
            f"· projections: {esc(', '.join(i.projections) or 'none')}. Figures are also saved "
            f"as PNG files beside this page; the numbers are in <code>metrics.json</code>."
            f"{extra}</footer>\n"
        )


def _partition_scalar_paths(metrics: Mapping[str, Any]) -> list[str]:
    from latentdiag.report.catalog import scalar_paths

    parts = metrics.get("partitions")
    if not isinstance(parts, Mapping):
        return []
    return [p for p in scalar_paths(parts, "partitions.") if info_for(p) is not None]


def render_page(
    files: Sequence[FileReport],
    outcomes: Mapping[str, Sequence[Outcome]],
    info: PageInfo,
) -> str:
    """The whole report page as one HTML string.

    Args:
        files: One :class:`FileReport` per latents file, in the order the user gave them (the
            first is the baseline of the comparison).
        outcomes: File name -> its requirement outcomes.
        info: Report-wide facts.

    Returns:
        The page.
    """
    return _Page(files, outcomes, info).render()
