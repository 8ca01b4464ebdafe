"""The nucleus table as GeoParquet 1.1, written incrementally in row groups.

Geometry is WKB polygons in level-0 px with ``"crs": null`` (an undefined, pixel CRS; omitting crs
would mean longitude/latitude), plus a ``bbox`` covering column so readers can filter by box
(docs/stack.md P10). Rows are appended block by block and written in row groups of
``row_group_rows``.

Speed: polygons arrive as concatenated rings (``PolygonRings``, the pipeline's outline arrays) and
become WKB with a few Arrow/numpy passes, no GEOS objects; Parquet encoding and zstd run in a
background thread, overlapping the caller's work on the next rows.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS

__all__ = ["NucleusTableWriter", "PolygonRings", "nucleus_schema", "polygons_from_rings"]

_BBOX = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
# ISO WKB, little endian (byte order 1), geometry type 3 = Polygon (OGC 06-103r4 §8.2).
_POLY_HEADER = np.dtype([("order", "u1"), ("type", "<u4"), ("nrings", "<u4")])
_EMPTY = pa.scalar(b"", pa.large_binary())


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
        fields += [
            ("class_id", pa.int16()),
            ("class_name", pa.string()),
            ("class_prob", pa.float32()),
        ]
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
                "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}},
            }
        },
    }
    return pa.schema(fields, metadata={b"geo": json.dumps(geo).encode()})


def polygons_from_rings(
    ring_xy: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.object_]:
    """(n,) shapely Polygons from closed rings (ring i: xy[offsets[i]:offsets[i+1]])."""
    n = offsets.size - 1
    if n == 0:
        return np.empty(0, dtype=object)
    indices = np.repeat(np.arange(n), np.diff(offsets))
    rings = shapely.linearrings(ring_xy, indices=indices)
    return shapely.polygons(rings)


@dataclass(frozen=True)
class PolygonRings:
    """Polygons as concatenated closed rings, the layout the pipeline produces.

    Parameters
    ----------
    ring_xy : (P, 2) float64
        Vertices, x then y (level-0 px in the nucleus table); every ring closed (first vertex
        repeated last) with at least 4 vertices.
    ring_offsets : (R + 1,) int64
        Ring i is ``ring_xy[ring_offsets[i]:ring_offsets[i + 1]]``.
    polygon_offsets : (n + 1,) int64, optional
        Polygon j has rings ``polygon_offsets[j]:polygon_offsets[j + 1]``, the exterior first and
        at least one; ``None`` means one ring (the exterior) per polygon.
    """

    ring_xy: npt.NDArray[np.float64]
    ring_offsets: npt.NDArray[np.int64]
    polygon_offsets: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        xy, off = self.ring_xy, self.ring_offsets
        counts = np.diff(off)
        if xy.ndim != 2 or xy.shape[1] != 2 or off.size == 0 or off[0] != 0 or off[-1] != len(xy):
            raise ConfigError(
                f"rings of shape {xy.shape} with offsets ending {off[-1:]!r} are inconsistent; "
                "expected (P, 2) vertices and offsets from 0 to P"
            )
        first, last = xy[off[:-1][counts > 0]], xy[off[1:][counts > 0] - 1]
        if np.any(counts < 4) or not np.array_equal(first, last):
            raise ConfigError(
                f"{int(np.sum(counts < 4))} rings with < 4 vertices or open rings; "
                "expected closed rings (first vertex repeated last) of >= 4 vertices"
            )
        poly = self.polygon_offsets
        if poly is not None and (
            poly[0] != 0 or poly[-1] != off.size - 1 or np.any(np.diff(poly) < 1)
        ):
            raise ConfigError(
                "polygon_offsets must run from 0 to the ring count with >= 1 ring each"
            )

    def __len__(self) -> int:
        """Number of polygons."""
        n_rings = self.ring_offsets.size - 1
        return n_rings if self.polygon_offsets is None else self.polygon_offsets.size - 1

    @classmethod
    def from_shapely(cls, polygons: npt.NDArray[np.object_]) -> PolygonRings:
        """Rings of (n,) shapely Polygons (exterior then interiors, as stored)."""
        ring_xy, ring_idx = shapely.get_coordinates(shapely.get_rings(polygons), return_index=True)
        n_rings = shapely.get_num_interior_rings(polygons) + 1
        poly_off = np.concatenate([[0], np.cumsum(n_rings)]).astype(np.int64)
        ring_off = np.searchsorted(ring_idx, np.arange(poly_off[-1] + 1)).astype(np.int64)
        single = bool(np.all(n_rings == 1))
        return cls(ring_xy, ring_off, None if single else poly_off)

    def take(self, indices: npt.NDArray[np.int64]) -> PolygonRings:
        """The polygons at ``indices`` ((k,) int), in that order."""
        poly = self.polygon_offsets
        if poly is None:
            rings = np.asarray(indices, np.int64)
        else:
            rings = _ragged_index(poly, indices)
            poly = np.concatenate([[0], np.cumsum(np.diff(poly)[indices])]).astype(np.int64)
        xy = self.ring_xy[_ragged_index(self.ring_offsets, rings)]
        ring_off = np.concatenate([[0], np.cumsum(np.diff(self.ring_offsets)[rings])]).astype(
            np.int64
        )
        return PolygonRings(xy, ring_off, poly)

    def bounds(self) -> npt.NDArray[np.float64]:
        """(n, 4) float64 xmin, ymin, xmax, ymax of each exterior ring (GEOS's polygon envelope)."""
        poly, off, xy = self.polygon_offsets, self.ring_offsets, self.ring_xy
        if poly is not None:  # keep only the exteriors
            ext = poly[:-1]
            xy = xy[_ragged_index(off, ext)]
            off = np.concatenate([[0], np.cumsum(np.diff(off)[ext])]).astype(np.int64)
        if off.size < 2:
            return np.empty((0, 4))
        lo = np.minimum.reduceat(xy, off[:-1], axis=0)  # (n, 2)
        hi = np.maximum.reduceat(xy, off[:-1], axis=0)
        return np.concatenate([lo, hi], axis=1)

    def to_wkb(self) -> pa.Array:
        """(n,) ISO little-endian 2D WKB, byte for byte ``shapely.to_wkb(..., flavor="iso")``."""
        xy = np.ascontiguousarray(self.ring_xy, dtype="<f8")
        n_rings = self.ring_offsets.size - 1
        counts = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(4), n_rings, [None, pa.py_buffer(np.diff(self.ring_offsets).astype("<u4"))]
        )
        coords = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(),
            n_rings,
            [None, pa.py_buffer(self.ring_offsets * 16), pa.py_buffer(xy)],
        )
        rings = pc.binary_join_element_wise(counts.cast(pa.large_binary()), coords, _EMPTY)
        poly = self.polygon_offsets
        if poly is not None:
            rings = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(poly), rings), _EMPTY)
        header = np.empty(len(self), _POLY_HEADER)
        header["order"], header["type"] = 1, 3
        header["nrings"] = 1 if poly is None else np.diff(poly)
        head = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(9), len(self), [None, pa.py_buffer(header)]
        )
        wkb = pc.binary_join_element_wise(head.cast(pa.large_binary()), rings, _EMPTY)
        return wkb.cast(pa.binary())


def _ragged_index(
    offsets: npt.NDArray[np.int64], which: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Element indices of the segments ``which`` of a ragged array (``offsets``), concatenated."""
    starts, lengths = offsets[:-1][which], np.diff(offsets)[which]
    seg_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - seg_start, lengths)


def _geometry_columns(geometry: Any) -> tuple[pa.Array, pa.StructArray]:
    """WKB and bbox columns of ``PolygonRings`` or an (n,) array of shapely Polygons."""
    if isinstance(geometry, PolygonRings):
        wkb, bounds = geometry.to_wkb(), geometry.bounds()
    else:
        wkb = pa.array(
            shapely.to_wkb(geometry, output_dimension=2, byte_order=1, flavor="iso"), pa.binary()
        )
        bounds = shapely.bounds(geometry)
    bbox = pa.StructArray.from_arrays(
        [pa.array(bounds[:, i]) for i in range(4)], names=["xmin", "ymin", "xmax", "ymax"]
    )
    return wkb, bbox


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """Parquet column paths (``bbox.xmin`` for struct children) of a flat-or-struct schema."""
    return [
        f"{f.name}.{child.name}" if pa.types.is_struct(f.type) else f.name
        for f in schema
        for child in (f.type.fields if pa.types.is_struct(f.type) else [f])
    ]


class NucleusTableWriter:
    """Append nucleus rows and write them to ``path`` in row groups of ``row_group_rows``.

    Row groups are encoded and compressed in one background thread while the caller prepares
    the next rows; at most one row group is in flight, so memory stays at about two row groups.
    """

    def __init__(
        self,
        path: Path,
        classes: bool = False,
        extra: dict[str, pa.DataType] | None = None,
        row_group_rows: int = 65_536,
    ) -> None:
        self.schema = nucleus_schema(classes, extra)
        strings = [f.name for f in self.schema if pa.types.is_string(f.type)]
        self._writer = pq.ParquetWriter(
            str(path),
            self.schema,
            compression="zstd",
            # Dictionaries only pay off for the few-valued strings: on floats they are built,
            # overflow and are dropped, costing time and bytes. WKB min/max statistics are useless.
            use_dictionary=strings,
            write_statistics=[c for c in _leaf_paths(self.schema) if c != "geometry"],
        )
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="geoparquet")
        self._in_flight: Future[None] | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.row_group_rows = row_group_rows
        self.rows_written = 0

    def append(self, columns: dict[str, Any]) -> None:
        """Append rows.

        Parameters
        ----------
        columns : dict
            Every schema field -> (n,) array (numpy or Arrow); ``geometry`` is ``PolygonRings``
            (level-0 px) or an (n,) array of shapely Polygons.
        """
        n = len(columns["geometry"])
        if n == 0:
            return
        wkb, bbox = _geometry_columns(columns["geometry"])
        arrays = [
            wkb
            if f.name == "geometry"
            else bbox
            if f.name == "bbox"
            else pa.array(columns[f.name], f.type)
            for f in self.schema
        ]
        self._pending.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self._pending_rows += n
        if self._pending_rows >= self.row_group_rows:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Hand every full row group (and the rest when ``final``) to the writing thread."""
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        full = table.num_rows if final else table.num_rows - table.num_rows % self.row_group_rows
        rest = table.slice(full)
        self._pending, self._pending_rows = rest.to_batches(), rest.num_rows
        if full:
            self._wait()
            self._in_flight = self._pool.submit(self._write, table.slice(0, full))

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=self.row_group_rows)
        self.rows_written += table.num_rows

    def _wait(self) -> None:
        if self._in_flight is not None:
            self._in_flight.result()  # re-raises a failed write here
            self._in_flight = None

    def close(self) -> None:
        """Write the last rows and close the file."""
        try:
            if self._pending_rows:
                self._flush(final=True)
            self._wait()
        finally:
            self._pool.shutdown()
            self._writer.close()
