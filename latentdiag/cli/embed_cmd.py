"""``latentdiag embed``: run any VAE encoder over DATA and write a latents file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from latentdiag.cli._common import console, device_option, echo_json, json_option, seed_option
from latentdiag.cli.data_cmd import (
    data_option_names,
    data_source_options,
    one_line_warnings,
    open_from_options,
)


@click.command("embed")
@click.argument("model")
@click.argument("data")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Latents file.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights of a pkg.module:factory.")
@click.option("--model-kwargs", default=None, help="JSON keyword arguments of the factory.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images per call.")
@device_option
@click.option("--providers", default=None, help="ONNX: execution providers, comma-separated.")
@click.option("--layout", type=click.Choice(["nchw", "nhwc", "flat"]), help="Input layout.")
@click.option("--mu-output", default=None, help="ONNX: name of the output holding the mean.")
@click.option("--logvar-output", default=None, help="ONNX: output holding logvar ('none').")
@click.option(
    "--logvar-kind",
    type=click.Choice(["logvar", "log_sigma", "sigma", "variance"]),
    help="ONNX: what that output holds (default: from its name).",
)
@click.option(
    "--spatial",
    type=click.Choice(["flatten", "mean"]),
    default="flatten",
    show_default=True,
    help="Spatial latents C×H×W: flatten them, or average over H×W.",
)
@click.option("--normalize", default=None, help="0..1 (default), -1..1, imagenet or MEAN:STD.")
@click.option(
    "--partition",
    "partitions",
    multiple=True,
    metavar="NAME=START:STOP",
    help="Name a latent subspace, e.g. shared=0:8 (repeatable; replaces what the model says).",
)
@click.option("--shard", default=None, help="K/N: embed rows i with i % N == K (0-based).")
@click.option("--workers", type=int, default=None, help="DataLoader workers (default: auto).")
@click.option("--overwrite", is_flag=True, help="Replace OUT and any unfinished OUT.partial.")
@click.option("--allow-nonfinite", is_flag=True, help="Write NaN/inf outputs instead of failing.")
@click.option(
    "--compress-latents",
    is_flag=True,
    help="gzip mu and logvar too (files ~15% smaller, slower for small models).",
)
@data_source_options
@seed_option
@json_option
def embed_command(model: str, data: str, out: str, **opts: Any) -> None:
    """Run MODEL over DATA and write the latents file OUT.

    MODEL is an .onnx file, a reference run directory (from `latentdiag train`), a TorchScript
    (.pt, .pth) or torch.export (.pt2) file, or pkg.module:factory with --weights (safetensors
    or a state dict). DATA is any data source (see `latentdiag data --help`). Images are
    resized and converted to what the model expects; --normalize sets its input range.

    An interrupted run leaves OUT.partial; the same command resumes it. Under torchrun each
    rank embeds its own shard into OUT.shardK-of-N.h5; `latentdiag merge` joins shards.

    \b
    Examples:
      latentdiag embed encoder.onnx images/ -o latents.h5
      latentdiag embed runs/disentangled synthetic -o latents.h5 --device cuda
      latentdiag embed mypkg.vae:build --weights vae.safetensors data.npz -o latents.h5
      latentdiag embed encoder.onnx data.h5 -o part.h5 --shard 0/4
    """
    from latentdiag.embed import (
        embed,
        parse_partitions,
        parse_shard,
        shard_from_env,
        shard_path,
        unfinished_rows,
    )

    shard = parse_shard(opts["shard"]) if opts["shard"] else shard_from_env()
    if shard is not None and not opts["shard"]:
        out = str(shard_path(out, shard))
    runner = _open_model(model, opts)
    if opts["partitions"]:
        runner.partitions = parse_partitions(opts["partitions"])
    click.echo(f"running {runner.kind} model on {runner.device}", err=True)
    if runner.kind == "factory" and not opts["weights"]:
        click.echo("note: no --weights given; the factory's own weights are used", err=True)
    if str(runner.outputs.get("selected", "")).startswith("by position"):
        click.echo(
            f"note: the outputs have no names that say what they hold; taken by position: "
            f"{runner.outputs['mu']!r} as mu, {runner.outputs.get('logvar')!r} as logvar "
            "(--mu-output / --logvar-output name them)",
            err=True,
        )
    if runner.default_normalize and opts["normalize"] is None:
        click.echo(
            f"note: inputs scaled to {runner.default_normalize}, the range this model was "
            "trained on (--normalize chooses another)",
            err=True,
        )
    dataset = _open_data(data, runner, opts)
    bar = _ProgressBar()
    try:
        with one_line_warnings(), bar:
            result = embed(
                runner, dataset, out, batch_size=opts["batch_size"], normalize=opts["normalize"],
                shard=shard, workers=opts["workers"], overwrite=opts["overwrite"],
                allow_nonfinite=opts["allow_nonfinite"],
                compress_latents=opts["compress_latents"], command=["latentdiag", *sys.argv[1:]],
                progress=bar.update,
            )  # fmt: skip
    except KeyboardInterrupt:
        rows = unfinished_rows(out)
        kept = f"{rows:,} rows are kept in {out}.partial" if rows else "nothing was kept"
        click.echo(f"Interrupted: {kept}; run the same command to resume.", err=True)
        sys.exit(130)
    if opts["as_json"]:
        echo_json(
            {**result.__dict__, "path": str(result.path), "images_per_s": result.images_per_s}
        )
        return
    resumed = f", resumed after {result.resumed_rows:,} rows" if result.resumed_rows else ""
    parts = "mu, logvar" if result.has_logvar else "mu"
    click.echo(
        f"wrote {result.path}: {result.n_rows:,} rows × {result.latent_dim} dims ({parts}) "
        f"at {result.images_per_s:,.0f} images/s on {result.device}{resumed}"
    )


def _open_model(model: str, opts: dict[str, Any]) -> Any:
    """The runner for MODEL; a directory is a reference run, loaded by reference_models."""
    from latentdiag.cli._common import parse_model_kwargs
    from latentdiag.runners import open_runner

    kwargs = parse_model_kwargs(opts["model_kwargs"])
    common = {
        "device": opts["device"],
        "layout": opts["layout"],
        "spatial": opts["spatial"],
        "mu_output": opts["mu_output"],
        "logvar_output": opts["logvar_output"],
        "logvar_kind": opts["logvar_kind"],
        "providers": opts["providers"].split(",") if opts["providers"] else None,
    }
    from latentdiag.runners import detect_kind

    if Path(model).is_dir() and detect_kind(model) == "reference":
        import importlib

        from latentdiag.runners.device import resolve_torch_device
        from latentdiag.runners.loading import folder_sha256

        # The command line is where the core meets reference_models (imports point one way).
        reference = importlib.import_module("reference_models")
        device = resolve_torch_device(opts["device"])
        encoder, info = reference.load_encoder(model, device=device)
        return open_runner(
            encoder, info=info, name=model, kind="reference", model_sha256=folder_sha256(model),
            weights=opts["weights"], model_kwargs=kwargs, **common,
        )  # fmt: skip
    return open_runner(model, weights=opts["weights"], model_kwargs=kwargs, **common)


def _open_data(data: str, runner: Any, opts: dict[str, Any]) -> Any:
    """DATA, decoded at the size and channels the model fixes unless --size/--channels say."""
    from latentdiag.runners.preprocess import data_hint

    size, channels = data_hint(runner.spec)
    options = {k: opts[k] for k in data_option_names()}
    options["size"] = options["size"] or size
    options["channels"] = options["channels"] or channels
    with one_line_warnings():
        return open_from_options(data, seed=opts["seed"], **options)


class _ProgressBar:
    """A rich progress bar on stderr with images/s (one final line when it is not a terminal)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console(stderr=True),
            transient=False,
        )
        self.task: Any = None
        self._t0 = 0.0
        self._first = 0

    def update(self, done: int, total: int) -> None:
        import time

        now = time.perf_counter()
        if self.task is None:
            self._t0, self._first = now, done
            self.task = self.progress.add_task("embed", total=total, completed=done, speed="")
            return
        rate = (done - self._first) / max(now - self._t0, 1e-9)
        self.progress.update(self.task, completed=done, speed=f"{rate:,.0f} images/s")

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
