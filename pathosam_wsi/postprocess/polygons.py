"""Nucleus outlines as polygons (marching-squares outer ring of every label, all at once)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pathosam_wsi.postprocess.outlines import outer_rings

__all__ = ["label_rings"]


def label_rings(
    labels: npt.NDArray[np.uint32], n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Outer ring of each label 1..n.

    The ring is the one ``skimage.measure.find_contours`` gives at level 0.5 on the label's
    zero-padded bounding-box crop (the largest-area contour, vertex for vertex); it is computed
    for all labels at once by ``outlines.outer_rings``.

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
    return outer_rings(labels, n)
