"""QuPath GeoJSON: parses back, has QuPath's fields, one feature per row, exact coordinates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
import shapely
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.export.qupath import class_colour, export_qupath, feature_texts


def _check_features(doc: dict, table: pa.Table) -> None:
    assert doc["type"] == "FeatureCollection"
    feats = doc["features"]
    assert len(feats) == table.num_rows
    polys = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))
    for f, poly, row in zip(feats, polys, table.to_pylist(), strict=True):
        assert f["type"] == "Feature"
        assert f["properties"]["objectType"] == "detection"
        assert f["geometry"]["type"] == "Polygon"
        np.testing.assert_array_equal(
            np.asarray(f["geometry"]["coordinates"][0]), shapely.get_coordinates(poly.exterior)
        )
        m = f["properties"]["measurements"]
        assert m["nucleus_id"] == row["nucleus_id"]
        assert m["area_um2"] == row["area_um2"]
        assert m["at_halo_edge"] == int(row["at_halo_edge"])
        assert all(
            isinstance(v, (int, float)) or v in ("NaN", "Infinity", "-Infinity") for v in m.values()
        )


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
    table = pa.table(
        {
            "geometry": shapely.to_wkb(polys),
            "class_name": pa.array(["neoplastic", None]),
            "score": pa.array([float("nan"), 1 / 3], pa.float64()),
        }
    )
    src = tmp_path / "t.parquet"
    pq.write_table(table, src)
    out = tmp_path / "t.geojson.gz"
    assert export_qupath(src, out, compress=True, object_type="cell") == 2
    feats = json.loads(gzip.decompress(out.read_bytes()))["features"]
    assert feats[0]["properties"]["classification"] == {
        "name": "neoplastic",
        "color": list(class_colour("neoplastic")),
    }
    assert "classification" not in feats[1]["properties"]
    assert feats[0]["properties"]["objectType"] == "cell"
    assert feats[0]["properties"]["measurements"]["score"] == "NaN"  # as QuPath writes it
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
    assert (
        len(json.loads(out.read_text())["features"])
        == pq.read_metadata(result_dir / "nuclei.parquet").num_rows
    )
    bad = CliRunner().invoke(main, ["export", "qupath", str(tmp_path)])
    assert bad.exit_code == 2


def _reference_feature(poly: shapely.Polygon, row: dict, schema: pa.Schema) -> dict:
    """One feature rendered the plain way: shapely mapping + json.dumps, per row."""
    measurements = {}
    for f in schema:
        if f.name in ("geometry", "class_name", "class_id", "bbox", "slide_id"):
            continue
        v = row[f.name]
        if pa.types.is_boolean(f.type):
            v = int(v)
        elif pa.types.is_float32(f.type):
            v = float(str(np.float32(v)))  # Arrow prints float32 as its shortest float32 text
        if v is None or (isinstance(v, float) and np.isnan(v)):
            v = "NaN"  # QuPath's own text for NaN, which is also its "missing" value
        elif isinstance(v, float) and np.isinf(v):
            v = "Infinity" if v > 0 else "-Infinity"
        measurements[f.name] = v
    props: dict = {"objectType": "detection"}
    if row["class_name"] is not None:
        props["classification"] = {
            "name": row["class_name"],
            "color": list(class_colour(row["class_name"])),
        }
    props["measurements"] = measurements
    doc = {"type": "Feature", "geometry": shapely.geometry.mapping(poly), "properties": props}
    return json.loads(json.dumps(doc))


def test_feature_texts_equal_a_json_dumps_rendering() -> None:
    rng = np.random.default_rng(7)
    ring = np.c_[rng.uniform(0, 1e5, 9), rng.uniform(0, 1e5, 9)]
    polys = [
        shapely.Polygon(np.r_[ring, ring[:1]]),  # arbitrary doubles
        shapely.box(0.5, 2.0, 3.25, -0.0),  # short decimals, a -0.0
        shapely.Polygon(
            [(0, 0), (9, 0), (9, 9), (0, 0)], [[(5, 1), (8, 1), (8, 4), (5, 1)]]
        ),  # hole
        shapely.box(1e-7, 123456789.123, 2e15, 3.0),
    ]
    wkb = list(shapely.to_wkb(polys, byte_order=1))
    wkb[3] = shapely.to_wkb(polys[3], byte_order=0)  # big-endian WKB takes the GEOS path
    batch = pa.record_batch(
        {
            "geometry": pa.array(wkb, pa.binary()),
            "class_name": pa.array(["neoplastic", None, "my class", "dead"]),
            "nucleus_id": pa.array([1, 2, 3, 2**40], pa.int64()),
            "area_um2": pa.array([1 / 3, float("nan"), float("inf"), -2.5e-12]),
            "perimeter_um": pa.array([-float("inf"), 1.0, None, 2.0]),
            "solidity": pa.array([0.1, 0.5, 1.0, 3e-8], pa.float32()),
            "class_id": pa.array([1, 0, 2, 3], pa.int16()),
            "at_halo_edge": pa.array([True, False, True, False]),
            "score": pa.array([None, 1.0, 2.0, 3.0]),
        }
    )
    texts = feature_texts(batch).to_pylist()
    assert all(t.startswith(',\n{"type":"Feature"') for t in texts)
    got = [json.loads(t[2:]) for t in texts]
    rows = batch.to_pylist()
    for g, poly, row in zip(got, polys, rows, strict=True):
        assert g == _reference_feature(poly, row, batch.schema)
    assert (
        "class_id" not in got[0]["properties"]["measurements"]
    )  # class columns are not measurements


def _wkb_ring(xy: list[tuple[float, float]]) -> bytes:
    """Little-endian WKB polygon with one ring, written by hand (shapely refuses < 4 points)."""
    head = np.array([1], "u1").tobytes() + np.array([3, 1, len(xy)], "<u4").tobytes()
    return head + np.asarray(xy, "<f8").tobytes()


def test_cells_carry_their_outline_as_nucleus_geometry(result_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.geojson"
    res = CliRunner().invoke(
        main, ["export", "qupath", str(result_dir), "-o", str(out), "--object-type", "cell"]
    )
    assert res.exit_code == 0, res.output
    feats = json.loads(out.read_text())["features"]
    assert len(feats) == pq.read_metadata(result_dir / "nuclei.parquet").num_rows
    for f in feats:
        assert f["properties"]["objectType"] == "cell"
        assert f["nucleusGeometry"] == f["geometry"]  # top level, beside geometry (QuPath)
    detections = json.loads(
        feature_texts(pq.read_table(result_dir / "nuclei.parquet").to_batches()[0]).to_pylist()[0][
            2:
        ]
    )
    assert "nucleusGeometry" not in detections


def test_non_finite_measurements_are_quPath_strings(tmp_path: Path) -> None:
    table = pa.table(
        {
            "geometry": shapely.to_wkb([shapely.box(0, 0, 4, 4)] * 5),
            "v": pa.array([float("nan"), float("inf"), -float("inf"), None, 1.5]),
            "n": pa.array([1, None, 3, 4, 5], pa.int64()),
        }
    )
    src = tmp_path / "t.parquet"
    pq.write_table(table, src)
    text = (tmp_path / "t.geojson").as_posix()
    export_qupath(src, Path(text))
    raw = Path(text).read_text()
    assert "null" not in raw and "NaN," not in raw  # strings, not bare tokens or nulls
    m = [f["properties"]["measurements"] for f in json.loads(raw)["features"]]
    assert [x["v"] for x in m] == ["NaN", "Infinity", "-Infinity", "NaN", 1.5]
    assert [x["n"] for x in m] == [1, "NaN", 3, 4, 5]


def test_unusable_rows_are_skipped_with_one_warning(tmp_path: Path) -> None:
    nan = float("nan")
    good = [shapely.box(0, 0, 4, 4), shapely.box(10, 10, 14, 15)]
    hole_ok = shapely.Polygon([(0, 0), (9, 0), (9, 9), (0, 0)], [[(5, 1), (8, 1), (8, 4), (5, 1)]])
    rows = [
        (shapely.to_wkb(good[0]), 1),
        (None, 2),  # null geometry
        (_wkb_ring([(0, 0), (nan, 0), (1, 1), (0, 0)]), 3),  # NaN vertex, fast path
        (shapely.to_wkb(hole_ok), 4),
        (shapely.to_wkb(shapely.Polygon()), 5),  # empty
        (b"not wkb", 6),  # unreadable
        (_wkb_ring([(0, 0), (1, 0), (0, 0)]), 7),  # ring of 3 points (JTS refuses it)
        (
            shapely.to_wkb(
                shapely.Polygon(
                    [(0, 0), (9, 0), (9, 9), (0, 0)], [[(5, 1), (8, float("inf")), (8, 4), (5, 1)]]
                )
            ),
            8,
        ),  # non-finite vertex in a hole, GEOS path
        (shapely.to_wkb(good[1]), 9),
    ]
    src = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table(
            {
                "geometry": pa.array([r[0] for r in rows], pa.binary()),
                "nucleus_id": pa.array([r[1] for r in rows], pa.int64()),
            }
        ),
        src,
    )
    out = tmp_path / "bad.geojson"
    with pytest.warns(PathoSamWarning, match=r"6 row\(s\) without a usable outline") as record:
        n = export_qupath(src, out, batch_rows=4, object_type="cell")  # bad rows in 3 batches
    assert len([w for w in record if issubclass(w.category, PathoSamWarning)]) == 1
    feats = json.loads(out.read_text())["features"]
    assert n == len(feats) == 3
    assert [f["properties"]["measurements"]["nucleus_id"] for f in feats] == [1, 4, 9]
    assert shapely.from_geojson(json.dumps(feats[1]["nucleusGeometry"])).equals(hole_ok)


def test_regions_partition_the_nuclei(result_dir: Path, tmp_path: Path) -> None:
    table = pq.read_table(result_dir / "nuclei.parquet")
    w = float(pa.compute.max(table["centroid_x_l0"]).as_py()) + 1
    h = float(pa.compute.max(table["centroid_y_l0"]).as_py()) + 1
    ids: list[int] = []
    for x, y in ((0, 0), (w / 2, 0), (0, h / 2), (w / 2, h / 2)):
        out = tmp_path / f"r{x}_{y}.geojson"
        export_qupath(result_dir / "nuclei.parquet", out, region_xywh_l0=(x, y, w / 2, h / 2))
        feats = json.loads(out.read_text())["features"]
        for f in feats:
            m = f["properties"]["measurements"]
            assert x <= m["centroid_x_l0"] < x + w / 2 and y <= m["centroid_y_l0"] < y + h / 2
        ids += [f["properties"]["measurements"]["nucleus_id"] for f in feats]
    assert sorted(ids) == sorted(table["nucleus_id"].to_pylist())  # each nucleus exactly once


def test_max_objects_stops_and_warns(result_dir: Path, tmp_path: Path) -> None:
    total = pq.read_metadata(result_dir / "nuclei.parquet").num_rows
    out = tmp_path / "m.geojson"
    res = CliRunner().invoke(
        main, ["export", "qupath", str(result_dir), "-o", str(out), "--max-objects", "10"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("warning: ") and f" {total - 10} more nuclei " in res.output
    feats = json.loads(out.read_text())["features"]
    ids = pq.read_table(result_dir / "nuclei.parquet", columns=["nucleus_id"])["nucleus_id"]
    assert [f["properties"]["measurements"]["nucleus_id"] for f in feats] == ids.to_pylist()[:10]
    bad = CliRunner().invoke(
        main, ["export", "qupath", str(result_dir), "--region", "0", "0", "-5", "10"]
    )
    assert bad.exit_code == 2 and bad.output.startswith("error: --region")


def test_gzip_help_says_quPath_reads_it() -> None:
    res = CliRunner().invoke(main, ["export", "qupath", "--help"])
    assert res.exit_code == 0
    assert "gunzip" not in res.output and "QuPath imports it as it is" in " ".join(
        res.output.split()
    )
