"""scIB's ranked table across embeddings: metrics as columns, embeddings as rows, best marked.

With two or more files measured with a batch key, the report ranks them as scib-metrics'
``Benchmarker`` does: every batch-correction and bio-conservation metric, the two aggregate
scores and the total, one row per file, sorted by the total (best first). Values are the files'
own (``min_max_scale=False``, scib-metrics' default for ``get_results``): a min-max scaling
across so few embeddings would turn small differences into 0 and 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLUMNS", "scib_table"]

# (metrics path, column title, group) in scib-metrics' order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("separation.isolated_labels", "Isolated labels", "bio conservation"),
    ("separation.nmi", "KMeans NMI", "bio conservation"),
    ("separation.ari", "KMeans ARI", "bio conservation"),
    ("separation.silhouette_label", "Silhouette label", "bio conservation"),
    ("separation.clisi", "cLISI", "bio conservation"),
    ("mixing.bras", "BRAS", "batch correction"),
    ("mixing.ilisi", "iLISI", "batch correction"),
    ("mixing.kbet", "KBET", "batch correction"),
    ("mixing.graph_connectivity", "Graph connectivity", "batch correction"),
    ("mixing.pcr_comparison", "PCR comparison", "batch correction"),
    ("scores.batch_correction", "Batch correction", "aggregate score"),
    ("scores.bio_conservation", "Bio conservation", "aggregate score"),
    ("scores.total", "Total", "aggregate score"),
)


def _value(metrics: Mapping[str, Any], path: str) -> float | None:
    if path == "separation.silhouette_label":
        # scib-metrics' silhouette_label: the label silhouette rescaled to (s + 1) / 2.
        s = _value(metrics, "separation.silhouette")
        return None if s is None else (s + 1.0) / 2.0
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def scib_table(files: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
    """The ranked table of the files that have scIB scores, or ``None`` (fewer than two).

    Args:
        files: (name, metrics dict) per file, in the report's order.

    Returns:
        ``{"columns": [{"key", "title", "group"}...], "rows": [{"name", "rank", "values":
        {key: value or None}}...] (best total first), "best": {key: [names]},
        "min_max_scaled": False}``; only columns some file has are listed.
    """
    scored = [(n, m) for n, m in files if _value(m, "scores.total") is not None]
    if len(scored) < 2:
        return None
    values = {n: {path: _value(m, path) for path, _, _ in COLUMNS} for n, m in scored}
    columns = [
        {"key": path, "title": title, "group": group}
        for path, title, group in COLUMNS
        if any(values[n][path] is not None for n, _ in scored)
    ]
    order = sorted(scored, key=lambda nm: -float(values[nm[0]]["scores.total"] or 0.0))
    keys = [c["key"] for c in columns]
    rows: list[dict[str, Any]] = [
        {"name": n, "rank": i + 1, "values": {k: values[n][k] for k in keys}}
        for i, (n, _) in enumerate(order)
    ]
    best: dict[str, list[str]] = {}
    for k in keys:
        present = [(values[n][k], n) for n, _ in order]
        top = max((v for v, _ in present if v is not None), default=None)
        if top is not None:
            best[k] = [n for v, n in present if v == top]
    return {"columns": columns, "rows": rows, "best": best, "min_max_scaled": False}
