"""QuPath GeoJSON: parses back, has QuPath's fields, one feature per row, exact coordinates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.export.qupath import class_colour, export_qupath


def _check_features(doc: dict, table: pa.Table) -> None:
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    assert len(feats) == table.num_rows
    polys = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))
    for f, poly, row in zip(feats, polys, table.to_pylist(), strict=True):
        assert f["type"] == "Feature"
        assert f["properties"]["objectType"] == "detection"
        assert f["geometry"]["type"] == "Polygon"
        np.testing.assert_array_equal(np.asarray(f["geometry"]["coordinates"][0]),
                                      shapely.get_coordinates(poly.exterior))
        m = f["properties"]["measurements"]
        assert m["nucleus_id"] == row["nucleus_id"]
        assert m["area_um2"] == row["area_um2"]
        assert m["at_halo_edge"] == int(row["at_halo_edge"])
        assert all(isinstance(v, (int, float)) or v is None for v in m.values())


def test_sample_result_round_trips(result_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(result_dir / "nuclei.parquet")
    out = tmp_path / "n.geojson"
    n = export_qupath(result_dir / "nuclei.parquet", out, batch_rows=37)  # many batches
    assert n == table.num_rows > 50
    _check_features(json.loads(out.read_text()), table)


def test_classes_nan_holes_and_gzip(tmp_path: Path) -> None:
    outer = [(0, 0), (10.25, 0), (10.25, 10), (0, 10), (0, 0)]
    hole = [(2, 2), (4, 2), (4, 4), (2, 2)]
    polys = [shapely.Polygon(outer, [hole]), shapely.box(100.5, 200.5, 103.5, 207.125)]
    table = pa.table({
        "geometry": shapely.to_wkb(polys),
        "class_name": pa.array(["neoplastic", None]),
        "score": pa.array([float("nan"), 1 / 3], pa.float64()),
    })
    src = tmp_path / "t.parquet"
    pq.write_table(table, src)
    out = tmp_path / "t.geojson.gz"
    assert export_qupath(src, out, compress=True, object_type="cell") == 2
    feats = json.loads(gzip.decompress(out.read_bytes()))["features"]
    assert feats[0]["properties"]["classification"] == {"name": "neoplastic",
                                                        "color": list(class_colour("neoplastic"))}
    assert "classification" not in feats[1]["properties"]
    assert feats[0]["properties"]["objectType"] == "cell"
    assert feats[0]["properties"]["measurements"]["score"] is None
    assert feats[1]["properties"]["measurements"]["score"] == 1 / 3
    assert len(feats[0]["geometry"]["coordinates"]) == 2  # the hole survives
    assert shapely.from_geojson(json.dumps(feats[1]["geometry"])).equals_exact(polys[1], 0)


def test_empty_table(tmp_path: Path) -> None:
    src = tmp_path / "e.parquet"
    pq.write_table(pa.table({"geometry": pa.array([], pa.binary())}), src)
    assert export_qupath(src, tmp_path / "e.geojson") == 0
    assert json.loads((tmp_path / "e.geojson").read_text())["features"] == []


def test_cli(result_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.geojson"
    res = CliRunner().invoke(main, ["export", "qupath", str(result_dir), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["features"]) == pq.read_metadata(result_dir / "nuclei.parquet").num_rows
    bad = CliRunner().invoke(main, ["export", "qupath", str(tmp_path)])
    assert bad.exit_code == 2
