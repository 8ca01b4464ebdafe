"""The nucleus table as GeoParquet 1.1, written incrementally in row groups.

Geometry is WKB polygons in level-0 px with ``"crs": null`` (an undefined, pixel CRS; omitting crs
would mean longitude/latitude), plus a ``bbox`` covering column so readers can filter by box
(stack.md P10). Rows are appended block by block and flushed every ``row_group_rows``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from pathosam_wsi.postprocess.features import FEATURE_COLUMNS

__all__ = ["NucleusTableWriter", "nucleus_schema", "polygons_from_rings"]

_BBOX = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])


def nucleus_schema(classes: bool, extra: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """Arrow schema of the nucleus table, with GeoParquet metadata."""
    fields = [
        ("nucleus_id", pa.int64()),
        ("slide_id", pa.string()),
        ("geometry", pa.binary()),
        ("bbox", _BBOX),
        ("centroid_x_l0", pa.float64()),
        ("centroid_y_l0", pa.float64()),
        ("centroid_x_um", pa.float64()),
        ("centroid_y_um", pa.float64()),
        ("area_px", pa.int64()),
        ("area_um2", pa.float64()),
        ("perimeter_um", pa.float64()),
        ("fg_prob_mean", pa.float32()),
        ("tile_id", pa.int64()),
        ("at_halo_edge", pa.bool_()),
    ]
    if classes:
        fields += [("class_id", pa.int16()), ("class_name", pa.string()), ("class_prob", pa.float32())]
    fields += [(name, pa.float32()) for name in FEATURE_COLUMNS]
    fields += list((extra or {}).items())
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": ["Polygon"],
                "crs": None,
                "covering": {
                    "bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}
                },
            }
        },
    }
    return pa.schema(fields, metadata={b"geo": json.dumps(geo).encode()})


def polygons_from_rings(
    ring_xy: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.object_]:
    """(n,) shapely Polygons from concatenated closed rings (ring i = xy[offsets[i]:offsets[i+1]])."""
    n = offsets.size - 1
    if n == 0:
        return np.empty(0, dtype=object)
    indices = np.repeat(np.arange(n), np.diff(offsets))
    rings = shapely.linearrings(ring_xy, indices=indices)
    return shapely.polygons(rings)


class NucleusTableWriter:
    """Append nucleus rows and flush them to ``path`` in row groups."""

    def __init__(
        self,
        path: Path,
        classes: bool = False,
        extra: dict[str, pa.DataType] | None = None,
        row_group_rows: int = 65_536,
    ) -> None:
        self.schema = nucleus_schema(classes, extra)
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.row_group_rows = row_group_rows
        self.rows_written = 0

    def append(self, columns: dict[str, Any]) -> None:
        """Append rows; ``columns`` maps every schema field to an array (``geometry``: shapely)."""
        n = len(columns["nucleus_id"])
        if n == 0:
            return
        geoms = columns["geometry"]
        bounds = shapely.bounds(geoms)
        data = dict(columns)
        data["geometry"] = shapely.to_wkb(geoms, output_dimension=2, byte_order=1, flavor="iso")
        data["bbox"] = pa.StructArray.from_arrays(
            [pa.array(bounds[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
        )
        table = pa.Table.from_pydict(
            {f.name: data[f.name] for f in self.schema}, schema=self.schema
        )
        self._pending.append(table)
        self._pending_rows += n
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self._writer.write_table(table, row_group_size=self.row_group_rows)
            self.rows_written += table.num_rows
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        """Flush the last rows and close the file."""
        self._flush()
        self._writer.close()
