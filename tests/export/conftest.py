"""One segmented synthetic slide shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import ModelConfig, TilingConfig


@pytest.fixture(scope="session")
def result_dir(synthetic_slide, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export_out")
    # the synthetic nuclei are drawn for the classical model (exact outlines, known count)
    config = RunConfig(
        model=ModelConfig(name="classical"),
        tiling=TilingConfig(tile_px=256, halo_px=48),
        threads=2,
    )
    return Path(segment_slide(synthetic_slide.path, out, config).output_dir)
