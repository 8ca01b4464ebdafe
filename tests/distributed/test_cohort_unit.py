"""Manifests, status files and client construction (no worker processes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pathosam_wsi.cohort import read_manifest, read_status
from pathosam_wsi.config import RunConfig, TilingConfig
from pathosam_wsi.distributed.cluster import make_client
from pathosam_wsi.errors import ConfigError


def test_manifest_overrides_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "path,slide_id,mpp,roi,target_mpp\na.svs,,,,\nsub/b.tif,B,0.25,10 20 300 400,0.5\n"
    )
    base = RunConfig(tiling=TilingConfig(tile_px=256, halo_px=32))
    a, b = read_manifest(tmp_path / "m.csv", base)
    assert (a.slide_id, a.path) == ("a", str(tmp_path / "a.svs"))
    assert a.config == base
    assert (b.slide_id, b.path) == ("B", str(tmp_path / "sub" / "b.tif"))
    assert b.config.slide.mpp == 0.25 and b.config.slide.target_mpp == 0.5
    assert b.config.slide.roi_xywh_l0 == (10, 20, 300, 400)
    assert b.config.tiling == base.tiling


def test_parquet_manifest(tmp_path: Path) -> None:
    pd.DataFrame({"path": ["/x/a.svs", "/x/b.svs"], "tile_px": [128, None]}).to_parquet(
        tmp_path / "m.parquet"
    )
    a, b = read_manifest(tmp_path / "m.parquet", RunConfig())
    assert a.config.tiling.tile_px == 128 and b.config.tiling.tile_px == 512


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("file\na.svs\n", "expected 'path'"),
        ("path,colour\na.svs,red\n", "expected 'path'"),
        ("path\na.svs\nother/a.svs\n", "duplicate"),
        ("path,slide_id\na.svs,nuclei\n", "reserved"),
        ("path,mpp\na.svs,fast\n", "column 'mpp'"),
        ("path,roi\na.svs,1 2 3\n", "roi"),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_manifest(tmp_path / "m.csv", RunConfig())


def test_status_of_empty_folder(tmp_path: Path) -> None:
    status = read_status(tmp_path)
    assert list(status.columns) == [
        "slide_id",
        "path",
        "state",
        "nuclei",
        "blocks",
        "seconds",
        "error",
    ]
    assert status.empty


def test_make_client_kinds() -> None:
    assert make_client("none") is None
    with pytest.raises(ConfigError, match="unknown"):
        make_client("gpu-farm")  # type: ignore[arg-type]


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot connect to dask scheduler"):
        make_client(scheduler="tcp://127.0.0.1:9", timeout_s=1)
