"""The whole CPU kernel chain of one block: watershed -> ownership -> outlines -> measurements.

A pure function of arrays (no files, no dask): the pipeline wraps it per block. The labelled
pixels are listed once (``LabelPixels``) and every per-nucleus sum runs over those lists, so no
measurement passes over the whole block again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import WatershedConfig
from pathosam_wsi.postprocess.features import features_from_pixels
from pathosam_wsi.postprocess.measure import pixel_means, semantic_classes_of_pixels
from pathosam_wsi.postprocess.polygons import label_rings
from pathosam_wsi.postprocess.watershed import ais_watershed
from pathosam_wsi.stitch.ownership import own_nuclei_pixels
from pathosam_wsi.tiling.grid import Block

__all__ = ["measure_owned", "postprocess_block"]


def _perimeter_l0(
    ring_l0: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    """(n,) length of each closed ring, level-0 px.

    Each ring's segments are summed on their own (not as differences of one running sum), so a
    nucleus gets the same bits whatever other nuclei its block holds.
    """
    if n == 0:
        return np.zeros(0)
    seg = np.diff(ring_l0, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    within = np.ones(seg_len.size, bool)
    within[offsets[1:-1] - 1] = False  # the segments that join one ring to the next
    starts = offsets[:-1] - np.arange(n)
    return np.add.reduceat(seg_len[within], starts)


def postprocess_block(
    ais: npt.NDArray[np.float32],
    semantic: npt.NDArray[np.float32] | None,
    tile: npt.NDArray[np.uint8],
    block: Block,
    image_wh_px: tuple[int, int],
    downsample: float,
    mpp_l0: float,
    mpp: float,
    watershed_config: WatershedConfig,
    timing_s: dict[str, float] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Nuclei owned by one block and their measurements: the arrays of its result file.

    Parameters
    ----------
    ais : (3, h, w) float32, CYX, outer-box px
        The model's AIS maps of the block's outer box.
    semantic : (C, h, w) float32, CYX, or None
        Class probabilities (class 0 = background), when the model has classes.
    tile : (h, w, 3) uint8, YXC, outer-box px
        The block's image (for colour features).
    block : Block
        The block (core and outer boxes, working px).
    image_wh_px : tuple of int
        (width, height) of the working frame.
    downsample : float
        Level-0 px per working px.
    mpp_l0, mpp : float
        Pixel size of level 0 and of the working frame, µm/px.
    watershed_config : WatershedConfig
        Thresholds and smoothing.
    timing_s : dict, optional
        Filled with ``watershed_s`` and ``stitch_s`` (everything after the watershed), seconds.

    Returns
    -------
    dict of str to ndarray
        ``labels`` (h, w) uint32 owned nuclei 1..n; per nucleus (n,): ``key``, ``area_px``,
        ``centroid_x_l0``, ``centroid_y_l0``, ``perimeter_um``, ``fg_prob_mean``,
        ``at_halo_edge``, the ``FEATURE_COLUMNS``, and ``class_id`` / ``class_prob`` with
        ``semantic``; ``ring_xy_l0`` (P, 2) and ``ring_offsets`` (n + 1,) outlines in level-0 px.
    """
    t0 = time.perf_counter()
    labels = ais_watershed(ais, watershed_config)
    t1 = time.perf_counter()
    arrays = measure_owned(
        labels, ais[0], semantic, tile, block, image_wh_px, downsample, mpp_l0, mpp
    )
    if timing_s is not None:
        timing_s.update(watershed_s=t1 - t0, stitch_s=time.perf_counter() - t1)
    return arrays


def measure_owned(
    labels: npt.NDArray[np.uint32],
    fg_prob: npt.NDArray[np.float32],
    semantic: npt.NDArray[np.float32] | None,
    tile: npt.NDArray[np.uint8],
    block: Block,
    image_wh_px: tuple[int, int],
    downsample: float,
    mpp_l0: float,
    mpp: float,
) -> dict[str, npt.NDArray[Any]]:
    """Ownership, outlines and measurements of segmented nuclei: the arrays of a result file.

    ``labels`` (h, w) uint32, ``fg_prob`` (h, w) float32, ``semantic`` (C, h, w) float32 and
    ``tile`` (h, w, 3) uint8 all cover ``block.outer_px`` (which may be a window larger than the
    block's halo box); the rest and the result as ``postprocess_block``, plus ``labels_box_px``
    (4,) int64, the box (x0, y0, x1, y1, working px) that ``labels`` covers.
    """
    owned, px = own_nuclei_pixels(labels, block, image_wh_px)
    n = owned.count
    ring_xy, offsets = label_rings(owned.labels, n)
    ring_l0 = (ring_xy + np.array([block.outer_px[0], block.outer_px[1]])) * downsample
    centroid_yx_l0 = (owned.sum_yx_px / np.maximum(owned.area_px, 1)[:, None] + 0.5) * downsample
    arrays: dict[str, npt.NDArray[Any]] = {
        "labels": owned.labels,
        "key": owned.key,
        "area_px": owned.area_px,
        "centroid_x_l0": centroid_yx_l0[:, 1],
        "centroid_y_l0": centroid_yx_l0[:, 0],
        "perimeter_um": _perimeter_l0(ring_l0, offsets, n) * mpp_l0,
        "fg_prob_mean": pixel_means(fg_prob, px, n).astype(np.float32),
        "at_halo_edge": owned.at_halo_edge,
        "ring_xy_l0": ring_l0,
        "ring_offsets": offsets,
        "labels_box_px": np.asarray(block.outer_px, np.int64),
    }
    arrays.update(features_from_pixels(px, tile, n, mpp, (ring_xy, offsets)))
    if semantic is not None:
        arrays["class_id"], arrays["class_prob"] = semantic_classes_of_pixels(semantic, px, n)
    return arrays
