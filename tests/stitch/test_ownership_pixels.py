"""Ownership over the labelled-pixel lists equals the old whole-image passes, bit for bit."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pathosam_wsi.stitch.ownership import OwnedNuclei, _edge_labels, own_nuclei, own_nuclei_pixels
from pathosam_wsi.tiling import cover
from pathosam_wsi.tiling.grid import Block
from tests.postprocess.test_outlines import _touching_labels


def reference_own_nuclei(
    labels: npt.NDArray[np.uint32], block: Block, image_wh_px: tuple[int, int]
) -> OwnedNuclei:
    """REFERENCE (old): np.divmod over every pixel, np.unique twice, lut over the whole image."""
    ox, oy = block.outer_px[0], block.outer_px[1]
    flat = labels.ravel()
    n = int(flat.max()) if flat.size else 0
    area = np.bincount(flat, minlength=n + 1).astype(np.int64)
    rows, cols = np.divmod(np.arange(flat.size, dtype=np.int64), labels.shape[1])
    sum_y = np.bincount(flat, weights=rows, minlength=n + 1).astype(np.int64) + oy * area
    sum_x = np.bincount(flat, weights=cols, minlength=n + 1).astype(np.int64) + ox * area
    cx0, cy0, cx1, cy1 = block.core_px
    two_y, two_x = 2 * sum_y + area, 2 * sum_x + area
    owned = (
        (area > 0)
        & (two_y >= 2 * cy0 * area)
        & (two_y < 2 * cy1 * area)
        & (two_x >= 2 * cx0 * area)
        & (two_x < 2 * cx1 * area)
    )
    owned[0] = False
    ids = np.flatnonzero(owned)
    _, first = np.unique(flat, return_index=True)
    first_of = np.zeros(n + 1, np.int64)
    first_of[np.unique(flat)] = first
    ids = ids[np.argsort(first_of[ids], kind="stable")]
    lut = np.zeros(n + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    fy, fx = np.divmod(first_of[ids], labels.shape[1])
    key = (fy + oy) * image_wh_px[0] + (fx + ox)
    edge = np.zeros(n + 1, bool)
    edge[_edge_labels(labels, block, image_wh_px)] = True
    return OwnedNuclei(
        labels=lut[labels],
        key=key.astype(np.int64),
        area_px=area[ids],
        sum_yx_px=np.stack([sum_y[ids], sum_x[ids]], axis=1),
        at_halo_edge=edge[ids],
    )


def test_owned_nuclei_equal_reference_on_random_blocks() -> None:
    rng = np.random.default_rng(0)
    wh = (300, 220)
    grid = cover((0, 0, *wh), wh, 64, 16)
    for block in grid:
        h, w = block.outer_hw
        labels, _n = _touching_labels(
            rng, (h, w), int(rng.integers(2, 6)), bool(rng.random() < 0.5)
        )
        if rng.random() < 0.1:
            labels[:] = 0
        got, px = own_nuclei_pixels(labels, block, wh)
        want = reference_own_nuclei(labels, block, wh)
        for name in ("labels", "key", "area_px", "sum_yx_px", "at_halo_edge"):
            a, b = getattr(got, name), getattr(want, name)
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        # The pixel lists are exactly the owned labels' pixels, raster order, local ids.
        flat = want.labels.ravel()
        np.testing.assert_array_equal(px.index, np.flatnonzero(flat))
        np.testing.assert_array_equal(px.ids, flat[px.index])
        np.testing.assert_array_equal(px.rows * w + px.cols, px.index)
        np.testing.assert_array_equal(own_nuclei(labels, block, wh).labels, want.labels)
