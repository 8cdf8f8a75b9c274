"""``latentdiag inspect``: what a latents file holds."""

from __future__ import annotations

import click

from latentdiag.cli._common import console, echo_json, json_option, latents_options


@click.command("inspect")
@click.argument("latents", type=click.Path(dir_okay=False))
@latents_options
@json_option
def inspect_command(
    latents: str,
    label_key: str | None,
    batch_key: str | None,
    obsm: str | None,
    logvar_obsm: str | None,
    as_json: bool,
) -> None:
    """Show what a latents file holds: sizes, datasets, columns, labels, partitions, provenance.

    LATENTS is a latents file or an AnnData .h5ad file. Every metadata column is listed with
    its kind (categorical or numeric), its categories and their counts (or its range), and
    which column plays label and batch. Also counts non-finite values (NaN, inf) per dataset,
    which the metrics would refuse. An unfinished `.partial` file can be inspected too; it
    shows how many rows it committed.

    \b
    Examples:
      latentdiag inspect latents.h5
      latentdiag inspect latents.h5 --json | jq .label_counts
      latentdiag inspect cells.h5ad --obsm X_scVI --label-key cell_type --batch-key batch
    """
    from latentdiag.store import open_latents

    with open_latents(
        latents,
        label_key=label_key,
        batch_key=batch_key,
        obsm=obsm,
        logvar_obsm=logvar_obsm,
        allow_incomplete=latents.endswith(".partial"),
    ) as store:
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
    if s.file_format == "anndata":
        by = f"latentdiag {s.latentdiag_version}" if s.latentdiag_version else "another tool"
        head.add_row("format", f"AnnData .h5ad, written by {by}")
    else:
        head.add_row("format", f"latents v{s.format_version}, latentdiag {s.latentdiag_version}")
    head.add_row("created", str(s.created or "not recorded"))
    bad = {k: v for k, v in s.nonfinite.items() if v}
    head.add_row(
        "non-finite values",
        ", ".join(f"[red]{k}: {v:,}[/red]" for k, v in bad.items()) if bad else "none",
    )
    out.print(head)

    ds = Table(title="datasets", title_justify="left")
    anndata = s.file_format == "anndata"
    for col in ("name", "shape", "dtype", "in AnnData" if anndata else "compression"):
        ds.add_column(col)
    for name, info in s.datasets.items():
        ds.add_row(
            name if anndata else "/" + name,
            " × ".join(map(str, info["shape"])),
            info["dtype"],
            info.get("anndata", "") if anndata else str(info["compression"] or "none"),
        )
    out.print(ds)

    if s.columns:
        out.print(_columns_table(s))
    for title, key, counts in (
        ("labels", s.label_key, s.label_counts),
        ("batches", s.batch_key, s.batch_counts),
    ):
        if not counts:
            continue
        named = f" from column {key}" if key else ""
        lt = Table(title=f"{title} ({len(counts)}){named}", title_justify="left")
        lt.add_column("value", justify="right")
        lt.add_column("name")
        lt.add_column("count", justify="right")
        for i, (name, count) in enumerate(counts.items()):
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


def _columns_table(s):
    """One row per metadata column: kind, role, categories with counts or the value range."""
    from rich.table import Table

    ct = Table(title=f"columns ({len(s.columns)})", title_justify="left")
    for col in ("name", "kind", "role", "missing", "values"):
        ct.add_column(col, overflow="fold")
    for name, info in s.columns.items():
        role = "label" if name == s.label_key else ("batch" if name == s.batch_key else "")
        if info["kind"] == "categorical":
            shown = list(info["counts"].items())[:8]
            text = ", ".join(f"{c} ({k:,})" for c, k in shown)
            more = info["n_categories"] - len(shown)
            text += f" and {more:,} more" if more > 0 else ""
            kind = f"categorical, {info['n_categories']:,}"
        else:
            rng = f"{info['min']:g} … {info['max']:g}" if "min" in info else "no values"
            text = f"{rng}, mean {info['mean']:.4g}" if "mean" in info else rng
            kind = f"numeric ({info['dtype']}), {info['n_distinct']:,} distinct"
        ct.add_row(name, kind, role, f"{info['n_missing']:,}" if info["n_missing"] else "", text)
    return ct
