"""Run a prompt model window by window: one encoder pass per window, prompts decoded in batches.

Prompts of one window are grouped by their shape (box or not, number of points) so that no
prompt is padded for another's sake: a prompt's mask depends only on its window and itself,
never on which other prompts share the window or the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image

from pathosam_wsi.model.prompt_models import PromptModel
from pathosam_wsi.prompts.parse import PromptSet
from pathosam_wsi.prompts.windows import Window

__all__ = ["PromptMask", "decode_window", "read_window"]

ReadRegion = Callable[[tuple[int, int, int, int]], npt.NDArray[np.uint8]]
"""Reads a half-open level-0 box inside the slide -> (h, w, 3) uint8."""


@dataclass(frozen=True)
class PromptMask:
    """One prompt's thresholded mask, cropped to its bounding box (level-0 px)."""

    index: int
    """Index into the PromptSet."""
    origin_xy: tuple[int, int]
    mask: npt.NDArray[np.bool_]  # (h, w)
    score: float
    window_id: int
    at_window_edge: bool
    """The mask touches a window border that is not the slide's edge (it may be cut)."""


def read_window(
    read: ReadRegion, wh: tuple[int, int], box: tuple[int, int, int, int]
) -> npt.NDArray[np.uint8]:
    """(bh, bw, 3) uint8 pixels of ``box``; the part outside the (w, h) slide is zero."""
    x0, y0, x1, y1 = box
    out = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, wh[0]), min(y1, wh[1])
    if cx1 > cx0 and cy1 > cy0:
        out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = read((cx0, cy0, cx1, cy1))
    return out


def _groups(
    prompts: PromptSet, index: npt.NDArray[np.int64], batch: int
) -> Iterator[npt.NDArray[np.int64]]:
    """Batches of prompts with the same (has box, point count), in index order."""
    has_box = prompts.has_box
    n_pts = np.bincount(prompts.point_prompt, minlength=len(prompts))
    keys = sorted({(bool(has_box[i]), int(n_pts[i])) for i in index})
    for key in keys:
        members = np.asarray(
            [i for i in index if (bool(has_box[i]), int(n_pts[i])) == key], np.int64
        )
        for s in range(0, members.size, batch):
            yield members[s : s + batch]


def prompt_arrays(
    prompts: PromptSet, members: npt.NDArray[np.int64], origin: tuple[int, int], scale: float
) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64] | None]:
    """Boxes / points of ``members`` in window px (continuous), for ``PromptModel.decode``."""
    shift = np.asarray(origin, np.float64)
    boxes = None
    if prompts.has_box[members[0]]:
        boxes = (prompts.box_xyxy[members] - np.tile(shift, 2)) / scale
    pts = [prompts.points_of(int(i)) for i in members]
    points = labels = None
    if pts[0][0].shape[0]:
        points = np.stack([(p - shift) / scale for p, _ in pts])  # (P, K, 2)
        labels = np.stack([lab for _, lab in pts]).astype(np.int64)  # (P, K)
    return {"boxes_xyxy": boxes, "points_xy": points, "point_labels": labels}


def _masks_from_logits(
    logits: torch.Tensor, window: Window, wh: tuple[int, int]
) -> list[tuple[tuple[int, int], npt.NDArray[np.bool_], bool]]:
    """(P, S, S) logits -> per prompt (origin, cropped mask, touches an inner window edge)."""
    x0, y0, x1, y1 = window.box_xyxy
    side = x1 - x0
    if window.scale != 1.0:
        logits = F.interpolate(logits[:, None], (side, side), mode="bilinear", align_corners=False)[
            :, 0
        ]
    masks = (logits > 0).cpu().numpy()
    # Pixels outside the slide are never part of a nucleus
    vx0, vy0 = max(0, -x0), max(0, -y0)
    vx1, vy1 = min(side, wh[0] - x0), min(side, wh[1] - y0)
    inner = (x0 > 0, y0 > 0, x1 < wh[0], y1 < wh[1])  # left, top, right, bottom are inside
    out = []
    for m in masks:
        m = m[vy0:vy1, vx0:vx1]
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size == 0:
            out.append(((x0 + vx0, y0 + vy0), np.zeros((0, 0), bool), False))
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        h, w = m.shape
        edge = (
            (inner[0] and c0 == 0)
            or (inner[1] and r0 == 0)
            or (inner[2] and c1 == w)
            or (inner[3] and r1 == h)
        )
        out.append(((x0 + vx0 + int(c0), y0 + vy0 + int(r0)), m[r0:r1, c0:c1].copy(), bool(edge)))
    return out


def window_pixels(
    read: ReadRegion, wh: tuple[int, int], window: Window, size: int
) -> npt.NDArray[np.uint8]:
    """The model's (S, S, 3) input for a window (resized with PIL bilinear when scaled)."""
    pixels = read_window(read, wh, window.box_xyxy)
    if window.scale != 1.0:
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR))
    return pixels


def decode_window(
    model: PromptModel,
    prompts: PromptSet,
    window: Window,
    pixels: npt.NDArray[np.uint8],
    wh: tuple[int, int],
    batch: int = 32,
) -> list[PromptMask]:
    """Masks of every prompt a window serves, in prompt-index order.

    Parameters
    ----------
    pixels : (S, S, 3) uint8, YXC, model px
        From :func:`window_pixels`.
    wh : (w, h)
        Slide size at level 0, px.
    """
    embedding = model.embed(pixels[None])  # (1, 256, E, E)
    origin = (window.box_xyxy[0], window.box_xyxy[1])
    found: dict[int, PromptMask] = {}
    for members in _groups(prompts, window.prompts, batch):
        arrays = prompt_arrays(prompts, members, origin, window.scale)
        # SAM takes the best of three masks for a lone point and one mask otherwise
        multimask = (
            arrays["boxes_xyxy"] is None
            and arrays["points_xy"] is not None
            and arrays["points_xy"].shape[1] == 1
        )
        result = model.decode(embedding, multimask=multimask, **arrays)  # type: ignore[arg-type]
        for k, (org, mask, edge) in enumerate(_masks_from_logits(result.logits, window, wh)):
            i = int(members[k])
            found[i] = PromptMask(i, org, mask, float(result.score[k]), window.window_id, edge)
    return [found[int(i)] for i in window.prompts]
