"""Progress reporting for the training loop.

The loop calls a :class:`Reporter`; the default reports nothing (library use, tests, processes
other than rank 0). :class:`RichReporter` draws a rich progress bar on stderr with the loss
parts and images per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Reporter", "RichReporter"]


class Reporter:
    """Silent reporter; subclasses override what they show."""

    def start(self, *, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        """Called once before the first step (``epoch``/``step``: where a resumed run starts)."""

    def step(
        self, *, epoch: int, step: int, parts: Mapping[str, float], images_per_s: float
    ) -> None:
        """Called every few steps with running means of the loss parts."""

    def epoch_end(self, *, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Called after each epoch's held-out evaluation."""

    def close(self) -> None:
        """Called once at the end, also on errors."""


class RichReporter(Reporter):
    """A rich progress bar: epoch, steps, loss parts, images/s; a line per finished epoch."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self._progress: Any = None
        self._task: Any = None
        self._epochs = 0

    def start(self, *, epochs: int, steps_per_epoch: int, epoch: int, step: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._epochs = epochs
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[parts]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            "train", total=steps_per_epoch, completed=step, epoch=epoch + 1, epochs=epochs, parts=""
        )

    def step(
        self, *, epoch: int, step: int, parts: Mapping[str, float], images_per_s: float
    ) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k} {v:.3g}" for k, v in parts.items())
        self._progress.update(
            self._task, completed=step, epoch=epoch + 1, parts=f"{text}  {images_per_s:,.0f} img/s"
        )

    def epoch_end(self, *, epoch: int, metrics: Mapping[str, Any]) -> None:
        if self._progress is None:
            return
        held = "  ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k != "epoch"
        )
        self._progress.console.print(f"epoch {epoch + 1}/{self._epochs}  held-out: {held}")
        if epoch + 1 < self._epochs:
            self._progress.reset(self._task)
            self._progress.update(self._task, epoch=epoch + 2, parts="")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
