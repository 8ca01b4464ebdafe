"""The nucleus table as a QuPath GeoJSON FeatureCollection, streamed row group by row group.

Each row becomes one QuPath object (QuPath >= 0.4 GeoJSON import: ``properties.objectType``,
optional ``properties.classification`` with ``name`` and ``color`` [r, g, b], and
``properties.measurements`` as a name -> number map). As QuPath's own reader and writer do
(qupath-core 0.6 ``io/QuPathTypeAdapters.java``): a cell's nucleus is a top-level
``nucleusGeometry`` beside ``geometry``; non-finite measurements are the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (QuPath drops a ``null`` with a warning per value). One row
without a usable outline would abort QuPath's whole import, so such rows (null, empty or unreadable
geometry, a non-finite vertex, a ring of < 4 points) are skipped and counted in one warning.
Coordinates are level-0 px with the origin at the top-left of the full-resolution image, which is
QuPath's own frame, so no transform is applied. Per-row work is vectorised: shapely/GEOS writes
the geometry JSON and Arrow formats the numbers and joins the strings, so the feature text of one
batch is one contiguous Arrow buffer.
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

from pathosam_wsi.errors import ConfigError, PathoSamWarning

__all__ = ["CLASS_COLOURS", "class_colour", "default_output", "export_qupath", "feature_texts"]

log = logging.getLogger(__name__)

ObjectType = Literal["detection", "cell", "annotation"]

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "neoplastic": (220, 40, 40),
    "inflammatory": (40, 170, 60),
    "connective": (40, 90, 220),
    "dead": (230, 200, 30),
    "epithelial": (230, 120, 20),
    "background": (128, 128, 128),
}
"""Fixed colours of the PanNuke classes (other names get a colour from a hash of the name)."""

_NOT_MEASUREMENTS = frozenset({"geometry", "bbox", "slide_id", "class_name", "class_id"})


def class_colour(name: str) -> tuple[int, int, int]:
    """RGB colour of a class name: fixed for PanNuke classes, else stable from the name."""
    if name in CLASS_COLOURS:
        return CLASS_COLOURS[name]
    h = sum((i + 1) * ord(c) for i, c in enumerate(name)) * 2654435761 % (1 << 24)
    return (64 + (h >> 16) % 192, 64 + (h >> 8) % 192, 64 + h % 192)


def _measurement_columns(schema: pa.Schema) -> list[str]:
    """Numeric and boolean columns, in table order (they become QuPath measurements)."""
    return [
        f.name
        for f in schema
        if f.name not in _NOT_MEASUREMENTS
        and (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_boolean(f.type)
        )
    ]


def _number_text(col: pa.Array) -> pa.Array:
    """JSON text of a numeric column; NaN, +-inf as QuPath's strings; null (missing) as "NaN"."""
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.int8())
    text = pc.cast(col, pa.string())
    if pa.types.is_floating(col.type):
        special = pc.if_else(
            pc.is_nan(col),
            pa.scalar('"NaN"'),
            pc.if_else(pc.greater(col, 0), pa.scalar('"Infinity"'), pa.scalar('"-Infinity"')),
        )
        text = pc.if_else(pc.is_finite(col), text, special)
    return pc.fill_null(text, '"NaN"')  # QuPath's "missing" measurement is NaN


def _classification_text(names: pa.Array) -> pa.Array:
    """``,"classification":{...}`` per row ('' where the class name is null)."""
    unique = pc.unique(names).drop_null()
    texts = [
        ',"classification":'
        + json.dumps({"name": n, "color": list(class_colour(n))}, separators=(",", ":"))
        for n in unique.to_pylist()
    ]
    idx = pc.index_in(names, value_set=unique)
    return pc.fill_null(pc.take(pa.array(texts, pa.string()), idx), "")


def _wkb_header(geometry: pa.Array) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Which rows are plain polygons (little-endian ISO WKB, one ring), and their vertex counts."""
    n = len(geometry)
    kind = np.int64 if pa.types.is_large_binary(geometry.type) else np.int32
    bufs = geometry.buffers()
    offsets = np.frombuffer(bufs[1], kind, n + 1, geometry.offset * np.dtype(kind).itemsize)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    ok = lengths >= 13
    if geometry.null_count:
        ok &= geometry.is_valid().to_numpy(zero_copy_only=False)
    head = np.zeros((n, 13), np.uint8)
    starts = np.asarray(offsets[:-1], np.int64)[ok]
    head[ok] = data[starts[:, None] + np.arange(13)]
    words = head[:, 1:].copy().view("<u4")  # (n, 3): type, number of rings, vertices of ring 0
    n_xy = words[:, 2].astype(np.int64)
    plain = (
        ok
        & (head[:, 0] == 1)
        & (words[:, 0] == 3)
        & (words[:, 1] == 1)
        & (lengths == 13 + 16 * n_xy)
    )
    return plain, np.where(plain, n_xy, 0)


def _plain_coordinates(
    geometry: pa.Array, plain: npt.NDArray[np.bool_], n_xy: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """(2V,) float64 x, y, x, ... of the plain rows (rows with non-finite ones drop out)."""
    kind = np.int64 if pa.types.is_large_binary(geometry.type) else np.int32
    bufs = geometry.buffers()
    offsets = np.frombuffer(
        bufs[1], kind, plain.size + 1, geometry.offset * np.dtype(kind).itemsize
    )
    # View the data as alternating (13-byte header, vertex bytes) values and take the second ones.
    split = np.empty(2 * plain.size + 1, kind)
    split[0::2], split[1::2] = offsets, np.minimum(offsets[:-1] + 13, offsets[1:])
    halves = pa.Array.from_buffers(
        geometry.type, 2 * plain.size, [None, pa.py_buffer(split), bufs[2]]
    )
    body = halves.take(pa.array(2 * np.flatnonzero(plain) + 1))
    xy = (
        np.frombuffer(body.buffers()[2], "<f8", 2 * int(n_xy[plain].sum()))
        if plain.any()
        else np.zeros(0)
    )
    finite = np.isfinite(xy)
    if finite.all():
        return plain, xy
    bad_point = ~(finite[0::2] & finite[1::2])
    starts = np.concatenate([[0], np.cumsum(n_xy[plain])[:-1]])
    bad = np.zeros_like(plain)
    bad[plain] = np.add.reduceat(bad_point, starts) > 0
    keep_xy = np.repeat(~bad[plain], 2 * n_xy[plain])
    return plain & ~bad, xy[keep_xy]


def _other_geometries(geometry: pa.Array, rows: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
    """Shapely geometries of the rows the fast path does not handle (None where unreadable)."""
    wkb = geometry.filter(pa.array(rows)).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):  # unreadable WKB is None here; _usable rejects it
        return np.asarray(shapely.from_wkb(wkb, on_invalid="ignore"), dtype=object)


def _usable(geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Geometries QuPath can import: present, not empty, every vertex finite."""
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    xy, index = shapely.get_coordinates(geoms[ok], return_index=True)
    bad = np.unique(index[~np.isfinite(xy).all(axis=1)])
    ok[np.flatnonzero(ok)[bad]] = False
    return np.asarray(ok, bool)


def _other_geometry_texts(geoms: npt.NDArray[np.object_]) -> pa.Array:
    """GEOS GeoJSON of usable geometries (holes, multipolygons, big-endian WKB, ...)."""
    return pa.array(shapely.to_geojson(geoms), pa.large_string())


def _polygon_texts(xy: npt.NDArray[np.float64], n_xy: npt.NDArray[np.int64]) -> pa.Array:
    """GeoJSON Polygon text of each single ring (``n_xy`` vertices each, ``xy`` concatenated)."""
    x, y = pc.cast(pa.array(xy[0::2]), pa.string()), pc.cast(pa.array(xy[1::2]), pa.string())
    pairs = pc.binary_join_element_wise(x, y, ",")
    offsets = np.concatenate([[0], np.cumsum(n_xy)]).astype(np.int32)
    rings = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pairs), "],[")
    return pc.binary_join_element_wise('{"type":"Polygon","coordinates":[[[', rings, "]]]}", "")


def _piece_order(
    geometry_at: npt.NDArray[np.int64],
    n_lit: int,
    has_class: bool,
    n_measurements: int,
    object_type: ObjectType,
) -> npt.NDArray[np.int64]:
    """(n, pieces per row) indexes into the pool of ``feature_texts``.

    Pool: literals (``n_lit``: feature start, nucleusGeometry key, properties start, one key per
    measurement, end), the n geometry texts (row i's at ``n_lit + geometry_at[i]``), then one
    (n,) text block per per-row column: the classification (when present), the measurements.
    """
    n = geometry_at.size
    row = np.arange(n)
    geom = n_lit + geometry_at
    lit = [np.full(n, i) for i in range(n_lit)]
    pieces = [lit[0], geom, *([lit[1], geom] if object_type == "cell" else []), lit[2]]
    block = n_lit + n  # first per-row block
    if has_class:
        pieces.append(block + row)
        block += n
    for k in range(n_measurements):
        pieces += [lit[3 + k], block + k * n + row]
    pieces.append(lit[n_lit - 1])
    return np.stack(pieces, axis=1)


def feature_texts(batch: pa.RecordBatch, object_type: ObjectType = "detection") -> pa.Array:
    """GeoJSON Feature text of each usable row of a nucleus-table batch, each prefixed ``,\\n``.

    Single-ring polygons are read straight from their WKB bytes and their coordinates formatted by
    Arrow (shortest round-trip decimal); other geometries go through GEOS. Each row is then a
    fixed sequence of pieces (literals, geometry, classification, measurement keys and values),
    gathered in row-major order by one Arrow ``take``, so the result shares one data buffer.

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Rows of a nucleus table: ``geometry`` (WKB polygons, level-0 px) is required;
        ``class_name`` (optional) becomes the classification; numeric and boolean columns become
        measurements (booleans as 0/1, NaN and null as ``"NaN"``, infinities as ``"Infinity"``
        and ``"-Infinity"``).
    object_type : {"detection", "cell", "annotation"}
        QuPath object type; a cell's ``nucleusGeometry`` is its outline.

    Returns
    -------
    pyarrow.StringArray
        (k,) texts ``,\\n{"type":"Feature",...}`` of the k usable rows, in order (rows without a
        usable outline, see :func:`usable_rows`, are left out); LargeStringArray past 1 GiB.
    """
    n, geometry = batch.num_rows, batch.column("geometry")
    plain, n_xy = _wkb_header(geometry)
    plain, xy = _plain_coordinates(geometry, plain, n_xy)
    others = _other_geometries(geometry, ~plain)
    usable = plain & (n_xy >= 4)
    usable[~plain] = _usable(others)
    if not usable.all():  # rare: drop the unusable rows and start again
        return feature_texts(batch.filter(pa.array(usable)), object_type)
    names = _measurement_columns(batch.schema)
    has_class = "class_name" in batch.schema.names
    literals = [
        ',\n{"type":"Feature","geometry":',
        ',"nucleusGeometry":',
        f',"properties":{{"objectType":"{object_type}"',
        *[
            ("," if i else ',"measurements":{') + json.dumps(name) + ":"
            for i, name in enumerate(names)
        ],
        "}}}" if names else "}}",
    ]
    columns = [_polygon_texts(xy, n_xy[plain]), _other_geometry_texts(others)]
    if has_class:
        columns.append(_classification_text(batch.column("class_name")))
    columns += [_number_text(batch.column(name)) for name in names]
    text_bytes = sum(c.buffers()[2].size for c in columns if c.buffers()[2] is not None)
    kind = pa.string() if text_bytes < 2**30 else pa.large_string()  # int32 offsets when they fit
    pool = pa.concat_arrays([pa.array(literals, kind)] + [c.cast(kind) for c in columns])
    # Pool: literals (L), plain-polygon texts, other-geometry texts, then one (n,) text column each.
    n_plain = int(np.count_nonzero(plain))
    geometry_at = np.where(plain, np.cumsum(plain) - 1, n_plain + np.cumsum(~plain) - 1)
    order = _piece_order(geometry_at, len(literals), has_class, len(names), object_type)
    pieces = pool.take(pa.array(order.ravel()))
    width = 8 if pa.types.is_large_string(kind) else 4
    piece_offsets = np.frombuffer(
        pieces.buffers()[1], np.int64 if width == 8 else np.int32, len(pieces) + 1
    )
    return pa.Array.from_buffers(  # each row is a run of pieces: no copy
        kind,
        n,
        [
            None,
            pa.py_buffer(np.ascontiguousarray(piece_offsets[:: order.shape[1]])),
            pieces.buffers()[2],
        ],
    )


def _text_bytes(texts: pa.Array) -> memoryview:
    """The contiguous UTF-8 bytes of a (large) string array (no copy)."""
    kind = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(
        texts.buffers()[1], kind, len(texts) + 1, texts.offset * np.dtype(kind).itemsize
    )
    data = texts.buffers()[2]
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])]  # type: ignore[arg-type]


def _batches(path: Path, batch_rows: int) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(str(path))
    schema = pf.schema_arrow
    if "geometry" not in schema.names:
        raise ConfigError(f"table {str(path)!r} has no 'geometry' column; expected a nucleus table")
    wanted = [
        "geometry",
        *(["class_name"] if "class_name" in schema.names else []),
        *_measurement_columns(schema),
    ]
    yield from pf.iter_batches(batch_size=batch_rows, columns=wanted)  # skips bbox, slide_id


def _in_region(
    batch: pa.RecordBatch, region_xywh_l0: tuple[float, float, float, float]
) -> pa.Array:
    """(n,) bool: the row's centroid (level-0 px) lies in the half-open region."""
    x, y, w, h = region_xywh_l0
    if {"centroid_x_l0", "centroid_y_l0"} <= set(batch.schema.names):
        cx = batch.column("centroid_x_l0").to_numpy(zero_copy_only=False)
        cy = batch.column("centroid_y_l0").to_numpy(zero_copy_only=False)
    else:  # any GeoParquet: the outline's centroid
        geoms = shapely.from_wkb(
            batch.column("geometry").to_numpy(zero_copy_only=False), on_invalid="ignore"
        )
        cx, cy = shapely.get_x(shapely.centroid(geoms)), shapely.get_y(shapely.centroid(geoms))
    return pa.array((cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h))


def _converted(
    batches: Iterator[pa.RecordBatch], object_type: ObjectType, threads: int
) -> Iterator[tuple[pa.Array, int]]:
    """(feature texts, rows skipped) of each non-empty batch, in order, at most ``threads`` in
    flight."""

    def convert(batch: pa.RecordBatch) -> tuple[pa.Array, int]:
        texts = feature_texts(batch, object_type)
        return texts, batch.num_rows - len(texts)

    with ThreadPoolExecutor(max(threads, 1)) as pool:
        pending: deque[Future[tuple[pa.Array, int]]] = deque()
        for batch in batches:
            if batch.num_rows:
                pending.append(pool.submit(convert, batch))
            if len(pending) >= max(threads, 1):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _open_output(path: Path, compress: bool) -> IO[bytes]:
    """The output file, gzip-compressed (fast level) or plain; the caller closes it."""
    if compress:
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=1))
    return open(path, "wb")


def _selected(
    batches: Iterator[pa.RecordBatch],
    region_xywh_l0: tuple[float, float, float, float] | None,
    max_objects: int | None,
    left_out: list[int],
) -> Iterator[pa.RecordBatch]:
    """The rows in the region, at most ``max_objects`` of them; ``left_out[0]`` counts the rest."""
    taken = 0
    for batch in batches:
        rows = batch if region_xywh_l0 is None else batch.filter(_in_region(batch, region_xywh_l0))
        if max_objects is not None and taken + rows.num_rows > max_objects:
            left_out[0] += taken + rows.num_rows - max_objects
            rows = rows.slice(0, max(max_objects - taken, 0))
        taken += rows.num_rows
        if rows.num_rows:
            yield rows


def export_qupath(
    table_path: Path,
    out_path: Path,
    *,
    compress: bool = False,
    object_type: ObjectType = "detection",
    region_xywh_l0: tuple[float, float, float, float] | None = None,
    max_objects: int | None = None,
    batch_rows: int = 16_384,
    threads: int = 2,
) -> int:
    """Write a nucleus table as a QuPath GeoJSON FeatureCollection, batch by batch.

    Memory stays at one batch of rows whatever the table size (QuPath itself parses the whole file
    in memory: about 1 GB of heap per 42,000 nuclei; export large slides region by region).

    Parameters
    ----------
    table_path : Path
        ``nuclei.parquet`` (or any GeoParquet with WKB polygons in level-0 px).
    out_path : Path
        The ``.geojson`` file (``.geojson.gz`` when ``compress``; QuPath reads both).
    compress : bool
        gzip the output (level 1: fast, about 5x smaller).
    object_type : {"detection", "cell", "annotation"}
        QuPath object type of every feature (cells carry their outline as ``nucleusGeometry``).
    region_xywh_l0 : tuple of float, optional
        (x, y, width, height), level-0 px: only nuclei whose centroid (``centroid_x_l0``,
        ``centroid_y_l0``, else the outline's) lies in this half-open box, so regions that tile
        the slide give each nucleus to exactly one file.
    max_objects : int, optional
        Convert at most this many rows (after the region filter); a warning counts the rest.
    batch_rows : int
        Rows converted at a time.
    threads : int
        Batches converted concurrently (GEOS and Arrow release the GIL); memory is bounded by
        ``threads + 1`` batches.

    Returns
    -------
    int
        Number of features written.

    Warns
    -----
    PathoSamWarning
        Once, counting the rows skipped for lack of a usable outline; once when ``max_objects``
        left nuclei out.
    """
    tmp = out_path.with_name(out_path.name + ".partial")
    n = skipped = 0
    left_out = [0]
    try:
        with _open_output(tmp, compress) as fh:
            fh.write(b'{"type":"FeatureCollection","features":[')
            rows = _selected(
                _batches(table_path, batch_rows), region_xywh_l0, max_objects, left_out
            )
            for texts, bad in _converted(rows, object_type, threads):
                skipped += bad
                if len(texts):
                    buf = _text_bytes(texts)
                    fh.write(buf[1:] if n == 0 else buf)  # the first feature has no leading comma
                    n += len(texts)
            fh.write(b"\n]}\n")
    except (OSError, ValueError, pa.ArrowException) as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(
            f"{table_path}: cannot export ({type(err).__name__}: {' '.join(str(err).split())}); "
            "expected the nuclei.parquet of a finished run, and a writable output"
        ) from err
    tmp.replace(out_path)
    _warn_left_out(table_path, skipped, left_out[0], max_objects)
    log.info("wrote %d QuPath %s objects to %s", n, object_type, out_path)
    return n


def _warn_left_out(table_path: Path, skipped: int, left_out: int, max_objects: int | None) -> None:
    """One warning per reason rows were not written."""
    if skipped:
        warnings.warn(
            f"{table_path}: {skipped} row(s) without a usable outline (null, empty or unreadable "
            "geometry, a non-finite vertex or a ring of < 4 points) were skipped, so QuPath "
            "imports the rest; check those rows of the table if they matter",
            PathoSamWarning,
            stacklevel=3,
        )
    if left_out:
        warnings.warn(
            f"{table_path}: stopped at max_objects={max_objects}; {left_out} more nuclei were not "
            "exported; export the rest region by region (--region X Y W H)",
            PathoSamWarning,
            stacklevel=3,
        )


def default_output(result_dir: Path, compress: bool) -> Path:
    """``OUT/<slide_id>/nuclei.geojson[.gz]``."""
    return result_dir / ("nuclei.geojson.gz" if compress else "nuclei.geojson")
