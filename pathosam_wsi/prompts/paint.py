"""Overlap rule: each pixel goes to the prompt with the higher score, ties to the lower prompt id.

The order is a total order on prompts, so the painted labels do not depend on windows, tiles,
batches or the order in which masks arrive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pathosam_wsi.prompts.decode import PromptMask

__all__ = ["paint_order", "paint_region"]


def paint_order(
    scores: npt.NDArray[np.float64], prompt_ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Indices sorted by score descending, then prompt id ascending (first painted wins)."""
    return np.lexsort((prompt_ids, -scores)).astype(np.int64)


def paint_region(
    region_xyxy: tuple[int, int, int, int],
    masks: Sequence[PromptMask],
    values: npt.NDArray[np.uint32],
    prompt_ids: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint32]:
    """(h, w) uint32 labels of a half-open level-0 region from the masks that reach it.

    ``values[k]`` is the label of ``masks[k]``; ``prompt_ids[k]`` its prompt id (tie-break).
    """
    x0, y0, x1, y1 = region_xyxy
    out = np.zeros((y1 - y0, x1 - x0), np.uint32)
    scores = np.asarray([m.score for m in masks], np.float64)
    for k in paint_order(scores, prompt_ids):
        m = masks[int(k)]
        mh, mw = m.mask.shape
        mx0, my0 = m.origin_xy
        ax0, ay0, ax1, ay1 = max(x0, mx0), max(y0, my0), min(x1, mx0 + mw), min(y1, my0 + mh)
        if ax1 <= ax0 or ay1 <= ay0:
            continue
        sub = m.mask[ay0 - my0 : ay1 - my0, ax0 - mx0 : ax1 - mx0]
        dst = out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0]
        dst[sub & (dst == 0)] = values[int(k)]
    return out
