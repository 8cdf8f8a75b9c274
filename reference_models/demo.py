"""The whole before/after story in one call: ``latentdiag demo``.

Generate the synthetic pseudo-modalities, train the baseline and the disentangled reference
models, export both encoders to ONNX, embed a held-out set through the ONNX files (the path a
user's own model takes), and write a comparison report. Every step is an ordinary latentdiag
operation, so the output folder holds exactly what the separate commands would write::

    DIR/data/train.npz              images the models train on
    DIR/data/heldout.npz            images they never see, embedded for the report
    DIR/runs/{baseline,disentangled}/   training runs (weights, config.json, metrics.jsonl, ...)
    DIR/onnx/{baseline,disentangled}.onnx
    DIR/latents/{baseline,disentangled}.h5
    DIR/generation/{baseline,disentangled}/   gencheck of each decoder (generation.json, figures)
    DIR/report/report.html          the comparison
    DIR/README.md                   where everything is, the headline table, how to redo it
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentdiag.errors import ConfigError
from reference_models.progress import Reporter

MODELS = ("baseline", "disentangled")
# What the demo owns inside its folder; --overwrite removes these and nothing else.
_OWNED = ("data", "runs", "onnx", "latents", "generation", "report", "README.md")

__all__ = ["MODELS", "QUICK", "DemoConfig", "DemoResult", "HeadlineRow", "format_value", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains on and how long."""

    n_train: int = 10_000  # images the models train on (of which the trainer holds out 20 %)
    n_heldout: int = 2_000  # separate images, never trained on, embedded through ONNX
    size: int = 32  # image side in pixels
    channels: int = 1  # 1 grey, 3 RGB
    epochs: int | None = None  # None: the reference models' default
    seed: int = 0  # data, initialisation and every random choice
    device: str = "auto"  # auto (CUDA, then MPS, then CPU), cpu, cuda, mps
    smoke: bool = False  # a smoke run: too small for its figures to mean anything

    @property
    def caveat(self) -> str | None:
        """What to tell a reader of a smoke run's figures."""
        if not self.smoke:
            return None
        return (
            "A smoke run (--quick): the models are far too undertrained for these figures to "
            "show anything but that the pipeline works; run without --quick for the real "
            "before/after."
        )


# A smoke run: the whole pipeline in well under a minute, without the separation it shows at
# full size.
QUICK = DemoConfig(n_train=800, n_heldout=400, epochs=2, smoke=True)


@dataclass(frozen=True)
class HeadlineRow:
    """One line of the headline table."""

    label: str  # what is measured, in words
    key: str  # where it comes from (a metrics key, or the training log)
    better: str  # "higher" or "lower" (or "" when neither)
    values: dict[str, float | None]  # model name -> value (None: does not apply)


@dataclass
class DemoResult:
    """What the demo wrote and measured."""

    out_dir: Path
    paths: dict[str, Path]  # name -> path of each product (see the module docstring)
    headline: list[HeadlineRow]
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time
    devices: dict[str, str] = field(default_factory=dict)  # step -> device that ran it

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def run_demo(
    out_dir: str | Path,
    config: DemoConfig = DemoConfig(),
    *,
    overwrite: bool = False,
    on_step: Callable[[str], None] | None = None,
    reporter: Callable[[str], Reporter | None] | None = None,
) -> DemoResult:
    """Run the whole demonstration into ``out_dir``.

    Args:
        out_dir: Folder for everything the demo writes (created if missing).
        config: Data size, epochs, seed and device.
        overwrite: Replace the products of an earlier demo in ``out_dir``.
        on_step: Told, in one line, what each step is about to do.
        reporter: Called with a model name, returns that training run's progress reporter.

    Returns:
        Paths, the headline table, and the time each step took.

    Raises:
        ConfigError: ``out_dir`` already holds a demo (without ``overwrite``) or is a file.
        LatentDiagError: Any step failing (the message says which input was wrong).
    """
    from latentdiag.data import generate_synthetic, open_dataset, write_dataset
    from latentdiag.embed import embed
    from latentdiag.report.build import build_report
    from latentdiag.runners import open_runner
    from reference_models.config import config_for_command
    from reference_models.export import export_encoder
    from reference_models.gallery import run_gallery
    from reference_models.trainer import train

    out = _prepare(Path(out_dir), overwrite)
    say = on_step or (lambda _msg: None)
    result = DemoResult(out_dir=out, paths={}, headline=[])
    clock = _Clock(result.seconds)

    with clock("data"):
        say(f"generating {config.n_train:,} + {config.n_heldout:,} synthetic images")
        for name, n, seed in (
            ("train", config.n_train, config.seed),
            ("heldout", config.n_heldout, config.seed + 1),  # other images, same distribution
        ):
            synth = generate_synthetic(n, size=config.size, channels=config.channels, seed=seed)
            result.paths[f"data/{name}"] = write_dataset(
                out / "data" / f"{name}.npz",
                synth.images,
                synth.labels,
                synth.label_names,
                synth.factors,
                synth.factor_names,
            )

    recon: dict[str, float | None] = {}
    for model in MODELS:
        run_dir = out / "runs" / model
        with clock(f"train {model}"):
            say(f"training the {model} model")
            options = {
                "data.source": str(result.paths["data/train"]),
                "train.epochs": config.epochs,
                "train.seed": config.seed,
                "train.device": config.device,
            }
            run_config = config_for_command(
                model=model, out_dir=run_dir, resume=False, options=options
            )
            trained = train(run_config, run_dir, reporter=reporter(model) if reporter else None)
        result.paths[f"runs/{model}"] = run_dir
        result.devices[f"train {model}"] = trained.device
        recon[model] = _float(trained.metrics.get("heldout_recon"))

        with clock(f"export {model}"):
            say(f"exporting the {model} encoder to ONNX")
            onnx_path = out / "onnx" / f"{model}.onnx"
            onnx_path.parent.mkdir(exist_ok=True)
            export_encoder(run_dir, onnx_path)
        result.paths[f"onnx/{model}"] = onnx_path

        with clock(f"embed {model}"):
            say(f"embedding the held-out images through {model}.onnx")
            runner = open_runner(str(onnx_path), device=config.device)
            heldout = open_dataset(str(result.paths["data/heldout"]))
            latents = out / "latents" / f"{model}.h5"
            latents.parent.mkdir(exist_ok=True)
            embedded = embed(
                runner,
                heldout,
                latents,
                batch_size=256,
                command=["latentdiag", "embed", str(onnx_path), str(result.paths["data/heldout"])],
            )
        result.paths[f"latents/{model}"] = embedded.path
        result.devices[f"embed {model}"] = runner.device

    with clock("gencheck"):
        say("checking what each decoder generates per label (gencheck)")
        generation = _gencheck(out, result, config)

    run_of = {str(result.paths[f"latents/{m}"]): result.paths[f"runs/{m}"] for m in MODELS}

    def gallery(store: Any) -> list[tuple[str, str, Any]] | None:
        run_dir = run_of.get(str(store.path))
        return None if run_dir is None else run_gallery(run_dir, seed=config.seed)

    with clock("report"):
        say("writing the comparison report")
        report = build_report(
            [result.paths[f"latents/{m}"] for m in MODELS],
            out / "report",
            names=list(MODELS),
            seed=config.seed,
            device=config.device,
            extras=gallery,
            generation=[generation[m] for m in MODELS],
        )
    result.paths["report"] = report.html
    result.headline = _headline(report.metrics_json, recon)
    _write_readme(out, result, config)
    result.paths["readme"] = out / "README.md"
    return result


#: Samples generated per label for each model's gencheck.
GENCHECK_N = 200


def _gencheck(out: Path, result: DemoResult, config: DemoConfig) -> dict[str, Path]:
    """gencheck of both decoders on the held-out images, with one judge trained on them."""
    from latentdiag.data import open_dataset
    from latentdiag.generation.gencheck import load_real, run_gencheck
    from latentdiag.generation.judge import train_judge
    from latentdiag.report.generation import write_gencheck_folder
    from reference_models.generation import reference_decoder

    x, y, names = load_real(open_dataset(str(result.paths["data/heldout"])))
    judge = train_judge(x, y, n_labels=len(names), seed=config.seed, device=config.device)
    folders: dict[str, Path] = {}
    for model in MODELS:
        decoder = reference_decoder(result.paths[f"runs/{model}"], device=config.device)
        checked = run_gencheck(
            decoder,
            x,
            y,
            names,
            n_per_label=GENCHECK_N,
            seed=config.seed,
            judge=judge,
            device=config.device,
        )
        doc = checked.to_json()
        doc["data"] = str(result.paths["data/heldout"])
        folder = out / "generation" / model
        write_gencheck_folder(folder, checked, doc)
        folders[model] = folder
        result.paths[f"generation/{model}"] = folder
    return folders


def _prepare(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; the demo needs a folder.")
    present = [name for name in _OWNED if (out / name).exists()]
    if present and not overwrite:
        raise ConfigError(
            f"{out} already holds a demo ({', '.join(present)}); choose another --out or pass "
            "--overwrite to replace it."
        )
    for name in present:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    (out / "data").mkdir(parents=True, exist_ok=True)
    return out


class _Clock:
    """``with clock("step"):`` records the step's wall time."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._name = ""
        self._t0 = 0.0

    def __call__(self, name: str) -> _Clock:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self._name] = time.perf_counter() - self._t0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _lookup(metrics: dict[str, Any], key: str) -> float | None:
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return _float(node) if isinstance(node, (int, float)) else None


# label, metrics key, direction
_ROWS: Sequence[tuple[str, str, str]] = (
    ("silhouette by modality (whole z)", "separation.silhouette", "higher"),
    ("mean centroid distance", "separation.centroid_distance.mean", "higher"),
    ("normalized centroid distance", "separation.centroid_distance.normalized_mean", "higher"),
    ("modality leakage in z_shared (linear probe; chance 0.25)",
     "partitions.shared.separation.linear_probe_accuracy", "lower"),
    ("modality read from z_modality (linear probe)",
     "partitions.modality.separation.linear_probe_accuracy", "higher"),
    ("samples judged as the modality asked for (condition accuracy; chance 0.25)",
     "generation.condition_accuracy", "higher"),
    ("classifier trained on samples, tested on real images (CAS)", "generation.cas", "higher"),
    ("condition sensitivity (0: the decoder ignores the label)",
     "generation.condition_sensitivity", "higher"),
)  # fmt: skip


def _headline(metrics_json: Path, recon: dict[str, float | None]) -> list[HeadlineRow]:
    doc = json.loads(metrics_json.read_text(encoding="utf-8"))
    per_model = {f["name"]: f["metrics"] for f in doc["files"]}
    rows = [
        HeadlineRow(label, key, better, {m: _lookup(per_model[m], key) for m in MODELS})
        for label, key, better in _ROWS
    ]
    rows.append(
        HeadlineRow(
            "held-out reconstruction loss (nats per image)",
            "runs/<model>/metrics.jsonl: heldout_recon",
            "lower",
            dict(recon),
        )
    )
    return rows


def format_value(value: float | None) -> str:
    """How the headline table shows a figure."""
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _write_readme(out: Path, result: DemoResult, config: DemoConfig) -> None:
    rel = {k: p.relative_to(out) for k, p in result.paths.items()}
    lines = [
        "# latentdiag demo",
        "",
        "The before/after of modality separation on the synthetic pseudo-modalities (chest "
        "X-ray, OCT, pathology, dermatoscopy): a baseline conditional VAE against the "
        "disentangled conditional VAE with a partitioned latent space. Open "
        f"[{rel['report']}]({rel['report']}) for the full report.",
        "",
        "## Headline (held-out images, embedded through the exported ONNX encoders)",
        "",
        *([f"**{config.caveat}**", ""] if config.caveat else []),
        "| | " + " | ".join(MODELS) + " | better |",
        "|---|" + "---|" * len(MODELS) + "---|",
    ]
    for row in result.headline:
        cells = " | ".join(format_value(row.values[m]) for m in MODELS)
        lines.append(f"| {row.label} | {cells} | {row.better} |")
    lines += [
        "",
        "n/a: the baseline has no z_shared / z_modality partition.",
        "",
        "## Where everything is",
        "",
        "| path | what |",
        "|---|---|",
        f"| `{rel['data/train']}` | {config.n_train:,} training images "
        f"({config.size}×{config.size}, {config.channels} channel(s), seed {config.seed}) with "
        "labels and factors |",
        f"| `{rel['data/heldout']}` | {config.n_heldout:,} held-out images (seed "
        f"{config.seed + 1}), never trained on |",
    ]
    for m in MODELS:
        lines += [
            f"| `{rel[f'runs/{m}']}/` | the {m} training run: model.safetensors, config.json, "
            "metrics.jsonl, latents.h5 of its own held-out split |",
            f"| `{rel[f'onnx/{m}']}` | the {m} encoder (inputs x, label; outputs mu, logvar) |",
            f"| `{rel[f'latents/{m}']}` | held-out latents of the {m} model, through ONNX |",
            f"| `{rel[f'generation/{m}']}/` | gencheck of the {m} decoder: generation.json, "
            "samples.png (real beside generated), confusion.png |",
        ]
    lines += [
        f"| `{rel['report']}` | the comparison report (figures and metrics.json beside it) |",
        "",
        "## Time",
        "",
        "| step | seconds | device |",
        "|---|---|---|",
    ]
    for step, secs in result.seconds.items():
        lines.append(f"| {step} | {secs:.1f} | {result.devices.get(step, '')} |")
    lines += [
        f"| total | {result.total_seconds:.1f} | |",
        "",
        "## Doing it step by step",
        "",
        "```bash",
        f"latentdiag data synth {rel['data/train']} --n {config.n_train} --size {config.size} "
        f"--channels {config.channels} --seed {config.seed}",
        f"latentdiag data synth {rel['data/heldout']} --n {config.n_heldout} --size "
        f"{config.size} --channels {config.channels} --seed {config.seed + 1}",
    ]
    for m in MODELS:
        epochs = f" --epochs {config.epochs}" if config.epochs else ""
        lines += [
            f"latentdiag train --model {m} --data {rel['data/train']} --out {rel[f'runs/{m}']}"
            f" --seed {config.seed}{epochs}",
            f"latentdiag export {rel[f'runs/{m}']} -o {rel[f'onnx/{m}']}",
            f"latentdiag embed {rel[f'onnx/{m}']} {rel['data/heldout']} -o {rel[f'latents/{m}']}",
            f"latentdiag gencheck {rel[f'runs/{m}']} {rel['data/heldout']} -n {GENCHECK_N} "
            f"--seed {config.seed} -o {rel[f'generation/{m}']}",
        ]
    lines += [
        f"latentdiag report {rel['latents/baseline']} {rel['latents/disentangled']} "
        f"--name baseline --name disentangled --generation {rel['generation/baseline']} "
        f"--generation {rel['generation/disentangled']} -o {rel['report'].parent}",
        f"latentdiag check {rel['latents/disentangled']} --min-silhouette 0.5",
        "```",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
