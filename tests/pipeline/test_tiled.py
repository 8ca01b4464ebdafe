"""Tiled equals untiled, every nucleus once, ids independent of the block size, batches and
threads: on the same maps, through the production path (``segment_slide``, tests/pipeline/
maps_slide.py), compared with one watershed over the whole image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.model.classical import distance_maps
from pathosam_wsi.postprocess import ais_watershed
from tests.helpers import same_partition
from tests.pipeline.maps_slide import codes_of, segment_maps, write_maps_slide


@pytest.fixture(scope="module")
def maps_slide(tmp_path_factory):
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
    centre, boundary = distance_maps(gt)
    codes = codes_of(np.stack([(gt > 0).astype(np.float32), centre, boundary]))
    path = write_maps_slide(tmp_path_factory.mktemp("maps") / "maps.tiff", codes)
    maps = np.moveaxis(codes, -1, 0).astype(np.float32) / 255.0
    return path, maps, gt


@pytest.fixture(scope="module")
def run_512(maps_slide, tmp_path_factory):
    return segment_maps(maps_slide[0], tmp_path_factory.mktemp("out"), 512, 48, threads=2)


@pytest.mark.parametrize("tile", [64, 128, 200])
def test_tiled_equals_untiled(maps_slide, run_512, tile, tmp_path) -> None:
    path, maps, _ = maps_slide
    untiled = ais_watershed(maps)
    labels, table, _ = segment_maps(path, tmp_path, tile, 48, threads=2)
    assert same_partition(untiled, labels)
    assert same_partition(untiled, run_512[0])
    # ids do not depend on the block size: identical labels and tables (tile_id names the block)
    np.testing.assert_array_equal(labels, run_512[0])
    pd.testing.assert_frame_equal(
        table.drop(columns="tile_id").sort_values("nucleus_id").reset_index(drop=True),
        run_512[1].drop(columns="tile_id").sort_values("nucleus_id").reset_index(drop=True),
    )


def test_ids_are_raster_ranks_and_every_nucleus_is_kept_once(maps_slide, run_512) -> None:
    _, _, gt = maps_slide
    labels, table, _ = run_512
    # ids are 1..N in raster order of each nucleus's first pixel
    ids = labels.ravel()[np.sort(np.unique(labels.ravel(), return_index=True)[1])]
    np.testing.assert_array_equal(ids[ids > 0], np.arange(1, labels.max() + 1))
    # every drawn nucleus exactly once, in the table and in the raster
    assert len(table) == gt.max() == labels.max()
    np.testing.assert_array_equal(np.sort(table["nucleus_id"]), np.arange(1, gt.max() + 1))


@pytest.mark.parametrize("variant", [{"blocks_per_task": 1, "threads": 1}, {"blocks_per_task": 5}])
def test_ids_do_not_depend_on_batches_or_threads(maps_slide, run_512, variant, tmp_path) -> None:
    labels, table, _ = segment_maps(maps_slide[0], tmp_path, 128, 48, **variant)
    labels_ref, table_ref, _ = segment_maps(maps_slide[0], tmp_path / "ref", 128, 48, threads=2)
    np.testing.assert_array_equal(labels, labels_ref)
    pd.testing.assert_frame_equal(table, table_ref)


def test_region_beyond_the_largest_window_is_flagged_and_counted(tmp_path) -> None:
    gt = np.zeros((300, 300), np.int32)
    rr, cc = disk((150, 150), 40)  # 80 px nucleus; halo 16 px, windows of at most 48 px
    gt[rr, cc] = 1
    centre, boundary = distance_maps(gt)
    codes = codes_of(np.stack([(gt > 0).astype(np.float32), centre, boundary]))
    path = write_maps_slide(tmp_path / "big.tiff", codes)
    with pytest.warns(PathoSamWarning, match="did not fit a 48 px window"):
        _, table, out = segment_maps(path, tmp_path / "o", 128, 16, max_window_px=48)
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["regions_exceeding_window"] >= 1
    assert table["at_halo_edge"].any()
    # with room to grow, the same nucleus is found whole, once, and not flagged
    labels, table, out = segment_maps(path, tmp_path / "o2", 128, 16)
    assert len(table) == 1 and not table["at_halo_edge"].any()
    assert same_partition(labels, ais_watershed(np.moveaxis(codes, -1, 0) / np.float32(255.0)))
    assert json.loads((out / "run.json").read_text())["counts"]["regions_exceeding_window"] == 0
