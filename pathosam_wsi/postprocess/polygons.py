"""Nucleus outlines as polygons (marching squares on each nucleus's bounding-box crop)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.measure import find_contours

__all__ = ["label_rings"]


def _ring_area(ring_yx: npt.NDArray[np.float64]) -> float:
    y, x = ring_yx[:, 0], ring_yx[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def label_rings(
    labels: npt.NDArray[np.uint32], n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Outer ring of each label 1..n.

    Parameters
    ----------
    labels : (h, w) uint32, YX, tile px
        Labels 1..n (0 = background); every id in 1..n must be present.
    n : int
        Number of labels.

    Returns
    -------
    ring_xy : (P, 2) float64
        Closed rings (first vertex repeated last), x then y, in tile px with pixel centres at
        +0.5 (so the ring of a single pixel at (0, 0) surrounds (0.5, 0.5)).
    offsets : (n + 1,) int64
        Ring i occupies ``ring_xy[offsets[i]:offsets[i + 1]]``.
    """
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
