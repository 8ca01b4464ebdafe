"""Evaluation against ground truth: the PathoSAM paper's instance and semantic metrics."""

from pathosam_wsi.evaluate.compare import EvaluationResult, evaluate_labels, evaluate_outputs
from pathosam_wsi.evaluate.io import LabelData, load_labels
from pathosam_wsi.evaluate.metrics import (
    MSA_THRESHOLDS,
    f1_score,
    label_overlap,
    mean_segmentation_accuracy,
    panoptic_quality,
    weighted_dice,
)

__all__ = [
    "MSA_THRESHOLDS",
    "EvaluationResult",
    "LabelData",
    "evaluate_labels",
    "evaluate_outputs",
    "f1_score",
    "label_overlap",
    "load_labels",
    "mean_segmentation_accuracy",
    "panoptic_quality",
    "weighted_dice",
]
