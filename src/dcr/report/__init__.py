"""``dcr report RUN_DIR``: Markdown + HTML tables (Table 1 / Table 2 layouts) and PNG figures (Fig. 4 / 5)."""

from dcr.report.build import report

__all__ = ["report"]
