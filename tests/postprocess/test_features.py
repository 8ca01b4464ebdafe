"""Nucleus features against skimage.regionprops and analytic shapes."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2hed
from skimage.draw import ellipse
from skimage.measure import regionprops

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS, nucleus_features


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """Non-overlapping rotated ellipses on a random RGB background."""
    labels = np.zeros((200, 260), np.uint32)
    n = 0
    for cy in range(25, 200, 50):
        for cx in range(25, 260, 50):
            a, b = rng.uniform(6, 20), rng.uniform(4, 12)
            rr, cc = ellipse(cy, cx, b, a, shape=labels.shape, rotation=rng.uniform(-np.pi, np.pi))
            n += 1
            labels[rr, cc] = n
    rgb = rng.integers(0, 256, (*labels.shape, 3), dtype=np.uint8)
    return labels, rgb, n


def test_features_match_regionprops() -> None:
    labels, rgb, n = _scene(np.random.default_rng(0))
    mpp = 0.25
    f = nucleus_features(labels, rgb, n, mpp)
    assert set(f) == set(FEATURE_COLUMNS)
    assert all(v.shape == (n,) and v.dtype == np.float32 for v in f.values())
    hed = rgb2hed(rgb)[..., 0]
    for p in regionprops(labels.astype(np.int64), intensity_image=rgb):
        i = p.label - 1
        np.testing.assert_allclose(
            f["equivalent_diameter_um"][i], p.equivalent_diameter_area * mpp, rtol=1e-5
        )
        np.testing.assert_allclose(f["major_axis_um"][i], p.axis_major_length * mpp, rtol=1e-4)
        np.testing.assert_allclose(f["minor_axis_um"][i], p.axis_minor_length * mpp, rtol=1e-4)
        np.testing.assert_allclose(f["eccentricity"][i], p.eccentricity, atol=1e-4)
        np.testing.assert_allclose(
            [f["mean_r"][i], f["mean_g"][i], f["mean_b"][i]], p.intensity_mean, rtol=1e-5
        )
        np.testing.assert_allclose(
            f["hematoxylin_od_mean"][i], hed[labels == p.label].mean(), rtol=1e-4
        )
        # Polygon solidity is close to skimage's pixel-count solidity for convex shapes.
        assert 0.9 < f["solidity"][i] <= 1.0 + 1e-6
        assert abs(f["solidity"][i] - p.solidity) < 0.08


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 60.0, -45.0, 89.0])
def test_orientation_is_angle_from_x_towards_y(angle_deg: float) -> None:
    labels = np.zeros((120, 120), np.uint32)
    t = np.radians(angle_deg)
    ys, xs = np.mgrid[0:120, 0:120] + 0.5
    u = (xs - 60) * np.cos(t) + (ys - 60) * np.sin(t)  # along the major axis (x right, y down)
    v = -(xs - 60) * np.sin(t) + (ys - 60) * np.cos(t)
    labels[(u / 40) ** 2 + (v / 12) ** 2 <= 1] = 1
    f = nucleus_features(labels, np.zeros((120, 120, 3), np.uint8), 1, 1.0)
    diff = (f["orientation_deg"][0] - angle_deg + 90) % 180 - 90
    assert abs(diff) < 1.0
    assert -90 <= f["orientation_deg"][0] < 90
    np.testing.assert_allclose(f["major_axis_um"][0], 80, rtol=0.03)
    np.testing.assert_allclose(f["minor_axis_um"][0], 24, rtol=0.05)


def test_concave_shape_has_low_solidity_and_circle_zero_eccentricity() -> None:
    labels = np.zeros((80, 80), np.uint32)
    labels[10:40, 10:15] = 1  # an L
    labels[35:40, 10:40] = 1
    ys, xs = np.mgrid[0:80, 0:80]
    labels[(ys - 60) ** 2 + (xs - 60) ** 2 <= 100] = 2
    f = nucleus_features(labels, np.full((80, 80, 3), 200, np.uint8), 2, 0.5)
    assert f["solidity"][0] < 0.6
    assert f["solidity"][1] > 0.95
    assert f["eccentricity"][1] < 0.1
    np.testing.assert_allclose(f["mean_r"], 200)


def test_empty_and_bad_shapes() -> None:
    f = nucleus_features(np.zeros((10, 10), np.uint32), np.zeros((10, 10, 3), np.uint8), 0, 0.5)
    assert all(v.shape == (0,) for v in f.values())
    with pytest.raises(ConfigError):
        nucleus_features(np.zeros((10, 10), np.uint32), np.zeros((10, 11, 3), np.uint8), 0, 0.5)
