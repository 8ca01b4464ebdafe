"""The README's query examples (README.md, "Using the outputs"), run on a real output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import TilingConfig


@pytest.fixture(scope="module")
def out_root(synthetic_slide, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("queries")
    segment_slide(
        synthetic_slide.path,
        out,
        RunConfig(tiling=TilingConfig(tile_px=256, halo_px=48), threads=2),
    )
    return out


def test_pandas(out_root: Path) -> None:
    import pandas as pd

    df = pd.read_parquet(
        out_root / "synthetic" / "nuclei.parquet", columns=["nucleus_id", "area_um2"]
    )
    big = df[df.area_um2 > 20]
    assert len(df) > 100 and 0 < len(big) <= len(df)


def test_geopandas_bbox(out_root: Path) -> None:
    import geopandas as gpd

    path = out_root / "synthetic" / "nuclei.parquet"
    roi = gpd.read_parquet(path, bbox=(0, 0, 256, 256))  # level-0 px: xmin, ymin, xmax, ymax
    assert roi.crs is None
    allg = gpd.read_parquet(path)
    b = allg.geometry.bounds
    expected = (b.minx <= 256) & (b.maxx >= 0) & (b.miny <= 256) & (b.maxy >= 0)
    assert set(roi.nucleus_id) == set(allg.nucleus_id[expected])
    assert 0 < len(roi) < len(allg)


def test_duckdb(out_root: Path) -> None:
    import duckdb

    con = duckdb.connect()
    rows = con.sql(f"""
        SELECT slide_id, count(*) AS n, median(area_um2) AS median_area_um2
        FROM read_parquet('{out_root}/*/nuclei.parquet')
        WHERE bbox.xmin >= 0 AND bbox.xmax <= 512
        GROUP BY slide_id
    """).fetchall()
    import pandas as pd

    df = pd.read_parquet(out_root / "synthetic" / "nuclei.parquet")
    sel = df[[b["xmax"] <= 512 for b in df.bbox]]
    assert rows == [("synthetic", len(sel), pytest.approx(float(np.median(sel.area_um2))))]
