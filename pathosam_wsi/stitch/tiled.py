"""The tiled path on in-memory maps: what the slide pipeline does, without I/O.

Used by tests (tiled equals untiled) and by the comparison with the reference's tiled AIS.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import TilingConfig, WatershedConfig
from pathosam_wsi.postprocess.watershed import ais_watershed
from pathosam_wsi.stitch.ids import assign_global_ids
from pathosam_wsi.stitch.ownership import own_nuclei
from pathosam_wsi.stitch.paint import OwnedTile, paint_core
from pathosam_wsi.tiling.grid import cover

__all__ = ["tiled_labels_from_maps"]


def tiled_labels_from_maps(
    maps: npt.NDArray[np.float32],
    tiling: TilingConfig | None = None,
    watershed: WatershedConfig | None = None,
) -> npt.NDArray[np.uint32]:
    """Segment whole-image maps block by block, with ownership and painting.

    Parameters
    ----------
    maps : (3, H, W) float32, CYX
        Foreground, centre-distance and boundary-distance maps of the whole image.
    tiling, watershed : optional
        Block grid and watershed settings (defaults: 512/64 and PathoSAM's).

    Returns
    -------
    (H, W) uint32, YX
        Labels with tiling-independent global ids.
    """
    tiling = tiling or TilingConfig()
    _, h, w = maps.shape
    grid = cover((0, 0, w, h), (w, h), tiling.tile_px, tiling.halo_px)
    owned = {}
    for block in grid:
        x0, y0, x1, y1 = block.outer_px
        labels = ais_watershed(np.ascontiguousarray(maps[:, y0:y1, x0:x1]), watershed)
        owned[block.block_id] = own_nuclei(labels, block, (w, h))
    luts = assign_global_ids({b: o.key for b, o in owned.items()})
    out = np.zeros((h, w), np.uint32)
    for block in grid:
        tiles = [
            OwnedTile(b.block_id, b.outer_px, owned[b.block_id].labels, luts[b.block_id])
            for b in [block, *grid.neighbours(block)]
        ]
        x0, y0, x1, y1 = block.core_px
        out[y0:y1, x0:x1] = paint_core(block.core_px, block.block_id, tiles)
    return out
