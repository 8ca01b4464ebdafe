"""PathoSAM's automatic-instance-segmentation post-processing on one block.

A re-implementation of the non-tiled reference path (micro-sam ``InstanceSegmentationWithDecoder.
generate`` -> torch-em ``watershed_from_center_and_boundary_distances``; reference spec §7.1):
Gaussian smoothing of the three maps, strict thresholds, 8-connected seeds, a 4-connected seeded
watershed on the smoothed boundary-distance map inside the foreground mask, optional size filter.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from pathosam_wsi.config import WatershedConfig
from pathosam_wsi.postprocess.components import component_plan

__all__ = [
    "ais_watershed",
    "ais_watershed_and_mask",
    "smooth_maps",
    "watershed_per_component",
]

# The reference smooths with a kernel radius of int(3 sigma + 0.5) and a reflecting border
# (vigra / bioimage-cpp); scipy's "mirror" mode with truncate=3 is the closest equivalent.
_TRUNCATE = 3.0


def _gauss(image: npt.NDArray[np.float32], sigma_px: float) -> npt.NDArray[np.float32]:
    if sigma_px <= 0:
        return image.astype(np.float32, copy=True)
    return ndi.gaussian_filter(
        image.astype(np.float32, copy=False), sigma_px, mode="mirror", truncate=_TRUNCATE
    )


def smooth_maps(maps: npt.NDArray[np.float32], config: WatershedConfig) -> npt.NDArray[np.float32]:
    """Smooth the three AIS maps as the reference does.

    Parameters
    ----------
    maps : (3, H, W) float32, CYX
        Foreground probability, centre distance, boundary distance.
    config : WatershedConfig
        Smoothing sigmas in pixels.

    Returns
    -------
    (3, H, W) float32, CYX
        Smoothed copies; the input is not modified.
    """
    fg = _gauss(maps[0], config.foreground_smoothing_px)
    cd = _gauss(maps[1], config.distance_smoothing_px)
    bd = _gauss(maps[2], config.distance_smoothing_px)
    return np.stack([fg, cd, bd])


def ais_watershed(
    maps: npt.NDArray[np.float32], config: WatershedConfig | None = None
) -> npt.NDArray[np.uint32]:
    """Nucleus instances from the three AIS maps of one block.

    Parameters
    ----------
    maps : (3, H, W) float32, CYX, block pixels
        Unsmoothed foreground probability, normalised centre distance and normalised inverted
        boundary distance, as a PathoSAM decoder (or the classical model) returns them.
    config : WatershedConfig, optional
        Thresholds, smoothing and minimum size; PathoSAM's defaults when omitted.

    Returns
    -------
    (H, W) uint32, YX
        Instance labels, 0 = background, ids 1..N in order of first seed in raster order.

    Examples
    --------
    >>> maps = np.ones((3, 8, 8), np.float32); maps[0] = 0.0
    >>> int(ais_watershed(maps).max())
    0
    """
    return ais_watershed_and_mask(maps, config)[0]


def ais_watershed_and_mask(
    maps: npt.NDArray[np.float32], config: WatershedConfig | None = None
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """``ais_watershed`` -> (labels (H, W) uint32, foreground mask (H, W) bool), both YX."""
    config = config or WatershedConfig()
    if maps.ndim != 3 or maps.shape[0] != 3:
        raise ValueError(f"maps must be (3, H, W), got shape {maps.shape!r}")
    fg, cd, bd = smooth_maps(maps, config)
    fg_mask = fg > config.foreground_thresh
    seeds_mask = (
        (cd < config.center_distance_thresh) & (bd < config.boundary_distance_thresh) & fg_mask
    )
    seeds, n_seeds = ndi.label(seeds_mask, structure=np.ones((3, 3), bool))
    if n_seeds == 0:
        return np.zeros(fg.shape, np.uint32), fg_mask
    labels = watershed_per_component(bd, seeds, fg_mask)
    if config.min_size_px > 0:
        labels = _remove_small(labels, config.min_size_px)
    return labels, fg_mask


def watershed_per_component(
    bd: npt.NDArray[np.float32], seeds: npt.NDArray[np.int32], fg_mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint32]:
    """Seeded 4-connected watershed, as if run separately on each 4-connected foreground component.

    Flooding cannot cross between 4-disconnected components, so this equals one global watershed
    except where ties on plateaus are broken: a global flood breaks them by insertion order, which
    depends on unrelated content elsewhere in the image. Per component, a nucleus's result depends
    only on its own component, so a block and the whole image give identical nuclei.

    The per-component result is obtained with few watershed calls (``component_plan``): a
    component with one seed label is that label everywhere; components whose marker pixels have
    pairwise distinct values share one call (their heap orders cannot interact); the rest, with
    tied marker values, get one call each.
    """
    comps, n_comps = ndi.label(fg_mask)
    plan = component_plan(bd, seeds, comps, n_comps)
    out = plan.fill[comps]
    if plan.batched.any():
        _flood_batched(bd, seeds, plan.batched[comps], out)
    if plan.solo.size:
        slices = ndi.find_objects(comps)
        for i in plan.solo:
            sl = slices[i - 1]
            if sl is None:
                continue
            mask = comps[sl] == i
            markers = np.where(mask, seeds[sl], 0)
            ws = watershed(bd[sl], markers=markers, mask=mask, connectivity=1)
            out[sl][mask] = ws[mask]
    return out


def _flood_batched(
    bd: npt.NDArray[np.float32],
    seeds: npt.NDArray[np.int32],
    mask: npt.NDArray[np.bool_],
    out: npt.NDArray[np.uint32],
) -> None:
    """One watershed call on the bounding box of ``mask`` (the batched components), into ``out``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    m = mask[sl]
    ws = watershed(bd[sl], markers=np.where(m, seeds[sl], 0), mask=m, connectivity=1)
    out[sl][m] = ws[m]


def _remove_small(labels: npt.NDArray[np.uint32], min_size_px: int) -> npt.NDArray[np.uint32]:
    """Zero objects smaller than ``min_size_px`` and relabel consecutively (keeps raster order)."""
    counts = np.bincount(labels.ravel())
    keep = counts >= min_size_px
    keep[0] = False
    lut = np.zeros(counts.size, np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]
