"""The report's document model."""

from __future__ import annotations

import pytest

from dcr.report.render import Table


def test_a_table_row_must_have_one_cell_per_column() -> None:
    """A cell without its header renders under the wrong column (or is dropped): the matched-safety table once
    had a row of 8 cells under 7 headers."""
    Table("ok", ["a", "b"], [["1", "2"]])
    with pytest.raises(ValueError, match=r"table 't': row 1 has 3 cells for 2 columns"):
        Table("t", ["a", "b"], [["1", "2"], ["1", "2", "3"]])
