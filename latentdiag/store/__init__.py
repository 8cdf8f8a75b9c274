"""The latents file: an HDF5 file of posterior means, log-variances, labels and factors.

Format version 1 (see ``docs/format.md``)::

    /            attrs: latentdiag_format="latents", format_version=1, created, latentdiag_version,
                        complete, n_rows, label_names?, factor_names?
    /mu          float32 (n, d)    posterior means or deterministic embedding
    /logvar      float32 (n, d)    optional posterior log-variances
    /labels      int64 (n,)        optional group labels, 0..len(label_names)-1
    /factors     float32 (n, f)    optional ground-truth generative factors
    /sample_ids  UTF-8 str (n,)    optional origin of each row
    /index       int64 (n,)        optional position of each row's sample in its data (shards)
    /partitions  group; attrs name -> [start, stop)
    /provenance  group; attrs: how the file was made (dicts and lists stored as JSON strings)

Writing goes through :class:`LatentWriter`: rows are appended block by block to
``<name>.partial`` (chunked, gzip-compressed, resizable along rows) and the file is renamed to
its final name only by :meth:`LatentWriter.finalize`, which sets ``complete=True``. A writer
that dies leaves a ``.partial`` file that says how many rows it committed (``n_rows``), so the
same run can resume it with :meth:`LatentWriter.resume`.

Reading goes through :class:`LatentStore`, which validates the file on open and raises
:class:`~latentdiag.errors.StoreError` naming the file and what is wrong. AnnData ``.h5ad``
files read as :class:`~latentdiag.store.h5ad.AnnDataLatents`; :func:`open_latents` opens
either (both are a :class:`~latentdiag.store.base.LatentSource`).

Format version 2 adds per-row metadata columns::

    /columns                group; attr names = the columns in order
    /columns/<name>         categorical: group of codes int32 (n,) (-1 = missing) and
                            categories str (k,); numeric: dataset (n,) of any number dtype
    /  attrs label_key      the column that is the default label; /labels mirrors it
"""

import os
from typing import Any

from latentdiag.store._common import (
    DEFAULT_BLOCK_ROWS,
    FORMAT_NAME,
    FORMAT_VERSION,
    PARTIAL_SUFFIX,
    SAMPLE_IDS_FROM_INDEX,
    partial_path,
)
from latentdiag.store.base import LatentSource
from latentdiag.store.reader import LatentStore, StoreSummary
from latentdiag.store.writer import LatentWriter, write_latents

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PARTIAL_SUFFIX",
    "SAMPLE_IDS_FROM_INDEX",
    "LatentSource",
    "LatentStore",
    "LatentWriter",
    "StoreSummary",
    "open_latents",
    "partial_path",
    "write_latents",
]


def open_latents(
    source: str | os.PathLike[str] | Any,
    *,
    label_key: str | None = None,
    batch_key: str | None = None,
    obsm: str | None = None,
    logvar_obsm: str | None = None,
    allow_incomplete: bool = False,
    pre_obsm: str | None = None,
) -> LatentSource:
    """Open a latents file or an AnnData file (path or ``AnnData`` object) for reading.

    Args:
        source: A latents file (``.h5``), an ``.h5ad`` file, or an ``anndata.AnnData``.
        label_key: The column whose groups should separate (default: the file's label).
        batch_key: The column whose groups should mix (default: none).
        obsm: AnnData only: the obsm key of the embedding (default: the only ``X_*`` one).
        logvar_obsm: AnnData only: the obsm key of the posterior log-variances.
        allow_incomplete: Latents files only: open an unfinished ``.partial`` file.
        pre_obsm: AnnData only: the obsm key of the embedding before integration (for
            mixing.pcr_comparison), e.g. ``X_pca``.

    Raises:
        StoreError: The file cannot be read (see :class:`LatentStore` and
            :class:`~latentdiag.store.h5ad.AnnDataLatents`).
        ConfigError: A key names no column, or ``--obsm`` is given for a latents file.
    """
    from latentdiag.store.h5ad import is_h5ad

    is_adata = type(source).__name__ == "AnnData" and hasattr(source, "obsm")
    if is_adata or is_h5ad(source):
        from latentdiag.store.h5ad import AnnDataLatents

        return AnnDataLatents(
            source,
            obsm=obsm,
            logvar_obsm=logvar_obsm,
            label_key=label_key,
            batch_key=batch_key,
            pre_obsm=pre_obsm,
        )
    if obsm is not None or logvar_obsm is not None or pre_obsm is not None:
        from latentdiag.errors import ConfigError

        flag = "--obsm" if obsm is not None else "--logvar-obsm" if logvar_obsm else "--pre-obsm"
        raise ConfigError(
            f"{flag} applies to AnnData (.h5ad) input; {source} is a latents file, whose "
            "embedding is /mu."
        )
    return LatentStore(
        source, allow_incomplete=allow_incomplete, label_key=label_key, batch_key=batch_key
    )
