"""Group summaries of the eNTK similarity matrix."""

from __future__ import annotations

import numpy as np
import pytest

from dcr.probe.groups import confound_ratio, group_means


def test_confound_ratio_is_the_cross_block_over_the_toxic_block() -> None:
    order = ["s-toxic", "toxic", "normal"]
    m = np.array([[0.9, 0.4, 0.1], [0.6, 0.8, 0.2], [0.1, 0.2, 0.7]])
    assert confound_ratio(m, order) == pytest.approx((0.4 + 0.6) / 2 / 0.8)
    assert confound_ratio(m[[1, 0, 2]][:, [1, 0, 2]], ["toxic", "s-toxic", "normal"]) == pytest.approx(0.625)


def test_confound_ratio_from_per_prompt_norms() -> None:
    norms = np.array([[1.0, 0.5, 0.2, 0.2], [0.5, 1.0, 0.4, 0.2], [0.2, 0.4, 1.0, 0.8], [0.2, 0.2, 0.8, 1.0]])
    groups = ["s-toxic", "s-toxic", "toxic", "toxic"]
    mat = group_means(norms, groups, ["s-toxic", "toxic"])  # the diagonal (self-pairs) is left out
    assert mat[1, 1] == pytest.approx(0.8) and mat[0, 1] == pytest.approx(0.25)
    assert confound_ratio(mat, ["s-toxic", "toxic"]) == pytest.approx(0.25 / 0.8)
