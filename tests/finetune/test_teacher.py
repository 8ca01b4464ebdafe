"""Teacher labels: each box decoded once, in a window that holds it; completion never overwrites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from pathosam_wsi.finetune.teacher import box_refine, boxes_of, complete_labels, refine_labels
from pathosam_wsi.model.prompt_models import DecodeResult


@dataclass
class BoxTeacher:
    """A stand-in prompt model: the mask of a box is the box shrunk by ``inset`` px.

    Its predicted IoU is ``score`` except for boxes narrower than ``doubt_below_px``, which get
    0.1. It records every decoded box (window px) and every window it embedded.
    """

    input_px: int = 64
    inset: int = 1
    score: float = 0.95
    doubt_below_px: float = 0.0
    decoded: list[npt.NDArray[np.float64]] = field(default_factory=list)
    windows: list[tuple[int, int]] = field(default_factory=list)

    def embed(self, windows: npt.NDArray[np.uint8]) -> torch.Tensor:
        self.windows.append(windows.shape[1:3])
        return torch.zeros(1)

    def decode(self, embedding: torch.Tensor, *, boxes_xyxy: Any = None, **_: Any) -> DecodeResult:
        s = self.input_px
        logits = torch.full((len(boxes_xyxy), s, s), -5.0)
        for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy)):
            self.decoded.append(np.array([x0, y0, x1, y1]))
            i = self.inset
            logits[k, int(y0) + i : int(y1) - i, int(x0) + i : int(x1) - i] = 5.0
        width = np.asarray(boxes_xyxy)[:, 2] - np.asarray(boxes_xyxy)[:, 0]
        score = np.where(width < self.doubt_below_px, 0.1, self.score).astype(np.float32)
        return DecodeResult(logits, logits[:, None], score)


def _squares(
    shape: tuple[int, int], side: int, step: int, offset: int = 3
) -> npt.NDArray[np.int32]:
    """Non-touching side x side squares on a grid, ids in raster order."""
    labels = np.zeros(shape, np.int32)
    k = 0
    for y in range(offset, shape[0] - side, step):
        for x in range(offset, shape[1] - side, step):
            k += 1
            labels[y : y + side, x : x + side] = k
    return labels


@pytest.mark.parametrize("shape", [(40, 50), (64, 64), (150, 230), (300, 129)])
def test_every_box_is_decoded_once_in_a_window_that_holds_it(shape: tuple[int, int]) -> None:
    labels = _squares(shape, side=9, step=13)
    image = np.zeros((*shape, 3), np.uint8)
    teacher = BoxTeacher()
    out = refine_labels(image, labels, teacher)  # type: ignore[arg-type]
    n = int(labels.max())
    assert len(teacher.decoded) == n  # once each, whatever the window layout
    local = np.array(teacher.decoded)
    assert (local >= 0).all() and (local <= teacher.input_px).all()  # never clipped
    expected = np.zeros_like(labels)
    ids, boxes = boxes_of(labels)
    for i, (x0, y0, x1, y1) in zip(ids, boxes.astype(int), strict=True):
        expected[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = i
    np.testing.assert_array_equal(out, expected)


def test_overlapping_masks_go_to_the_higher_logit_and_keep_one_part() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    teacher = BoxTeacher(inset=0)
    boxes = np.array([[2, 2, 20, 20], [10, 10, 30, 30]], np.float64)
    res = box_refine(image, boxes, teacher)  # type: ignore[arg-type]
    assert set(np.unique(res.labels)) == {0, 1, 2}
    assert (res.labels[2:10, 2:10] == 1).all() and (res.labels[20:30, 20:30] == 2).all()
    np.testing.assert_allclose(res.iou, [0.95, 0.95])


def test_completion_adds_confirmed_fresh_nuclei_and_never_overwrites() -> None:
    shape = (120, 120)
    truth = _squares(shape, side=10, step=20)
    labels = np.where(np.isin(truth, [1, 2, 3]), truth, 0).astype(np.int32)  # 3 of 25 labelled
    candidates = truth.copy()
    candidates[candidates == 5] = 0  # one nucleus the candidates miss
    candidates[14:22, 15:19] = 99  # a thin candidate that the teacher doubts
    image = np.zeros((*shape, 3), np.uint8)
    teacher = BoxTeacher(inset=0, doubt_below_px=6)
    out, added = complete_labels(image, labels, candidates, teacher)  # type: ignore[arg-type]
    assert added == int(truth.max()) - 3 - 1  # all fresh ones but the missed one
    np.testing.assert_array_equal(out[labels > 0], labels[labels > 0])  # labels kept
    assert (out[truth == 5] == 0).all() and (out[14:22, 15:19] == 0).all()
    assert set(np.unique(out[truth > 3])) - {0} == set(range(4, 4 + added))
    # candidates on labelled nuclei are not decoded at all
    assert len(teacher.decoded) == int(truth.max()) - 3 - 1 + 1
