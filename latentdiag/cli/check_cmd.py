"""``latentdiag check``: a gate for training pipelines — exit 1 when a metric misses its bar."""

from __future__ import annotations

import sys
from typing import Any

import click

from latentdiag.cli._common import (
    console,
    device_option,
    echo_json,
    json_option,
    latents_options,
    pre_obsm_option,
    seed_option,
)
from latentdiag.cli.metrics_cmd import exhaustive_option, progress_bar, sample_option


def _parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    from latentdiag.errors import ConfigError
    from latentdiag.metrics.check import parse_requirement

    try:
        return [parse_requirement(v) for v in values]
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("check")
@click.argument("latents", type=click.Path())
@click.option(
    "--require",
    "requirements",
    multiple=True,
    callback=_parse,
    metavar="'KEY OP X'",
    help="A requirement such as 'separation.silhouette>=0.5' (OP: >= <= > < == !=). Repeatable.",
)
@click.option("--min-silhouette", type=float, help="Shorthand: separation.silhouette>=X.")
@latents_options
@pre_obsm_option
@click.option(
    "--min-centroid-distance",
    type=float,
    help="Shorthand: separation.centroid_distance.min>=X (every pair of labels that far apart).",
)
@click.option(
    "--generation",
    type=click.Path(),
    default=None,
    help="A gencheck result (the folder of `gencheck -o DIR`, or its generation.json): "
    "requirements on generation.* are checked against it.",
)
@json_option
@sample_option
@exhaustive_option
@seed_option
@device_option
def check_command(
    latents: str,
    requirements: list[Any],
    min_silhouette: float | None,
    min_centroid_distance: float | None,
    label_key: str | None,
    batch_key: str | None,
    obsm: str | None,
    logvar_obsm: str | None,
    pre_obsm: str | None,
    generation: str | None,
    as_json: bool,
    sample: int | None,
    exhaustive: bool,
    seed: int,
    device: str,
):
    """Check metrics against thresholds: exit 0 when all pass, 1 when any fails.

    Only the metrics the requirements name are computed. A requirement on a metric the file
    cannot support (e.g. posterior TC without /logvar) fails, with the reason. Exit status 2
    means a malformed requirement (a usage error); an unknown metric key or an unreadable file
    prints one `Error:` line and exits 1.

    LATENTS is a latents file or an AnnData .h5ad file (see `latentdiag metrics --help`),
    or a gencheck result (a folder from `gencheck -o DIR` or its generation.json) when every
    requirement is on generation.*. Requirements on batch_separation.* (e.g. the batch's
    linear probe accuracy) need --batch-key; on generation.* a gencheck result.

    \b
    Examples:
      latentdiag check latents.h5 --min-silhouette 0.5 --min-centroid-distance 10
      latentdiag check latents.h5 --require 'partitions.shared.linear_probe_accuracy<=0.4'
      latentdiag check cells.h5ad --obsm X_scVI --label-key cell_type --batch-key batch \\
          --require 'silhouette>=0.1' --require 'batch_separation.linear_probe_accuracy<=0.6'
      latentdiag check gen/ --require 'generation.condition_accuracy>=0.9'
    """
    from latentdiag.metrics.check import (
        Requirement,
        check_requirements,
        required_keys,
        validate_requirements,
    )
    from latentdiag.metrics.suite import compute_metrics_for_store
    from latentdiag.store import open_latents

    reqs = list(requirements)
    if min_silhouette is not None:
        reqs.append(Requirement("separation.silhouette", ">=", min_silhouette))
    if min_centroid_distance is not None:
        reqs.append(Requirement("separation.centroid_distance.min", ">=", min_centroid_distance))
    if not reqs:
        raise click.UsageError(
            "give at least one requirement: --require, --min-silhouette or --min-centroid-distance."
        )
    gen_reqs = [r for r in reqs if r.key.startswith("generation.")]
    latent_reqs = [r for r in reqs if not r.key.startswith("generation.")]
    gen_doc = _gencheck_doc(latents, generation)
    if gen_doc is not None and generation is None:  # LATENTS itself is the gencheck result
        if latent_reqs:
            raise click.UsageError(
                f"{latents} is a gencheck result: it answers requirements on generation.* only; "
                f"check {latent_reqs[0]} on a latents file (with --generation {latents})."
            )
    elif gen_reqs and gen_doc is None:
        raise click.UsageError(
            f"requirement {gen_reqs[0]} is on a gencheck result: pass --generation DIR (the "
            "folder of `latentdiag gencheck -o DIR`)."
        )
    by_req: dict[int, Any] = {}
    if gen_reqs:
        for req, res in zip(gen_reqs, check_requirements(gen_doc or {}, gen_reqs), strict=True):
            by_req[id(req)] = res
    if latent_reqs:
        with open_latents(
            latents,
            label_key=label_key,
            batch_key=batch_key,
            obsm=obsm,
            logvar_obsm=logvar_obsm,
            pre_obsm=pre_obsm,
        ) as store:
            validate_requirements(latent_reqs, store.partitions)
            with progress_bar() as progress:
                metrics = compute_metrics_for_store(
                    store,
                    include=required_keys(latent_reqs),
                    sample=sample,
                    seed=seed,
                    device=device,
                    progress=progress,
                    exhaustive=exhaustive,
                )
        for req, res in zip(latent_reqs, check_requirements(metrics, latent_reqs), strict=True):
            by_req[id(req)] = res
    results = [by_req[id(r)] for r in reqs]
    passed = all(r.passed for r in results)
    if as_json:
        echo_json({"passed": passed, "results": [r.to_dict() for r in results]})
    else:
        _render(results, passed)
    sys.exit(0 if passed else 1)


def _gencheck_doc(latents: str, generation: str | None) -> dict[str, Any] | None:
    """The gencheck document of --generation, or of LATENTS when it is one; else None."""
    from pathlib import Path

    from latentdiag.report.generation import read_gencheck

    if generation is not None:
        return read_gencheck(generation).doc
    p = Path(latents)
    if p.suffix == ".json" or (p.is_dir() and (p / "generation.json").is_file()):
        return read_gencheck(p).doc
    return None


def _render(results: list[Any], passed: bool) -> None:
    from rich.table import Table

    table = Table(title="check", title_justify="left")
    for col in ("requirement", "value", "result"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in results:
        value = "—" if r.value is None else f"{r.value:.4g}"
        verdict = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        if r.reason:
            verdict += f" ({r.reason})"
        table.add_row(f"{r.resolved_key} {r.op} {r.threshold:g}", value, verdict)
    out = console()
    out.print(table)
    n_failed = sum(not r.passed for r in results)
    out.print(
        "[green]all requirements pass[/green]"
        if passed
        else f"[red]{n_failed} of {len(results)} requirements failed[/red]"
    )
