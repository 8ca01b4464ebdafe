"""Keep the nuclei whose centroid lies on tissue, decided per nucleus and not per block.

The tissue mask skips blocks whose core does not touch tissue (one thumbnail pixel of slack), so
which nuclei far from tissue survive would depend on the block size. Deciding per nucleus (its
centroid on the mask grown by that same pixel) gives every tiling the same nuclei: such a
nucleus's owning core touches tissue, so its block always runs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pathosam_wsi._types import BoxXYXY

__all__ = ["keep_on_tissue"]


def keep_on_tissue(
    labels: npt.NDArray[np.uint32],
    box_px: BoxXYXY,
    downsample: float,
    grown_mask: npt.NDArray[np.bool_],
    mask_downsample_l0: float,
) -> npt.NDArray[np.uint32]:
    """``labels`` without the nuclei whose centroid lies off the tissue.

    Parameters
    ----------
    labels : (h, w) uint32, YX, box px
        Nuclei of the box ``box_px`` (x0, y0, x1, y1, working px).
    downsample : float
        Level-0 px per working px.
    grown_mask : (H, W) bool, YX, thumbnail px
        The tissue mask grown by one pixel (3 x 3).
    mask_downsample_l0 : float
        Level-0 px per thumbnail px.
    """
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    if index.size == 0:
        return labels
    ids = flat[index].astype(np.intp)
    rows, cols = np.divmod(index, labels.shape[1])
    n = int(ids.max())
    area = np.bincount(ids, minlength=n + 1).astype(np.int64)
    sum_y = np.bincount(ids, weights=rows, minlength=n + 1).astype(np.int64) + box_px[1] * area
    sum_x = np.bincount(ids, weights=cols, minlength=n + 1).astype(np.int64) + box_px[0] * area
    present = area > 0
    safe = np.maximum(area, 1)
    # the centroid in level-0 px exactly as the table gives it (stitch/ownership.py, block.py)
    cy = ((sum_y / safe + 0.5) * downsample / mask_downsample_l0).astype(np.int64)
    cx = ((sum_x / safe + 0.5) * downsample / mask_downsample_l0).astype(np.int64)
    h, w = grown_mask.shape
    inside = present & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
    keep = np.zeros(n + 1, bool)
    keep[inside] = grown_mask[cy[inside], cx[inside]]
    if keep[present].all():
        return labels
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(np.uint32)
