"""Assertions shared by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import zarr


def same_partition(a: npt.NDArray[np.integer], b: npt.NDArray[np.integer]) -> bool:
    """Equal label images up to a one-to-one renumbering (background must match background)."""
    if a.shape != b.shape or not np.array_equal(a == 0, b == 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def matched_fraction(
    pred: npt.NDArray[np.integer], gt: npt.NDArray[np.integer], iou: float = 0.5
) -> float:
    """Fraction of ground-truth objects with a prediction of IoU above ``iou``."""
    gt_ids = np.unique(gt)[1:]
    if gt_ids.size == 0:
        return 1.0
    pairs, inter = np.unique(np.stack([gt.ravel(), pred.ravel()]), axis=1, return_counts=True)
    gt_area = np.bincount(gt.ravel())
    pred_area = np.bincount(pred.ravel())
    ok = (pairs[0] > 0) & (pairs[1] > 0)
    union = gt_area[pairs[0][ok]] + pred_area[pairs[1][ok]] - inter[ok]
    good = np.unique(pairs[0][ok][inter[ok] / union > iou])
    return good.size / gt_ids.size


def read_outputs(folder: Path) -> tuple[npt.NDArray[np.uint32], pd.DataFrame]:
    """Level-0 labels and the nucleus table of one output folder."""
    labels = zarr.open_group(str(folder / "labels.ome.zarr"), mode="r")["labels/nuclei/s0"][:]
    return labels, pd.read_parquet(folder / "nuclei.parquet")
