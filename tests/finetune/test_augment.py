"""Augmented crops: seeded, geometry shared by image and labels, stain jitter on the image only."""

from __future__ import annotations

import numpy as np

from pathosam_wsi.finetune.augment import Augment, random_crop
from tests.finetune.conftest import synthetic_pair
from tests.synthetic import NUCLEUS_RGB


def test_same_seed_same_crop_other_seed_other_crop() -> None:
    image, labels = synthetic_pair(0)
    a = random_crop(image, labels, 64, np.random.default_rng(5), Augment())
    b = random_crop(image, labels, 64, np.random.default_rng(5), Augment())
    c = random_crop(image, labels, 64, np.random.default_rng(6), Augment())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_labels_follow_the_image() -> None:
    image, labels = synthetic_pair(1)
    rng = np.random.default_rng(0)
    aug = Augment(stain_scale=0.0, stain_shift=0.0)
    for _ in range(8):
        img, lab = random_crop(image, labels, 64, rng, aug)
        assert img.shape == (64, 64, 3)
        assert lab.shape == (64, 64)
        purple = np.abs(img.astype(int) - NUCLEUS_RGB).sum(axis=2) < 60
        agree = np.mean(purple == (lab > 0))
        assert agree > 0.9  # only interpolated rim pixels may disagree


def test_stain_jitter_changes_colour_not_labels() -> None:
    image, labels = synthetic_pair(2)
    plain = random_crop(
        image, labels, 64, np.random.default_rng(9), Augment(stain_scale=0.0, stain_shift=0.0)
    )
    jittered = random_crop(image, labels, 64, np.random.default_rng(9), Augment(stain_scale=0.5))
    np.testing.assert_array_equal(plain[1], jittered[1])
    assert np.abs(plain[0].astype(int) - jittered[0].astype(int)).mean() > 1.0


def test_small_image_is_padded_with_background() -> None:
    image, labels = synthetic_pair(3, side=40)
    img, lab = random_crop(image, labels, 64, np.random.default_rng(0), Augment(enabled=False))
    assert img.shape == (64, 64, 3)
    assert np.all(lab[40:, :] == 0)
    assert np.all(img[40:, :] == 255)


def test_colour_jitter_moves_tissue_colour_keeps_glass_and_labels() -> None:
    from skimage.color import rgb2lab

    image, labels = synthetic_pair(4, side=40)  # padded to 64: the pad is glass (white)
    no_stain = {"stain_scale": 0.0, "stain_shift": 0.0, "scale_range": (1.0, 1.0)}
    plain = random_crop(image, labels, 64, np.random.default_rng(3), Augment(**no_stain))
    tissue_ab = []
    for seed in range(6):
        img, lab = random_crop(
            image, labels, 64, np.random.default_rng(seed), Augment(colour_jitter=0.3, **no_stain)
        )
        ref = random_crop(image, labels, 64, np.random.default_rng(seed), Augment(**no_stain))
        np.testing.assert_array_equal(lab, ref[1])
        glass = ref[0].min(axis=2) == 255
        assert glass.any()
        np.testing.assert_array_equal(img[glass], ref[0][glass])
        tissue = ~glass
        tissue_ab.append(rgb2lab(img)[tissue][:, 1:].mean(axis=0))
    spread = np.ptp(np.array(tissue_ab), axis=0)
    assert np.all(spread > 4.0), spread  # a* and b* of the tissue move by several units
    # off by default, and off draws nothing: crops equal those of earlier releases
    again = random_crop(image, labels, 64, np.random.default_rng(3), Augment(**no_stain))
    np.testing.assert_array_equal(plain[0], again[0])
