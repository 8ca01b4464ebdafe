"""Working resolution, level choice, OME-TIFF pixel size, and level-0 coordinates of outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import SlideConfig, TilingConfig
from pathosam_wsi.errors import MissingResolutionError
from pathosam_wsi.slide import open_slide, plan_frame
from tests.helpers import read_outputs

FAST = RunConfig(tiling=TilingConfig(tile_px=256, halo_px=32), threads=2)


def test_target_mpp_on_a_level_reads_that_level(synthetic_slide) -> None:
    slide = open_slide(synthetic_slide.path)
    frame = plan_frame(slide, target_mpp=1.0)
    assert (frame.level, frame.downsample, frame.resampled) == (1, 2.0, False)
    assert frame.wh_px == (512, 384)
    np.testing.assert_array_equal(
        frame.read(slide, (0, 0, 512, 384)), slide.read_level(1, (0, 0, 512, 384))
    )


def test_target_mpp_between_levels_resamples_from_the_finer_one(synthetic_slide) -> None:
    slide = open_slide(synthetic_slide.path)
    frame = plan_frame(slide, target_mpp=0.75)
    assert frame.level == 0 and frame.resampled
    assert frame.downsample == pytest.approx(1.5)
    assert frame.wh_px == (683, 512)
    whole = frame.read(slide, (0, 0, 683, 512))
    part = frame.read(slide, (100, 60, 300, 260))
    # a block reads the same pixels as the same region of the whole frame
    assert np.abs(whole[60:260, 100:300].astype(int) - part.astype(int)).max() <= 1


def test_outputs_stay_in_level0_coordinates_at_coarser_mpp(tmp_path) -> None:
    from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

    # 0.25 µm/px slide with one level; target 0.4 µm/px is resampled from level 0
    centres = grid_centres(640, 640, spacing_px=60, offset_px=30, jitter=10, seed=3)
    rgb, gt = draw_nuclei(640, 640, centres, radius_px=12.0, seed=4)
    path = write_pyramid(tmp_path / "fine.tiff", rgb, 0.25, levels=1)
    config = dataclasses.replace(FAST, slide=SlideConfig(target_mpp=0.4))
    result = segment_slide(path, tmp_path / "out", config)
    labels, table = read_outputs(result.output_dir)
    assert labels.shape == (400, 400)
    ids = np.unique(gt)[1:]
    area = np.bincount(gt.ravel())[ids]
    yy, xx = np.indices(gt.shape)
    gt_cx = np.bincount(gt.ravel(), xx.ravel())[ids] / area + 0.5
    gt_cy = np.bincount(gt.ravel(), yy.ravel())[ids] / area + 0.5
    d = np.hypot(
        table.centroid_x_l0.to_numpy()[:, None] - gt_cx,
        table.centroid_y_l0.to_numpy()[:, None] - gt_cy,
    )
    assert len(table) >= 0.9 * ids.size
    assert np.median(d.min(axis=1)) < 2.0  # level-0 px
    assert table.area_um2.median() == pytest.approx(np.median(area) * 0.25**2, rel=0.35)


def test_ome_tiff_pixel_size_is_read(tmp_path, synthetic_slide) -> None:
    path = tmp_path / "slide.ome.tiff"
    rgb = synthetic_slide.rgb[:256, :256]
    tifffile.imwrite(
        path,
        rgb,
        photometric="rgb",
        tile=(128, 128),
        ome=True,
        metadata={
            "axes": "YXS",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.25,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        },
    )
    slide = open_slide(path)
    assert slide.mpp == pytest.approx(0.25)
    np.testing.assert_array_equal(slide.read_level(0, (0, 0, 256, 256)), rgb)


def test_missing_mpp_is_an_error_until_given(no_mpp_slide) -> None:
    slide = open_slide(no_mpp_slide)
    with pytest.raises(MissingResolutionError, match="--mpp"):
        plan_frame(slide)
    assert plan_frame(open_slide(no_mpp_slide, mpp=0.5)).mpp == 0.5
