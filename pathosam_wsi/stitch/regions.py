"""Foreground regions and whether a window holds them whole: the kernels of the window rule.

A *region* is an 8-connected component of the model's support: the watershed's foreground, the
model's own foreground (``ais[0] > 0.5``) and every pixel with a centre or boundary distance below
1 (where a local model such as ``classical`` has put a nucleus; it keeps both maps below 1 on
every nucleus pixel). 8-connected, because the watershed labels its seeds 8-connected. For a model
whose maps are local (the foreground of a pixel depends on the pixels within the model's
``context_px``; the distance maps on the region that holds it), the nuclei of a region depend only
on the region and the pixels within ``reach_px`` of it (the watershed's smoothing). So two windows
that both hold the region and that reach, beyond the region, further than ``reach_px`` (plus the
model's context, which the pipeline reads around every window) give the region the same nuclei.
A region that comes closer than that to a window edge that is not an image edge is *cut*.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.config import WatershedConfig

__all__ = ["cut_regions", "edge_band", "regions_near", "support_regions", "watershed_reach_px"]

_EIGHT = np.ones((3, 3), bool)


def watershed_reach_px(config: WatershedConfig) -> int:
    """How far (px) the watershed's map smoothing looks: the widest Gaussian's kernel radius."""
    sigma = max(config.foreground_smoothing_px, config.distance_smoothing_px, 0.0)
    return int(3.0 * sigma + 0.5)  # scipy's radius for truncate=3 (postprocess/watershed.py)


def support_regions(
    ais: npt.NDArray[np.float32], fg_mask: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int32], int]:
    """Regions of one window.

    Parameters
    ----------
    ais : (3, h, w) float32, CYX, window px
        Unsmoothed foreground, centre-distance and boundary-distance maps.
    fg_mask : (h, w) bool, YX, window px
        The watershed's foreground (smoothed foreground above its threshold).

    Returns
    -------
    labels : (h, w) int32, YX
        Region ids 1..n, 0 elsewhere.
    n : int
        Number of regions.
    """
    support = fg_mask | (ais[0] > 0.5) | (ais[1] < 1.0) | (ais[2] < 1.0)
    labels, n = ndi.label(support, structure=_EIGHT)
    return labels.astype(np.int32, copy=False), int(n)


def edge_band(
    box_px: BoxXYXY, image_wh_px: tuple[int, int], width_px: int
) -> npt.NDArray[np.bool_]:
    """(h, w) bool, YX, box px: pixels within ``width_px`` of a box edge that is no image edge."""
    x0, y0, x1, y1 = box_px
    band = np.zeros((y1 - y0, x1 - x0), bool)
    if width_px <= 0:
        return band
    if y0 > 0:
        band[:width_px, :] = True
    if y1 < image_wh_px[1]:
        band[-width_px:, :] = True
    if x0 > 0:
        band[:, :width_px] = True
    if x1 < image_wh_px[0]:
        band[:, -width_px:] = True
    return band


def cut_regions(regions: npt.NDArray[np.int32], n: int, band: npt.NDArray[np.bool_]) -> set[int]:
    """Ids of the regions that enter ``band`` (h, w) bool."""
    hit = np.zeros(n + 1, bool)
    hit[regions[band]] = True
    hit[0] = False
    return set(np.flatnonzero(hit).tolist())


def regions_near(regions: npt.NDArray[np.int32], n: int, ids: set[int], reach_px: int) -> set[int]:
    """``ids`` and every region within ``reach_px`` (px, square neighbourhood) of one of them."""
    if not ids:
        return set()
    chosen = np.zeros(n + 1, bool)
    chosen[list(ids)] = True
    mask = chosen[regions]
    if reach_px > 0:
        mask = ndi.maximum_filter(mask, size=2 * reach_px + 1)
    near = np.zeros(n + 1, bool)
    near[regions[mask]] = True
    near[0] = False
    return ids | set(np.flatnonzero(near).tolist())
