"""``latentdiag report``: latents files in, a self-contained HTML report out."""

from __future__ import annotations

from pathlib import Path

import click

from latentdiag.cli._common import (
    console,
    device_option,
    echo_json,
    json_option,
    latents_options,
    out_option,
    pre_obsm_option,
    seed_option,
)
from latentdiag.cli.metrics_cmd import exhaustive_option, sample_option


@click.command("report")
@click.argument("latents", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option(help="Report folder; report.html, metrics.json and figures/ are written there.")
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Name of a file in the report; repeat once per file, in order (default: file stems).",
)
@click.option(
    "--projection",
    "projections",
    multiple=True,
    type=click.Choice(["pca", "umap", "tsne", "none"]),
    help="Projection to draw; repeat for several (default: pca, umap and tsne).",
)
@click.option(
    "--plot-sample",
    type=int,
    default=2000,
    show_default=True,
    help="Rows of the stratified sample that projections and silhouette bars are drawn on.",
)
@sample_option
@exhaustive_option
@click.option(
    "--require",
    multiple=True,
    metavar="EXPR",
    help="A requirement such as 'separation.silhouette>=0.5', shown as pass or fail; repeatable.",
)
@click.option(
    "--export-projector",
    is_flag=True,
    help="Also write TensorBoard Projector TSV files (vectors + metadata) into DIR/projector.",
)
@click.option(
    "--generation",
    "generation",
    multiple=True,
    type=click.Path(),
    help="A gencheck result (the folder of `gencheck -o DIR`) for the file in the same "
    "position: adds the conditional-generation section. Repeat once per file.",
)
@click.option(
    "--track",
    "track",
    multiple=True,
    type=click.Path(),
    help="A latentdiag.track log (its folder, or track.jsonl) for the file in the same "
    "position: draws the metrics over epochs. Reference runs' own logs are found without it.",
)
@click.option(
    "--explore",
    is_flag=True,
    help="Also write DIR/explore/NAME.html, the interactive page of every point "
    "(`latentdiag explore`), linked from the summary.",
)
@latents_options
@pre_obsm_option
@seed_option
@device_option
@json_option
def report_command(
    latents,
    out,
    label_key,
    batch_key,
    obsm,
    logvar_obsm,
    pre_obsm,
    names,
    projections,
    plot_sample,
    sample,
    exhaustive,
    require,
    export_projector,
    generation,
    track,
    explore,
    seed,
    device,
    as_json,
) -> None:
    """Write a report on one or more latents files: DIR/report.html, figures, metrics.json.

    The page is self-contained (open it from disk, offline) and starts with a summary of the
    headline metrics. With two or more files it compares them side by side, each against the
    first. Files written by a reference-model run also get reconstructions, samples per label
    and latent traversals. LATENTS may be AnnData .h5ad files; --label-key, --batch-key and
    --obsm apply to every file. With --batch-key the report adds a section on how well the
    batches mix; with --generation (gencheck results, one per file) a section on whether
    each decoder generates what its label asks for.

    \b
    Examples:
      latentdiag report latents.h5 -o report/
      latentdiag report base.h5 dis.h5 --name baseline --name disentangled -o compare/
      latentdiag report latents.h5 -o r/ --projection pca --require 'separation.silhouette>=0.5'
      latentdiag report cells.h5ad --obsm X_scVI --label-key cell_type --batch-key batch -o r/
      latentdiag report base.h5 dis.h5 --generation gen-base/ --generation gen-dis/ -o r/
    """
    from latentdiag.report import build_report

    methods = () if "none" in projections else (projections or ("pca", "umap", "tsne"))
    err = console(stderr=True)

    def show(msg: str) -> None:
        err.print(f"[dim]{msg}[/dim]")

    result = build_report(
        list(latents),
        out,
        names=list(names) or None,
        projection=methods,
        sample=plot_sample,
        metrics_sample=sample,
        require=list(require),
        seed=seed,
        device=device,
        export_projector=export_projector,
        extras=_reference_images(seed),
        progress=show if err.is_terminal and not as_json else None,  # CI logs stay short
        label_key=label_key,
        batch_key=batch_key,
        obsm=obsm,
        logvar_obsm=logvar_obsm,
        pre_obsm=pre_obsm,
        exhaustive=exhaustive,
        generation=list(generation),
        explore=explore,
        track=list(track),
    )
    if as_json:
        echo_json(_as_dict(result))
        return
    click.echo(f"Wrote {result.html} ({len(result.figures)} figures) in {result.elapsed_s:.1f} s")
    for name, outcomes in result.outcomes.items():
        for o in outcomes:
            word = "pass" if o.passed else ("FAIL" if o.passed is False else "MISSING")
            click.echo(f"  {word}  {name}: {o.text}  ({o.detail})")


def _as_dict(result) -> dict:
    return {
        "html": str(result.html),
        "metrics_json": str(result.metrics_json),
        "figures": [str(p) for p in result.figures],
        "projector": [str(p) for p in result.projector],
        "names": result.names,
        "passed": result.passed,
        "requirements": {n: [o.__dict__ for o in outs] for n, outs in result.outcomes.items()},
        "skipped": result.skipped,
        "sample_sizes": result.sample_sizes,
        "elapsed_s": round(result.elapsed_s, 3),
    }


def _reference_images(seed: int):
    """Reference-model images for files whose provenance points to a training run."""

    def extras(store):
        from latentdiag.errors import ReportError

        prov = store.provenance
        if prov.get("kind") != "reference-run":
            return None
        run_dir = prov.get("run_dir")
        if not run_dir or not Path(str(run_dir)).is_dir():
            raise ReportError(
                f"this file was written by the reference-model run {run_dir}, which no longer "
                "exists, so its images cannot be drawn; keep the run folder to see them."
            )
        from reference_models.gallery import run_gallery

        return run_gallery(str(run_dir), seed=seed, device="cpu")

    return extras
