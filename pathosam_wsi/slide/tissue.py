"""Tissue detection on a low-resolution thumbnail.

Brightfield background is bright and unsaturated; tissue is stained. The mask is HSV saturation
above max(Otsu, a floor), closed, hole-filled and cleaned of small islands. The thumbnail is built
window by window, so memory stays bounded even for single-level slides.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

from pathosam_wsi.config import TissueConfig
from pathosam_wsi.slide.open import Slide

__all__ = ["block_has_tissue", "read_thumbnail", "tissue_mask"]

_WINDOW_PX = 2048 * 2048
_MAX_SATURATION_THRESH = 0.15


def read_thumbnail(slide: Slide, thumb_mpp: float) -> tuple[npt.NDArray[np.uint8], float]:
    """A thumbnail near ``thumb_mpp`` µm/px.

    Returns
    -------
    thumbnail : (h, w, 3) uint8, YXC
    downsample_l0 : float
        Thumbnail px size in level-0 px (exact integer multiple of the read level's downsample).
    """
    mpp = slide.mpp or 1.0
    wanted = max(thumb_mpp / mpp, 1.0)
    level = 0
    for i, ds in enumerate(slide.level_downsamples):
        if ds <= wanted and ds >= slide.level_downsamples[level]:
            level = i
    level_ds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    # Never pool over more pixels than the level has (a tiny image gives a 1-px thumbnail).
    factor = max(1, min(int(wanted / level_ds), lw, lh))
    tw, th = max(1, lw // factor), max(1, lh // factor)
    out = np.empty((th, tw, 3), np.uint8)
    # Windows of at most ~_WINDOW_PX level pixels (a multiple of ``factor`` on each side), so the
    # float copy of one window stays small whatever the slide width.
    side = max(factor, (int(math.sqrt(_WINDOW_PX)) // factor) * factor)
    for sy0 in range(0, th * factor, side):
        sy1 = min(sy0 + side, th * factor)
        for sx0 in range(0, tw * factor, side):
            sx1 = min(sx0 + side, tw * factor)
            window = slide.read_level(level, (sx0, sy0, sx1, sy1)).astype(np.float32)
            h, w = (sy1 - sy0) // factor, (sx1 - sx0) // factor
            pooled = window.reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
            ty, tx = sy0 // factor, sx0 // factor
            out[ty : ty + h, tx : tx + w] = np.round(pooled).astype(np.uint8)
    return out, level_ds * factor


def tissue_mask(
    thumbnail: npt.NDArray[np.uint8], thumb_mpp: float, config: TissueConfig
) -> npt.NDArray[np.bool_]:
    """Tissue mask of a thumbnail.

    Parameters
    ----------
    thumbnail : (h, w, 3) uint8, YXC, thumbnail px
    thumb_mpp : float
        Thumbnail pixel size, µm/px (sets the minimum island size in px).
    config : TissueConfig

    Returns
    -------
    (h, w) bool, YX
        True where there is tissue.
    """
    sat = rgb2hsv(thumbnail)[..., 1]
    try:
        otsu = float(threshold_otsu(sat))
    except ValueError:  # constant image
        otsu = 1.0
    # Otsu separates glass from stain; clipped so that a slide that is all tissue (Otsu then sits
    # inside the tissue's own range) or all glass (Otsu near 0) is still classified correctly.
    thresh = min(max(otsu, config.min_saturation_frac), _MAX_SATURATION_THRESH)
    mask = sat >= thresh
    # Padded by replication so the closing's erosion does not eat tissue at the image border.
    padded = np.pad(mask, 2, mode="edge")
    mask = ndi.binary_closing(padded, structure=np.ones((3, 3), bool), iterations=2)[2:-2, 2:-2]
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n:
        min_px = config.min_region_um2 / (thumb_mpp**2)
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_px
        keep[0] = False
        mask = keep[labels]
    return mask


def block_has_tissue(
    mask: npt.NDArray[np.bool_],
    mask_downsample_l0: float,
    box_l0: tuple[float, float, float, float],
) -> bool:
    """Whether the level-0 box (x0, y0, x1, y1) touches tissue (one thumbnail px of slack)."""
    h, w = mask.shape
    x0 = max(math.floor(box_l0[0] / mask_downsample_l0) - 1, 0)
    y0 = max(math.floor(box_l0[1] / mask_downsample_l0) - 1, 0)
    x1 = min(math.ceil(box_l0[2] / mask_downsample_l0) + 1, w)
    y1 = min(math.ceil(box_l0[3] / mask_downsample_l0) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return False
    return bool(mask[y0:y1, x0:x1].any())
