"""The ``latentdiag`` command line: a thin click group over the core library.

Each command lives in its own module under ``latentdiag.cli`` and is imported only when it is
listed or run; command modules import nothing heavy at module level (torch, onnxruntime, umap
and matplotlib are imported inside the core functions that need them), so ``--help`` is instant.

This group is the one place where a :class:`~latentdiag.errors.LatentDiagError` becomes an
``Error: ...`` line on stderr and exit status 1.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Any

import click

from latentdiag import __version__
from latentdiag.errors import LatentDiagError

# name -> "module:attribute"; the order here is the order of ``latentdiag --help``.
COMMANDS: dict[str, str] = {
    "demo": "latentdiag.cli.demo_cmd:demo_command",
    "data": "latentdiag.cli.data_cmd:data_group",
    "train": "latentdiag.cli.train_cmd:train_command",
    "export": "latentdiag.cli.export_cmd:export_command",
    "sample": "latentdiag.cli.sample_cmd:sample_command",
    "embed": "latentdiag.cli.embed_cmd:embed_command",
    "merge": "latentdiag.cli.merge_cmd:merge_command",
    "convert": "latentdiag.cli.convert_cmd:convert_command",
    "inspect": "latentdiag.cli.inspect_cmd:inspect_command",
    "metrics": "latentdiag.cli.metrics_cmd:metrics_command",
    "check": "latentdiag.cli.check_cmd:check_command",
    "report": "latentdiag.cli.report_cmd:report_command",
    "gencheck": "latentdiag.cli.gencheck_cmd:gencheck_command",
    "explore": "latentdiag.cli.explore_cmd:explore_command",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, and that translates user errors."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command), target
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LatentDiagError as exc:
            fail(exc)
        except OSError as exc:
            # A full disk, a quota or an I/O error while a command writes: every output is
            # written under a temporary name first, so nothing half-written is left behind.
            if exc.errno not in _NO_ROOM and exc.errno != errno.EIO:
                if not _says_no_room(exc):
                    raise
                exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), exc.filename)
            fail(LatentDiagError(_os_error_text(exc)))
        except Exception as exc:
            # Libraries that report a full disk in their own exception types (safetensors'
            # SafetensorError, h5py's RuntimeError) with the OS error in the text.
            if not _says_no_room(exc):
                raise
            fail(LatentDiagError(_os_error_text(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))))


#: errno values that mean "no room to write": a full disk, a quota, a file-size limit.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _says_no_room(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("No space left on device", "os error 28", "errno = 28"))


def _os_error_text(exc: OSError) -> str:
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in _NO_ROOM:
        return (
            f"no room left{where} ({exc.strerror}); nothing was written under the final name. "
            "Make room (or write to another disk) and run the command again."
        )
    return f"an I/O error{where} ({exc.strerror}); check the disk and run the command again."


def fail(exc: LatentDiagError) -> None:
    """Print one ``Error:`` line for a user error and exit 1."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="latentdiag")
def cli() -> None:
    """Diagnose the latent space of any VAE.

    Export latents from a PyTorch or ONNX model into an HDF5 latents file, measure how well
    labels separate and how information spreads over latent dimensions, and read a report.

    \b
    Typical session:
      latentdiag embed encoder.onnx images/ -o latents.h5
      latentdiag inspect latents.h5
      latentdiag metrics latents.h5
      latentdiag report latents.h5 -o report/

    Run `latentdiag COMMAND --help` for the options of each command.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="latentdiag")


__all__ = ["COMMANDS", "cli", "fail", "main"]
