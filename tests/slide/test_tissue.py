from __future__ import annotations

import numpy as np
import pytest

from pathosam_wsi.config import TissueConfig
from pathosam_wsi.slide.tissue import block_has_tissue, tissue_mask

PINK = (236, 178, 206)


@pytest.mark.parametrize(("fill", "expected"), [(PINK, 1.0), ((245, 245, 245), 0.0)])
def test_uniform_thumbnails(fill, expected) -> None:
    thumb = np.full((64, 64, 3), fill, np.uint8)
    assert tissue_mask(thumb, 8.0, TissueConfig()).mean() == expected


def test_half_tissue_and_small_islands_dropped() -> None:
    thumb = np.full((100, 100, 3), 245, np.uint8)
    thumb[:, :50] = PINK
    thumb[80:82, 80:82] = PINK  # 4 px * 64 µm² = 256 µm² < min_region_um2
    mask = tissue_mask(thumb, 8.0, TissueConfig())
    assert mask[:, :48].all()
    assert not mask[:, 52:].any()
    assert block_has_tissue(mask, 16.0, (0, 0, 100, 100))
    assert not block_has_tissue(mask, 16.0, (1000, 0, 1500, 500))
