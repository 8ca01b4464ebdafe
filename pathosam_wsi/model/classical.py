"""The built-in, weight-free ``classical`` nucleus model.

It emits PathoSAM's three AIS maps from colour alone, so the pipeline after it is the PathoSAM one
and the tool runs offline on any CPU:

1. haematoxylin optical density by colour deconvolution (Ruifrok & Johnston 2001, via
   ``skimage.color.rgb2hed``), lightly smoothed, minus its local background (a grey opening with
   a disk of ``background_radius_um``: a white top-hat, robust to stain strength);
2. foreground probability: a logistic function of that excess density around a fixed threshold;
3. nuclei: the foreground mask, its small background pockets filled, split by a watershed on its
   distance transform, seeded by the distance transform's h-maxima;
4. per nucleus, the normalised distance to its centre and the normalised inverted distance to
   its boundary, as PathoSAM's decoder is trained to predict (torch-em PerObjectDistanceTransform).
   Coarser than 0.55 µm/px, where a nucleus is only a few pixels wide and the watershed's fixed
   1.6 px smoothing would erase those ramps, both maps are flat instead: 0 inside a nucleus, 1 in
   background and where two nuclei touch. The model supports 0.25-1.0 µm/px (runs outside warn).

Every step is local: the foreground probability depends only on pixels within ``context_px``,
and the two distance maps of a pixel only on the connected foreground region that holds it (the
hole filling is bounded, each nucleus is measured from its own centre, and no step uses a value
of the whole tile). So a region that lies, with ``context_px`` to spare, inside two different
tiles gets the same maps in both; ``pathosam_wsi.stitch.regions`` grows the window of a block
until that holds for the regions it keeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.morphology import disk, h_maxima, opening
from skimage.segmentation import find_boundaries

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.registry import register_model
from pathosam_wsi.postprocess.watershed import watershed_per_component

__all__ = ["ClassicalModel", "ClassicalParams", "distance_maps"]


@dataclass(frozen=True, kw_only=True)
class ClassicalParams:
    """Tuning of the classical model; sizes in µm so they hold at any resolution."""

    hematoxylin_od_thresh: float = 0.05
    """Haematoxylin density above local background (rgb2hed units) where foreground p = 0.5."""
    od_softness: float = 0.01
    """Width of the logistic transition, same units."""
    background_radius_um: float = 4.0
    smoothing_um: float = 0.5
    min_area_um2: float = 8.0
    seed_h_um: float = 0.6
    """Minimum dynamic of a distance-transform maximum to seed its own nucleus."""
    max_hole_um: float = 8.0
    """Background pockets inside the mask up to this extent (µm, both axes) are filled."""


class ClassicalModel:
    """Colour-deconvolution nucleus model; see the module docstring."""

    name = "classical"
    class_names: tuple[str, ...] | None = None

    def __init__(self, mpp: float, params: ClassicalParams | None = None) -> None:
        self.mpp = float(mpp)
        self.params = params or ClassicalParams()

    @property
    def context_px(self) -> int:
        """Reach of the local filters, px: how far from a pixel its foreground value may look.

        The Gaussian (3 sigma), the grey opening (its disk twice: erosion, then dilation) and the
        bounded hole filling (a pocket's extent, diagonal). The centre and boundary maps of a pixel
        depend, beyond that, only on the connected foreground region that holds it
        (``pathosam_wsi.stitch.regions`` relies on both facts).
        """
        p = self.params
        gauss_px = int(3.0 * p.smoothing_um / self.mpp + 0.5)
        hole_px = math.ceil(math.sqrt(2) * (self._max_hole_px + 1))
        return gauss_px + 2 * self._radius_px + 1 + hole_px + 1

    @property
    def _radius_px(self) -> int:
        return max(1, round(self.params.background_radius_um / self.mpp))

    @property
    def _max_hole_px(self) -> int:
        return max(1, round(self.params.max_hole_um / self.mpp))

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Maps for each (H, W, 3) uint8 RGB tile; tiles are independent of each other."""
        return [ModelOutput(ais=self.maps(tile)) for tile in tiles]

    def maps(self, tile: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(3, H, W) float32 AIS maps of one (H, W, 3) uint8 RGB tile."""
        p = self.params
        od = rgb2hed(tile)[..., 0].astype(np.float32)
        od = ndi.gaussian_filter(od, p.smoothing_um / self.mpp, mode="mirror", truncate=3.0)
        # A disk decomposed into a sequence of small footprints: ~3.5x faster than the full disk.
        od = od - opening(od, disk(self._radius_px, decomposition="sequence"))
        fg = 1.0 / (1.0 + np.exp(-(od - p.hematoxylin_od_thresh) / p.od_softness))
        fg = fg.astype(np.float32)
        nuclei = self._split_nuclei(fg > 0.5)
        if self.mpp > RAMP_MAPS_MAX_MPP:
            flat = _flat_core_map(nuclei)
            return np.stack([fg, flat, flat.copy()])
        centre, boundary = distance_maps(nuclei)
        return np.stack([fg, centre, boundary])

    def _split_nuclei(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int32]:
        """Instance labels: the mask cleaned, filled and split at distance-transform saddles."""
        p = self.params
        mask = _fill_small_holes(mask, self._max_hole_px)
        comps, n = ndi.label(mask)
        if n == 0:
            return np.zeros(mask.shape, np.int32)
        sizes = np.bincount(comps.ravel())
        keep = sizes >= p.min_area_um2 / self.mpp**2
        keep[0] = False
        mask = keep[comps]
        edt = ndi.distance_transform_edt(mask).astype(np.float32)
        seeds = _h_maxima_local(edt, p.seed_h_um / self.mpp) & mask
        markers, _ = ndi.label(seeds, structure=np.ones((3, 3), bool))
        # Per 4-connected component: a global flood breaks plateau ties by heap insertion order,
        # which depends on the rest of the tile (postprocess/watershed.py).
        return watershed_per_component(-edt, markers, mask).astype(np.int32)


def distance_maps(
    nuclei: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Normalised centre distance and inverted boundary distance per nucleus (1 outside)."""
    centre = np.ones(nuclei.shape, np.float32)
    boundary = np.ones(nuclei.shape, np.float32)
    n = int(nuclei.max())
    if n == 0:
        return centre, boundary
    inside = (nuclei > 0) & ~find_boundaries(nuclei, mode="inner", background=0)
    edt = ndi.distance_transform_edt(inside).astype(np.float32)
    index = np.arange(1, n + 1)
    fg = nuclei > 0
    max_edt = np.asarray(ndi.maximum(edt, nuclei, index), np.float32)
    denom = np.maximum(max_edt, 1.0)[nuclei[fg] - 1]
    boundary[fg] = np.clip((max_edt[nuclei[fg] - 1] - edt[fg]) / denom, 0.0, 1.0)
    # Distance to the nucleus's own centre (torch-em's PerObjectDistanceTransform works per object):
    # a distance transform of all centres would let a neighbour's centre, possibly in another
    # region, shape this nucleus's map.
    present, first = _first_maximum(edt, nuclei, max_edt)
    cy, cx = np.zeros(n, np.intp), np.zeros(n, np.intp)
    cy[present - 1], cx[present - 1] = np.divmod(first, nuclei.shape[1])
    rows, cols = np.nonzero(fg)
    lab = nuclei[fg] - 1
    dist = np.zeros(nuclei.shape, np.float32)
    dist[fg] = np.hypot(rows - cy[lab], cols - cx[lab]).astype(np.float32)
    max_dist = np.asarray(ndi.maximum(dist, nuclei, index), np.float32)
    centre[fg] = np.clip(dist[fg] / np.maximum(max_dist, 1.0)[nuclei[fg] - 1], 0.0, _BELOW_ONE)
    return centre, boundary


def _fill_small_holes(mask: npt.NDArray[np.bool_], max_extent_px: int) -> npt.NDArray[np.bool_]:
    """Fill the 4-connected background pockets whose bounding box is at most ``max_extent_px``.

    ``binary_fill_holes`` fills every pocket not connected to the tile border: whether a pocket
    (e.g. a gland lumen ringed by nuclei) is filled then depends on where the tile ends. A pocket
    of bounded extent is decided by the pixels within that extent, whatever the tile.
    """
    pockets, n = ndi.label(~mask)
    if n == 0:
        return mask
    small = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndi.find_objects(pockets), start=1):
        if sl is not None:
            small[i] = max(s.stop - s.start for s in sl) <= max_extent_px
    return mask | small[pockets]


def _h_maxima_local(edt: npt.NDArray[np.float32], h: float) -> npt.NDArray[np.bool_]:
    """``h_maxima`` whose answer for one component does not depend on the rest of the tile.

    ``h_maxima`` always keeps the tile's global maximum, even below ``h``; a one-pixel peak above
    everything, isolated by a zero frame, takes that role, so every component is judged by its
    own dynamic.
    """
    padded = np.pad(edt, 2)
    padded[0, 0] = float(edt.max(initial=0.0)) + 2 * h + 1
    return h_maxima(padded, h)[2:-2, 2:-2].astype(bool)


def _flat_core_map(nuclei: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
    """0 inside each nucleus, 1 in background and on pixels touching another nucleus.

    Used for both distance maps at coarse resolution: the PathoSAM watershed smooths the maps by
    a fixed 1.6 px, which wipes out the ramps of a nucleus only a few pixels wide; a flat core
    survives that smoothing and the touching lines still split neighbours.
    """
    fg = nuclei > 0
    touching = find_boundaries(nuclei, mode="inner", background=0) & ~find_boundaries(
        fg, mode="inner"
    )
    out = np.ones(nuclei.shape, np.float32)
    out[fg] = _BELOW_ONE
    out[fg & ~touching] = 0.0
    return out


def _first_maximum(
    edt: npt.NDArray[np.float32], nuclei: npt.NDArray[np.int32], max_edt: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.intp]]:
    """(labels present, flat index of each one's deepest point, the first in raster order on ties).

    ``scipy.ndimage.maximum_position`` does not promise which tied maximum it returns; raster
    order does not change when a block is shifted, so the centre is the same in every block.
    """
    flat_labels = nuclei.ravel()
    idx = np.flatnonzero(flat_labels)  # ascending = raster order
    labels = flat_labels[idx]
    at_max = edt.ravel()[idx] == max_edt[labels - 1]
    idx, labels = idx[at_max], labels[at_max]
    present, first = np.unique(labels, return_index=True)  # first occurrence of each label
    return present, idx[first]


_BELOW_ONE = np.nextafter(np.float32(1.0), np.float32(0.0))
"""The centre map's largest value on a nucleus: 1 marks background only, so the nucleus pixels
are exactly those with a map below 1 (``stitch/regions.py`` finds regions that way)."""
RAMP_MAPS_MAX_MPP = 0.55
"""Coarsest working µm/px with PathoSAM-like ramp maps; coarser tiles get flat-core maps."""
SUPPORTED_MPP = (0.25, 1.0)
"""Working pixel sizes (µm/px) at which the classical model keeps its nucleus counts."""


@register_model("classical", mpp_range=SUPPORTED_MPP)
def _build_classical(config: ModelConfig, mpp: float) -> ClassicalModel:
    return ClassicalModel(mpp)
