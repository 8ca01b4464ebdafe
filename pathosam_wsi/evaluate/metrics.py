"""Instance and semantic segmentation metrics of the PathoSAM paper, numpy/scipy only.

Definitions (cited from the reference code, re-implemented here):

- **Matching** follows python-elf ``elf/evaluation/matching.py`` (``matching`` /
  ``mean_segmentation_accuracy``, used by micro-sam and patho-sam): the IoU of every overlapping
  (pred, gt) pair from the contingency table, label 0 ignored; at threshold ``t`` a pair may match
  when ``IoU >= t``; the number of true positives TP is the size of a maximum one-to-one matching.
  elf computes it with a Hungarian assignment on the cost ``-(IoU >= t) - IoU / (2 n)``, whose
  optimum has exactly the maximum number of pairs with ``IoU >= t``; we compute that maximum
  directly with a bipartite matching on the sparse pair graph (same TP, far less memory). For
  ``t > 0.5`` every object has at most one partner, so the matching is unique.
- **Segmentation accuracy** ``SA(t) = TP / (TP + FP + FN)`` (DSB 2018); **mSA** is its mean over
  ``t = 0.50, 0.55, ..., 0.95``. Difference from elf: elf builds the thresholds with
  ``np.arange(0.5, 1.0, 0.05)``, whose values 0.6, 0.7, 0.85 ... are one ulp high, so a pair with
  IoU exactly 3/5 fails elf's 0.6 test; we compare exactly in integers (``inter * den >= num *
  union``). Only exact-tie IoUs can differ.
- **F1 at 0.5** ``2 TP / (2 TP + FP + FN)`` with elf's ``IoU >= 0.5``.
- **Panoptic quality** (Kirillov et al. 2019, as HoVer-Net's ``get_fast_pq``): matches are pairs
  with ``IoU > 0.5`` (strict, hence unique); ``SQ`` = mean IoU of the matches, ``RQ`` = F1 of those
  matches, ``PQ = SQ * RQ``.
- **Weighted Dice** (patho-sam ``patho_sam/evaluation.py`` and ``evaluation/class_weights.py``):
  per class, Dice of the binary class masks; classes absent from the ground truth are skipped; the
  mean is weighted by each class's share of ground-truth instances (or of ground-truth pixels
  when no instance map is given), renormalised over the classes present.

Empty cases (documented choice; elf returns 0 whenever TP = 0): with no objects in either image
SA, F1, PQ, SQ and RQ are 1.0 (nothing to find, nothing wrongly found); with objects in only one
of them they are 0.0. Weighted Dice is 1.0 when neither map has a class pixel and 0.0 when only
the prediction has.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching

from pathosam_wsi.errors import ConfigError

__all__ = [
    "MSA_THRESHOLDS",
    "Overlap",
    "f1_score",
    "label_overlap",
    "mean_segmentation_accuracy",
    "panoptic_quality",
    "segmentation_accuracy",
    "true_positives",
    "weighted_dice",
]

LabelImage = npt.NDArray[np.integer]

MSA_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""IoU thresholds of the mean segmentation accuracy: 0.50, 0.55, ..., 0.95."""


@dataclass(frozen=True)
class Overlap:
    """Contingency table of two label images, foreground objects only.

    Attributes
    ----------
    pred_ids, gt_ids : (P,), (G,) int64
        Object ids (label 0 excluded), sorted.
    pred_area_px, gt_area_px : (P,), (G,) int64
        Pixel count of each object.
    pair_pred, pair_gt : (K,) int64
        Indices into ``pred_ids`` / ``gt_ids`` of each overlapping pair.
    pair_inter_px : (K,) int64
        Shared pixels of each pair.
    """

    pred_ids: npt.NDArray[np.int64]
    gt_ids: npt.NDArray[np.int64]
    pred_area_px: npt.NDArray[np.int64]
    gt_area_px: npt.NDArray[np.int64]
    pair_pred: npt.NDArray[np.int64]
    pair_gt: npt.NDArray[np.int64]
    pair_inter_px: npt.NDArray[np.int64]

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return len(self.pred_ids)

    @property
    def n_gt(self) -> int:
        """Number of ground-truth objects."""
        return len(self.gt_ids)

    @property
    def pair_union_px(self) -> npt.NDArray[np.int64]:
        """Union pixels of each pair, (K,) int64."""
        return (
            self.pred_area_px[self.pair_pred] + self.gt_area_px[self.pair_gt] - self.pair_inter_px
        )

    @property
    def pair_iou(self) -> npt.NDArray[np.float64]:
        """IoU of each pair, (K,) float64."""
        return self.pair_inter_px / self.pair_union_px


def _check_pair(pred: LabelImage, gt: LabelImage) -> tuple[LabelImage, LabelImage]:
    """Validate two label images of one shape with non-negative integer ids."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ConfigError(
            f"label images differ in shape: pred {pred.shape} vs gt {gt.shape}; "
            "expected the same (H, W); crop or resample one of them"
        )
    for what, arr in (("pred", pred), ("gt", gt)):
        if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
            raise ConfigError(
                f"{what} labels must be integers, got dtype {arr.dtype}; "
                "expected an instance label image (0 = background)"
            )
        if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
            raise ConfigError(f"{what} labels must be >= 0, got min {arr.min()}")
    return pred, gt


def label_overlap(pred: LabelImage, gt: LabelImage) -> Overlap:
    """Contingency table of two instance label images.

    Parameters
    ----------
    pred, gt : (H, W) integer, YX, same pixel grid
        Instance labels, 0 = background; ids need not be consecutive.

    Returns
    -------
    Overlap
        Objects, their areas and every overlapping pair.
    """
    pred, gt = _check_pair(pred, gt)
    p_ids, p_idx = np.unique(pred.ravel(), return_inverse=True)
    g_ids, g_idx = np.unique(gt.ravel(), return_inverse=True)
    p_area = np.bincount(p_idx, minlength=len(p_ids)).astype(np.int64)
    g_area = np.bincount(g_idx, minlength=len(g_ids)).astype(np.int64)
    both = (pred.ravel() != 0) & (gt.ravel() != 0)
    keys = p_idx[both].astype(np.int64) * len(g_ids) + g_idx[both]
    pair_keys, inter = np.unique(keys, return_counts=True)
    p_off = int(p_ids.size > 0 and p_ids[0] == 0)
    g_off = int(g_ids.size > 0 and g_ids[0] == 0)
    return Overlap(
        pred_ids=p_ids[p_off:].astype(np.int64),
        gt_ids=g_ids[g_off:].astype(np.int64),
        pred_area_px=p_area[p_off:],
        gt_area_px=g_area[g_off:],
        pair_pred=pair_keys // len(g_ids) - p_off,
        pair_gt=pair_keys % len(g_ids) - g_off,
        pair_inter_px=inter.astype(np.int64),
    )


def _at_least(ov: Overlap, thresh: float, *, strict: bool = False) -> npt.NDArray[np.bool_]:
    """Pairs with IoU >= thresh (or > with ``strict``), compared exactly in integers."""
    frac = Fraction(thresh).limit_denominator(10_000)
    lhs = ov.pair_inter_px * frac.denominator
    rhs = ov.pair_union_px * frac.numerator
    return lhs > rhs if strict else lhs >= rhs


def true_positives(ov: Overlap, thresh: float) -> int:
    """Size of a maximum one-to-one matching among pairs with IoU >= ``thresh``."""
    if not 0.0 < thresh <= 1.0:
        raise ConfigError(f"IoU threshold must be in (0, 1], got {thresh!r}")
    ok = _at_least(ov, thresh)
    n_edges = int(ok.sum())
    if n_edges == 0:
        return 0
    rows, cols = ov.pair_pred[ok], ov.pair_gt[ok]
    if len(np.unique(rows)) == n_edges and len(np.unique(cols)) == n_edges:
        return n_edges  # already one-to-one (always so for thresh > 0.5)
    graph = csr_array((np.ones(n_edges, dtype=np.int8), (rows, cols)), shape=(ov.n_pred, ov.n_gt))
    match = maximum_bipartite_matching(graph, perm_type="column")
    return int((match >= 0).sum())


def _ratio(tp: int, denom: float, n_pred: int, n_gt: int) -> float:
    """tp / denom with the documented empty-image convention."""
    if n_pred == 0 and n_gt == 0:
        return 1.0
    return tp / denom if tp > 0 else 0.0


def segmentation_accuracy(ov: Overlap, thresh: float) -> float:
    """``TP / (TP + FP + FN)`` at one IoU threshold (1.0 if both images are empty)."""
    tp = true_positives(ov, thresh)
    return _ratio(tp, ov.n_pred + ov.n_gt - tp, ov.n_pred, ov.n_gt)


def mean_segmentation_accuracy(
    pred: LabelImage, gt: LabelImage, thresholds: tuple[float, ...] = MSA_THRESHOLDS
) -> tuple[float, list[float]]:
    """Mean segmentation accuracy (PathoSAM / micro-sam mSA).

    Parameters
    ----------
    pred, gt : (H, W) integer, YX, same pixel grid
        Instance labels, 0 = background.
    thresholds : tuple of float
        IoU thresholds, default 0.50, 0.55, ..., 0.95.

    Returns
    -------
    msa : float
        Mean of the per-threshold accuracies.
    per_threshold : list of float
        ``SA(t)`` for each threshold.
    """
    ov = label_overlap(pred, gt)
    per_t = [segmentation_accuracy(ov, t) for t in thresholds]
    return float(np.mean(per_t)), per_t


def f1_score(ov: Overlap, thresh: float = 0.5) -> tuple[float, float, float]:
    """Precision, recall and F1 at an IoU threshold (1.0 each if both images are empty)."""
    tp = true_positives(ov, thresh)
    precision = _ratio(tp, ov.n_pred, ov.n_pred, ov.n_gt)
    recall = _ratio(tp, ov.n_gt, ov.n_pred, ov.n_gt)
    f1 = _ratio(tp, (2 * tp + (ov.n_pred - tp) + (ov.n_gt - tp)) / 2, ov.n_pred, ov.n_gt)
    return precision, recall, f1


def panoptic_quality(ov: Overlap) -> tuple[float, float, float]:
    """Panoptic quality ``PQ = SQ * RQ`` with matches at IoU > 0.5.

    Returns
    -------
    pq, sq, rq : float
        Panoptic, segmentation (mean matched IoU) and recognition (F1) quality.
    """
    ok = _at_least(ov, 0.5, strict=True)
    tp = int(ok.sum())
    if ov.n_pred == 0 and ov.n_gt == 0:
        return 1.0, 1.0, 1.0
    if tp == 0:
        return 0.0, 0.0, 0.0
    sq = float(ov.pair_iou[ok].mean())
    rq = tp / (tp + 0.5 * (ov.n_pred - tp) + 0.5 * (ov.n_gt - tp))
    return sq * rq, sq, rq


def _class_weights(
    gt_classes: LabelImage, gt_instances: LabelImage | None, class_ids: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Per-class weight: share of gt instances (majority class per instance) or of gt pixels."""
    if gt_instances is None:
        counts = np.array([(gt_classes == c).sum() for c in class_ids], dtype=np.float64)
    else:
        inst = np.asarray(gt_instances).ravel()
        fg = inst != 0
        pairs, n_px = np.unique(
            np.stack([inst[fg].astype(np.int64), gt_classes.ravel()[fg].astype(np.int64)]),
            axis=1,
            return_counts=True,
        )
        order = np.lexsort((-n_px, pairs[0]))  # per instance, its most frequent class first
        first = np.unique(pairs[0][order], return_index=True)[1]
        majority = pairs[1][order][first]
        counts = np.array([(majority == c).sum() for c in class_ids], dtype=np.float64)
    return counts


def weighted_dice(
    pred_classes: LabelImage,
    gt_classes: LabelImage,
    gt_instances: LabelImage | None = None,
) -> tuple[float, dict[int, float]]:
    """Class-frequency weighted Dice of two semantic class maps (PathoSAM's semantic metric).

    Parameters
    ----------
    pred_classes, gt_classes : (H, W) integer, YX, same pixel grid
        Class id per pixel, 0 = background.
    gt_instances : (H, W) integer, YX, optional
        Ground-truth instance labels; weights are then the share of instances per class (as
        patho-sam), else the share of class pixels.

    Returns
    -------
    score : float
        Weighted mean Dice over the classes present in ``gt_classes``.
    per_class : dict of int to float
        Dice per class present in the ground truth.
    """
    pred_classes, gt_classes = _check_pair(pred_classes, gt_classes)
    if gt_instances is not None:
        _check_pair(gt_instances, gt_classes)
    class_ids = np.setdiff1d(np.unique(gt_classes), [0]).astype(np.int64)
    if class_ids.size == 0:
        return (0.0 if np.any(pred_classes != 0) else 1.0), {}
    per_class: dict[int, float] = {}
    for c in class_ids:
        p, g = pred_classes == c, gt_classes == c
        per_class[int(c)] = float(2 * np.logical_and(p, g).sum() / (p.sum() + g.sum()))
    weights = _class_weights(gt_classes, gt_instances, class_ids)
    if weights.sum() == 0:  # gt classes only where there are no gt instances: fall back to pixels
        weights = _class_weights(gt_classes, None, class_ids)
    score = float(np.dot(weights / weights.sum(), [per_class[int(c)] for c in class_ids]))
    return score, per_class
