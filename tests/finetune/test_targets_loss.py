"""Training targets (reference PerObjectDistanceTransform) and the Dice-based distance loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.draw import disk

from pathosam_wsi.finetune.loss import distance_loss
from pathosam_wsi.finetune.targets import ais_targets


def _two_disks() -> np.ndarray:
    labels = np.zeros((40, 60), np.int32)
    labels[disk((20, 15), 8)] = 7
    labels[disk((20, 42), 10)] = 3
    labels[2, 2] = 9  # a 1-px object: below the reference min_size of 10 px
    return labels


def test_targets_are_zero_at_centres_one_at_edges_and_in_background() -> None:
    t = ais_targets(_two_disks())
    assert t.shape == (3, 40, 60)
    assert t.dtype == np.float32
    assert t[0, 2, 2] == 0.0  # the tiny object is dropped
    np.testing.assert_array_equal(t[0] > 0, (_two_disks() > 0) & (_two_disks() != 9))
    for cy, cx in ((20, 15), (20, 42)):
        assert t[1, cy, cx] == pytest.approx(0.0, abs=0.1)
        assert t[2, cy, cx] == pytest.approx(0.0, abs=0.1)
    bg = t[0] == 0
    assert np.all(t[1][bg] == 1.0)
    assert np.all(t[2][bg] == 1.0)
    assert t[1].max() <= 1.0
    assert t[2].min() >= 0.0
    # normalised per object: the small and the large disk both reach ~1 at their rims
    assert t[2, 20, 15 - 8] > 0.8
    assert t[2, 20, 42 - 10] > 0.8


def test_targets_do_not_depend_on_label_ids() -> None:
    labels = _two_disks()
    permuted = np.choose(labels, np.arange(labels.max() + 1)[::-1] * 11).astype(np.int32)
    permuted[labels == 0] = 0
    np.testing.assert_array_equal(ais_targets(labels), ais_targets(permuted))


def test_targets_reject_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        ais_targets(np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError, match=">= 0"):
        ais_targets(-np.ones((3, 3), np.int32))


def test_loss_is_zero_for_the_targets_and_larger_otherwise() -> None:
    target = torch.from_numpy(ais_targets(_two_disks()))[None]  # (1, 3, 40, 60)
    assert float(distance_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    worse = target.clone()
    worse[:, 0] = 1 - worse[:, 0]
    assert float(distance_loss(worse, target)) > 0.9


def test_loss_ignores_distances_in_background() -> None:
    target = torch.from_numpy(ais_targets(_two_disks()))[None]
    pred = target.clone()
    bg = target[:, 0] == 0
    pred[:, 1][bg] = 0.123  # wrong distances where the target is background do not count
    pred[:, 2][bg] = 0.456
    assert float(distance_loss(pred, target)) == pytest.approx(0.0, abs=1e-6)
