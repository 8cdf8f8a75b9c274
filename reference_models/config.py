"""Run configuration: frozen dataclasses, one per concern, saved in every checkpoint.

A run is described by a :class:`RunConfig` made of three parts:

- ``model``: the model's own dataclass (each model module defines one, e.g.
  :class:`reference_models.disentangled.DisentangledConfig`); its ``name`` picks the model;
- ``data``: :class:`DataConfig`, where the images (or feature vectors) come from and how many
  are held out;
- ``train``: :class:`TrainConfig`, the optimisation and the machine.

Configs are built from defaults, then a ``--config`` file (JSON or TOML with ``[model]``,
``[data]``, ``[train]`` tables), then command-line overrides ``section.field=value``. They are
saved as JSON next to the weights (``config.json``) and inside every checkpoint, so a run can be
rebuilt from its files alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from latentdiag.errors import ConfigError, ModelError

__all__ = [
    "LIKELIHOODS",
    "RESUMABLE_FIELDS",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "build_config",
    "check_resume",
    "config_for_command",
    "config_from_dict",
    "load_config_file",
    "parse_overrides",
    "resume_config",
]


# The values of model.likelihood (reference_models.likelihoods implements them).
LIKELIHOODS = ("auto", "gaussian", "nb")


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model has; each model subclasses it with its own loss weights."""

    name: str = "baseline"  # which model: baseline, disentangled, beta-vae, beta-tcvae
    latent_dim: int = 16  # d, the size of z
    base_channels: int = 16  # images: channels of the first conv layer; doubled per downsampling
    max_channels: int = 256  # images: cap on the channels of the deepest conv layers
    hidden_dim: int = 256  # vectors: width of the MLP encoder's and decoder's hidden layers
    hidden_layers: int = 2  # vectors: hidden layers of the encoder, and of the decoder
    # Vectors: p(x | z). auto = nb (negative binomial, per-feature dispersion, library-size
    # aware) when every training value is a non-negative integer, else gaussian (learned
    # per-feature scale). Images always use the Bernoulli likelihood (leave it at auto).
    likelihood: str = "auto"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split."""

    source: str = "synthetic"  # any source latentdiag.data.open_dataset accepts
    split: str = "train"  # MedMNIST .npz / HDF5: the split to train on (train, val, test)
    labels: str = ""  # labels file (.npy or .csv) for an .npy image stack; "" = none
    images_key: str = ""  # .npz key or HDF5 dataset path of the images; "" = found by name
    labels_key: str = ""  # .npz key or HDF5 dataset path of the labels; "" = found by name
    # The metadata column that is the label (a column of a CSV labels file, a folder level such
    # as level2); "" = the source's default label. Older run configs lack it and get "".
    label_key: str = ""
    n: int = 0  # images / rows to use, a seeded subset; 0 = all (built-in synthetic: 10000)
    size: int = 32  # images: H == W they are resized to, a power of two from 16 to 256
    channels: int = 1  # images: 1 (grey) or 3 (RGB); vectors are fed as stored, never resized
    heldout: float = 0.2  # fraction held out for evaluation, stratified by label
    in_memory_gb: float = 2.0  # datasets smaller than this are decoded once into memory


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop and the machine it runs on."""

    epochs: int = 10  # passes over the training split
    batch_size: int = 128  # global batch; split evenly over processes under torchrun
    lr: float = 2e-3  # peak AdamW learning rate (constant after warm-up)
    warmup_steps: int = 100  # linear warm-up from 0 to lr over this many steps
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 5.0  # clip the global gradient norm; 0 = no clipping
    seed: int = 0  # seeds weights, data order and split; same seed, same run
    device: str = "auto"  # auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N, mps
    bf16: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    num_threads: int = 0  # torch CPU threads; 0 = the cores divided by local processes
    num_workers: int = 2  # DataLoader workers when the data does not fit in memory
    eval_batch_size: int = 512  # batch size of the held-out evaluation
    checkpoint_every: int = 0  # also checkpoint every this many steps; 0 = at epoch ends
    # latentdiag.track on the held-out latents every this many epochs (track.jsonl, .csv);
    # 0 = off
    track_every: int = 1


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: ``{"model": {...}, "data": {...}, "train": {...}}``."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _model_config_class(name: str) -> type[ModelConfig]:
    from reference_models.registry import get_model_class

    cls: type[ModelConfig] = get_model_class(name).config_class
    return cls


def _section_from_dict(cls: type[Any], values: Mapping[str, Any], section: str, where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    suffix = f" (in {where})" if where != "config" else ""
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(f'{section}.{u}' for u in unknown)}{suffix}; "
            f"[{section}] has {', '.join(sorted(known))}."
        )
    kwargs = {k: _coerce(v, known[k].type, f"{section}.{k}", suffix) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], *, where: str = "config") -> RunConfig:
    """Rebuild a :class:`RunConfig` from :meth:`RunConfig.to_dict` output (or a config file).

    Raises:
        ConfigError: Unknown sections or fields, values of the wrong type, an unknown model.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of sections; got {type(data).__name__}.")
    unknown = sorted(set(data) - {"model", "data", "train"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(unknown)}; expected model, data, train."
        )
    model = dict(data.get("model", {}))
    name = str(model.get("name", ModelConfig.name))
    cfg = RunConfig(
        model=_section_from_dict(_model_config_class(name), model, "model", where),
        data=_section_from_dict(DataConfig, data.get("data", {}), "data", where),
        train=_section_from_dict(TrainConfig, data.get("train", {}), "train", where),
    )
    validate(cfg)
    return cfg


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or TOML config file into a nested dict (not yet validated).

    Raises:
        ConfigError: The file is missing or cannot be parsed.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; give a .json or .toml file.")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".toml":
            out: Any = _load_toml(p, text)
        else:
            out = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}.") from None
    if not isinstance(out, dict):
        raise ConfigError(f"{p}: expected a table with model / data / train sections.")
    return out


def _load_toml(path: Path, text: str) -> Any:
    if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        raise ConfigError(f"{path}: TOML configs need Python 3.11+; use JSON instead.")
    import tomllib

    return tomllib.loads(text)


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["train.lr=1e-3", "model.margin=15"]`` -> ``{"train": {"lr": "1e-3"}, ...}``.

    Raises:
        ConfigError: An item is not ``section.field=value``.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name or section not in ("model", "data", "train"):
            raise ConfigError(
                f"override {item!r} must look like section.field=value with section one of "
                "model, data, train (e.g. train.lr=1e-3)."
            )
        out.setdefault(section, {})[name] = value.strip()
    return out


def build_config(
    *,
    model: str | None = None,
    file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunConfig:
    """Defaults, then a config file, then overrides (later wins), validated.

    Args:
        model: Model name; overrides the file's ``model.name``.
        file: A JSON or TOML config file.
        overrides: ``{section: {field: value}}``; string values are parsed by field type.

    Raises:
        ConfigError: Anything invalid, with the field named.
    """
    merged: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    if file is not None:
        for section, values in load_config_file(file).items():
            if not isinstance(values, Mapping):
                raise ConfigError(f"{file}: section {section!r} must be a table of fields.")
            merged.setdefault(section, {}).update(values)
    for section, values in (overrides or {}).items():
        merged.setdefault(section, {}).update(values)
    if model is not None:
        merged["model"]["name"] = model
    return config_from_dict(merged, where=str(file) if file else "config")


def validate(cfg: RunConfig) -> None:
    """Check ranges that the dataclass types cannot express.

    Raises:
        ConfigError: The first out-of-range field, named.
    """
    d, t, m = cfg.data, cfg.train, cfg.model
    checks = [
        (d.size in (16, 32, 64, 128, 256), "data.size", "one of 16, 32, 64, 128, 256", d.size),
        (d.channels in (1, 3), "data.channels", "1 or 3", d.channels),
        (0.0 < d.heldout < 1.0, "data.heldout", "a fraction between 0 and 1", d.heldout),
        (d.n >= 0, "data.n", "0 (all) or a positive count", d.n),
        (t.epochs >= 1, "train.epochs", "at least 1", t.epochs),
        (t.batch_size >= 2, "train.batch_size", "at least 2", t.batch_size),
        (t.lr > 0, "train.lr", "positive", t.lr),
        (t.eval_batch_size >= 1, "train.eval_batch_size", "at least 1", t.eval_batch_size),
        (t.track_every >= 0, "train.track_every", "0 (off) or a number of epochs", t.track_every),
        (m.latent_dim >= 1, "model.latent_dim", "at least 1", m.latent_dim),
        (m.base_channels >= 1, "model.base_channels", "at least 1", m.base_channels),
        (m.hidden_dim >= 1, "model.hidden_dim", "at least 1", m.hidden_dim),
        (m.hidden_layers >= 1, "model.hidden_layers", "at least 1", m.hidden_layers),
        (m.likelihood in LIKELIHOODS, "model.likelihood", _one_of(LIKELIHOODS), m.likelihood),
    ]
    for ok, name, expected, got in checks:
        if not ok:
            raise ConfigError(f"{name} must be {expected}; got {got!r}.")
    check = getattr(m, "check", None)
    if check is not None:
        check()


def _one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(values)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, annotation: Any, where: str, suffix: str = "") -> Any:
    """Parse ``value`` (from JSON, TOML or a command-line string) as the field's type."""
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value else int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {_ARTICLE[kind]}; got {value!r}{suffix}.") from None
    raise AssertionError(f"unsupported config field type {annotation!r} at {where}")


_ARTICLE = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


# -- runs of `latentdiag train`: new or resumed -------------------------------------------
# Fields a resumed run may change; any other difference from the checkpoint is refused,
# because the result would no longer be the run that was started.
RESUMABLE_FIELDS = frozenset(
    {
        "train.epochs",
        "train.device",
        "train.num_threads",
        "train.num_workers",
        "train.eval_batch_size",
        "train.checkpoint_every",
        "train.track_every",
        "data.in_memory_gb",
    }
)


def check_resume(saved: RunConfig, given: RunConfig) -> None:
    """Refuse a resumed run whose config differs from its checkpoint's outside
    :data:`RESUMABLE_FIELDS`.

    Raises:
        ConfigError: Naming the first such field, with both values.
    """
    a, b = saved.to_dict(), given.to_dict()
    for section in ("model", "data", "train"):
        for key in sorted(set(a[section]) | set(b[section])):
            name = f"{section}.{key}"
            if a[section].get(key) != b[section].get(key) and name not in RESUMABLE_FIELDS:
                raise ConfigError(
                    f"cannot change {name} when resuming (the run has "
                    f"{a[section].get(key)!r}, the command asks for {b[section].get(key)!r}); "
                    f"only {', '.join(sorted(RESUMABLE_FIELDS))} may change. Start a new run "
                    "with another --out instead."
                )


def resume_config(
    run_dir: str | os.PathLike[str], overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> RunConfig:
    """The config to resume ``run_dir`` with: its checkpoint's, with ``overrides`` applied.

    Raises:
        ModelError: There is no checkpoint to resume.
        ConfigError: An override is invalid (changing a fixed field is refused by :func:`train`).
    """
    from reference_models.checkpoint import CHECKPOINT_FILE, load_checkpoint  # torch: lazily

    path = Path(run_dir)
    if not (path / CHECKPOINT_FILE).is_file():
        raise ModelError(
            f"nothing to resume in {path}: {CHECKPOINT_FILE} is missing; start the run without "
            "--resume."
        )
    saved = load_checkpoint(path).config.to_dict()
    for section, values in (overrides or {}).items():
        saved.setdefault(section, {}).update(values)
    return config_from_dict(saved, where=f"{path} (resumed)")


def config_for_command(
    *,
    model: str | None,
    out_dir: str | os.PathLike[str],
    resume: bool,
    config_file: str | None = None,
    sets: tuple[str, ...] | list[str] = (),
    options: Mapping[str, Any] | None = None,
) -> RunConfig:
    """The RunConfig of a ``latentdiag train`` invocation.

    New run: defaults, then ``config_file``, then ``--set`` items, then the dedicated options
    (``options``: ``{"train.epochs": 3, "data.source": "digits", ...}``, None values skipped).
    Resumed run: the checkpoint's config with the same overrides on top.

    Raises:
        ConfigError: Bad overrides or values; ``--config`` together with ``--resume``.
        ModelError: ``resume`` without a checkpoint.
    """
    overrides = parse_overrides(sets)
    for key, value in (options or {}).items():
        if value is not None:
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
    if resume:
        if config_file is not None:
            raise ConfigError(
                "--config cannot be combined with --resume: a resumed run keeps its own config "
                "(change train.epochs with --epochs)."
            )
        if model is not None:
            overrides.setdefault("model", {})["name"] = model
        return resume_config(out_dir, overrides)
    return build_config(model=model, file=config_file, overrides=overrides)
