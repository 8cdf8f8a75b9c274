"""``convert``: latents files and AnnData ``.h5ad`` files, one into the other, losslessly.

Both directions keep mu (and its dtype), logvar, every metadata column (categories, order,
missing values, numeric dtypes), factors with their names, partitions, sample ids, ``/index``,
the default label and the provenance. The output is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentdiag.errors import ConfigError, StoreError
from latentdiag.store._common import DEFAULT_BLOCK_ROWS, SAMPLE_IDS_FROM_INDEX, partial_path
from latentdiag.store.base import LatentSource
from latentdiag.store.writer import LatentWriter

__all__ = ["ConvertResult", "convert_latents", "copy_to_latents", "output_kind"]

_LATENTS_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass
class ConvertResult:
    """What :func:`convert_latents` wrote."""

    path: Path
    kind: str  # "anndata" or "latents"
    n_rows: int
    latent_dim: int
    columns: list[str]
    label_key: str | None


def output_kind(out: str | os.PathLike[str]) -> str:
    """``"anndata"`` for a ``.h5ad`` name, ``"latents"`` for ``.h5`` / ``.hdf5``.

    Raises:
        ConfigError: Any other suffix.
    """
    suffix = Path(out).suffix.lower()
    if suffix == ".h5ad":
        return "anndata"
    if suffix in _LATENTS_SUFFIXES:
        return "latents"
    raise ConfigError(
        f"cannot tell what to write to {out}: name it .h5ad for AnnData or .h5 for a latents "
        f"file (found {suffix or 'no suffix'})."
    )


def copy_to_latents(
    source: LatentSource,
    out: str | os.PathLike[str],
    *,
    label_key: str | None = None,
    overwrite: bool = False,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> Path:
    """Write any latents source as a latents file (format 2), block by block.

    Args:
        source: An open source (an AnnData file, or another latents file).
        out: The latents file.
        label_key: The column to make the default label (default: the source's).
        overwrite: Replace an existing file.
        block_rows: Rows per block.

    Raises:
        StoreError: ``out`` exists, or the label column has rows without a value.
        ConfigError: ``label_key`` names no categorical column.
    """
    columns = source.columns
    key = label_key if label_key is not None else source.file_label_key
    if key is not None:
        col = columns.get(key)
        if col is None:
            raise ConfigError(
                f"--label-key {key}: {source.path} has no column {key!r}; its columns: "
                f"{', '.join(columns) or 'none'}."
            )
        if not col.is_categorical:
            raise ConfigError(
                f"--label-key {key}: the default label must be a categorical column; {key!r} is "
                "numeric (metrics --label-key groups a numeric column by value)."
            )
        if col.n_missing:
            if label_key is not None:
                raise StoreError(
                    f"--label-key {key}: {col.n_missing:,} rows have no value in {key!r}; the "
                    "default label needs one on every row."
                )
            key = None  # a column with gaps stays a column, without being the default label
    mu_dtype = np.dtype(source.read("mu", slice(0, 0)).dtype)
    latent_dtype = "float64" if mu_dtype == np.float64 else "float32"
    has_ids = source.has("sample_ids")
    provenance = dict(source.provenance)
    if not has_ids and source.sample_ids is not None:
        provenance["sample_ids"] = SAMPLE_IDS_FROM_INDEX
    out = Path(out)
    if overwrite:
        partial_path(out).unlink(missing_ok=True)
    n = source.n_samples
    writer = LatentWriter(
        out,
        latent_dim=source.latent_dim,
        has_logvar=source.has("logvar"),
        factor_names=source.factor_names if source.has("factors") else None,
        sample_ids=has_ids,
        index=source.has("index"),
        partitions=source.partitions,
        provenance=provenance,
        overwrite=overwrite,
        columns=list(columns.values()),
        label_key=key,
        latent_dtype=latent_dtype,
    )
    try:
        for start in range(0, max(n, 1), block_rows):
            sl = slice(start, min(start + block_rows, n))

            def part(name: str, sl: slice = sl) -> Any:
                return source.read(name, sl) if source.has(name) else None

            ids = part("sample_ids")
            writer.append(
                source.read("mu", sl),
                logvar=part("logvar"),
                factors=part("factors"),
                sample_ids=None if ids is None else [str(s) for s in ids],
                index=part("index"),
                columns={name: col.values[sl] for name, col in columns.items()},
            )
        writer.finalize()
    except BaseException:
        writer.close()  # a conversion is not resumed: nothing half-written stays behind
        partial_path(out).unlink(missing_ok=True)
        raise
    return out


def convert_latents(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    obsm: str | None = None,
    logvar_obsm: str | None = None,
    label_key: str | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """Convert a latents file to AnnData or back; the output's suffix says which.

    Args:
        src: A latents file or an ``.h5ad`` file.
        out: ``*.h5ad`` (AnnData) or ``*.h5`` (latents file).
        obsm: For an ``.h5ad`` input: the obsm key of the embedding.
        logvar_obsm: For an ``.h5ad`` input: the obsm key of the log-variances.
        label_key: The column that becomes the output's default label.
        overwrite: Replace an existing output.

    Returns:
        A :class:`ConvertResult`.

    Raises:
        StoreError: The input cannot be read, or the output exists or cannot be written.
        ConfigError: Unknown output suffix, or a bad ``label_key``.
    """
    from latentdiag.store import open_latents
    from latentdiag.store.h5ad import write_h5ad

    kind = output_kind(out)
    out = Path(out)
    if Path(src).resolve() == out.resolve():
        raise StoreError(f"the output {out} is the input; choose another -o path.")
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; choose another -o path or pass --overwrite.")
    with open_latents(src, obsm=obsm, logvar_obsm=logvar_obsm) as source:
        if label_key is not None:
            col = source.columns.get(label_key)
            if col is None:
                raise ConfigError(
                    f"--label-key {label_key}: {src} has no column {label_key!r}; its columns: "
                    f"{', '.join(source.columns) or 'none'}."
                )
            if not col.is_categorical or col.n_missing:
                raise ConfigError(
                    f"--label-key {label_key}: the default label must be a categorical column "
                    f"with a value on every row; {label_key!r} is "
                    f"{'numeric' if not col.is_categorical else 'missing some values'}."
                )
            source.file_label_key = label_key
        from latentdiag.store._common import check_room

        # The converted file holds the same arrays: the input's size bounds it, within slack.
        check_room(out, int(Path(src).stat().st_size * 1.25), what="the converted file")
        if kind == "anndata":
            write_h5ad(source, out, overwrite=overwrite)
        else:
            copy_to_latents(source, out, label_key=label_key, overwrite=overwrite)
        return ConvertResult(
            path=out,
            kind=kind,
            n_rows=source.n_samples,
            latent_dim=source.latent_dim,
            columns=list(source.columns),
            label_key=source.file_label_key,
        )
