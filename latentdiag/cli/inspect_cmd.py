"""``latentdiag inspect``: what a latents file holds."""

from __future__ import annotations

import click

from latentdiag.cli._common import console, echo_json, json_option


@click.command("inspect")
@click.argument("latents", type=click.Path(dir_okay=False))
@json_option
def inspect_command(latents: str, as_json: bool) -> None:
    """Show what a latents file holds: sizes, datasets, labels, partitions, provenance.

    Also counts non-finite values (NaN, inf) per dataset, which the metrics would refuse.
    An unfinished `.partial` file can be inspected too; it shows how many rows it committed.

    \b
    Examples:
      latentdiag inspect latents.h5
      latentdiag inspect latents.h5 --json | jq .label_counts
    """
    from latentdiag.store import LatentStore

    with LatentStore(latents, allow_incomplete=latents.endswith(".partial")) as store:
        summary = store.summary()
    if as_json:
        echo_json(summary.to_dict())
    else:
        _render(summary)


def _render(s) -> None:
    from rich.table import Table

    out = console()
    head = Table(title=f"{s.path}", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    head.add_row("samples (n)", f"{s.n_samples:,}")
    head.add_row("latent dim (d)", str(s.latent_dim))
    head.add_row("complete", "yes" if s.complete else "[red]no (unfinished run)[/red]")
    head.add_row("format", f"latents v{s.format_version}, latentdiag {s.latentdiag_version}")
    head.add_row("created", str(s.created))
    bad = {k: v for k, v in s.nonfinite.items() if v}
    head.add_row(
        "non-finite values",
        ", ".join(f"[red]{k}: {v:,}[/red]" for k, v in bad.items()) if bad else "none",
    )
    out.print(head)

    ds = Table(title="datasets", title_justify="left")
    for col in ("name", "shape", "dtype", "compression"):
        ds.add_column(col)
    for name, info in s.datasets.items():
        ds.add_row(
            "/" + name,
            " × ".join(map(str, info["shape"])),
            info["dtype"],
            str(info["compression"] or "none"),
        )
    out.print(ds)

    if s.label_counts:
        lt = Table(title=f"labels ({len(s.label_counts)})", title_justify="left")
        lt.add_column("value", justify="right")
        lt.add_column("name")
        lt.add_column("count", justify="right")
        for i, (name, count) in enumerate(s.label_counts.items()):
            lt.add_row(str(i), name, f"{count:,}")
        out.print(lt)
    if s.factor_names:
        out.print(f"[bold]factors ({len(s.factor_names)}):[/bold] " + ", ".join(s.factor_names))
    if s.partitions:
        pt = Table(title="partitions", title_justify="left")
        pt.add_column("name")
        pt.add_column("dims")
        for name, (a, b) in s.partitions.items():
            pt.add_row(name, f"[{a}, {b})  ({b - a} dims)")
        out.print(pt)
    if s.provenance:
        pv = Table(title="provenance", title_justify="left", show_header=False)
        pv.add_column(style="bold")
        pv.add_column(overflow="fold")
        for key, value in s.provenance.items():
            pv.add_row(key, str(value))
        out.print(pv)
