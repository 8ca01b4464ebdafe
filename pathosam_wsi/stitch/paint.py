"""Assemble the final label raster of one core block from its own and its neighbours' nuclei.

A nucleus owned by one block may extend into a neighbour's core; the neighbour's chunk is painted
with it too. Painting order is fixed (neighbours by ascending block id, then the block itself), so
a pixel claimed twice (possible only when blocks segmented a region differently) gets the same
value whatever the scheduling: the block's own nuclei win inside its core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pathosam_wsi._types import BoxXYXY

__all__ = ["OwnedTile", "paint_core"]


@dataclass(frozen=True)
class OwnedTile:
    """One block's owned nuclei: outer box, local label tile and local->global look-up table."""

    block_id: int
    outer_px: BoxXYXY
    labels: npt.NDArray[np.uint32]
    """(h, w) uint32, YX, outer-box px, local ids."""
    lut: npt.NDArray[np.uint32]
    """(n + 1,) uint32, local id -> global id (0 -> 0)."""


def paint_core(
    core_px: BoxXYXY, own_block_id: int, tiles: Sequence[OwnedTile]
) -> npt.NDArray[np.uint32]:
    """Final labels of one core box.

    Parameters
    ----------
    core_px : BoxXYXY
        The core box (x0, y0, x1, y1), working px.
    own_block_id : int
        Id of the block whose core this is (painted last).
    tiles : sequence of OwnedTile
        The block's own tile and its neighbours' (any order; missing ones are background).

    Returns
    -------
    (h, w) uint32, YX, core px
        Global nucleus ids, 0 = background.
    """
    cx0, cy0, cx1, cy1 = core_px
    out = np.zeros((cy1 - cy0, cx1 - cx0), np.uint32)
    ordered = sorted(tiles, key=lambda t: (t.block_id == own_block_id, t.block_id))
    for tile in ordered:
        ox0, oy0, ox1, oy1 = tile.outer_px
        ix0, iy0 = max(cx0, ox0), max(cy0, oy0)
        ix1, iy1 = min(cx1, ox1), min(cy1, oy1)
        if ix0 >= ix1 or iy0 >= iy1:
            continue
        local = tile.labels[iy0 - oy0 : iy1 - oy0, ix0 - ox0 : ix1 - ox0]
        values = tile.lut[local]
        view = out[iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0]
        np.copyto(view, values, where=values > 0)
    return out
