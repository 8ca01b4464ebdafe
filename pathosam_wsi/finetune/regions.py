"""Training samples from slides whose nuclei are annotated as QuPath GeoJSON or GeoParquet.

An annotation file holds two kinds of polygons (level-0 pixel coordinates, QuPath's export frame):
*regions* (QuPath ``objectType`` "annotation") and *nuclei* ("detection", or the
``nucleusGeometry`` of a "cell"). Each region becomes one sample: the slide's pixels in the region's
bounding box, with every nucleus whose centroid lies in the region painted as one instance; pixels
of the box outside the region are set to white (background), so unannotated tissue is never
taught as background. A GeoParquet file marks regions with an ``objectType`` column (rows without
it, or a file without the column, are nuclei); a file with nuclei only needs ``--region``-less use
through ``rasterise`` by the caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from skimage.draw import polygon as draw_polygon

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.finetune.data import Sample

__all__ = ["load_slide_regions", "rasterise", "read_annotations"]

_NUCLEUS_TYPES = ("detection", "cell", "tile")


def read_annotations(path: Path) -> tuple[list[Any], list[Any]]:
    """(regions, nuclei) as shapely polygons from a QuPath GeoJSON or a GeoParquet file."""
    if not path.is_file():
        raise ConfigError(f"annotations {str(path)!r} do not exist; pass a .geojson or .parquet")
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        return _read_parquet(path)
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"annotations {str(path)!r} are not valid JSON ({err}); export them from QuPath as "
            "GeoJSON (File > Export objects as GeoJSON)"
        ) from err
    features = doc.get("features", []) if isinstance(doc, dict) else doc
    regions: list[Any] = []
    nuclei: list[Any] = []
    for feature in features:
        props = feature.get("properties") or {}
        kind = props.get("objectType", "detection")
        geom = props.get("nucleusGeometry") if kind == "cell" else None
        shape = shapely.geometry.shape(geom or feature["geometry"])
        (nuclei if kind in _NUCLEUS_TYPES else regions).append(shape)
    return regions, nuclei


def _read_parquet(path: Path) -> tuple[list[Any], list[Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "geometry" not in table.column_names:
        raise ConfigError(
            f"GeoParquet {str(path)!r} has no 'geometry' column (got {table.column_names}); "
            "write WKB polygons in 'geometry'"
        )
    shapes = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    if "objectType" not in table.column_names:
        return [], list(shapes)
    kinds = table.column("objectType").to_pylist()
    regions = [g for g, k in zip(shapes, kinds, strict=True) if k == "annotation"]
    nuclei = [g for g, k in zip(shapes, kinds, strict=True) if k != "annotation"]
    return regions, nuclei


def rasterise(
    nuclei: list[Any],
    shape_hw: tuple[int, int],
    origin_xy: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> npt.NDArray[np.int32]:
    """(H, W) int32 instance labels: nucleus i (in list order) painted as id i + 1.

    Polygon coordinates (x, y) map to pixel ``((x - origin_x) * scale, (y - origin_y) * scale)``;
    later polygons overwrite earlier ones where they overlap. Multi-polygons use their largest
    part.
    """
    labels = np.zeros(shape_hw, np.int32)
    for i, geom in enumerate(nuclei, start=1):
        poly = max(getattr(geom, "geoms", [geom]), key=lambda g: g.area)
        xy = np.asarray(poly.exterior.coords)
        rows = (xy[:, 1] - origin_xy[1]) * scale - 0.5
        cols = (xy[:, 0] - origin_xy[0]) * scale - 0.5
        rr, cc = draw_polygon(rows, cols, shape=shape_hw)
        labels[rr, cc] = i
    return labels


def load_slide_regions(
    slide_path: Path, annotations: Path, mpp: float | None = None
) -> list[Sample]:
    """One sample per annotated region of a slide (level 0); see the module docstring."""
    from pathosam_wsi.slide.open import open_slide

    regions, nuclei = read_annotations(annotations)
    if not regions:
        raise ConfigError(
            f"{str(annotations)!r} holds no region (objectType 'annotation'); draw the regions "
            "whose nuclei are all annotated and export them with the nuclei"
        )
    centroids = shapely.points([g.centroid.coords[0] for g in nuclei]) if nuclei else []
    slide = open_slide(slide_path, mpp)
    samples = []
    try:
        for k, region in enumerate(regions):
            width, height = slide.level_dimensions[0]
            bx0, by0, bx1, by1 = region.bounds
            x0, y0 = max(0, int(np.floor(bx0))), max(0, int(np.floor(by0)))
            x1, y1 = min(width, int(np.ceil(bx1))), min(height, int(np.ceil(by1)))
            if x1 <= x0 or y1 <= y0:
                raise ConfigError(
                    f"region {k} of {str(annotations)!r} lies outside the slide "
                    f"({width}x{height} px); export the annotations in level-0 pixels"
                )
            image = np.array(slide.read_level(0, (x0, y0, x1, y1)))
            inside = [g for g, c in zip(nuclei, centroids, strict=True) if region.contains(c)]
            labels = rasterise(inside, image.shape[:2], (x0, y0))
            outside = rasterise([region], image.shape[:2], (x0, y0)) == 0
            image[outside] = 255
            labels[outside] = 0
            samples.append(Sample(f"{slide_path.stem}:region{k}", image, labels))
    finally:
        slide.close()
    return samples
