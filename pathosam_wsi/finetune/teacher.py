"""Teacher labels: nucleus outlines re-drawn by a box-prompted SAM-family model (distillation).

Training labels that come from another segmentation model (histolytics' crops) or from hand-drawn
polygons carry their own outline convention. :func:`box_refine` re-draws every nucleus from its
bounding box with a prompt model (LiteMedSAM by default in ``scripts/train_default_model.py``), so
the student learns one consistent outline, and :func:`complete_labels` adds nuclei that the labels
miss: candidates (e.g. a first student's detections) that the teacher confirms with a high
predicted IoU and that do not overlap a labelled nucleus.

Pure array functions over a :class:`~pathosam_wsi.model.prompt_models.PromptModel`; the image is
covered by overlapping ``input_px``² windows and each box is decoded in the window whose core holds
its centre, so no box is decoded twice. Where masks overlap, the pixel goes to the higher logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from pathosam_wsi.model.prompt_models import PromptModel

__all__ = ["BoxMasks", "box_refine", "boxes_of", "complete_labels", "refine_labels"]


@dataclass(frozen=True)
class BoxMasks:
    """Masks of N boxes painted into one label image.

    Attributes
    ----------
    labels : (H, W) int32, YX
        Box ``i`` painted as ``i + 1`` (largest connected part of its mask); 0 elsewhere.
    iou : (N,) float32
        The teacher's predicted IoU per box (NaN for a box that was not decoded).
    """

    labels: npt.NDArray[np.int32]
    iou: npt.NDArray[np.float32]


def boxes_of(
    labels: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(ids, (N, 4) xyxy boxes in continuous px) of the objects of an (H, W) label image."""
    slices = ndi.find_objects(labels)
    ids = [i + 1 for i, s in enumerate(slices) if s is not None]
    boxes = [
        (s[1].start, s[0].start, s[1].stop, s[0].stop) for s in slices if s is not None
    ]  # fmt: skip
    return np.asarray(ids, np.int64), np.asarray(boxes, np.float64).reshape(-1, 4)


def _window_origins(side: int, window: int, core: int) -> list[int]:
    """Window starts along one axis; window k's core starts at k * core."""
    if side <= window:
        return [0]
    return [min(max(k * core - (window - core) // 2, 0), side - window) for k in
            range(-(-side // core))]  # fmt: skip


def box_refine(
    image: npt.NDArray[np.uint8],
    boxes_xyxy: npt.NDArray[np.float64],
    model: PromptModel,
    *,
    core_px: int | None = None,
    batch: int = 64,
) -> BoxMasks:
    """The teacher's mask for each box, as one label image.

    Parameters
    ----------
    image : (H, W, 3) uint8, YXC
    boxes_xyxy : (N, 4) float64, continuous image px (x0, y0, x1, y1)
    model : PromptModel
        Its ``input_px`` is the window side.
    core_px : int, optional
        Window stride; default three quarters of the window.
    batch : int
        Boxes decoded together (a box's mask does not depend on the others).
    """
    h, w = image.shape[:2]
    win = model.input_px
    core = core_px or (3 * win) // 4
    labels = np.zeros((h, w), np.int32)
    best = np.full((h, w), -np.inf, np.float32)
    iou = np.full(len(boxes_xyxy), np.nan, np.float32)
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
    ys, xs = _window_origins(h, win, core), _window_origins(w, win, core)
    for iy, wy in enumerate(ys):
        for ix, wx in enumerate(xs):
            in_y = (cy >= iy * core) & ((cy < (iy + 1) * core) | (iy == len(ys) - 1))
            in_x = (cx >= ix * core) & ((cx < (ix + 1) * core) | (ix == len(xs) - 1))
            picked = np.flatnonzero(in_y & in_x)
            if picked.size == 0:
                continue
            pixels = image[wy : wy + win, wx : wx + win]
            emb = model.embed(pixels[None])
            for start in range(0, picked.size, batch):
                idx = picked[start : start + batch]
                local = boxes_xyxy[idx] - np.array([wx, wy, wx, wy], np.float64)
                local = np.clip(local, 0, [pixels.shape[1], pixels.shape[0]] * 2)
                res = model.decode(emb, boxes_xyxy=local)
                logits = res.logits[:, : pixels.shape[0], : pixels.shape[1]].cpu().numpy()
                iou[idx] = res.score
                for k, i in enumerate(idx):
                    _paint(labels, best, logits[k], int(i) + 1, (wy, wx))
    return BoxMasks(labels, iou)


def _paint(
    labels: npt.NDArray[np.int32],
    best: npt.NDArray[np.float32],
    logit: npt.NDArray[np.float32],
    value: int,
    origin_yx: tuple[int, int],
) -> None:
    """Paint the largest positive part of ``logit`` where it beats the logits painted before."""
    mask = logit > 0
    parts, n = ndi.label(mask)
    if n == 0:
        return
    if n > 1:
        mask = parts == 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
    rr, cc = np.nonzero(mask)
    v = logit[rr, cc]
    rr, cc = rr + origin_yx[0], cc + origin_yx[1]
    win = v > best[rr, cc]
    labels[rr[win], cc[win]] = value
    best[rr[win], cc[win]] = v[win]


def refine_labels(
    image: npt.NDArray[np.uint8], labels: npt.NDArray[np.int32], model: PromptModel
) -> npt.NDArray[np.int32]:
    """(H, W) int32: every labelled nucleus re-drawn by the teacher from its box (ids 1..N)."""
    _, boxes = boxes_of(labels)
    return box_refine(image, boxes, model).labels


def complete_labels(
    image: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int32],
    candidates: npt.NDArray[np.int32],
    model: PromptModel,
    *,
    min_iou: float = 0.85,
    max_overlap: float = 0.1,
    min_area_px: int = 30,
) -> tuple[npt.NDArray[np.int32], int]:
    """Labels plus the candidate nuclei that the teacher confirms; returns (labels, added).

    A candidate (an object of ``candidates``, (H, W) int32) is added when at most ``max_overlap``
    of it lies on labelled nuclei, the teacher's mask from its box has predicted IoU >=
    ``min_iou`` and at least ``min_area_px`` pixels, and at most ``max_overlap`` of that mask lies
    on labelled nuclei. Added nuclei only take background pixels; ids continue after the
    largest label.
    """
    ids, boxes = boxes_of(candidates)
    if ids.size == 0:
        return labels.copy(), 0
    area = ndi.sum_labels(np.ones_like(candidates), candidates, ids)
    on_labels = ndi.sum_labels(labels > 0, candidates, ids)
    fresh = on_labels <= max_overlap * area
    taught = box_refine(image, boxes[fresh], model)
    t_ids = np.arange(1, int(fresh.sum()) + 1)
    t_area = ndi.sum_labels(np.ones_like(taught.labels), taught.labels, t_ids)
    t_on = ndi.sum_labels(labels > 0, taught.labels, t_ids)
    accept = 1 + np.flatnonzero(
        (taught.iou >= min_iou) & (t_area >= min_area_px) & (t_on <= max_overlap * t_area)
    )
    added = int(accept.size)
    new_id = np.zeros(t_ids.size + 1, np.int32)  # teacher id -> new label id (0: not added)
    new_id[accept] = int(labels.max()) + 1 + np.arange(added, dtype=np.int32)
    painted = new_id[taught.labels]
    out = labels.copy()
    paint = (painted > 0) & (out == 0)
    out[paint] = painted[paint]
    return out, added
