"""Prompt files: every format, grouping by object_id, and bad rows named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.prompts.parse import read_prompts


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.csv"
    path.write_text(text)
    return path


def test_csv_boxes_and_points(tmp_path: Path) -> None:
    p = read_prompts(_csv(tmp_path, "xmin,ymin,xmax,ymax,x,y\n1,2,11,12,,\n,,,,5.5,6.5\n"))
    assert len(p) == 2
    assert p.prompt_id.tolist() == [0, 1]
    np.testing.assert_array_equal(p.box_xyxy[0], [1, 2, 11, 12])
    assert np.isnan(p.box_xyxy[1]).all()
    np.testing.assert_array_equal(p.point_xy, [[5.5, 6.5]])
    assert p.point_label.tolist() == [1] and p.point_prompt.tolist() == [1]
    np.testing.assert_allclose(p.centre_xy(), [[6, 7], [5.5, 6.5]])


def test_object_id_groups_points_and_box(tmp_path: Path) -> None:
    text = (
        "x,y,label,object_id,xmin,ymin,xmax,ymax\n"
        "10,10,1,7,,,,\n12,14,0,7,,,,\n,,,3,0,0,4,4\n30,30,1,3,,,,\n"
    )
    p = read_prompts(_csv(tmp_path, text))
    assert p.prompt_id.tolist() == [3, 7]  # sorted by id
    assert p.has_box.tolist() == [True, False]
    pts, labels = p.points_of(1)
    np.testing.assert_array_equal(pts, [[10, 10], [12, 14]])
    assert labels.tolist() == [1, 0]
    np.testing.assert_array_equal(p.extent_xyxy()[0], [0, 0, 30, 30])


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pd.DataFrame({"xmin": [1.0], "ymin": [2.0], "xmax": [3.0], "ymax": [4.0]}).to_parquet(path)
    assert read_prompts(path).box_xyxy.tolist() == [[1, 2, 3, 4]]


def test_qupath_geojson(tmp_path: Path) -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[0, 0], [10, 0], [10, 5], [0, 5], [0, 0]]],
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": [[20, 20], [30, 31]]},
            },
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [40, 41]}},
        ],
    }
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(doc))
    p = read_prompts(path)
    assert len(p) == 4
    np.testing.assert_array_equal(p.box_xyxy[0], [0, 0, 10, 5])
    np.testing.assert_array_equal(p.point_xy, [[20, 20], [30, 31], [40, 41]])
    assert p.source_row.tolist() == [1, 2, 2, 3]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n", "expected xmin"),
        ("xmin,ymin,xmax,ymax\n1,2,3,4\n1,2,x,4\n", "row 2: xmax = 'x' is not a number"),
        ("xmin,ymin,xmax,ymax\n1,2,3,4\n1,2,,4\n", "row 2: box is incomplete"),
        ("xmin,ymin,xmax,ymax\n5,2,3,4\n", "row 1: box .* is empty"),
        ("x,y,label\n1,2,1\n3,4,2\n", "row 2: label = 2.0"),
        ("x,y,label\n1,2,0\n", "row 1: object 0 has only negative points"),
        ("x,y,object_id\n1,2,a\n", "row 1: object_id = 'a'"),
        ("xmin,ymin,xmax,ymax,x,y\n1,2,3,4,,\n,,,,,\n", "row 2: neither a box nor a point"),
        (
            "xmin,ymin,xmax,ymax,object_id\n1,2,3,4,1\n1,2,5,6,1\n",
            "row 2: object 1 already has a box",
        ),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        read_prompts(_csv(tmp_path, text))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_prompts(tmp_path / "none.csv")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(ConfigError, match="suffix"):
        read_prompts(tmp_path / "p.txt")
    bad = tmp_path / "b.geojson"
    bad.write_text(
        json.dumps([{"type": "Feature", "geometry": {"type": "LineString", "coordinates": []}}])
    )
    with pytest.raises(ConfigError, match="feature 1: geometry type 'LineString'"):
        read_prompts(bad)


def test_nucleus_table_parquet_gives_boxes(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bbox = pa.array(
        [{"xmin": 1.0, "ymin": 2.0, "xmax": 5.0, "ymax": 6.0}],
        pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")]),
    )
    path = tmp_path / "nuclei.parquet"
    pq.write_table(pa.table({"nucleus_id": pa.array([42], pa.int64()), "bbox": bbox}), path)
    p = read_prompts(path)
    assert p.prompt_id.tolist() == [42]
    assert p.box_xyxy.tolist() == [[1, 2, 5, 6]]
