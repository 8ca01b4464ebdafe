"""End to end on the synthetic pyramidal slide: nuclei found, ids consistent, deterministic."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import TilingConfig, TissueConfig
from tests.helpers import matched_fraction, read_outputs

FAST = RunConfig(tiling=TilingConfig(tile_px=256, halo_px=48), threads=2)


@pytest.fixture(scope="module")
def reference_run(synthetic_slide, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = segment_slide(synthetic_slide.path, out, FAST)
    return result, *read_outputs(result.output_dir)


def test_finds_the_drawn_nuclei(synthetic_slide, reference_run) -> None:
    result, labels, _ = reference_run
    assert labels.shape == synthetic_slide.labels.shape
    assert matched_fraction(labels, synthetic_slide.labels, iou=0.5) > 0.95
    assert result.blocks == 12 and result.blocks_skipped == 0


def test_table_ids_equal_label_ids(reference_run) -> None:
    _, labels, table = reference_run
    assert table["nucleus_id"].is_unique
    assert set(np.unique(labels)[1:]) == set(table["nucleus_id"])
    areas = np.bincount(labels.ravel())
    np.testing.assert_array_equal(areas[table["nucleus_id"]], table["area_px"])


def test_centroids_and_geometry_in_level0_px(reference_run, synthetic_slide) -> None:
    result, labels, table = reference_run
    row = table.iloc[len(table) // 2]
    ys, xs = np.nonzero(labels == row["nucleus_id"])
    assert row["centroid_x_l0"] == pytest.approx(xs.mean() + 0.5)
    assert row["centroid_y_l0"] == pytest.approx(ys.mean() + 0.5)
    assert row["area_um2"] == pytest.approx(row["area_px"] * synthetic_slide.mpp**2)
    gdf = gpd.read_parquet(result.output_dir / "nuclei.parquet")
    assert gdf.crs is None and set(gdf.geom_type) == {"Polygon"}
    geom = gdf.geometry.iloc[len(gdf) // 2]
    assert geom.contains(gpd.points_from_xy([row["centroid_x_l0"]], [row["centroid_y_l0"]])[0])
    assert abs(geom.area - row["area_px"]) / row["area_px"] < 0.25


def test_geoparquet_metadata(reference_run) -> None:
    result, _, _ = reference_run
    geo = json.loads(pq.read_schema(result.output_dir / "nuclei.parquet").metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["crs"] is None and "bbox" in col["covering"]


def test_run_json(reference_run) -> None:
    result, _, table = reference_run
    info = json.loads((result.output_dir / "run.json").read_text())
    assert info["counts"]["nuclei"] == len(table)
    assert info["parameters"]["tiling"]["tile_px"] == 256
    assert len(info["input"]["sha256"]) == 64
    assert {"read_s", "model_s", "watershed_s"} <= {
        k[4:] for k in info["timings_s"] if k.startswith("sum_")
    }
    assert not (result.output_dir / "blocks").exists()


@pytest.mark.parametrize(
    "variant",
    [
        {"blocks_per_task": 1, "threads": 1},
        {"blocks_per_task": 5, "threads": 2},
    ],
)
def test_same_bytes_for_batch_size_and_threads(
    synthetic_slide, reference_run, tmp_path, variant
) -> None:
    import dataclasses

    result = segment_slide(synthetic_slide.path, tmp_path, dataclasses.replace(FAST, **variant))
    _, labels, table = reference_run
    labels2, table2 = read_outputs(result.output_dir)
    np.testing.assert_array_equal(labels, labels2)
    pd.testing.assert_frame_equal(table, table2)
    ref_zarr = reference_run[0].output_dir / "labels.ome.zarr/labels/nuclei/s0/0/0"
    assert (
        ref_zarr.read_bytes()
        == (result.output_dir / "labels.ome.zarr/labels/nuclei/s0/0/0").read_bytes()
    )


def test_same_labels_for_different_tile_sizes(synthetic_slide, reference_run, tmp_path) -> None:
    config = RunConfig(tiling=TilingConfig(tile_px=128, halo_px=48), threads=2)
    result = segment_slide(synthetic_slide.path, tmp_path, config)
    labels2, table2 = read_outputs(result.output_dir)
    _, labels, table = reference_run
    np.testing.assert_array_equal(labels, labels2)
    cols = ["nucleus_id", "area_px", "centroid_x_l0", "centroid_y_l0", "geometry"]
    a = table.sort_values("nucleus_id")[cols].reset_index(drop=True)
    b = table2.sort_values("nucleus_id")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_tissue_mask_skips_background_blocks(synthetic_slide, tmp_path) -> None:
    config = RunConfig(tiling=TilingConfig(tile_px=100, halo_px=32), threads=2)
    result = segment_slide(synthetic_slide.path, tmp_path, config)
    # the white band x >= 900 holds the 8 blocks of the last column (x 1000..1024) at least
    assert result.blocks_skipped >= 8
    assert (result.output_dir / "tissue_mask.png").exists()
    off = RunConfig(
        tiling=TilingConfig(tile_px=100, halo_px=32), tissue=TissueConfig(enabled=False)
    )
    result_off = segment_slide(synthetic_slide.path, tmp_path / "off", off)
    assert result_off.blocks_skipped == 0
    np.testing.assert_array_equal(
        read_outputs(result.output_dir)[0], read_outputs(result_off.output_dir)[0]
    )


def test_roi_limits_work_and_keeps_level0_coordinates(synthetic_slide, tmp_path) -> None:
    config = RunConfig(tiling=TilingConfig(tile_px=128, halo_px=48), threads=2)
    config = __import__("dataclasses").replace(
        config,
        slide=__import__("pathosam_wsi.config", fromlist=["SlideConfig"]).SlideConfig(
            roi_xywh_l0=(300, 200, 256, 200)
        ),
    )
    result = segment_slide(synthetic_slide.path, tmp_path, config)
    labels, table = read_outputs(result.output_dir)
    assert labels.shape == synthetic_slide.labels.shape
    inside = (
        (table.centroid_x_l0 >= 300)
        & (table.centroid_x_l0 < 556)
        & (table.centroid_y_l0 >= 200)
        & (table.centroid_y_l0 < 400)
    )
    assert inside.all() and len(table) > 10


def test_output_files_are_readable_by_others(reference_run) -> None:
    result, _, _ = reference_run
    for name in ("run.json", "nuclei.parquet", "tissue_mask.png"):
        assert (result.output_dir / name).stat().st_mode & 0o044 == 0o044, name


def test_class_columns_with_a_semantic_model(synthetic_slide, tmp_path) -> None:
    import dataclasses

    from pathosam_wsi.config import ModelConfig, SlideConfig

    config = dataclasses.replace(
        FAST,
        slide=SlideConfig(roi_xywh_l0=(0, 0, 256, 256)),
        model=ModelConfig(name="sam_tiny_random", classes=True, device="cpu"),
    )
    result = segment_slide(synthetic_slide.path, tmp_path, config)
    names = pq.read_schema(result.output_dir / "nuclei.parquet").names
    assert {"class_id", "class_name", "class_prob"} <= set(names)
