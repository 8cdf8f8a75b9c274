"""Reports: every section present when the file supports it, explained when it does not; escaping;
comparison; reference-model images through the extras callback; Projector export; safe writing;
the ``report`` command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from latentdiag.cli import cli
from latentdiag.errors import LatentDiagError, ReportError
from latentdiag.report import build_report
from latentdiag.report.build import default_names
from latentdiag.report.catalog import LEAKAGE_DOC, METRICS
from latentdiag.report.palette import OKABE_ITO, LabelStyle
from latentdiag.report.projections import stratified_sample
from latentdiag.store import write_latents

MODALITIES = ["chest_xray", "oct", "pathology", "dermatoscopy"]


def make_latents(
    path: Path,
    *,
    n: int = 240,
    d: int = 8,
    label_names: list[str] | None = MODALITIES,
    sep: float = 3.0,
    logvar: bool = False,
    factors: bool = False,
    partitions: bool = False,
    seed: int = 0,
    provenance: dict | None = None,
) -> Path:
    """Gaussian blobs: labels shift dimensions d/2.. by ``sep``; dimension 0 is shared noise."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(n, d)).astype(np.float32)
    labels = None
    if label_names is not None:
        labels = np.arange(n) % len(label_names)
        half = d // 2
        mu[:, half:] += sep * np.eye(len(label_names), d - half)[labels]
    fac = rng.uniform(size=(n, 3)).astype(np.float32) if factors else None
    if fac is not None:
        mu[:, 0] = fac[:, 0] * 2  # one dimension follows one factor
    return write_latents(
        path,
        mu,
        logvar=rng.normal(-1.0, 0.2, size=(n, d)).astype(np.float32) if logvar else None,
        labels=labels,
        label_names=label_names,
        factors=fac,
        factor_names=["rotation", "scale", "brightness"] if factors else None,
        partitions={"shared": [0, d // 2], "modality": [d // 2, d]} if partitions else None,
        provenance=provenance,
    )


def _pca(paths: list[Path], out: Path, **kw) -> object:
    kw.setdefault("projection", ("pca",))
    kw.setdefault("sample", 200)
    return build_report(paths, out, **kw)


# -- every section ----------------------------------------------------------------------------
def test_full_report_has_every_section(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "full.h5", logvar=True, factors=True, partitions=True)
    result = build_report([lat], tmp_path / "rep", projection=("pca", "tsne"), sample=200, seed=3)
    html = result.html.read_text(encoding="utf-8")
    assert result.skipped == []
    kinds = {p.relative_to(result.out_dir).as_posix() for p in result.figures}
    assert kinds == {
        f"figures/full/{k}.png"
        for k in (
            "projections-pca",
            "projections-tsne",
            "separation-centroids",
            "separation-silhouette",
            "information-mi",
            "information-kl",
            "disentanglement-factor-mi",
            "partitions-partition-scores",
            "partitions-subspace-shared",
            "partitions-subspace-modality",
        )
    }
    for path in result.figures:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every figure is embedded; nothing is loaded from outside the page.
    assert html.count('src="data:image/png;base64,') == len(result.figures)
    assert not re.search(r"<(script|link)\b", html)
    assert not re.search(r'src="(?!data:)', html)
    for section in (
        "summary",
        "files",
        "projections",
        "separation",
        "information",
        "disentanglement",
        "partitions",
        "metrics",
        "skipped",
    ):
        assert f'<section id="{section}">' in html
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    assert "Silhouette" in summary and "higher is better" in summary
    assert "Davies–Bouldin index" in summary and "lower is better" in summary
    assert "MIG" in summary
    # Each metric carries its explanation and where docs/metrics.md defines it.
    assert "docs/metrics.md § Silhouette" in html
    assert "How much closer each sample lies" in html
    assert "Drawn on a stratified sample of 200 of 240 rows" in html
    # Every number in the "All metrics" table is explained (per-subspace rows by the same
    # metric on the whole space, which the table also shows).
    table = html.split('<section id="metrics">')[1].split("</section>")[0]
    rows = table.split("<tr>")[2:]
    assert len(rows) > 60
    unexplained = [
        r.split("<code>")[1].split("</code>")[0]
        for r in rows
        if 'class="explain"' not in r and 'class="tag"' not in r
    ]
    assert unexplained == []
    metrics = json.loads(result.metrics_json.read_text())
    assert metrics["n_samples"] == 240 and metrics["latent_dim"] == 8
    assert -1 <= metrics["separation"]["silhouette"] <= 1
    assert "requirements" not in metrics


def test_report_on_one_dimensional_latents(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "d1.h5", d=1, label_names=["a", "b"], partitions=False)
    result = _pca([lat], tmp_path / "rep")
    assert "plotted against random jitter" in result.html.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"label_names": None}, "No labels in this file: separation figures need a label"),
        ({"label_names": ["chest_xray"]}, "Only one label (chest_xray) in this file"),
        ({"logvar": False}, "No logvar in this file: KL per dimension and active units"),
        ({"factors": False}, "No factors in this file: disentanglement scores need"),
        ({"partitions": False}, "No partitions in this file: per-subspace figures need"),
    ],
    ids=["no-labels", "one-label", "no-logvar", "no-factors", "no-partitions"],
)
def test_unsupported_sections_are_explained(tmp_path: Path, kwargs: dict, reason: str) -> None:
    lat = make_latents(tmp_path / "lat.h5", **kwargs)
    result = _pca([lat], tmp_path / "rep")
    html = result.html.read_text(encoding="utf-8")
    assert reason in html
    assert any(reason in s for s in result.skipped)
    # The skipped list at the end names it too, and the projection is still drawn.
    skipped = html.split('<section id="skipped">')[1]
    assert reason in skipped
    assert (result.out_dir / "figures/lat/projections-pca.png").exists()


def test_no_labels_projection_says_it_is_not_coloured(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5", label_names=None, partitions=False)
    html = _pca([lat], tmp_path / "rep").html.read_text(encoding="utf-8")
    assert (
        "Drawn on a random sample of 200 of 240 rows. Not coloured: this file has no labels."
        in html
    )
    assert (
        "No labels in this file: mutual information with the label and its figure need a "
        "label per row (/labels)."
    ) in html
    # The summary says up front what cannot be shown.
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    assert "Not everything can be shown (separation of labels: no labels in this file;" in summary


def test_compared_files_share_scales(tmp_path: Path) -> None:
    from latentdiag.report.sections import FileReport, shared_limits

    def report(kl: list[float], mi: list[float], k: int) -> FileReport:
        counts = {f"l{i}": 10 for i in range(k)}
        metrics = {"information": {"kl_per_dim": kl, "mi_per_dim": mi}}
        return FileReport("x", "x.h5", 10 * k, 2, list(counts), counts, True, None, {}, {},
                          metrics, 0)  # fmt: skip

    limits = shared_limits([report([0.5, 3.0], [0.1, 0.2], 4), report([1.0, 2.0], [1.9, 0.0], 2)])
    assert limits["kl"] == 3.0
    assert limits["mi"] == pytest.approx(1.9)  # above ln 4, the most one dimension could tell
    limits = shared_limits([report([0.5], [0.1], 4)])
    assert limits["mi"] == pytest.approx(np.log(4))


def _github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_metric_links_point_to_sections_of_docs_metrics() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    slugs, fenced = set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:
            slugs.add(_github_slug(line.lstrip("#")))
    missing = {p: i.anchor for p, i in METRICS.items() if i.anchor not in slugs}
    assert missing == {}
    assert LEAKAGE_DOC[0] in slugs


def test_metric_links_follow_docs_url(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    linked = _pca([lat], tmp_path / "a", docs_url="https://example.org/metrics.html")
    html = linked.html.read_text(encoding="utf-8")
    assert (
        '<a class="doc" href="https://example.org/metrics.html#'
        'silhouette--separationsilhouette-silhouette_per_label">docs/metrics.md § Silhouette</a>'
    ) in html


def test_tiny_file_skips_neighbour_projections(tmp_path: Path) -> None:
    mu = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    lat = write_latents(tmp_path / "tiny.h5", mu, labels=[0, 0, 0, 1, 1, 1])
    result = build_report([lat], tmp_path / "rep", projection=("pca", "tsne", "umap"))
    assert "tiny: projections — t-SNE: t-SNE needs at least 10 samples; this file has 6." in (
        result.skipped
    )
    assert (result.out_dir / "figures/tiny/projections-pca.png").exists()


def test_label_names_without_rows_are_left_out(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "gap.h5", label_names=["a", "b", "unused", "d"], n=90)
    # make_latents cycles through all four names; keep the rows of a, b and d only.
    from latentdiag.store import LatentStore

    with LatentStore(lat) as store:
        mu, labels = store.mu, store.labels
    keep = labels != 2
    lat = write_latents(
        tmp_path / "gap3.h5", mu[keep], labels=labels[keep], label_names=["a", "b", "unused", "d"]
    )
    result = _pca([lat], tmp_path / "rep")
    html = result.html.read_text(encoding="utf-8")
    assert "3 labels (a, b, d)" in html
    metrics = json.loads(result.metrics_json.read_text())
    assert metrics["separation"]["centroid_distance"]["labels"] == ["a", "b", "d"]
    assert not any(": separation —" in s for s in result.skipped)


# -- escaping ---------------------------------------------------------------------------------
def test_user_strings_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / 'runs<i>"&'
    folder.mkdir()
    labels = ["<script>alert(1)</script>", "a & b", '"quoted" $x$', "x_{1}^2 $"]
    lat = make_latents(folder / "lat.h5", label_names=labels)
    result = _pca([lat], tmp_path / "rep", names=["<img src=x onerror=alert(2)>"])
    html = result.html.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "runs&lt;i&gt;&quot;&amp;" in html
    assert "a &amp; b" in html and "&quot;quoted&quot; $x$" in html
    assert "<script" not in html


# -- comparison -------------------------------------------------------------------------------
def test_comparison_of_two_files(tmp_path: Path) -> None:
    base = make_latents(tmp_path / "a.h5", sep=0.2, seed=1, partitions=True)
    dis = make_latents(tmp_path / "b.h5", sep=4.0, seed=2, partitions=True)
    result = _pca([base, dis], tmp_path / "rep", names=["baseline", "disentangled"])
    html = result.html.read_text(encoding="utf-8")
    doc = json.loads(result.metrics_json.read_text())
    assert [f["name"] for f in doc["files"]] == ["baseline", "disentangled"]
    m0, m1 = (f["metrics"]["separation"] for f in doc["files"])
    s0, s1 = m0["silhouette"], m1["silhouette"]
    assert s1 > s0 + 0.3
    assert '<section id="comparison">' in html
    assert "baseline → disentangled" in html
    table = html.split('<section id="comparison">')[1].split("</section>")[0]

    def row(path: str) -> str:
        return table.split(f"<code>{path}</code>")[1].split("</tr>")[0]

    # Up and better for the silhouette (higher is better) ...
    assert f"▲ +{s1 - s0:.3g} better" in row("separation.silhouette")
    # ... down and better for Davies–Bouldin (lower is better).
    assert m1["davies_bouldin"] < m0["davies_bouldin"]
    assert "▼" in row("separation.davies_bouldin") and "better" in row("separation.davies_bouldin")
    # Per-subspace rows are compared too.
    assert "partitions.modality.separation.silhouette" in table
    # Side-by-side panels: one figure of each kind per file, each named.
    kinds = 7  # pca, centroids, silhouette, mi, partition scores, 2 subspaces
    assert len(result.figures) == 2 * kinds
    for name in ("baseline", "disentangled"):
        assert html.count(f'<figure><div class="who">{name}</div><img ') == kinds
        # Sections this pair cannot support are explained per file, in the same row.
        assert html.count(f'<div class="who">{name}</div><p class="skip">Skipped: ') == 2


def test_default_names_use_the_folder_when_stems_clash() -> None:
    assert default_names(["a/x.h5", "b/y.h5"]) == ["x", "y"]
    assert default_names(["runs/base/latents.h5", "runs/dis/latents.h5"]) == [
        "base/latents",
        "dis/latents",
    ]
    assert default_names(["x.h5", "x.h5"]) == ["x", "x (2)"]


def test_label_style_is_shared_and_colour_blind_safe() -> None:
    style = LabelStyle.from_names([["oct", "chest_xray"], None, ["chest_xray", "derm"]])
    assert style.names == ("oct", "chest_xray", "derm")
    assert [style.colour(n) for n in style.names] == list(OKABE_ITO[:3])
    many = LabelStyle(tuple(f"l{i}" for i in range(40)))
    looks = {(many.colour(n), many.marker(n)) for n in many.names}
    assert len(looks) == 40
    assert len({many.colour(f"l{i}") for i in range(17)}) == 17


# -- reference-model images -------------------------------------------------------------------
def test_extras_images_are_shown(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :24] = 255
    seen = []

    def extras(store):
        seen.append(store.path)
        return [("Reconstructions", "top: input, bottom: <reconstruction>", image)]

    result = _pca([lat], tmp_path / "rep", extras=extras)
    html = result.html.read_text(encoding="utf-8")
    assert seen == [lat]
    gallery = result.out_dir / "figures/lat/reference-gallery-0.png"
    from PIL import Image

    with Image.open(gallery) as im:
        assert im.size == (48, 32)
    assert "top: input, bottom: &lt;reconstruction&gt;" in html


def test_extras_failure_and_absence_are_explained(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    b = make_latents(tmp_path / "b.h5", seed=1)

    def extras(store):
        if store.path.name == "a.h5":
            raise ReportError("the run folder runs/x no longer exists")
        return None

    result = _pca([a, b], tmp_path / "rep", extras=extras)
    html = result.html.read_text(encoding="utf-8")
    assert "Skipped: the run folder runs/x no longer exists" in html
    assert "does not come from a reference-model run" in html


# -- projector, requirements ------------------------------------------------------------------
def test_projector_export(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5", label_names=["a\tb", "c\nd"], n=50)
    result = _pca([lat], tmp_path / "rep", export_projector=True)
    vec, meta = sorted(result.projector, key=lambda p: p.name)[::-1]
    assert vec.name == "lat-vectors.tsv" and meta.name == "lat-metadata.tsv"
    vectors = np.loadtxt(vec, delimiter="\t")
    assert vectors.shape == (50, 8)
    lines = meta.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "label\tsample_id\trow"
    assert len(lines) == 51
    assert lines[1].split("\t") == ["a b", "", "0"]
    assert lines[2].split("\t") == ["c d", "", "1"]
    assert "lat-vectors.tsv" in result.html.read_text(encoding="utf-8")


def test_requirements_pass_and_fail(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5", sep=5.0)
    result = _pca(
        [lat],
        tmp_path / "rep",
        require=["separation.silhouette>=0.3", "separation.silhouette>=0.99"],
    )
    assert [o.passed for o in result.outcomes["lat"]] == [True, False]
    assert result.passed is False
    html = result.html.read_text(encoding="utf-8")
    assert "PASS <code>separation.silhouette&gt;=0.3</code>" in html
    assert "FAIL <code>separation.silhouette&gt;=0.99</code>" in html
    assert "Requirements <b>not met</b> by lat" in html
    doc = json.loads(result.metrics_json.read_text())
    assert [r["passed"] for r in doc["requirements"]] == [True, False]


# -- bad input and safe writing ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"names": ["a", "b"]}, "got 2 names for 1 latents files"),
        ({"projection": ("pca", "isomap")}, "unknown projection 'isomap'"),
        ({"sample": 5}, "the projection sample must be at least 10 rows; got 5."),
        ({"names": ["  "]}, "a file name (--name) is empty"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict, message: str) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    with pytest.raises(ReportError, match=re.escape(message)):
        build_report([lat], tmp_path / "rep", **kwargs)
    assert not (tmp_path / "rep").exists()


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    with pytest.raises(ReportError, match="must differ from each other"):
        build_report([a, a], tmp_path / "rep", names=["x", "x"])


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    (tmp_path / "rep").write_text("x")
    with pytest.raises(ReportError, match="is a file; the report needs a folder"):
        build_report([lat], tmp_path / "rep")


def test_failed_build_leaves_the_previous_report(tmp_path: Path) -> None:
    good = make_latents(tmp_path / "good.h5")
    first = _pca([good], tmp_path / "rep")
    before = first.html.read_bytes()
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(40, 4)).astype(np.float32)
    mu[3, 1] = np.nan
    bad = write_latents(tmp_path / "bad.h5", mu, labels=np.arange(40) % 2)
    with pytest.raises(LatentDiagError):
        _pca([bad], tmp_path / "rep")
    assert first.html.read_bytes() == before
    assert not list((tmp_path / "rep").glob(".*tmp"))


def test_rebuild_replaces_stale_figures(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    _pca([lat], tmp_path / "rep", names=["old"])
    second = _pca([lat], tmp_path / "rep", names=["new"])
    assert not (second.out_dir / "figures/old").exists()
    assert (second.out_dir / "figures/new/projections-pca.png").exists()
    assert sorted(p.name for p in second.out_dir.iterdir()) == [
        "figures",
        "metrics.json",
        "report.html",
    ]


# -- sampling ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 400), min_size=1, max_size=8),
    size=st.integers(10, 500),
    seed=st.integers(0, 3),
)
def test_stratified_sample_keeps_every_label(counts: list[int], size: int, seed: int) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    labels = labels[rng.permutation(labels.size)]
    n = labels.size
    rows = stratified_sample(n, size, labels=labels, random_state=seed)
    assert np.all(np.diff(rows) > 0) and (rows.size == 0 or (rows[0] >= 0 and rows[-1] < n))
    if n <= size:
        assert rows.size == n
        return
    picked = np.bincount(labels[rows], minlength=len(counts))
    for k, c in enumerate(counts):
        assert picked[k] >= min(c, 20)
        assert picked[k] <= c
        # Proportional share, give or take the rounding and the rare-label floor.
        assert picked[k] <= max(np.ceil(c * size / n), min(c, 20))
    assert rows.size <= size + 20 * len(counts)
    again = stratified_sample(n, size, labels=labels, random_state=seed)
    assert np.array_equal(rows, again)


def test_umap_is_imported_only_when_chosen(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5", label_names=None)  # few metrics: a quick process
    code = (
        "import sys\n"
        "from latentdiag.report import build_report\n"
        f"build_report([{str(lat)!r}], {str(tmp_path / 'rep')!r}, projection=('pca',))\n"
        "print('umap' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_umap_projection(tmp_path: Path) -> None:
    lat = make_latents(tmp_path / "lat.h5")
    result = build_report([lat], tmp_path / "rep", projection=("umap",))
    assert (result.out_dir / "figures/lat/projections-umap.png").exists()
    assert "UMAP (15 exact neighbours)" in result.html.read_text(encoding="utf-8")


# -- the command ------------------------------------------------------------------------------
def test_cli_report(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5", sep=0.2)
    b = make_latents(tmp_path / "b.h5", sep=10.0, seed=1)
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        cli,
        [
            "report", str(a), str(b), "-o", str(out), "--name", "baseline",
            "--name", "disentangled", "--projection", "pca", "--plot-sample", "100",
            "--require", "separation.silhouette>=0.5", "--export-projector",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"Wrote {out / 'report.html'} (8 figures)" in result.output
    assert "FAIL  baseline: separation.silhouette>=0.5" in result.output
    assert "pass  disentangled: separation.silhouette>=0.5" in result.output
    assert (out / "projector" / "baseline-vectors.tsv").exists()


def test_cli_report_json(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    result = CliRunner().invoke(
        cli, ["report", str(a), "-o", str(tmp_path / "r"), "--projection", "none", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["names"] == ["a"] and doc["passed"] is None
    assert not any("projections" in f for f in doc["figures"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--name", "x", "--name", "y"],
            "Error: got 2 names for 1 latents files; give one --name per file, in the same "
            "order, or none.",
        ),
        (
            ["--plot-sample", "3"],
            "Error: the projection sample must be at least 10 rows; got 3.",
        ),
    ],
)
def test_cli_report_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    a = make_latents(tmp_path / "a.h5")
    result = CliRunner().invoke(cli, ["report", str(a), "-o", str(tmp_path / "r"), *extra])
    assert result.exit_code == 1
    assert result.stderr.strip() == message


def test_cli_report_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "no.h5"), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'no.h5'} does not exist."


def test_cli_report_out_is_a_file(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    result = CliRunner().invoke(cli, ["report", str(a), "-o", str(a)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {a} is a file; the report needs a folder (-o DIR).")


def test_cli_reference_run_with_missing_run_dir(tmp_path: Path) -> None:
    a = make_latents(
        tmp_path / "a.h5",
        provenance={"kind": "reference-run", "run_dir": str(tmp_path / "gone")},
    )
    result = CliRunner().invoke(
        cli, ["report", str(a), "-o", str(tmp_path / "r"), "--projection", "pca"]
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "which no longer exists, so its images cannot be drawn" in html


def test_cli_report_on_a_real_training_run_shows_its_images(tmp_path: Path) -> None:
    """A run's own latents.h5 points back to the run: the report draws its reconstructions,
    samples and traversals."""
    from reference_models.config import build_config
    from reference_models.trainer import train

    config = build_config(
        model="disentangled",
        overrides={
            "model": {"base_channels": 8},
            "data": {"n": 64, "size": 16},
            "train": {"batch_size": 16, "epochs": 1, "device": "cpu"},
        },
    )
    run = train(config, tmp_path / "run")
    assert run.latents is not None
    result = CliRunner().invoke(
        cli, ["report", str(run.latents), "-o", str(tmp_path / "r"), "--projection", "pca"]
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    for title in ("Reconstructions", "Samples", "Latent traversal (oct)"):
        assert title in html
    assert (tmp_path / "r" / "figures" / "latents" / "reference-gallery-0.png").exists()


def test_requirement_on_a_partition_only_one_file_has(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    b = make_latents(tmp_path / "b.h5", partitions=True, seed=1)
    result = _pca([a, b], tmp_path / "rep", require=["leakage.shared.probe_above_chance<=0.5"])
    (missing,) = result.outcomes["a"]
    assert missing.passed is None and missing.detail.startswith("not in this file")
    assert result.outcomes["b"][0].passed is True
    assert result.passed is False


def test_unknown_requirement_key_fails_before_any_work(tmp_path: Path) -> None:
    a = make_latents(tmp_path / "a.h5")
    result = CliRunner().invoke(
        cli, ["report", str(a), "-o", str(tmp_path / "r"), "--require", "separaton.silhouette>0"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: requirement separaton.silhouette>0: no metric 'separaton.silhouette' in the "
        "results. Closest: separation.silhouette"
    )
    assert not (tmp_path / "r").exists()


# -- exact t-SNE -----------------------------------------------------------------------------


def _clusters(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, 8)) * 4.0
    return centres[labels] + rng.normal(size=(n, 8)), labels


def _assert_clusters_apart(embedding: np.ndarray, labels: np.ndarray) -> None:
    """Every two label centroids further apart than twice the widest label's mean radius."""
    ks = np.unique(labels)
    centroids = np.stack([embedding[labels == k].mean(axis=0) for k in ks])
    spread = max(
        float(np.linalg.norm(embedding[labels == k] - c, axis=1).mean())
        for k, c in zip(ks, centroids, strict=True)
    )
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(centroids) for b in centroids[i + 1 :]]
    assert min(gaps) > 2 * spread


def test_tsne_affinities_equal_sklearn() -> None:
    """The joint affinities P are scikit-learn's (its neighbours, bisection and symmetrisation):
    equal to float32 rounding, entry for entry."""
    from sklearn.manifold._t_sne import _joint_probabilities_nn
    from sklearn.neighbors import NearestNeighbors

    from latentdiag.report.projections import _joint_affinities

    x, _ = _clusters()
    perplexity = 30.0
    k = min(x.shape[0] - 1, int(3.0 * perplexity + 1))
    graph = NearestNeighbors(n_neighbors=k).fit(x).kneighbors_graph(mode="distance")
    graph.data **= 2
    theirs = _joint_probabilities_nn(graph, perplexity, 0).toarray()
    indptr, indices, vals = _joint_affinities(x, perplexity)
    ours = np.zeros_like(theirs)
    for i in range(x.shape[0]):
        ours[i, indices[indptr[i] : indptr[i + 1]]] = vals[indptr[i] : indptr[i + 1]]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(ours, ours.T)
    assert ours.sum() == pytest.approx(1.0)


def test_exact_tsne_keeps_neighbours_as_well_as_sklearn() -> None:
    """The exact gradient with scikit-learn's schedule: as trustworthy an embedding as
    scikit-learn's Barnes-Hut t-SNE, clusters apart, and the same embedding on a rerun."""
    from sklearn.manifold import trustworthiness

    from latentdiag.report.projections import _tsne_exact, _tsne_sklearn

    x, labels = _clusters()
    ours = _tsne_exact(x, 30.0, 0)
    theirs = _tsne_sklearn(x, 30.0, 0)
    t_ours, t_theirs = (trustworthiness(x, e, n_neighbors=10) for e in (ours, theirs))
    assert t_ours >= t_theirs - 0.01, (t_ours, t_theirs)
    _assert_clusters_apart(ours, labels)
    np.testing.assert_array_equal(ours, _tsne_exact(x, 30.0, 0))


def test_tsne_uses_exact_gradient_up_to_its_limit(monkeypatch) -> None:
    from latentdiag.report import projections

    calls: list[str] = []
    monkeypatch.setattr(
        projections, "_tsne_exact", lambda x, p, s: calls.append("exact") or np.zeros((len(x), 2))
    )
    monkeypatch.setattr(
        projections, "_tsne_sklearn", lambda x, p, s: calls.append("bh") or np.zeros((len(x), 2))
    )
    monkeypatch.setattr(projections, "_TSNE_EXACT_MAX", 50)
    x, _ = _clusters(60)
    assert "Barnes-Hut" in projections._tsne(x, 0).note
    assert "exact gradient" in projections._tsne(x[:50], 0).note
    assert calls == ["bh", "exact"]


# -- UMAP without umap-learn ------------------------------------------------------------------


def test_umap_layout_is_as_trustworthy_as_umap_learn() -> None:
    import warnings

    from sklearn.manifold import trustworthiness

    from latentdiag.report.projections import _umap

    umap = pytest.importorskip("umap")
    x, labels = _clusters(400)
    ours = _umap(x, 0).coords
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = umap.UMAP(n_neighbors=15, n_epochs=200, random_state=0).fit_transform(x)
    t_ours, t_theirs = (trustworthiness(x, e, n_neighbors=10) for e in (ours, theirs))
    assert t_ours >= t_theirs - 0.01, (t_ours, t_theirs)
    _assert_clusters_apart(ours, labels)
    np.testing.assert_array_equal(ours, _umap(x, 0).coords)


def test_umap_constants_and_generator_are_umap_learn_s() -> None:
    pytest.importorskip("umap")
    from umap.umap_ import find_ab_params
    from umap.utils import tau_rand_int

    from latentdiag.report import projections
    from latentdiag.report._umap_numba import _tau_rand_int

    a, b = find_ab_params(1.0, 0.1)
    assert pytest.approx((a, b), rel=1e-6) == (projections._UMAP_A, projections._UMAP_B)
    state = np.random.RandomState(5).randint(-(2**31), 2**31 - 1, 3).astype(np.int64)
    theirs_state, ours_state = state.copy(), state.copy()
    theirs = [tau_rand_int(theirs_state) for _ in range(1000)]
    ours = [_tau_rand_int(ours_state) for _ in range(1000)]
    assert ours == theirs


def test_report_imports_neither_umap_learn_nor_sklearn(tmp_path: Path) -> None:
    """PCA, UMAP and t-SNE of a 300-row file: umap-learn (2 s to import) and scikit-learn are
    not needed."""
    x, labels = _clusters(300)
    path = tmp_path / "latents.h5"
    write_latents(path, x.astype(np.float32), labels=labels)
    code = (
        "import sys\n"
        "from latentdiag.cli import cli\n"
        f"try:\n    cli(args=['report', {str(path)!r}, '-o', {str(tmp_path / 'r')!r}],"
        " prog_name='latentdiag')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'umap', 'sklearn', 'pynndescent'}),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "r" / "report.html").exists()
