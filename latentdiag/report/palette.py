"""Colours and markers for labels: colour-blind safe, and the same label keeps its look everywhere.

The first eight labels take the Okabe–Ito palette (Okabe & Ito, "Color Universal Design", 2008),
reordered so the strongest hues come first; the next nine take Paul Tol's "muted" scheme. Past
seventeen labels colours repeat, and the marker shape changes with each round so that no two
labels share both colour and shape. Sequential quantities (distances, mutual information) use
``viridis``, which reads in order for every common colour-vision deficiency and in greyscale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BETTER",
    "NEUTRAL",
    "OKABE_ITO",
    "SEQUENTIAL_CMAP",
    "TOL_MUTED",
    "WORSE",
    "LabelStyle",
]

OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
TOL_MUTED: tuple[str, ...] = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
_COLOURS = OKABE_ITO + TOL_MUTED
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

SEQUENTIAL_CMAP = "viridis"
# Delta colouring in comparison tables (blue / vermillion from Okabe–Ito; always paired with an
# arrow and a word so that colour is never the only cue).
BETTER = "#0072B2"
WORSE = "#D55E00"
NEUTRAL = "#555555"


@dataclass(frozen=True)
class LabelStyle:
    """The colour and marker of every label name, fixed once for a whole report.

    Build it from the label names of every file in the report, so a label looks the same in
    every figure and in every compared file.
    """

    names: tuple[str, ...]

    @classmethod
    def from_names(cls, groups: Iterable[Sequence[str] | None]) -> LabelStyle:
        """Label names in first-seen order over several files (``None`` entries are skipped)."""
        seen: dict[str, None] = {}
        for names in groups:
            for name in names or ():
                seen.setdefault(str(name), None)
        return cls(tuple(seen))

    def index(self, name: str) -> int:
        """The label's position in the report's label order."""
        try:
            return self.names.index(name)
        except ValueError:
            return len(self.names)  # an unknown label still gets a well-defined look

    def colour(self, name: str) -> str:
        """The label's colour as ``#rrggbb``."""
        return _COLOURS[self.index(name) % len(_COLOURS)]

    def marker(self, name: str) -> str:
        """The label's matplotlib marker; changes each time the colours wrap around."""
        return _MARKERS[(self.index(name) // len(_COLOURS)) % len(_MARKERS)]
