"""Compare a prediction with a ground truth: every metric in one result object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.evaluate.io import load_labels
from pathosam_wsi.evaluate.metrics import (
    MSA_THRESHOLDS,
    f1_score,
    label_overlap,
    panoptic_quality,
    segmentation_accuracy,
    weighted_dice,
)

__all__ = ["EvaluationResult", "evaluate_labels", "evaluate_outputs"]


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one prediction against one ground truth (definitions: ``metrics`` module)."""

    msa: float
    sa_per_threshold: dict[str, float]
    f1_at_50: float
    precision_at_50: float
    recall_at_50: float
    pq: float
    sq: float
    rq: float
    n_pred: int
    n_gt: int
    weighted_dice: float | None = None
    dice_per_class: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    def table(self) -> str:
        """A small two-column text table."""
        rows = [
            ("mSA (IoU 0.50:0.95)", f"{self.msa:.4f}"),
            ("SA@0.50 / 0.75", f"{self.sa_per_threshold['0.50']:.4f} / "
                                f"{self.sa_per_threshold['0.75']:.4f}"),
            ("F1@0.5", f"{self.f1_at_50:.4f}"),
            ("precision / recall @0.5", f"{self.precision_at_50:.4f} / {self.recall_at_50:.4f}"),
            ("PQ (SQ x RQ)", f"{self.pq:.4f} ({self.sq:.4f} x {self.rq:.4f})"),
            ("nuclei pred / gt", f"{self.n_pred} / {self.n_gt}"),
        ]  # fmt: skip
        if self.weighted_dice is not None:
            rows.append(("weighted Dice (classes)", f"{self.weighted_dice:.4f}"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def evaluate_labels(
    pred: npt.NDArray[np.integer],
    gt: npt.NDArray[np.integer],
    *,
    pred_classes: npt.NDArray[np.integer] | None = None,
    gt_classes: npt.NDArray[np.integer] | None = None,
) -> EvaluationResult:
    """All metrics for two instance label images (and class maps, when both are given).

    Parameters
    ----------
    pred, gt : (H, W) integer, YX, same pixel grid
        Instance labels, 0 = background.
    pred_classes, gt_classes : (H, W) integer, YX, optional
        Class id per pixel; weighted Dice is computed only when both are given.

    Returns
    -------
    EvaluationResult
    """
    ov = label_overlap(pred, gt)
    sa = {f"{t:.2f}": segmentation_accuracy(ov, t) for t in MSA_THRESHOLDS}
    precision, recall, f1 = f1_score(ov, 0.5)
    pq, sq, rq = panoptic_quality(ov)
    wdice, per_class = None, None
    if pred_classes is not None and gt_classes is not None:
        wdice, dice = weighted_dice(pred_classes, gt_classes, gt_instances=gt)
        per_class = {str(k): v for k, v in dice.items()}
    return EvaluationResult(
        msa=float(np.mean(list(sa.values()))),
        sa_per_threshold=sa,
        f1_at_50=f1,
        precision_at_50=precision,
        recall_at_50=recall,
        pq=pq,
        sq=sq,
        rq=rq,
        n_pred=ov.n_pred,
        n_gt=ov.n_gt,
        weighted_dice=wdice,
        dice_per_class=per_class,
    )


def evaluate_outputs(pred: str | Path, gt: str | Path) -> EvaluationResult:
    """Evaluate a prediction against a ground truth, both given as files or output folders.

    Parameters
    ----------
    pred, gt : str or Path
        Label files (``.npy .npz .mat .tif .tiff .png``), OME-Zarrs or ``OUT/<slide_id>`` folders;
        see ``pathosam_wsi.evaluate.io.load_labels``.

    Returns
    -------
    EvaluationResult
        Weighted Dice is filled in only when both inputs carry a class map.
    """
    p, g = load_labels(pred), load_labels(gt)
    return evaluate_labels(p.instances, g.instances, pred_classes=p.classes, gt_classes=g.classes)
