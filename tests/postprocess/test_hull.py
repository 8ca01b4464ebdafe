"""Exact solidity equals the old shapely (GEOS) solidity, bit for bit, on pixel outlines."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import shapely
from skimage.draw import ellipse, polygon

from pathosam_wsi.postprocess.hull import ring_solidity
from pathosam_wsi.postprocess.polygons import label_rings
from tests.postprocess.test_outlines import _touching_labels


def reference_solidity(
    ring_xy: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    """REFERENCE (old): shapely polygon area over its GEOS convex hull area."""
    if n == 0:
        return np.zeros(0)
    indices = np.repeat(np.arange(n), np.diff(offsets))
    polys = shapely.polygons(shapely.linearrings(ring_xy, indices=indices))
    hull = shapely.area(shapely.convex_hull(polys))
    return np.divide(shapely.area(polys), hull, out=np.ones(n), where=hull > 0)


def _assert_same(labels: npt.NDArray[np.uint32], n: int) -> None:
    ring_xy, offsets = label_rings(labels, n)
    got, want = ring_solidity(ring_xy, offsets, n), reference_solidity(ring_xy, offsets, n)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("diagonal", [False, True])
def test_solidity_equals_geos_on_random_touching_labels(diagonal: bool) -> None:
    rng = np.random.default_rng(10 + int(diagonal))
    for _ in range(150):
        hw = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        _assert_same(*_touching_labels(rng, hw, int(rng.integers(2, 7)), diagonal))


def test_solidity_equals_geos_on_ellipses_stars_and_single_pixels() -> None:
    rng = np.random.default_rng(4)
    labels = np.zeros((300, 300), np.uint32)
    n = 0
    for cy in range(20, 300, 40):
        for cx in range(20, 300, 40):
            n += 1
            if n % 3 == 0:  # concave star
                k = int(rng.integers(3, 9))
                ang = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False) + rng.uniform(0, 1)
                rad = np.where(np.arange(2 * k) % 2, rng.uniform(3, 8), rng.uniform(12, 18))
                rr, cc = polygon(cy + rad * np.sin(ang), cx + rad * np.cos(ang), labels.shape)
            elif n % 7 == 0:
                rr, cc = np.array([cy]), np.array([cx])
            else:
                a, b = rng.uniform(1, 18), rng.uniform(1, 10)
                rr, cc = ellipse(cy, cx, b, a, labels.shape, rotation=rng.uniform(-np.pi, np.pi))
            labels[rr, cc] = n
    _assert_same(labels, n)
    assert ring_solidity(np.zeros((0, 2)), np.zeros(1, np.int64), 0).shape == (0,)
