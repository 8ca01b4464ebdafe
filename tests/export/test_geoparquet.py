"""GeoParquet writer: ring input gives the same bytes and table as shapely; row groups; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.export.geoparquet import (
    NucleusTableWriter,
    PolygonRings,
    nucleus_schema,
    polygons_from_rings,
)


def _random_polygons(n: int, seed: int) -> np.ndarray:
    """Star-shaped polygons of 4..40 vertices (odd coordinates), a few with a hole."""
    rng = np.random.default_rng(seed)
    polys = []
    for i in range(n):
        k = int(rng.integers(3, 40))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(5, 10, k)
        cx, cy = rng.uniform(-100, 5e4, 2)
        shell = np.c_[cx + r * np.cos(ang), cy + r * np.sin(ang)]
        holes = [np.c_[cx + np.array([0, 1, 1]), cy + np.array([0, 0, 1])]] if i % 7 == 3 else []
        polys.append(shapely.Polygon(shell, holes))
    return np.array(polys, dtype=object)


def _columns(geometry: object, n: int, start: int) -> dict[str, object]:
    schema = nucleus_schema(classes=False)
    rng = np.random.default_rng(start)
    cols: dict[str, object] = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            cols[f.name] = rng.random(n)
        elif pa.types.is_integer(f.type):
            cols[f.name] = np.arange(start, start + n)
    cols.update(slide_id=pa.array(["s"] * n), at_halo_edge=np.arange(n) % 2 == 0, geometry=geometry)
    return cols


def test_rings_give_shapely_wkb_and_bounds() -> None:
    polys = _random_polygons(200, 0)
    rings = PolygonRings.from_shapely(polys)
    assert rings.polygon_offsets is not None and len(rings) == 200
    expected = shapely.to_wkb(polys, output_dimension=2, byte_order=1, flavor="iso")
    assert rings.to_wkb().to_pylist() == list(expected)
    np.testing.assert_array_equal(rings.bounds(), shapely.bounds(polys))
    order = np.random.default_rng(1).permutation(200)
    assert rings.take(order).to_wkb().to_pylist() == list(expected[order])


def test_single_ring_layout_matches_pipeline_polygons() -> None:
    polys = _random_polygons(50, 2)
    ext = shapely.get_exterior_ring(polys)
    xy, idx = shapely.get_coordinates(ext, return_index=True)
    offsets = np.searchsorted(idx, np.arange(51)).astype(np.int64)
    rings = PolygonRings(xy, offsets)
    ref = polygons_from_rings(xy, offsets)
    assert rings.to_wkb().to_pylist() == list(shapely.to_wkb(ref, output_dimension=2, flavor="iso"))
    np.testing.assert_array_equal(rings.bounds(), shapely.bounds(ref))


def test_writer_rings_equal_shapely_and_a_plain_table(tmp_path: Path) -> None:
    polys = _random_polygons(700, 3)
    paths = {k: tmp_path / f"{k}.parquet" for k in ("rings", "shapely")}
    for kind, path in paths.items():
        writer = NucleusTableWriter(path, row_group_rows=256)
        for start in range(0, 700, 97):  # uneven appends
            chunk = polys[start : start + 97]
            geom = PolygonRings.from_shapely(chunk) if kind == "rings" else chunk
            writer.append(_columns(geom, len(chunk), start))
        writer.close()
        assert writer.rows_written == 700
    a, b = (pq.read_table(p) for p in paths.values())
    assert a.equals(b, check_metadata=True)
    meta = pq.ParquetFile(paths["rings"]).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [256, 256, 188]
    stats = {
        meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).is_stats_set
        for i in range(meta.num_columns)
    }
    assert stats["bbox.xmin"] and stats["nucleus_id"] and not stats["geometry"]
    # A straightforward reference: one from_pydict table from shapely.
    cols = _columns(polys, 700, 0)
    cols["nucleus_id"] = np.concatenate(
        [np.arange(s, s + len(polys[s : s + 97])) for s in range(0, 700, 97)]
    )
    bounds = shapely.bounds(polys)
    ref = {f.name: cols.get(f.name) for f in a.schema}
    ref["geometry"] = shapely.to_wkb(polys, output_dimension=2, byte_order=1, flavor="iso")
    ref["bbox"] = [
        dict(zip(("xmin", "ymin", "xmax", "ymax"), map(float, r), strict=True)) for r in bounds
    ]
    for name in ("geometry", "bbox", "nucleus_id"):
        assert a[name].to_pylist() == pa.array(ref[name], a.schema.field(name).type).to_pylist()
    geo = json.loads(a.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["crs"] is None and geo["version"] == "1.1.0"


@pytest.mark.parametrize(
    ("xy", "offsets"),
    [
        (np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]]), np.array([0, 4])),  # open ring
        (np.array([[0, 0], [1, 0], [0, 0.0]]), np.array([0, 3])),  # 3 vertices
        (np.zeros((4, 2)), np.array([0, 5])),  # offsets past the end
    ],
)
def test_bad_rings_raise(xy: np.ndarray, offsets: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        PolygonRings(xy, offsets)


def test_failed_write_surfaces(tmp_path: Path) -> None:
    writer = NucleusTableWriter(tmp_path / "x.parquet", row_group_rows=4)
    cols = _columns(_random_polygons(3, 4), 3, 0)
    cols["nucleus_id"] = np.array(["a", "b", "c"], dtype=object)  # not int64
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError)):
        writer.append(cols)
    writer.close()
