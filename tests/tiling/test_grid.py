from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pathosam_wsi.errors import TilingError
from pathosam_wsi.tiling import cover


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 700),
    h=st.integers(1, 700),
    tile=st.integers(16, 300),
    halo=st.integers(0, 80),
    data=st.data(),
)
def test_cores_partition_region_and_outer_is_clipped_halo(w, h, tile, halo, data) -> None:
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    y1 = data.draw(st.integers(y0 + 1, h))
    grid = cover((x0, y0, x1, y1), (w, h), tile, halo)
    count = np.zeros((h, w), np.int32)
    for block in grid:
        cx0, cy0, cx1, cy1 = block.core_px
        assert cx0 < cx1 and cy0 < cy1
        # each core lies in one image-aligned tile cell (one output chunk)
        assert cx0 // tile == (cx1 - 1) // tile and cy0 // tile == (cy1 - 1) // tile
        count[cy0:cy1, cx0:cx1] += 1
        assert block.outer_px == (
            max(cx0 - halo, 0),
            max(cy0 - halo, 0),
            min(cx1 + halo, w),
            min(cy1 + halo, h),
        )
    expected = np.zeros((h, w), np.int32)
    expected[y0:y1, x0:x1] = 1
    np.testing.assert_array_equal(count, expected)


def test_neighbours_and_ids() -> None:
    grid = cover((0, 0, 1000, 700), (1000, 700), 256, 64)
    assert grid.shape == (3, 4)
    assert [b.block_id for b in grid] == list(range(12))
    middle = grid.block_at(1, 1)
    assert sorted(n.block_id for n in grid.neighbours(middle)) == [0, 1, 2, 4, 6, 8, 9, 10]
    assert len(grid.neighbours(grid.block(0))) == 3


@pytest.mark.parametrize("region", [(0, 0, 0, 10), (5, 5, 2000, 10), (-1, 0, 5, 5)])
def test_bad_region_is_a_tiling_error(region) -> None:
    with pytest.raises(TilingError, match="not inside the image"):
        cover(region, (100, 100), 64, 8)
