"""Metrics: hand-computed cases, invariants, brute-force cross-check on random label images."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from scipy.ndimage import binary_dilation
from scipy.optimize import linear_sum_assignment
from skimage.morphology import disk

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.evaluate.compare import evaluate_labels
from pathosam_wsi.evaluate.metrics import (
    MSA_THRESHOLDS,
    Overlap,
    f1_score,
    label_overlap,
    mean_segmentation_accuracy,
    panoptic_quality,
    true_positives,
    weighted_dice,
)


def _hand_case() -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """10x10: gt A (4x4) and B (2x2); pred P1 = A shifted right by 1, P2 = B widened, P3 extra.

    IoU(P1, A) = 12 / (16 + 16 - 12) = 0.6 exactly; IoU(P2, B) = 4 / 6 = 0.667; P3 is a 2-px FP.
    """
    gt = np.zeros((10, 10), np.int32)
    gt[0:4, 0:4] = 7
    gt[6:8, 6:8] = 3
    pred = np.zeros((10, 10), np.int32)
    pred[0:4, 1:5] = 1
    pred[6:8, 6:9] = 2
    pred[9, 0:2] = 5
    return pred, gt


def test_hand_computed_msa_f1_pq() -> None:
    pred, gt = _hand_case()
    msa, per_t = mean_segmentation_accuracy(pred, gt)
    # t = 0.50, 0.55, 0.60: TP 2, FP 1, FN 0 -> 2/3 (IoU 0.6 passes t = 0.6 exactly).
    # t = 0.65: only P2 (0.667) -> TP 1, FP 2, FN 1 -> 1/4.   t >= 0.70: TP 0 -> 0.
    expected = [2 / 3] * 3 + [1 / 4] + [0.0] * 6
    assert per_t == pytest.approx(expected)
    assert msa == pytest.approx((3 * 2 / 3 + 1 / 4) / 10)  # 0.225
    ov = label_overlap(pred, gt)
    precision, recall, f1 = f1_score(ov, 0.5)
    assert (precision, recall, f1) == pytest.approx((2 / 3, 1.0, 0.8))  # 2TP/(2TP+FP+FN) = 4/5
    pq, sq, rq = panoptic_quality(ov)
    # SQ = mean(0.6, 2/3); RQ = 2 / (2 + 1/2 + 0) = 0.8.
    assert sq == pytest.approx((0.6 + 2 / 3) / 2)
    assert rq == pytest.approx(0.8)
    assert pq == pytest.approx(sq * rq)


def test_overlap_table_values() -> None:
    pred, gt = _hand_case()
    ov = label_overlap(pred, gt)
    assert ov.pred_ids.tolist() == [1, 2, 5]
    assert ov.gt_ids.tolist() == [3, 7]
    assert ov.pred_area_px.tolist() == [16, 6, 2]
    assert ov.gt_area_px.tolist() == [4, 16]
    pairs = {
        (int(ov.pred_ids[p]), int(ov.gt_ids[g])): int(n)
        for p, g, n in zip(ov.pair_pred, ov.pair_gt, ov.pair_inter_px, strict=True)
    }
    assert pairs == {(1, 7): 12, (2, 3): 4}


def test_exact_half_split_is_one_to_one() -> None:
    # gt: one 2x4 object; pred: its two 2x2 halves, each IoU = 4/8 = 0.5 exactly.
    gt = np.zeros((4, 6), np.uint16)
    gt[1:3, 1:5] = 9
    pred = np.zeros_like(gt)
    pred[1:3, 1:3] = 1
    pred[1:3, 3:5] = 2
    ov = label_overlap(pred, gt)
    assert true_positives(ov, 0.5) == 1  # only one half may match the single gt object
    _, per_t = mean_segmentation_accuracy(pred, gt)
    assert per_t[0] == pytest.approx(1 / 2)  # TP 1, FP 1, FN 0
    assert panoptic_quality(ov) == (0.0, 0.0, 0.0)  # PQ needs IoU > 0.5 strictly


def test_maximum_matching_beats_greedy_below_half() -> None:
    # Synthetic table: IoU(p0,g0) = 6/14 = 0.43, IoU(p0,g1) = IoU(p1,g0) = 4/16 = 0.25.
    # Greedy by IoU takes (p0,g0) and stops at 1 TP at t = 0.25; the one-to-one optimum is 2.
    ov = Overlap(
        pred_ids=np.array([1, 2]),
        gt_ids=np.array([1, 2]),
        pred_area_px=np.array([10, 10]),
        gt_area_px=np.array([10, 10]),
        pair_pred=np.array([0, 0, 1]),
        pair_gt=np.array([0, 1, 0]),
        pair_inter_px=np.array([6, 4, 4]),
    )
    assert true_positives(ov, 0.25) == 2
    assert true_positives(ov, 0.3) == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint32, np.int64, np.uint64])
def test_identical_and_permuted_ids_score_one(dtype: type) -> None:
    gt = _random_labels(np.random.default_rng(0), 96, 14)
    rng = np.random.default_rng(1)
    ids = np.unique(gt)[1:]
    mapping = np.zeros(int(gt.max()) + 1, np.int64)
    mapping[ids] = rng.permutation(len(ids)) + 200  # new, shuffled, non-consecutive ids
    permuted = mapping[gt].astype(dtype)
    for pred in (gt, permuted):
        res = evaluate_labels(pred, gt)
        assert res.msa == 1.0
        assert res.f1_at_50 == 1.0
        assert (res.pq, res.sq, res.rq) == (1.0, 1.0, 1.0)
        assert res.n_pred == res.n_gt == len(ids)


def test_empty_cases_documented() -> None:
    empty = np.zeros((8, 8), np.int32)
    some = empty.copy()
    some[2:5, 2:5] = 4
    both = evaluate_labels(empty, empty)
    assert (both.msa, both.f1_at_50, both.pq) == (1.0, 1.0, 1.0)
    for pred, gt in ((empty, some), (some, empty)):
        res = evaluate_labels(pred, gt)
        assert (res.msa, res.f1_at_50, res.pq, res.sq, res.rq) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_symmetry_of_msa() -> None:
    rng = np.random.default_rng(5)
    a, b = _random_labels(rng, 80, 10), _random_labels(rng, 80, 10)
    assert mean_segmentation_accuracy(a, b)[0] == pytest.approx(mean_segmentation_accuracy(b, a)[0])


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError, match="shape"):
        label_overlap(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ConfigError, match="integers"):
        label_overlap(np.zeros((4, 4), float), np.zeros((4, 4), int))
    with pytest.raises(ConfigError, match=">= 0"):
        label_overlap(-np.ones((4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(ConfigError, match="threshold"):
        true_positives(label_overlap(np.zeros((2, 2), int), np.zeros((2, 2), int)), 0.0)


# --- weighted Dice -------------------------------------------------------------------------------


def test_weighted_dice_hand_computed() -> None:
    gt_cls = np.zeros((4, 4), np.int32)
    gt_cls[0, 0:4] = 1  # class 1: 4 px, one instance
    gt_cls[2, 0] = 2  # class 2: 2 px, two 1-px instances
    gt_cls[3, 3] = 2
    gt_inst = np.zeros((4, 4), np.int32)
    gt_inst[0, 0:4] = 1
    gt_inst[2, 0] = 2
    gt_inst[3, 3] = 3
    pred_cls = np.zeros((4, 4), np.int32)
    pred_cls[0, 0:3] = 1  # 3 of the 4 class-1 px ...
    pred_cls[1, 1] = 1  # ... plus one wrong px: Dice_1 = 2*3 / (4 + 4) = 0.75
    pred_cls[2, 0] = 2
    pred_cls[3, 3] = 2  # Dice_2 = 1
    score, per_class = weighted_dice(pred_cls, gt_cls)
    assert per_class == pytest.approx({1: 0.75, 2: 1.0})
    assert score == pytest.approx(4 / 6 * 0.75 + 2 / 6 * 1.0)  # pixel weights 4:2
    score_inst, _ = weighted_dice(pred_cls, gt_cls, gt_instances=gt_inst)
    assert score_inst == pytest.approx(1 / 3 * 0.75 + 2 / 3 * 1.0)  # instance weights 1:2


def test_weighted_dice_empty_and_identical() -> None:
    zero = np.zeros((5, 5), np.int32)
    assert weighted_dice(zero, zero) == (1.0, {})
    one = zero.copy()
    one[1, 1] = 3
    assert weighted_dice(one, zero) == (0.0, {})
    assert weighted_dice(one, one)[0] == 1.0
    assert weighted_dice(zero, one)[0] == 0.0


# --- cross-check against a brute-force implementation ---------------------------------------------


def _random_labels(rng: np.random.Generator, size: int, n: int) -> npt.NDArray[np.int32]:
    """Random overlapping disks and boxes (later ones on top), ids 1..n (some may vanish)."""
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for i in range(1, n + 1):
        cy, cx = rng.integers(0, size, 2)
        r = rng.integers(2, 9)
        if rng.random() < 0.5:
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
        else:
            labels[max(cy - r, 0) : cy + r, max(cx - r // 2, 0) : cx + r] = i
    return labels


def _perturb(rng: np.random.Generator, labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """A plausible prediction: shifted, some objects grown, dropped, split, plus false positives."""
    out = np.roll(labels, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    for obj in np.unique(out)[1:]:
        u = rng.random()
        if u < 0.15:
            out[out == obj] = 0
        elif u < 0.35:
            grown = binary_dilation(out == obj, structure=disk(1).astype(bool))
            out[grown & (out == 0)] = obj
        elif u < 0.5:
            ys, xs = np.nonzero(out == obj)
            half = xs >= np.median(xs)
            out[ys[half], xs[half]] = obj + 1000
    extra = _random_labels(rng, labels.shape[0], 3)
    out[(extra > 0) & (out == 0)] = extra[(extra > 0) & (out == 0)] + 5000
    return out


def _brute_force(pred: npt.NDArray[np.int32], gt: npt.NDArray[np.int32]) -> dict[str, float]:
    """Dense per-object masks, exact IoU fractions, dense Hungarian per threshold (elf-style)."""
    p_ids, g_ids = [i for i in np.unique(pred) if i], [i for i in np.unique(gt) if i]
    iou = [[Fraction(0)] * len(g_ids) for _ in p_ids]
    for a, p in enumerate(p_ids):
        for b, g in enumerate(g_ids):
            inter = int(np.sum((pred == p) & (gt == g)))
            union = int(np.sum((pred == p) | (gt == g)))
            iou[a][b] = Fraction(inter, union)
    sas, tps = [], {}
    for t in MSA_THRESHOLDS:
        ok = np.array([[v >= Fraction(str(t)) for v in row] for row in iou], float).reshape(
            len(p_ids), len(g_ids)
        )
        tp = int(ok[linear_sum_assignment(-ok)].sum()) if ok.size else 0
        tps[t] = tp
        denom = len(p_ids) + len(g_ids) - tp
        sas.append(tp / denom if tp else (1.0 if denom == 0 else 0.0))
    strict = [v for row in iou for v in row if v > Fraction(1, 2)]
    tp50 = len(strict)
    fp, fn = len(p_ids) - tp50, len(g_ids) - tp50
    sq = float(sum(strict) / tp50) if tp50 else 0.0
    rq = tp50 / (tp50 + fp / 2 + fn / 2) if tp50 else 0.0
    f1 = 2 * tps[0.5] / (len(p_ids) + len(g_ids)) if tps[0.5] else 0.0
    return {"msa": float(np.mean(sas)), "pq": sq * rq, "sq": sq, "f1": f1}


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, 64, int(rng.integers(3, 12)))
    pred = _perturb(rng, gt)
    expected = _brute_force(pred, gt)
    res = evaluate_labels(pred, gt)
    assert res.msa == pytest.approx(expected["msa"], abs=1e-12)
    assert res.pq == pytest.approx(expected["pq"], abs=1e-12)
    assert res.sq == pytest.approx(expected["sq"], abs=1e-12)
    assert res.f1_at_50 == pytest.approx(expected["f1"], abs=1e-12)
    assert 0.0 < res.msa < 1.0  # the perturbations make the case non-trivial


def test_overlap_matches_skimage_contingency_table() -> None:
    from skimage.metrics import contingency_table

    rng = np.random.default_rng(3)
    gt = _random_labels(rng, 64, 9)
    pred = _perturb(rng, gt)
    table = contingency_table(pred, gt, ignore_labels=[0], normalize=False).tocoo()
    expected = {
        (int(p), int(g)): int(v)
        for p, g, v in zip(table.row, table.col, table.data, strict=True)
        if v and p and g  # skimage ignores label 0 of its first image only
    }
    ov = label_overlap(pred, gt)
    got = {
        (int(ov.pred_ids[p]), int(ov.gt_ids[g])): int(n)
        for p, g, n in zip(ov.pair_pred, ov.pair_gt, ov.pair_inter_px, strict=True)
    }
    assert got == expected
