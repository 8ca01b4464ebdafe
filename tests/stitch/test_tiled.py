"""Tiled equals untiled on the same maps; ids do not depend on tiling; each nucleus once."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from pathosam_wsi.config import TilingConfig
from pathosam_wsi.model.classical import _distance_maps
from pathosam_wsi.postprocess import ais_watershed
from pathosam_wsi.stitch import assign_global_ids, own_nuclei, tiled_labels_from_maps
from pathosam_wsi.tiling import cover
from tests.helpers import same_partition


@pytest.fixture(scope="module")
def maps_and_gt():
    rng = np.random.default_rng(0)
    h, w = 600, 800
    gt = np.zeros((h, w), np.int32)
    k = 0
    for _ in range(400):
        y, x, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 12)
        rr, cc = disk((y, x), r, shape=gt.shape)
        if (gt[rr, cc] > 0).any():
            continue
        k += 1
        gt[rr, cc] = k
    centre, boundary = _distance_maps(gt)
    return np.stack([(gt > 0).astype(np.float32), centre, boundary]), gt


@pytest.mark.parametrize("tile", [64, 128, 200, 512])
def test_tiled_equals_untiled(maps_and_gt, tile) -> None:
    maps, _ = maps_and_gt
    untiled = ais_watershed(maps)
    tiled = tiled_labels_from_maps(maps, TilingConfig(tile_px=tile, halo_px=48))
    assert same_partition(untiled, tiled)


def test_ids_identical_across_tile_sizes(maps_and_gt) -> None:
    maps, _ = maps_and_gt
    a = tiled_labels_from_maps(maps, TilingConfig(tile_px=96, halo_px=48))
    b = tiled_labels_from_maps(maps, TilingConfig(tile_px=512, halo_px=48))
    np.testing.assert_array_equal(a, b)
    # ids are 1..N in raster order of each nucleus's first pixel
    ids = a.ravel()[np.sort(np.unique(a.ravel(), return_index=True)[1])]
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, a.max() + 1))


def test_every_nucleus_owned_exactly_once(maps_and_gt) -> None:
    maps, gt = maps_and_gt
    h, w = gt.shape
    grid = cover((0, 0, w, h), (w, h), 128, 48)
    keys = {}
    for block in grid:
        x0, y0, x1, y1 = block.outer_px
        owned = own_nuclei(ais_watershed(maps[:, y0:y1, x0:x1]), block, (w, h))
        keys[block.block_id] = owned.key
    allkeys = np.concatenate(list(keys.values()))
    assert allkeys.size == gt.max() == np.unique(allkeys).size
    luts = assign_global_ids(keys)
    gids = np.concatenate([lut[1:] for lut in luts.values()])
    np.testing.assert_array_equal(np.sort(gids), np.arange(1, gt.max() + 1))


def test_halo_edge_nuclei_are_flagged() -> None:
    gt = np.zeros((300, 300), np.int32)
    rr, cc = disk((150, 150), 40)  # 80 px nucleus, halo 16 px
    gt[rr, cc] = 1
    centre, boundary = _distance_maps(gt)
    maps = np.stack([(gt > 0).astype(np.float32), centre, boundary])
    grid = cover((0, 0, 300, 300), (300, 300), 128, 16)
    block = grid.block_at(1, 1)
    x0, y0, x1, y1 = block.outer_px
    owned = own_nuclei(ais_watershed(maps[:, y0:y1, x0:x1]), block, (300, 300))
    assert owned.count == 1 and bool(owned.at_halo_edge[0])
