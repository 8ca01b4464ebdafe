"""Deterministic synthetic inputs for the golden fixture (numpy + scipy only).

Used by ``make_golden.py`` inside the reference environment. The arrays it makes are stored in the
fixture, so the tests never regenerate them and do not depend on this module's random streams.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["realistic_map_codes", "synthetic_he_image"]

_BACKGROUND_RGB = (205.0, 170.0, 196.0)
"""Faded pink background: the image does not span 0..255, so the min-max stretch acts."""
_NUCLEUS_RGB = (95.0, 62.0, 140.0)


def synthetic_he_image(h_px: int, w_px: int, seed: int) -> NDArray[np.uint8]:
    """Faded H&E-like RGB tile: pink background, purple elliptical nuclei, pixel noise.

    Parameters
    ----------
    h_px, w_px : int
        Image size in pixels.
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    (h_px, w_px, 3) uint8, YXC
        Values stay inside about 30..240 per channel, so the reference's per-tile per-channel
        min-max stretch (micro-sam >= 1.7) changes them.
    """
    rng = np.random.default_rng(seed)
    img = np.empty((h_px, w_px, 3), np.float32)
    img[:] = _BACKGROUND_RGB
    yy, xx = np.mgrid[0:h_px, 0:w_px].astype(np.float32)
    for _ in range((h_px * w_px) // (30 * 30)):
        cy, cx = rng.uniform(0, h_px), rng.uniform(0, w_px)
        ry, rx = rng.uniform(4.0, 10.0), rng.uniform(4.0, 10.0)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        img[inside] = np.asarray(_NUCLEUS_RGB, np.float32) + rng.normal(0.0, 10.0, 3).astype(
            np.float32
        )
    img += rng.normal(0.0, 5.0, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 30, 240).astype(np.uint8)


def _ellipse_labels(h_px: int, w_px: int, rng: np.random.Generator) -> NDArray[np.int32]:
    """Label image of randomly rotated ellipses; later ones overwrite earlier ones (touching)."""
    labels = np.zeros((h_px, w_px), np.int32)
    n_nuclei = (h_px * w_px) // (34 * 34)
    for label_id in range(1, n_nuclei + 1):
        cy, cx = rng.uniform(0, h_px), rng.uniform(0, w_px)
        ra, rb = rng.uniform(5.0, 13.0), rng.uniform(4.0, 9.0)
        theta = rng.uniform(0.0, np.pi)
        r = int(np.ceil(max(ra, rb))) + 1
        y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, h_px)
        x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, w_px)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        inside = (u / ra) ** 2 + (v / rb) ** 2 <= 1.0
        labels[y0:y1, x0:x1][inside] = label_id
    return labels


def _per_object_distances(
    labels: NDArray[np.int32],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Centre and inverted boundary distance maps normalised per object, 1 in the background.

    Same meaning as torch-em's ``PerObjectDistanceTransform`` targets: centre distance / per-object
    max, and (max - boundary distance) / per-object max (both ~0 at the centre, ~1 at the boundary).
    """
    cd = np.ones(labels.shape, np.float32)
    bd = np.ones(labels.shape, np.float32)
    for label_id, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == label_id
        edt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        yy, xx = np.nonzero(mask)
        dist_c = np.hypot(yy - yy.mean(), xx - xx.mean())
        cd[sl][mask] = dist_c / max(float(dist_c.max()), 1.0)
        bd[sl][mask] = 1.0 - edt[mask] / float(edt[mask].max())
    return cd, bd


def realistic_map_codes(h_px: int, w_px: int, seed: int) -> NDArray[np.uint8]:
    """Realistic AIS maps (foreground, centre distance, boundary distance) as uint8 codes.

    The float maps are ``codes.astype(np.float32) / 255``: exactly what the reference was given and
    what the tests give our code, so storing the codes stores the maps losslessly and compactly.

    Parameters
    ----------
    h_px, w_px : int
        Map size in pixels.
    seed : int
        Seed of ``np.random.default_rng``.

    Returns
    -------
    (3, h_px, w_px) uint8, CYX
        Channel 0 foreground, 1 centre distance, 2 boundary distance (PathoSAM's channel order),
        per-nucleus foreground confidence 0.55..1, blurred (sigma 1 px, as a network's output is
        smooth), plus noise (sigma 0.03) within 4 px of nuclei.
    """
    rng = np.random.default_rng(seed)
    labels = _ellipse_labels(h_px, w_px, rng)
    cd, bd = _per_object_distances(labels)
    # Per-nucleus confidence: some nuclei are faint, so the foreground threshold matters.
    confidence = rng.uniform(0.55, 1.0, int(labels.max()) + 1).astype(np.float32)
    confidence[0] = 0.0
    maps = np.stack([confidence[labels], cd, bd])
    maps = np.stack([ndimage.gaussian_filter(m, 1.0, mode="mirror") for m in maps])
    # Pixel noise near nuclei only: a network's background is clean, and noise compresses badly.
    near = ndimage.binary_dilation(labels > 0, iterations=4)
    maps += np.where(near, rng.normal(0.0, 0.03, maps.shape), 0.0).astype(np.float32)
    return np.clip(np.rint(maps * 255.0), 0, 255).astype(np.uint8)
