"""Options and output helpers shared by the commands, defined once."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from latentdiag._json import to_jsonable

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    """``--json``: machine-readable output on stdout instead of tables."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout instead of tables."
    )(f)


def seed_option(f: F) -> F:
    """``--seed``: the random seed, the same meaning in every command."""
    return click.option(
        "--seed", type=int, default=0, show_default=True, help="Random seed (results repeat)."
    )(f)


def device_option(f: F) -> F:
    """``--device``: where torch work runs; auto picks CUDA, then Apple MPS, then the CPU."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda", "mps"]),
        default="auto",
        show_default=True,
        help="Where to compute: auto picks CUDA, then Apple MPS, then the CPU.",
    )(f)


def out_option(*, required: bool = True, help: str = "Output path.") -> Callable[[F], F]:
    """``-o/--out``: where a command writes its result."""

    def deco(f: F) -> F:
        return click.option(
            "-o", "--out", "out", type=click.Path(dir_okay=True), required=required, help=help
        )(f)

    return deco


def latents_options(f: F) -> F:
    """``--label-key``, ``--batch-key``, ``--obsm``, ``--logvar-obsm``: what a command reads
    from a latents file or an ``.h5ad`` file, the same for every command that reads latents."""
    f = click.option(
        "--logvar-obsm",
        metavar="KEY",
        default=None,
        help="AnnData input: the obsm key of the posterior log-variances (enables posterior "
        "TC and KL).",
    )(f)
    f = click.option(
        "--obsm",
        metavar="KEY",
        default=None,
        help="AnnData (.h5ad) input: the obsm key of the embedding, e.g. X_scVI (default: the "
        "only X_* entry; X for adata.X itself).",
    )(f)
    f = click.option(
        "--batch-key",
        metavar="COL",
        default=None,
        help="The column whose groups should mix (batch, site, donor); its groups are scored "
        "like labels under batch_separation, where lower means better mixed.",
    )(f)
    f = click.option(
        "--label-key",
        metavar="COL",
        default=None,
        help="The column whose groups should separate (cell type, modality, class); default: "
        "the file's label.",
    )(f)
    return f


def pre_obsm_option(f: F) -> F:
    """``--pre-obsm``: the embedding before integration, for scIB's PCR comparison."""
    return click.option(
        "--pre-obsm",
        metavar="KEY",
        default=None,
        help="AnnData input: the obsm key of the embedding before integration, e.g. X_pca "
        "(with --batch-key, enables mixing.pcr_comparison).",
    )(f)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON; NaN/inf become null so any JSON parser reads it."""
    click.echo(json.dumps(to_jsonable(data), indent=2, allow_nan=False))


def console(stderr: bool = False) -> Any:
    """A rich console; tables go to stdout, progress and notes to stderr."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=not sys.stdout.isatty())


def parse_model_kwargs(text: str | None) -> dict[str, Any] | None:
    """``--model-kwargs``: a JSON object of keyword arguments for a ``pkg.module:factory``.

    Raises:
        ConfigError: The text is not a JSON object.
    """
    import json

    from latentdiag.errors import ConfigError

    if not text:
        return None
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--model-kwargs must be a JSON object; {exc}.") from None
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--model-kwargs must be a JSON object; got {text}.")
    return kwargs
