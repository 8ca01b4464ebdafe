"""Window grid, ownership by window core, own windows for large prompts, overlap rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.prompts.decode import PromptMask
from pathosam_wsi.prompts.paint import paint_order, paint_region
from pathosam_wsi.prompts.parse import PromptSet
from pathosam_wsi.prompts.windows import WindowGrid, assign_windows


def _boxes(boxes: list[list[float]]) -> PromptSet:
    n = len(boxes)
    return PromptSet(
        np.arange(n, dtype=np.int64),
        np.asarray(boxes, np.float64).reshape(n, 4),
        np.zeros((0, 2)),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.arange(1, n + 1, dtype=np.int64),
    )


def test_grid_geometry() -> None:
    grid = WindowGrid((1000, 500), 256, 32)
    assert grid.core == 192 and grid.shape == (3, 6)
    assert grid.window_box(0, 0) == (0, 0, 256, 256)
    assert grid.window_box(0, 1) == (160, 0, 416, 256)
    assert grid.window_box(2, 5) == (744, 244, 1000, 500)  # shifted inwards at the edges
    with pytest.raises(ConfigError, match="no core"):
        WindowGrid((100, 100), 64, 32)


@given(st.integers(300, 900), st.integers(300, 900), st.floats(0, 1), st.floats(0, 1))
def test_core_holds_centre_and_window_holds_core(w: int, h: int, fx: float, fy: float) -> None:
    grid = WindowGrid((w, h), 256, 32)
    xy = np.array([[fx * (w - 1e-6), fy * (h - 1e-6)]])
    r, c = grid.cell_of(xy)[0]
    x0, _, x1, y1 = grid.window_box(int(r), int(c))
    assert c * grid.core <= xy[0, 0] < (c + 1) * grid.core
    assert x0 <= c * grid.core and min((c + 1) * grid.core, w) <= x1 and x1 <= w and y1 <= h


def test_each_prompt_served_once_and_large_boxes_get_own_windows() -> None:
    grid = WindowGrid((800, 600), 256, 32)
    prompts = _boxes(
        [
            [10, 10, 30, 30],
            [180, 180, 200, 200],
            [185, 10, 215, 40],
            [100, 100, 500, 300],
            [300, 300, 320, 320],
        ]
    )
    windows = assign_windows(prompts, grid)
    served = np.concatenate([w.prompts for w in windows])
    assert sorted(served.tolist()) == list(range(5))
    rows, cols = grid.shape
    own = [w for w in windows if w.window_id >= rows * cols]
    assert [w.prompts.tolist() for w in own] == [[3]]
    assert own[0].scale == pytest.approx((400 + 64) / 256)
    # the box straddling the first core's edge is served by the window whose core holds its centre
    first = next(w for w in windows if 2 in w.prompts)
    assert first.window_id == 1


def test_windows_with_the_same_box_share_one_pass() -> None:
    grid = WindowGrid((256, 256), 256, 32)  # 2 x 2 cells, all windows clamped to (0, 0)
    windows = assign_windows(_boxes([[10, 10, 20, 20], [200, 200, 220, 220]]), grid)
    assert len(windows) == 1 and windows[0].prompts.tolist() == [0, 1]


def _mask(origin: tuple[int, int], size: int, score: float) -> PromptMask:
    return PromptMask(0, origin, np.ones((size, size), bool), score, 0, False)


def test_overlap_higher_score_wins_ties_to_lower_id() -> None:
    masks = [_mask((0, 0), 4, 0.5), _mask((2, 2), 4, 0.9), _mask((1, 1), 2, 0.5)]
    values = np.array([1, 2, 3], np.uint32)
    ids = np.array([10, 11, 5], np.int64)
    labels = paint_region((0, 0, 6, 6), masks, values, ids)
    assert labels[3, 3] == 2  # 0.9 beats 0.5
    assert labels[1, 1] == 3  # tie at 0.5: prompt id 5 < 10
    assert labels[0, 0] == 1
    # any input order gives the same picture
    perm = [2, 0, 1]
    again = paint_region((0, 0, 6, 6), [masks[i] for i in perm], values[perm], ids[perm])
    np.testing.assert_array_equal(labels, again)
    assert paint_order(np.array([0.5, 0.9, 0.5]), ids).tolist() == [1, 2, 0]
