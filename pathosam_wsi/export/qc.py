"""Quality-control pictures of one slide's results: a density heatmap and outlined crops.

``qc/density.png`` is the slide thumbnail with a nucleus-density heatmap (nuclei per mm², from the
table centroids binned to the thumbnail grid) and numbered boxes where the crops were taken;
``qc/crop_<k>_x<x>_y<y>_w<w>_h<h>.png`` are full-resolution crops of the densest areas with nucleus
outlines, named by rank and their level-0 box (x, y, width, height), so a crop can be found on the
slide (outlines: the inner boundary pixels of each label, coloured by class when the table has
classes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from pathosam_wsi.errors import ConfigError, PathoSamError
from pathosam_wsi.export.omezarr import LABEL_NAME
from pathosam_wsi.export.qupath import class_colour
from pathosam_wsi.pipeline.layout import ResultFolder
from pathosam_wsi.slide.open import open_slide
from pathosam_wsi.slide.tissue import read_thumbnail

__all__ = ["colour_map", "crop_file_name", "densest_boxes", "density_grid", "write_qc"]

log = logging.getLogger(__name__)

_ANCHORS = np.array(  # dark purple -> red -> orange -> pale yellow (an inferno-like ramp)
    [[0, 0, 4], [60, 9, 101], [150, 38, 103], [222, 73, 59], [250, 150, 20], [252, 255, 164]],
    np.float64,
)
_OUTLINE_RGB = (0, 255, 0)


def colour_map(values: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """RGB of values in [0, 1] (clipped) through a 256-entry LUT -> (..., 3) uint8."""
    pos = np.linspace(0, 1, len(_ANCHORS))
    grid = np.linspace(0, 1, 256)
    lut = np.stack([np.interp(grid, pos, _ANCHORS[:, c]) for c in range(3)], axis=1)
    idx = np.clip(np.nan_to_num(values) * 255 + 0.5, 0, 255).astype(np.intp)
    return lut.round().astype(np.uint8)[idx]


def _centroids(table: Path) -> npt.NDArray[np.float64]:
    """(n, 2) level-0 (x, y) centroids, read column-wise batch by batch."""
    parts = [
        np.stack([b.column(0).to_numpy(), b.column(1).to_numpy()], axis=1)
        for b in pq.ParquetFile(str(table)).iter_batches(columns=["centroid_x_l0", "centroid_y_l0"])
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def density_grid(
    centroid_xy_l0: npt.NDArray[np.float64], shape_hw: tuple[int, int], cell_l0: float
) -> npt.NDArray[np.float64]:
    """Nucleus counts per grid cell.

    Parameters
    ----------
    centroid_xy_l0 : (n, 2) float64
        Centroids, x then y, level-0 px.
    shape_hw : tuple of int
        Grid (h, w) in cells; cell (i, j) covers level-0 px [j c, (j+1) c) x [i c, (i+1) c).
    cell_l0 : float
        Cell side in level-0 px.

    Returns
    -------
    (h, w) float64
        Counts (centroids outside the grid are dropped).
    """
    h, w = shape_hw
    ij = np.floor(centroid_xy_l0[:, ::-1] / cell_l0).astype(np.int64)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    flat = ij[ok, 0] * w + ij[ok, 1]
    return np.bincount(flat, minlength=h * w).reshape(h, w).astype(np.float64)


def crop_file_name(rank: int, box_l0: tuple[int, int, int, int]) -> str:
    """``crop_<rank>_x<x>_y<y>_w<w>_h<h>.png`` for the level-0 box (x0, y0, x1, y1), half-open."""
    x0, y0, x1, y1 = box_l0
    return f"crop_{rank}_x{x0}_y{y0}_w{x1 - x0}_h{y1 - y0}.png"


def densest_boxes(
    counts: npt.NDArray[np.float64],
    cell_l0: float,
    box_l0: int,
    slide_wh_l0: tuple[int, int],
    k: int,
) -> list[tuple[int, int, int, int]]:
    """Up to ``k`` non-overlapping level-0 boxes (x0, y0, x1, y1) centred on the densest areas."""
    win = max(1, round(box_l0 / cell_l0))
    score = ndi.uniform_filter(counts, size=win, mode="constant")
    boxes: list[tuple[int, int, int, int]] = []
    w_l0, h_l0 = slide_wh_l0
    side_x, side_y = min(box_l0, w_l0), min(box_l0, h_l0)
    while len(boxes) < k and score.max() > 0:
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(score)), score.shape))
        cx, cy = (j + 0.5) * cell_l0, (i + 0.5) * cell_l0
        x0 = int(np.clip(cx - side_x / 2, 0, w_l0 - side_x))
        y0 = int(np.clip(cy - side_y / 2, 0, h_l0 - side_y))
        boxes.append((x0, y0, x0 + side_x, y0 + side_y))
        score[max(i - win, 0) : i + win + 1, max(j - win, 0) : j + win + 1] = 0
    return boxes


def _density_picture(
    thumb: npt.NDArray[np.uint8], counts: npt.NDArray[np.float64], cell_um: float
) -> tuple[Image.Image, float]:
    """Thumbnail blended with the smoothed density heatmap and a colour bar; returns max density."""
    sigma = max(1.0, 50.0 / cell_um)  # smooth over ~50 µm so single cells do not speckle
    per_mm2 = ndi.gaussian_filter(counts, sigma) / (cell_um * cell_um) * 1e6
    top = float(np.percentile(per_mm2[per_mm2 > 0], 99)) if (per_mm2 > 0).any() else 1.0
    frac = np.clip(per_mm2 / max(top, 1e-9), 0, 1)
    # Heat only over tissue (non-white pixels, slightly grown), so smoothing does not tint glass.
    tissue = ndi.binary_dilation(thumb.min(axis=2) < 225, iterations=2)
    alpha = np.where((frac > 0.03) & tissue, 0.55 * np.sqrt(frac), 0.0)[..., None]
    mixed = thumb.astype(np.float64) * (1 - alpha) + colour_map(frac).astype(np.float64) * alpha
    h, w = thumb.shape[:2]
    bar_h = 28
    canvas = np.full((h + bar_h, max(w, 200), 3), 255, np.uint8)
    canvas[:h, :w] = mixed.round().astype(np.uint8)
    bar_w = min(max(w, 200) - 20, 256)
    canvas[h + 4 : h + 14, 10 : 10 + bar_w] = colour_map(np.linspace(0, 1, bar_w))[None]
    img = Image.fromarray(canvas)
    ImageDraw.Draw(img).text((10, h + 15), f"0 .. {top:.0f} nuclei/mm2", fill=(0, 0, 0))
    return img, top


def _crop_picture(
    slide: Any,
    labels_s0: Any,
    box_l0: tuple[int, int, int, int],
    ds: float,
    colours: dict[int, tuple[int, int, int]] | None,
) -> Image.Image:
    """Level-0 RGB crop with label boundaries drawn (labels upsampled when ds > 1)."""
    x0, y0, x1, y1 = box_l0
    rgb = np.array(slide.read_level(0, box_l0))
    ys = np.minimum((np.arange(y0, y1) + 0.5) // ds, labels_s0.shape[0] - 1).astype(np.intp)
    xs = np.minimum((np.arange(x0, x1) + 0.5) // ds, labels_s0.shape[1] - 1).astype(np.intp)
    lab = np.asarray(labels_s0[int(ys[0]) : int(ys[-1]) + 1, int(xs[0]) : int(xs[-1]) + 1])
    lab = lab[np.ix_(ys - ys[0], xs - xs[0])]
    edge = find_boundaries(lab, mode="inner") & (lab > 0)
    if colours:
        ids, inv = np.unique(lab[edge], return_inverse=True)
        table = np.array([colours.get(int(i), _OUTLINE_RGB) for i in ids], np.uint8).reshape(-1, 3)
        rgb[edge] = table[inv]
    else:
        rgb[edge] = _OUTLINE_RGB
    return Image.fromarray(rgb)


def _class_colours(table: Path) -> dict[int, tuple[int, int, int]] | None:
    """nucleus_id -> class colour, or None without a class column."""
    pf = pq.ParquetFile(str(table))
    if "class_name" not in pf.schema_arrow.names:
        return None
    out: dict[int, tuple[int, int, int]] = {}
    for b in pf.iter_batches(columns=["nucleus_id", "class_name"]):
        out.update(
            zip(b.column(0).to_pylist(), map(class_colour, b.column(1).to_pylist()), strict=True)
        )
    return out


def write_qc(
    result_dir: Path, *, n_crops: int = 4, crop_px: int = 512, thumb_max_px: int = 1024
) -> list[Path]:
    """Write ``qc/density.png`` and ``qc/crop_<k>.png`` for one slide's results.

    Parameters
    ----------
    result_dir : Path
        ``OUT/<slide_id>`` with run.json, nuclei.parquet and labels.ome.zarr.
    n_crops : int
        Number of full-resolution crops (densest areas first).
    crop_px : int
        Crop side in level-0 px.
    thumb_max_px : int
        Longest side of the density picture, px.

    Returns
    -------
    list of Path
        The PNGs written.

    Raises
    ------
    ConfigError
        If ``result_dir`` lacks run.json or nuclei.parquet.
    """
    if not ResultFolder(result_dir).has_outputs():
        raise ConfigError(
            f"{str(result_dir)!r} has no run.json/nuclei.parquet; "
            "expected OUT/<slide_id> of a finished run"
        )
    try:
        return _write_qc(result_dir, n_crops, crop_px, thumb_max_px)
    except PathoSamError:
        raise
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        raise ConfigError(
            f"{result_dir}: cannot make QC pictures ({type(err).__name__}: "
            f"{' '.join(str(err).split())}); expected OUT/<slide_id> of a finished run with "
            "intact run.json, nuclei.parquet and labels.ome.zarr"
        ) from err


def _write_qc(result_dir: Path, n_crops: int, crop_px: int, thumb_max_px: int) -> list[Path]:
    """``write_qc`` after the folder check."""
    folder = ResultFolder(result_dir)
    table = folder.table
    info = json.loads(folder.run_json.read_text())["input"]
    slide = open_slide(info["path"], mpp=info["mpp_l0"])
    mpp_l0 = float(info["mpp_l0"])
    w_l0, h_l0 = slide.level_dimensions[0]
    thumb, thumb_ds = read_thumbnail(slide, mpp_l0 * max(max(w_l0, h_l0) / thumb_max_px, 1.0))
    counts = density_grid(_centroids(table), thumb.shape[:2], thumb_ds)
    picture, top = _density_picture(thumb, counts, thumb_ds * mpp_l0)
    boxes = densest_boxes(counts, thumb_ds, crop_px, (w_l0, h_l0), n_crops)
    draw = ImageDraw.Draw(picture)
    for k, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        rect = [x0 / thumb_ds, y0 / thumb_ds, x1 / thumb_ds, y1 / thumb_ds]
        draw.rectangle(rect, outline=(0, 200, 255), width=2)
        draw.text((rect[0] + 3, rect[1] + 2), str(k), fill=(0, 200, 255))
    qc_dir = folder.qc_dir
    qc_dir.mkdir(exist_ok=True)
    written = [qc_dir / "density.png"]
    picture.save(written[0])
    labels_s0 = zarr.open_group(str(folder.labels / "labels" / LABEL_NAME), mode="r")["s0"]
    colours = _class_colours(table)
    ds = float(info["working_mpp"]) / mpp_l0
    for k, box in enumerate(boxes, start=1):
        written.append(qc_dir / crop_file_name(k, box))
        _crop_picture(slide, labels_s0, box, ds, colours).save(written[-1])
    slide.close()
    log.info("QC pictures in %s (peak density %.0f nuclei/mm2)", qc_dir, top)
    return written
