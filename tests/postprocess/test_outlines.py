"""The vectorised outlines equal the old per-nucleus ``find_contours`` rings, vertex for vertex."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage as ndi
from skimage.measure import find_contours
from skimage.segmentation import expand_labels

from pathosam_wsi.postprocess.polygons import label_rings


def _ring_area(ring_yx: npt.NDArray[np.float64]) -> float:
    y, x = ring_yx[:, 0], ring_yx[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def reference_label_rings(
    labels: npt.NDArray[np.uint32], n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """REFERENCE (old, slow): find_contours on each label's padded crop, largest ring kept."""
    rings: list[npt.NDArray[np.float64]] = []
    for i, sl in enumerate(ndi.find_objects(labels, max_label=n), start=1):
        crop = np.pad(labels[sl] == i, 1).astype(np.uint8)
        contours = find_contours(crop, 0.5)
        ring = max(contours, key=_ring_area)
        if not np.array_equal(ring[0], ring[-1]):
            ring = np.vstack([ring, ring[:1]])
        yx = ring + np.array([sl[0].start - 1 + 0.5, sl[1].start - 1 + 0.5])
        rings.append(yx[:, ::-1])
    offsets = np.zeros(n + 1, np.int64)
    if rings:
        offsets[1:] = np.cumsum([r.shape[0] for r in rings])
        return np.concatenate(rings), offsets
    return np.zeros((0, 2), np.float64), offsets


def _touching_labels(
    rng: np.random.Generator, hw: tuple[int, int], classes: int, diagonal: bool
) -> tuple[npt.NDArray[np.uint32], int]:
    """Random touching regions (holes, single pixels, diagonal-only parts), ids shuffled."""
    cls = rng.integers(0, classes, hw)
    if rng.random() < 0.5:
        cls = np.round(ndi.gaussian_filter(rng.random(hw), 1.5) * classes * 3).astype(int) % classes
    out = np.zeros(hw, np.uint32)
    n = 0
    for c in range(1, classes):
        lab, m = ndi.label(cls == c, structure=np.ones((3, 3)) if diagonal else None)
        out[lab > 0] = lab[lab > 0] + n
        n += m
    perm = np.concatenate([[0], rng.permutation(n) + 1]).astype(np.uint32)
    return perm[out], n


def _assert_same(labels: npt.NDArray[np.uint32], n: int) -> None:
    got, want = label_rings(labels, n), reference_label_rings(labels, n)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.float64 and got[1].dtype == np.int64


@pytest.mark.parametrize("diagonal", [False, True])
def test_rings_equal_find_contours_on_random_touching_labels(diagonal: bool) -> None:
    rng = np.random.default_rng(int(diagonal))
    for _ in range(150):
        hw = (int(rng.integers(1, 48)), int(rng.integers(1, 48)))
        _assert_same(*_touching_labels(rng, hw, int(rng.integers(2, 7)), diagonal))


def test_rings_equal_find_contours_on_dense_nuclei_and_edge_cases() -> None:
    rng = np.random.default_rng(5)
    seeds = np.zeros((200, 180), np.uint32)
    pts = rng.integers(0, (200, 180), (150, 2))
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, 151)
    dense = expand_labels(seeds, 7).astype(np.uint32)
    ids = np.unique(dense)
    lut = np.zeros(int(ids.max()) + 1, np.uint32)
    lut[ids] = np.arange(ids.size)
    dense = lut[dense]
    _assert_same(dense, int(dense.max()))
    ring = np.zeros((7, 7), np.uint32)
    ring[1:6, 1:6], ring[3, 3] = 1, 0  # a hole
    ring[0, 0] = 2  # a single pixel at the corner, diagonal to label 1
    ring[6, :] = 3  # a line along the border
    _assert_same(ring, 3)
    _assert_same(np.ones((1, 1), np.uint32), 1)
    _assert_same(np.zeros((5, 5), np.uint32), 0)
