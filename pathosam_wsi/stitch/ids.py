"""Global nucleus ids that do not depend on tiling, block order or scheduling.

Id = 1 + rank of the nucleus's first pixel in raster order of the working frame (ties, which only
occur if two blocks segmented overlapping nuclei differently, are broken by block id).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

__all__ = ["assign_global_ids"]


def assign_global_ids(
    keys_by_block: Mapping[int, npt.NDArray[np.int64]],
) -> dict[int, npt.NDArray[np.uint32]]:
    """Global ids for every block's owned nuclei.

    Parameters
    ----------
    keys_by_block : mapping block_id -> (n_b,) int64
        Raster keys of each block's owned nuclei, in local id order.

    Returns
    -------
    dict block_id -> (n_b + 1,) uint32
        Look-up table from local id (index; 0 -> 0) to global id.
    """
    block_ids = sorted(keys_by_block)
    sizes = np.array([keys_by_block[b].size for b in block_ids], np.int64)
    total = int(sizes.sum())
    if total >= np.iinfo(np.uint32).max:
        raise OverflowError(f"{total} nuclei do not fit uint32 labels")
    if total == 0:
        return {b: np.zeros(1, np.uint32) for b in block_ids}
    keys = np.concatenate([keys_by_block[b] for b in block_ids])
    owners = np.repeat(np.array(block_ids, np.int64), sizes)
    order = np.lexsort((owners, keys))
    gids = np.empty(total, np.uint32)
    gids[order] = np.arange(1, total + 1, dtype=np.uint32)
    out: dict[int, npt.NDArray[np.uint32]] = {}
    start = 0
    for b, n in zip(block_ids, sizes, strict=True):
        lut = np.zeros(int(n) + 1, np.uint32)
        lut[1:] = gids[start : start + n]
        out[b] = lut
        start += int(n)
    return out
