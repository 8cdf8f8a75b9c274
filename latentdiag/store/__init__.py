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
:class:`~latentdiag.errors.StoreError` naming the file and what is wrong.
"""

from latentdiag.store._common import (
    DEFAULT_BLOCK_ROWS,
    FORMAT_NAME,
    FORMAT_VERSION,
    PARTIAL_SUFFIX,
    SAMPLE_IDS_FROM_INDEX,
    partial_path,
)
from latentdiag.store.reader import LatentStore, StoreSummary
from latentdiag.store.writer import LatentWriter, write_latents

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PARTIAL_SUFFIX",
    "SAMPLE_IDS_FROM_INDEX",
    "LatentStore",
    "LatentWriter",
    "StoreSummary",
    "partial_path",
    "write_latents",
]
