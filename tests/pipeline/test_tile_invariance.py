"""Classical runs do not depend on the tile size, also where foreground regions are much larger
than the halo: dense synthetic tissue with long chains and clusters of touching nuclei."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import ModelConfig, TilingConfig, TissueConfig
from tests.helpers import read_outputs
from tests.synthetic import draw_nuclei, write_pyramid

HALO_PX = 16


def _chains(h: int, w: int, seed: int) -> list[tuple[float, float]]:
    """Centres of touching nuclei (spacing < diameter) along random long polylines."""
    rng = np.random.default_rng(seed)
    centres: list[tuple[float, float]] = []
    for _ in range(14):
        y, x = rng.uniform(20, h - 20), rng.uniform(20, w - 20)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(20, 45))):  # 200-450 px long, far beyond the halo
            centres.append((y, x))
            angle += rng.normal(0, 0.3)
            y = float(np.clip(y + 10 * np.sin(angle), 12, h - 13))
            x = float(np.clip(x + 10 * np.cos(angle), 12, w - 13))
    return centres


@pytest.fixture(scope="module")
def dense_slide(tmp_path_factory):
    rgb, _ = draw_nuclei(512, 512, _chains(512, 512, seed=3), radius_px=6.5, seed=4)
    return write_pyramid(tmp_path_factory.mktemp("dense") / "dense.tiff", rgb, 0.5, levels=1)


def _run(slide, out, tile_px: int):
    config = RunConfig(
        model=ModelConfig(name="classical"),  # the model the guarantee covers (README)
        tiling=TilingConfig(tile_px=tile_px, halo_px=HALO_PX),
        tissue=TissueConfig(enabled=False),
        threads=2,
    )
    result = segment_slide(slide, out / f"t{tile_px}", config, slide_id="dense")
    labels, table = read_outputs(result.output_dir)
    table = table.drop(columns="tile_id")  # names the block: tiling-dependent by definition
    counts = json.loads((result.output_dir / "run.json").read_text())["counts"]
    return labels, table.sort_values("nucleus_id").reset_index(drop=True), counts


def test_labels_and_tables_identical_across_tile_sizes(dense_slide, tmp_path) -> None:
    labels, table, _ = _run(dense_slide, tmp_path, 512)
    assert len(table) > 80
    for tile in (64, 128):
        labels2, table2, counts2 = _run(dense_slide, tmp_path, tile)
        np.testing.assert_array_equal(labels, labels2)
        pd.testing.assert_frame_equal(table, table2, check_exact=True)
        assert counts2["regions_refit"] > 0  # regions did cross the halos
        assert counts2["regions_exceeding_window"] == 0
