"""Training targets as the reference computes them (docs/pathosam-reference.md §2.1, §4.3).

torch-em ``PerObjectDistanceTransform(distances=True, boundary_distances=True,
directed_distances=False, foreground=True, instances=True, min_size=10)``: objects under 10 px are
dropped, then channel 0 is the foreground, 1 the per-object normalised distance to the object's
centre and 2 the per-object normalised inverted distance to its boundary; both distances are 1 in
background. The per-object maps are the same ones the classical model emits (``distance_maps``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.segmentation import relabel_sequential

from pathosam_wsi.model.classical import distance_maps

__all__ = ["MIN_OBJECT_PX", "ais_targets"]

MIN_OBJECT_PX = 10
"""Objects smaller than this are removed before the targets are computed (reference min_size)."""


def ais_targets(
    labels: npt.NDArray[np.integer], min_size_px: int = MIN_OBJECT_PX
) -> npt.NDArray[np.float32]:
    """The three training maps of an instance label image.

    Parameters
    ----------
    labels : (H, W) integer, YX
        Instance labels, 0 = background; ids need not be consecutive.
    min_size_px : int
        Objects with fewer pixels are treated as background.

    Returns
    -------
    (3, H, W) float32, CYX
        Foreground (0/1), normalised centre distance, normalised inverted boundary distance.

    Examples
    --------
    >>> lab = np.zeros((9, 9), np.int32); lab[2:7, 2:7] = 5
    >>> t = ais_targets(lab)
    >>> float(t[0].sum()), float(t[1, 4, 4]), float(t[2, 4, 4])
    (25.0, 0.0, 0.0)
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape!r}")
    lab = np.asarray(labels).astype(np.int64, copy=False)
    if lab.min(initial=0) < 0:
        raise ValueError("labels must be >= 0 (0 = background)")
    sizes = np.bincount(lab.ravel())
    small = sizes < min_size_px
    small[0] = True
    lab = np.where(small[lab], 0, lab)
    dense, _, _ = relabel_sequential(lab)
    nuclei = dense.astype(np.int32)
    centre, boundary = distance_maps(nuclei)
    return np.stack([(nuclei > 0).astype(np.float32), centre, boundary])
