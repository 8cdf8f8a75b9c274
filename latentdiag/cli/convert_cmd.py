"""``latentdiag convert``: a latents file to AnnData ``.h5ad`` and back, losslessly."""

from __future__ import annotations

import click

from latentdiag.cli._common import echo_json, json_option, out_option


@click.command("convert")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False))
@out_option(help="The output: OUT.h5ad writes AnnData, OUT.h5 a latents file.")
@click.option(
    "--obsm", metavar="KEY", default=None, help="AnnData input: obsm key of the embedding."
)
@click.option(
    "--logvar-obsm",
    metavar="KEY",
    default=None,
    help="AnnData input: obsm key of the posterior log-variances.",
)
@click.option(
    "--label-key",
    metavar="COL",
    default=None,
    help="The categorical column that becomes the output's default label.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@json_option
def convert_command(
    src: str,
    out: str,
    obsm: str | None,
    logvar_obsm: str | None,
    label_key: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Convert IN between a latents file (.h5) and AnnData (.h5ad); OUT's suffix says which.

    Nothing is lost either way: mu (and its dtype), logvar, every metadata column, factors,
    partitions, sample ids, the default label and the provenance. An AnnData output keeps the
    embedding in obsm['X_latent'] (or the key it was read from), so scanpy plots it directly:
    sc.pl.embedding(adata, basis='X_latent', color='cell_type'). The keys are listed in
    docs/format.md.

    \b
    Examples:
      latentdiag convert latents.h5 -o latents.h5ad
      latentdiag convert cells.h5ad --obsm X_scVI --label-key cell_type -o cells.h5
    """
    from latentdiag.store.convert import convert_latents

    result = convert_latents(
        src,
        out,
        obsm=obsm,
        logvar_obsm=logvar_obsm,
        label_key=label_key,
        overwrite=overwrite,
    )
    if as_json:
        echo_json(
            {
                "path": str(result.path),
                "kind": result.kind,
                "n_rows": result.n_rows,
                "latent_dim": result.latent_dim,
                "columns": result.columns,
                "label_key": result.label_key,
            }
        )
        return
    kind = "AnnData" if result.kind == "anndata" else "latents file"
    cols = ", ".join(result.columns) or "none"
    label = f"; label: {result.label_key}" if result.label_key else ""
    click.echo(
        f"wrote {result.path} ({kind}): {result.n_rows:,} rows × {result.latent_dim} dims, "
        f"columns: {cols}{label}"
    )
