"""Render the CLI reference (docs/cli.md) from the commands' own ``--help``.

Regenerate after changing any command::

    python -m latentdiag.cli._reference > docs/cli.md

A test fails when docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import click

from latentdiag.cli import cli


def _help(command: click.Command, path: list[str]) -> str:
    ctx = click.Context(
        command,
        info_name=" ".join(path),
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    return command.get_help(ctx)


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    out = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1])
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out.extend(_walk(sub, [*path, name]))
    return out


def render() -> str:
    """The whole reference as Markdown."""
    parts = [
        "# Command-line reference",
        "",
        "Generated from `--help` by `python -m latentdiag.cli._reference > docs/cli.md`;",
        "a test fails when this page is out of date.",
        "",
    ]
    for path, command in _walk(cli, ["latentdiag"]):
        parts += [f"## `{' '.join(path)}`", "", "```text", _help(command, path), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    click.echo(render(), nl=False)
