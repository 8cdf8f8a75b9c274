"""``latentdiag merge``: join the latents files of shards into one."""

from __future__ import annotations

import sys

import click

from latentdiag.cli._common import echo_json, json_option, out_option


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option(help="The merged latents file.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@json_option
def merge_command(shards: tuple[str, ...], out: str, overwrite: bool, as_json: bool) -> None:
    """Join SHARDS (latents files from `embed --shard K/N` or torchrun ranks) into OUT.

    Rows are put back in data order. The shards must come from one embed run (same model,
    data and options), and every sample must be in exactly one of them; otherwise nothing is
    written and the missing or repeated shard or sample is named.

    \b
    Examples:
      latentdiag merge latents.shard0-of-4.h5 latents.shard1-of-4.h5 \\
          latents.shard2-of-4.h5 latents.shard3-of-4.h5 -o latents.h5
      latentdiag merge part*.h5 -o latents.h5
    """
    from latentdiag.merge import merge_latents

    result = merge_latents(shards, out, overwrite=overwrite, command=["latentdiag", *sys.argv[1:]])
    if as_json:
        echo_json({"path": str(result.path), "n_rows": result.n_rows, "shards": result.shards})
    else:
        click.echo(f"wrote {result.path}: {result.n_rows:,} rows from {result.shards} shards")
