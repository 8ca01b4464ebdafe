"""Which nuclei a block keeps: those whose centroid lies in its core (exact integer test).

Each block runs the watershed on its whole outer box; a nucleus is kept by exactly one block, the
one whose core holds the nucleus centroid (pixel centres at +0.5), as StarDist's ``big`` prediction
keeps each object in exactly one block. A kept nucleus that touches the outer edge of the halo
(where that edge is not the image edge) may be cut: it is flagged so the run can warn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pathosam_wsi.postprocess.pixels import LabelPixels, label_pixels
from pathosam_wsi.tiling.grid import Block

__all__ = ["OwnedNuclei", "own_nuclei", "own_nuclei_pixels"]


@dataclass(frozen=True)
class OwnedNuclei:
    """The nuclei a block owns, in its outer-box frame.

    Attributes
    ----------
    labels : (h, w) uint32, YX, outer-box px
        Only owned nuclei, renumbered 1..n in raster order of their first pixel; 0 elsewhere.
    key : (n,) int64
        Raster index (``y * image_w + x``, working px) of each nucleus's first pixel: a
        tiling-independent identity used to give global ids.
    area_px : (n,) int64
    sum_yx_px : (n, 2) int64
        Sums of the global working-frame (y, x) pixel indices (centroid = sum / area + 0.5).
    at_halo_edge : (n,) bool
        Nucleus touches the outer edge of the halo inside the image.
    """

    labels: npt.NDArray[np.uint32]
    key: npt.NDArray[np.int64]
    area_px: npt.NDArray[np.int64]
    sum_yx_px: npt.NDArray[np.int64]
    at_halo_edge: npt.NDArray[np.bool_]

    @property
    def count(self) -> int:
        """Number of owned nuclei."""
        return int(self.key.size)


def _edge_labels(
    labels: npt.NDArray[np.uint32], block: Block, image_wh_px: tuple[int, int]
) -> npt.NDArray[np.uint32]:
    """Ids touching an outer edge of the box that is not an image edge."""
    x0, y0, x1, y1 = block.outer_px
    sides = []
    if y0 > 0:
        sides.append(labels[0, :])
    if y1 < image_wh_px[1]:
        sides.append(labels[-1, :])
    if x0 > 0:
        sides.append(labels[:, 0])
    if x1 < image_wh_px[0]:
        sides.append(labels[:, -1])
    if not sides:
        return np.zeros(0, np.uint32)
    return np.unique(np.concatenate(sides))


def own_nuclei(
    labels: npt.NDArray[np.uint32], block: Block, image_wh_px: tuple[int, int]
) -> OwnedNuclei:
    """Keep the nuclei whose centroid lies in the block's core.

    Parameters
    ----------
    labels : (h, w) uint32, YX, outer-box px
        Instance labels of the whole outer box (0 = background).
    block : Block
        The block; ``labels.shape`` must equal ``block.outer_hw``.
    image_wh_px : tuple of int
        (width, height) of the working frame, for keys and image-edge tests.
    """
    return own_nuclei_pixels(labels, block, image_wh_px)[0]


def own_nuclei_pixels(
    labels: npt.NDArray[np.uint32], block: Block, image_wh_px: tuple[int, int]
) -> tuple[OwnedNuclei, LabelPixels]:
    """``own_nuclei`` plus the owned nuclei's pixels (local ids), for the measurements.

    Parameters and the first result as ``own_nuclei``; only labelled pixels are visited.
    """
    if labels.shape != block.outer_hw:
        raise ValueError(f"labels shape {labels.shape} != outer box {block.outer_hw}")
    ox, oy = block.outer_px[0], block.outer_px[1]
    px = label_pixels(labels)
    n = int(px.ids.max()) if px.ids.size else 0
    area = np.bincount(px.ids, minlength=n + 1).astype(np.int64)
    sum_y = np.bincount(px.ids, weights=px.rows, minlength=n + 1).astype(np.int64) + oy * area
    sum_x = np.bincount(px.ids, weights=px.cols, minlength=n + 1).astype(np.int64) + ox * area
    cx0, cy0, cx1, cy1 = block.core_px
    # centroid c = sum / area + 0.5 lies in [c0, c1)  <=>  2 c0 a <= 2 sum + a < 2 c1 a
    two_y, two_x = 2 * sum_y + area, 2 * sum_x + area
    owned = (
        (area > 0)
        & (two_y >= 2 * cy0 * area)
        & (two_y < 2 * cy1 * area)
        & (two_x >= 2 * cx0 * area)
        & (two_x < 2 * cx1 * area)
    )
    owned[0] = False
    ids = np.flatnonzero(owned)
    first_of = np.full(n + 1, labels.size, np.intp)
    np.minimum.at(first_of, px.ids, px.index)
    # Renumber in raster order of first pixel so local ids are tiling-independent in order.
    ids = ids[np.argsort(first_of[ids], kind="stable")]
    lut = np.zeros(n + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    fy, fx = np.divmod(first_of[ids].astype(np.int64), labels.shape[1])
    key = (fy + oy) * image_wh_px[0] + (fx + ox)
    edge = np.zeros(n + 1, bool)
    edge[_edge_labels(labels, block, image_wh_px)] = True
    local = lut[px.ids]
    mine = px.subset(local > 0, local.astype(np.intp))
    out = np.zeros(labels.shape, np.uint32)
    out.ravel()[mine.index] = mine.ids
    nuclei = OwnedNuclei(
        labels=out,
        key=key.astype(np.int64),
        area_px=area[ids],
        sum_yx_px=np.stack([sum_y[ids], sum_x[ids]], axis=1),
        at_halo_edge=edge[ids],
    )
    return nuclei, mine
