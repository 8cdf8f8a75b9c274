"""Reports on latents files: figures, projections and a self-contained HTML page.

``build_report`` is the entry point; importing this package stays light (matplotlib, scikit-learn
and umap-learn are imported only when a report is built).
"""

from __future__ import annotations

from latentdiag.report.build import DEFAULT_SAMPLE, ReportResult, build_report

__all__ = ["DEFAULT_SAMPLE", "ReportResult", "build_report"]
