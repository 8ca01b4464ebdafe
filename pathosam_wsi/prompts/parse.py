"""Prompt files -> :class:`PromptSet`: CSV / Parquet tables and QuPath GeoJSON.

Tables have ``xmin, ymin, xmax, ymax`` (a box) and/or ``x, y`` (a point), optional ``label``
(1 positive, 0 negative; default 1) and optional integer ``object_id`` (rows with the same id form
one object: at most one box, any number of points). Coordinates are continuous level-0 px (the
pixel (i, j) covers [j, j + 1) x [i, i + 1), so a nucleus' tight box is ``[c0, r0, c1 + 1, r1 + 1]``
for its first and last columns and rows). GeoJSON: polygons, multipolygons and rectangles become
boxes (their bounds), points and multipoints become positive points (one object per point).

Errors name the row (1-based data row; the CSV line is row + 1) or the GeoJSON feature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.errors import ConfigError

__all__ = ["PromptSet", "read_prompts"]

_BOX = ("xmin", "ymin", "xmax", "ymax")
_POINT = ("x", "y")


class PromptError(ConfigError):
    """A prompt file that cannot be read; the message names the file and the row."""


@dataclass(frozen=True)
class PromptSet:
    """P prompts (objects) with K points in total.

    ``box_xyxy`` is NaN for prompts without a box; point k belongs to prompt ``point_prompt[k]``.
    """

    prompt_id: npt.NDArray[np.int64]  # (P,)
    box_xyxy: npt.NDArray[np.float64]  # (P, 4), continuous level-0 px
    point_xy: npt.NDArray[np.float64]  # (K, 2), continuous level-0 px
    point_label: npt.NDArray[np.int64]  # (K,), 1 / 0
    point_prompt: npt.NDArray[np.int64]  # (K,), index into the prompts
    source_row: npt.NDArray[np.int64]  # (P,), first row (or feature) of each prompt, 1-based

    def __len__(self) -> int:
        return int(self.prompt_id.size)

    @property
    def has_box(self) -> npt.NDArray[np.bool_]:
        """(P,) whether each prompt has a box."""
        return ~np.isnan(self.box_xyxy[:, 0])

    def points_of(self, i: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """(k, 2) points and (k,) labels of prompt i."""
        sel = self.point_prompt == i
        return self.point_xy[sel], self.point_label[sel]

    def extent_xyxy(self) -> npt.NDArray[np.float64]:
        """(P, 4) bounds of each prompt's box and points, continuous level-0 px."""
        ext = self.box_xyxy.copy()
        for k in range(self.point_xy.shape[0]):
            i, (x, y) = self.point_prompt[k], self.point_xy[k]
            e = ext[i]
            if np.isnan(e[0]):
                ext[i] = (x, y, x, y)
            else:
                ext[i] = (min(e[0], x), min(e[1], y), max(e[2], x), max(e[3], y))
        return ext

    def centre_xy(self) -> npt.NDArray[np.float64]:
        """(P, 2) the point that picks the serving window: box centre, else mean positive point."""
        centre = np.column_stack(
            [
                (self.box_xyxy[:, 0] + self.box_xyxy[:, 2]) / 2,
                (self.box_xyxy[:, 1] + self.box_xyxy[:, 3]) / 2,
            ]
        )
        pos = self.point_label == 1
        n = np.bincount(self.point_prompt[pos], minlength=len(self)).astype(np.float64)
        for axis in (0, 1):
            s = np.bincount(self.point_prompt[pos], self.point_xy[pos, axis], minlength=len(self))
            nobox = np.isnan(centre[:, axis])
            centre[nobox, axis] = s[nobox] / np.maximum(n[nobox], 1)
        return centre

    def subset(self, index: npt.NDArray[np.int64]) -> PromptSet:
        """The prompts ``index`` (in that order), points re-indexed."""
        remap = np.full(len(self), -1, np.int64)
        remap[index] = np.arange(index.size)
        keep = remap[self.point_prompt] >= 0
        return PromptSet(
            self.prompt_id[index],
            self.box_xyxy[index],
            self.point_xy[keep],
            self.point_label[keep],
            remap[self.point_prompt[keep]],
            self.source_row[index],
        )


def read_prompts(path: str | Path) -> PromptSet:
    """Read a CSV, Parquet or (Qu)GeoJSON prompt file.

    Raises
    ------
    ConfigError
        Unknown format, missing columns, or a bad row (the message names file and row).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise PromptError(
            f"prompt file {str(path)!r} does not exist; expected a CSV/Parquet/GeoJSON"
        )
    if suffix in (".geojson", ".json"):
        return _from_geojson(path)
    if suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        frame = _parquet_frame(path)
    else:
        raise PromptError(
            f"prompt file {path.name!r} has suffix {suffix!r}; expected .csv, .parquet or .geojson"
        )
    columns = {str(c).strip().lower(): frame[c].to_numpy() for c in frame.columns}
    return _from_columns(columns, path.name, len(frame))


def _parquet_frame(path: Path) -> Any:
    """A Parquet table as a DataFrame; a nucleus table (``bbox`` struct) gives its boxes."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = set(table.column_names)
    if "bbox" in names and "xmin" not in names:
        # pathosam-wsi's nucleus table / a GeoParquet covering: boxes, object_id = nucleus_id
        keep = [c for c in ("bbox", "nucleus_id", "object_id") if c in names]
        frame = table.select(keep).flatten().to_pandas()
        frame = frame.rename(columns={f"bbox.{k}": k for k in _BOX})
        if "object_id" not in frame and "nucleus_id" in frame:
            frame = frame.rename(columns={"nucleus_id": "object_id"})
        return frame
    return table.to_pandas()


def _numeric(
    columns: dict[str, Any], names: tuple[str, ...], where: str, n: int
) -> npt.NDArray[np.float64]:
    """(n, len(names)) float64, NaN where empty; a non-number is an error naming its row."""
    out = np.full((n, len(names)), np.nan)
    for j, name in enumerate(names):
        for i, v in enumerate(columns[name]):
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            try:
                out[i, j] = float(v)
            except (TypeError, ValueError):
                raise PromptError(
                    f"{where} row {i + 1}: {name} = {v!r} is not a number; expected px"
                ) from None
    return out


def _check_rows(
    box: npt.NDArray[np.float64],
    pt: npt.NDArray[np.float64],
    label: npt.NDArray[np.float64],
    where: str,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which rows have a box and which a point; raise on partial or invalid ones."""
    for i in range(box.shape[0]):
        row = f"{where} row {i + 1}"
        nb, npn = int(np.isnan(box[i]).sum()), int(np.isnan(pt[i]).sum())
        if nb not in (0, 4):
            raise PromptError(
                f"{row}: box is incomplete ({box[i].tolist()}); expected all of {_BOX}"
            )
        if npn not in (0, 2):
            raise PromptError(f"{row}: point is incomplete ({pt[i].tolist()}); expected x and y")
        if nb and npn:
            raise PromptError(f"{row}: neither a box nor a point; expected {_BOX} or (x, y)")
        if not nb and (box[i, 2] <= box[i, 0] or box[i, 3] <= box[i, 1]):
            raise PromptError(
                f"{row}: box {box[i].tolist()} is empty; expected xmax > xmin, ymax > ymin"
            )
        if not np.all(np.isfinite(np.nan_to_num(np.concatenate([box[i], pt[i]]), nan=0.0))):
            raise PromptError(f"{row}: infinite coordinate; expected finite px")
        if not npn and label[i] not in (0.0, 1.0):
            raise PromptError(
                f"{row}: label = {float(label[i])!r}; expected 1 (positive) or 0 (negative)"
            )
    return ~np.isnan(box[:, 0]), ~np.isnan(pt[:, 0])


def _from_columns(columns: dict[str, Any], where: str, n: int) -> PromptSet:
    has_box_cols, has_pt_cols = all(c in columns for c in _BOX), all(c in columns for c in _POINT)
    if not has_box_cols and not has_pt_cols:
        raise PromptError(
            f"{where}: columns {sorted(columns)}; expected {', '.join(_BOX)} (boxes) and/or x, y "
            "(points), with optional label and object_id"
        )
    for c in columns:
        columns[c] = np.asarray(columns[c], dtype=object)
    box = _numeric(columns, _BOX, where, n) if has_box_cols else np.full((n, 4), np.nan)
    pt = _numeric(columns, _POINT, where, n) if has_pt_cols else np.full((n, 2), np.nan)
    label = _numeric(columns, ("label",), where, n)[:, 0] if "label" in columns else np.ones(n)
    label[np.isnan(label)] = 1.0
    row_box, row_pt = _check_rows(box, pt, label, where)
    if "object_id" in columns:
        oid = _numeric(columns, ("object_id",), where, n)[:, 0]
        bad = np.flatnonzero(np.isnan(oid) | (oid != np.round(oid)))
        if bad.size:
            i = int(bad[0])
            raise PromptError(
                f"{where} row {i + 1}: object_id = {columns['object_id'][i]!r}; expected an integer"
            )
        ids = oid.astype(np.int64)
    else:
        ids = np.arange(n, dtype=np.int64)
    return _group(ids, box, row_box, pt, row_pt, label.astype(np.int64), np.arange(1, n + 1), where)


def _group(
    ids: npt.NDArray[np.int64],
    box: npt.NDArray[np.float64],
    row_box: npt.NDArray[np.bool_],
    pt: npt.NDArray[np.float64],
    row_pt: npt.NDArray[np.bool_],
    label: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    where: str,
) -> PromptSet:
    """Rows -> objects (sorted by id); one box per object; a box or a positive point required."""
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    p = uniq.size
    boxes = np.full((p, 4), np.nan)
    for i in np.flatnonzero(row_box):
        j = inverse[i]
        if not np.isnan(boxes[j, 0]):
            raise PromptError(
                f"{where} row {rows[i]}: object {ids[i]} already has a box; expected one box per "
                "object (use distinct object_id values)"
            )
        boxes[j] = box[i]
    pts = np.flatnonzero(row_pt)
    prompt_of_pt = inverse[pts].astype(np.int64)
    positive = np.bincount(prompt_of_pt[label[pts] == 1], minlength=p)
    lonely = np.flatnonzero(np.isnan(boxes[:, 0]) & (positive == 0))
    if lonely.size:
        j = int(lonely[0])
        raise PromptError(
            f"{where} row {rows[first[j]]}: object {uniq[j]} has only negative points; expected "
            "a box or at least one positive point"
        )
    order = np.argsort(prompt_of_pt, kind="stable")
    return PromptSet(
        uniq.astype(np.int64),
        boxes,
        pt[pts][order],
        label[pts][order],
        prompt_of_pt[order],
        rows[first].astype(np.int64),
    )


def _geometry_prompts(
    geom: dict[str, Any], where: str
) -> list[tuple[list[float] | None, list[float] | None]]:
    """(box, point) pairs of one GeoJSON geometry."""
    kind: Any = geom.get("type")
    coords: Any = geom.get("coordinates")
    try:
        if kind in ("Polygon", "MultiPolygon"):
            flat = np.asarray(
                [
                    c
                    for ring in (coords if kind == "Polygon" else [r for p in coords for r in p])
                    for c in ring
                ],
                dtype=np.float64,
            )
            x0, y0 = flat[:, :2].min(axis=0)
            x1, y1 = flat[:, :2].max(axis=0)
            return [([float(x0), float(y0), float(x1), float(y1)], None)]
        if kind == "Point":
            return [(None, [float(coords[0]), float(coords[1])])]
        if kind == "MultiPoint":
            return [(None, [float(c[0]), float(c[1])]) for c in coords]
    except (TypeError, ValueError, IndexError) as err:
        raise PromptError(f"{where}: malformed {kind} coordinates ({err})") from err
    raise PromptError(
        f"{where}: geometry type {kind!r}; expected Polygon, MultiPolygon, Point or MultiPoint"
    )


def _from_geojson(path: Path) -> PromptSet:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PromptError(f"{path.name}: not valid JSON ({err}); expected GeoJSON") from err
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features", [])
    elif isinstance(doc, list):
        features = doc  # QuPath "Export objects" writes a plain list of features
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    else:
        raise PromptError(f"{path.name}: expected a FeatureCollection, a Feature or a list of them")
    cols: dict[str, list[Any]] = {c: [] for c in (*_BOX, *_POINT, "label", "object_id")}
    rows: list[int] = []
    for f_index, feature in enumerate(features, start=1):
        where = f"{path.name} feature {f_index}"
        geom = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geom, dict):
            raise PromptError(f"{where}: no geometry; expected a GeoJSON Feature with a geometry")
        for gbox, gpoint in _geometry_prompts(geom, where):
            for j, c in enumerate(_BOX):
                cols[c].append(gbox[j] if gbox else None)
            for j, c in enumerate(_POINT):
                cols[c].append(gpoint[j] if gpoint else None)
            cols["label"].append(1)
            cols["object_id"].append(len(rows))
            rows.append(f_index)
    n = len(rows)
    arrays = {c: np.asarray(v, dtype=object) for c, v in cols.items()}
    box = _numeric(arrays, _BOX, path.name, n)
    pt = _numeric(arrays, _POINT, path.name, n)
    label = np.ones(n)
    row_box, row_pt = _check_rows(box, pt, label, f"{path.name} (feature order)")
    ids = np.arange(n, dtype=np.int64)
    return _group(
        ids, box, row_box, pt, row_pt, label.astype(np.int64), np.asarray(rows, np.int64), path.name
    )
