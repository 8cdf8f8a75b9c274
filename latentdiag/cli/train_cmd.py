"""``latentdiag train``: train a reference model into a run directory."""

from __future__ import annotations

import click

from latentdiag.cli._common import console, device_option, echo_json, json_option

_MODELS = ("baseline", "disentangled", "beta-vae", "beta-tcvae")


@click.command("train")
@click.option("--model", type=click.Choice(_MODELS), help="Which reference model to train.")
@click.option(
    "--data",
    "source",
    help="Data source: synthetic (default), digits, a folder, .npz, .npy, .h5; or vectors: "
    "synthetic-vectors, synthetic-counts, .h5ad, .csv, .parquet, an (N, F) array.",
)
@click.option("--epochs", type=int, help="Passes over the training split (default 10).")
@click.option("--batch-size", type=int, help="Global batch size (default 128).")
@click.option("--lr", type=float, help="Peak learning rate (default 2e-3).")
@click.option("--size", type=int, help="Images: size S (S × S pixels; default 32).")
@click.option(
    "--channels", type=click.Choice(["1", "3"]), help="Images: 1 (grey, default) or 3 (RGB)."
)
@click.option(
    "--n",
    "--n-images",
    "n_images",
    type=int,
    help="Images or rows to use; 0 = all (default; built-in synthetic data: 10000).",
)
@click.option(
    "--label-key",
    metavar="COL",
    help="The metadata column that is the label (CSV labels with several columns, a folder "
    "level); default: the data's own label.",
)
@click.option("--seed", type=int, help="Random seed (default 0): same seed, same run.")
@device_option
@click.option(
    "-o", "--out", type=click.Path(file_okay=False), help="Run directory [default: runs/MODEL]."
)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="JSON or TOML config file."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.FIELD=VALUE",
    help="Override any config field (repeatable), e.g. model.margin=20.",
)
@click.option(
    "--resume", is_flag=True, help="Continue the stopped run in --out from its checkpoint."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
def train_command(
    model,
    source,
    epochs,
    batch_size,
    lr,
    size,
    channels,
    n_images,
    label_key,
    seed,
    device,
    out,
    config_file,
    sets,
    resume,
    quiet,
    as_json,
):
    """Train a reference VAE (baseline, disentangled, beta-vae, beta-tcvae).

    The run directory (--out) ends with the weights (model.safetensors), config.json,
    metrics.jsonl (held-out evaluation per epoch), checkpoint.safetensors (for --resume) and
    latents.h5 of the held-out set, ready for `latentdiag report`. Any config field can be set
    with --set SECTION.FIELD=VALUE or a --config file (docs/models.md lists them).

    Vector data (tables, AnnData, (N, F) arrays, synthetic-vectors) trains the same models with
    MLP nets and a likelihood picked from the data: negative binomial for non-negative integer
    counts, Gaussian otherwise (--set model.likelihood=gaussian|nb to choose).

    Runs unchanged under `torchrun --nproc_per_node=N -m latentdiag train ...` (there, write
    --n-images: torchrun takes --n for an abbreviation of its own options).

    \b
    Examples:
      latentdiag train --model baseline
      latentdiag train --model disentangled --epochs 20 --set model.margin=20
      latentdiag train --model disentangled --out runs/disentangled --resume
      latentdiag train --model disentangled --data cells.h5ad --label-key cell_type
      latentdiag report runs/disentangled/latents.h5 -o report/
    """
    from reference_models.config import config_for_command
    from reference_models.progress import RichReporter
    from reference_models.trainer import train

    if model is None and not resume:
        raise click.UsageError("--model is required for a new run (or pass --resume).")
    out = out or f"runs/{model or 'baseline'}"
    options = {
        "data.source": source,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "data.size": size,
        "data.channels": channels,
        "data.n": n_images,
        "data.label_key": label_key,
        "train.seed": seed,
        "train.device": None if device == "auto" and resume else device,
    }
    config = config_for_command(
        model=model, out_dir=out, resume=resume, config_file=config_file, sets=sets, options=options
    )
    result = train(
        config, out, resume=resume, reporter=None if quiet or as_json else RichReporter()
    )
    if not result.is_main:
        return  # under torchrun only rank 0 reports
    summary = result.summary()
    if as_json:
        echo_json(summary)
        return
    out = console()
    out.print(
        f"[bold]{summary['model']}[/bold] → {summary['run_dir']}  "
        f"({summary['epochs']} epoch{'' if summary['epochs'] == 1 else 's'}, "
        f"{summary['device']}, {summary['images_per_s']:,.0f} img/s)"
    )
    held = {k: v for k, v in summary["metrics"].items() if k.startswith(("heldout", "silhouette"))}
    out.print("held-out: " + "  ".join(f"{k} {v:.4g}" for k, v in held.items()))
    if summary["latents"]:
        out.print(f"next: latentdiag report {summary['latents']} -o {summary['run_dir']}/report")
