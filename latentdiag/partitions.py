"""Named latent subspaces: the one check every reader and writer of partitions shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from latentdiag.errors import LatentDiagError

__all__ = ["check_partitions"]


def check_partitions(
    partitions: Mapping[str, Sequence[int]] | None,
    latent_dim: int,
    *,
    error: type[LatentDiagError],
    where: str | None = None,
) -> dict[str, tuple[int, int]]:
    """Partitions as name -> (start, stop), each a non-empty range inside ``0..latent_dim``.

    Args:
        partitions: name -> [start, stop), or None for none.
        latent_dim: d.
        error: The error to raise (``StoreError`` for a file, ``MetricInputError`` for an
            argument).
        where: Put in front of each message (a file's path), or None.

    Raises:
        error: A partition is not a pair of integers, is empty, or lies outside ``0..d``.
    """
    prefix = f"{where}: " if where else ""
    out: dict[str, tuple[int, int]] = {}
    for name, bounds in (partitions or {}).items():
        try:
            start, stop = (int(b) for b in bounds)
        except (TypeError, ValueError):
            raise error(
                f"{prefix}partition {name!r} must be a pair [start, stop); got {bounds!r}."
            ) from None
        if stop <= start:
            raise error(
                f"{prefix}partition {name!r} = [{start}, {stop}) is empty; expected start < stop."
            )
        if not 0 <= start < stop <= latent_dim:
            raise error(
                f"{prefix}partition {name!r} = [{start}, {stop}) lies outside the {latent_dim} "
                f"latent dimensions; expected 0 <= start < stop <= {latent_dim}."
            )
        out[str(name)] = (start, stop)
    return out
