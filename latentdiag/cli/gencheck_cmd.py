"""``latentdiag gencheck``: does a conditional decoder generate what each label asks for?"""

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


@click.command("gencheck")
@click.argument("model")
@click.argument("data")
@click.option(
    "-n",
    "n_per_label",
    type=click.IntRange(min=2),
    default=200,
    show_default=True,
    help="Samples generated per label.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for generation.json, samples.png, confusion.png and samples.npz "
    "(what `report --generation` reads).",
)
@click.option(
    "--judge",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your own ONNX classifier (logits, optionally features) instead of the judge trained "
    "on DATA.",
)
@click.option(
    "--latents",
    "latents_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Draw z from the means in this latents file (from `embed`, e.g. of real data) "
    "instead of the prior.",
)
@click.option(
    "--output",
    type=click.Choice(["probs", "logits"]),
    default="probs",
    show_default=True,
    help="What the decoder outputs: samples in [0, 1] (or data units), or pixel logits.",
)
@click.option("--latent-input", default=None, help="ONNX: name of the latent input.")
@click.option("--label-input", default=None, help="ONNX: name of the label input.")
@click.option("--providers", default=None, help="ONNX: execution providers, comma-separated.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights of a pkg.module:factory.")
@click.option("--model-kwargs", default=None, help="JSON keyword arguments of the factory.")
@click.option("--latent-dim", type=int, default=None, help="Factory: the latent size d.")
@click.option(
    "--max-real",
    type=click.IntRange(min=10),
    default=20_000,
    show_default=True,
    help="Real rows read from DATA (a stratified sample when it holds more).",
)
@click.option(
    "--require",
    "requirements",
    multiple=True,
    metavar="'KEY OP X'",
    help="Exit 1 unless e.g. 'generation.condition_accuracy>=0.9' holds. Repeatable.",
)
@data_source_options
@seed_option
@device_option
@json_option
def gencheck_command(model: str, data: str, **opts: Any) -> None:
    """Measure whether a conditional decoder generates what each label asks for.

    MODEL is a reference run directory (from `latentdiag train`), an ONNX decoder, or
    pkg.module:factory whose model has decode(z, y). An ONNX decoder takes a float latent input
    (batch, d) and a label input, int64 (batch,) or one-hot (batch, K), found by name or given
    with --latent-input / --label-input, and gives one output shaped like DATA's items:
    (batch, C, H, W), (batch, H, W, C) or (batch, F); in [0, 1], or logits with --output
    logits.

    DATA is the real data, with labels (any data source `embed` reads). A judge, a small CNN
    (images) or MLP (vectors), is trained on it with a fixed seed and a held-out split; its
    real held-out accuracy comes first, since a judge that cannot tell real labels apart cannot
    judge generated ones. Then N samples per label are drawn (z from the prior, the model's
    conditional prior for the disentangled model, or --latents) and scored: condition accuracy
    and the confusion matrix, CAS, condition sensitivity, and per label Fréchet distance, KID,
    precision, recall, density and coverage in the judge's feature space.

    \b
    Examples:
      latentdiag gencheck runs/disentangled synthetic -n 200 -o gen/
      latentdiag gencheck decoder.onnx images/ --size 64 --output logits --json
      latentdiag gencheck runs/baseline synthetic --require 'generation.condition_accuracy>=0.9'
    """
    from latentdiag.errors import ConfigError
    from latentdiag.generation.gencheck import load_real, run_gencheck
    from latentdiag.metrics.check import check_requirements, parse_requirement

    try:
        reqs = [parse_requirement(r) for r in opts["requirements"]]
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--require") from None
    for r in reqs:
        if not r.key.startswith("generation."):
            raise click.BadParameter(
                f"{r}: gencheck checks generation.* keys; check the latent space with "
                "`latentdiag check`.",
                param_hint="--require",
            )
    decoder, size, channels = _open_decoder(model, opts)
    try:
        options = {k: opts[k] for k in data_option_names()}
        options["size"] = options["size"] or size
        options["channels"] = options["channels"] or channels
        with one_line_warnings():
            dataset = open_from_options(data, seed=opts["seed"], **options)
        judge, judge_source = _open_judge(opts)
        pool = _latent_pool(opts["latents_file"])
        with _Progress(quiet=opts["as_json"]) as progress:
            x, y, names = load_real(
                dataset, max_rows=opts["max_real"], seed=opts["seed"], progress=progress
            )
            result = run_gencheck(
                decoder,
                x,
                y,
                names,
                n_per_label=opts["n_per_label"],
                seed=opts["seed"],
                judge=judge,
                judge_source=judge_source,
                device=opts["device"],
                latents=pool,
                progress=progress,
            )
    finally:
        decoder.close()
    doc = result.to_json()
    doc["data"] = dataset.source or data
    if opts["out"]:
        from latentdiag.report.generation import write_gencheck_folder

        written = write_gencheck_folder(opts["out"], result, doc)
    results = check_requirements(doc, reqs) if reqs else []
    failed = [r for r in results if not r.passed]
    if opts["as_json"]:
        if reqs:
            doc["check"] = {"passed": not failed, "results": [r.to_dict() for r in results]}
        echo_json(doc)
    else:
        _render(doc, result.notes)
        if opts["out"]:
            console().print(f"wrote {', '.join(str(p) for p in written)}")
        for res in results:
            mark = "[green]pass[/green]" if res.passed else "[red]FAIL[/red]"
            value = "—" if res.value is None else f"{res.value:.4g}"
            console().print(f"{mark} {res.resolved_key} {res.op} {res.threshold:g} (value {value})")
    if failed:
        sys.exit(1)


def _open_decoder(model: str, opts: dict[str, Any]) -> tuple[Any, int | None, int | None]:
    """The decoder, and the image size and channels it fixes (reference runs), if known."""
    from latentdiag.cli._common import parse_model_kwargs
    from latentdiag.generation.decoders import open_decoder
    from latentdiag.runners import detect_kind

    kwargs = parse_model_kwargs(opts["model_kwargs"])
    if Path(model).is_dir() and detect_kind(model) == "reference":
        import importlib

        # The command line is where the core meets reference_models (imports point one way).
        generation = importlib.import_module("reference_models.generation")
        decoder = generation.reference_decoder(model, device=opts["device"])
        return decoder, decoder.image_size, decoder.image_channels
    decoder = open_decoder(
        model,
        latent_input=opts["latent_input"],
        label_input=opts["label_input"],
        output=opts["output"],
        device=opts["device"],
        providers=opts["providers"].split(",") if opts["providers"] else None,
        model_kwargs=kwargs,
        weights=opts["weights"],
        latent_dim=opts["latent_dim"],
    )
    return decoder, None, None


def _open_judge(opts: dict[str, Any]) -> tuple[Any, str]:
    if not opts["judge"]:
        return None, ""
    from latentdiag.generation.judge import OnnxJudge

    return OnnxJudge(opts["judge"], device=opts["device"]), f"ONNX {opts['judge']}"


def _latent_pool(path: str | None) -> Any:
    if not path:
        return None
    import numpy as np

    from latentdiag.store import open_latents

    with open_latents(path) as store:
        mu = np.asarray(store.mu, dtype=np.float32)
    if not np.isfinite(mu).all():
        from latentdiag.errors import StoreError

        raise StoreError(f"{path} holds non-finite latents; gencheck cannot decode them.")
    return mu


def _render(doc: dict[str, Any], notes: list[str]) -> None:
    from rich.table import Table

    from latentdiag.generation.gencheck import summary_rows

    section = doc["generation"]
    out = console()
    table = Table(title=f"gencheck — {section['decoder']}", title_justify="left")
    table.add_column("score")
    table.add_column("value", justify="right")
    for name, value in summary_rows(section):
        table.add_row(name, value)
    out.print(table)
    names = section["label_names"]
    per = Table(title="per label", title_justify="left")
    for col in ("label", "condition acc.", "judged as (most often)", "FD", "precision", "recall"):
        per.add_column(col, justify="left" if col == "label" else "right")
    cm = section["confusion_matrix"]
    for i, name in enumerate(names):
        row = cm[i]
        top = max(range(len(row)), key=lambda j: row[j])

        def cell(key: str, fmt: str, name: str = name) -> str:
            v = section[key]["per_label"].get(name)
            return "—" if v is None else fmt.format(v)

        per.add_row(
            name,
            f"{section['condition_accuracy_per_label'][name]:.3f}",
            f"{names[top]} ({row[top] / max(1, sum(row)):.0%})",
            cell("frechet_distance", "{:.2f}"),
            cell("precision", "{:.3f}"),
            cell("recall", "{:.3f}"),
        )
    out.print(per)
    for note in notes:
        out.print(f"[yellow]note:[/yellow] {note}")


class _Progress:
    """One rich progress bar on stderr, its description the current stage."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                console=console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("gencheck", total=1.0)
        return self

    def __call__(self, stage: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=stage, completed=min(1.0, fraction))

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
