"""docs/cli.md is generated from --help; it must match what the commands say today."""

from __future__ import annotations

from pathlib import Path

from latentdiag.cli import COMMANDS
from latentdiag.cli._reference import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale; regenerate it: python -m latentdiag.cli._reference > docs/cli.md"
    )


def test_cli_reference_covers_every_command() -> None:
    text = render()
    for name in COMMANDS:
        assert f"## `latentdiag {name}`" in text
