"""``latentdiag explore``: one self-contained interactive page of every latent point."""

from __future__ import annotations

from typing import Any

import click

from latentdiag.cli._common import console, echo_json, json_option, latents_options, seed_option


@click.command("explore")
@click.argument("latents", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False),
    default="explore.html",
    show_default=True,
    help="The HTML file to write.",
)
@click.option(
    "--data",
    default=None,
    help="The images the latents were embedded from (any image source `embed` reads): hover "
    "shows each row's thumbnail.",
)
@click.option("--split", default="train", show_default=True, help="DATA's MedMNIST split.")
@click.option("--n", "n_items", type=int, default=None, help="DATA's --n (built-in sources).")
@click.option(
    "--projection",
    type=click.Choice(["pca", "umap"]),
    default="pca",
    show_default=True,
    help="PCA (fitted on every row) or UMAP (on the drawn rows; slower).",
)
@click.option(
    "--max-points",
    type=int,
    default=100_000,
    show_default=True,
    help="Rows drawn at most; above it a stratified sample by label.",
)
@click.option(
    "--thumbnails",
    type=int,
    default=5_000,
    show_default=True,
    help="Rows with a thumbnail at most (32 × 32 px; a stratified sample of those drawn).",
)
@click.option(
    "--atlas",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write an embedding-atlas Parquet file (x, y, vector, columns, neighbours, and "
    "images with --data).",
)
@click.option(
    "--projector",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write TensorBoard Projector files into this folder (with a sprite of "
    "thumbnails with --data).",
)
@latents_options
@seed_option
@json_option
def explore_command(latents: str, out: str, **opts: Any) -> None:
    """Write one self-contained interactive page of every latent point.

    The page (no network; open it from disk) draws a 2-D projection of every row — up to
    --max-points, a stratified sample above — for the whole latent vector and each partition.
    Colour by any metadata column or factor; hover a point for its id, its values and, with
    --data, its image; shift-drag a box for the selection's composition; find a row by id.

    --atlas and --projector also export the points for Apple's embedding-atlas (open with
    `embedding-atlas FILE --x projection_x --y projection_y --neighbors neighbors`) and for
    TensorBoard's Projector (`tensorboard --logdir DIR`).

    \b
    Examples:
      latentdiag explore latents.h5 -o explore.html
      latentdiag explore latents.h5 --data data/heldout.npz -o explore.html
      latentdiag explore cells.h5ad --obsm X_scVI --label-key cell_type --projection umap
    """
    from latentdiag.report.explore import build_explorer, explorer_summary

    dataset = None
    if opts["data"]:
        from latentdiag.cli.data_cmd import one_line_warnings
        from latentdiag.data import open_dataset

        with one_line_warnings():
            dataset = open_dataset(
                opts["data"], split=opts["split"], n=opts["n_items"], seed=opts["seed"]
            )
    err = console(stderr=True)
    result = build_explorer(
        latents,
        out,
        data=dataset,
        projection=opts["projection"],
        max_points=opts["max_points"],
        thumbnails=opts["thumbnails"],
        seed=opts["seed"],
        label_key=opts["label_key"],
        batch_key=opts["batch_key"],
        obsm=opts["obsm"],
        logvar_obsm=opts["logvar_obsm"],
        progress=(lambda m: err.print(f"[dim]{m}[/dim]")) if not opts["as_json"] else None,
    )
    exports: list[str] = []
    if opts["atlas"] or opts["projector"]:
        from latentdiag.report.exports import write_atlas, write_projector
        from latentdiag.store import open_latents

        keys = {k: opts[k] for k in ("label_key", "batch_key", "obsm", "logvar_obsm")}
        with open_latents(latents, **keys) as store:
            if opts["atlas"]:
                path = write_atlas(
                    store,
                    opts["atlas"],
                    data=dataset,
                    projection=opts["projection"],
                    max_points=opts["max_points"],
                    seed=opts["seed"],
                )
                exports.append(str(path))
            if opts["projector"]:
                files = write_projector(store, opts["projector"], data=dataset, seed=opts["seed"])
                exports += [str(f) for f in files]
    if opts["as_json"]:
        echo_json(
            {
                "exports": exports,
                "path": str(result.path),
                "bytes": result.bytes,
                "n_rows": result.n_rows,
                "n_points": result.n_points,
                "n_thumbnails": result.n_thumbnails,
                "spaces": result.spaces,
                "projection": result.projection,
                "seconds": round(result.seconds, 2),
            }
        )
        return
    for line in explorer_summary(result):
        console().print(line)
    if exports:
        console().print(f"wrote {', '.join(exports)}")
