"""Which foreground components of a block need a watershed call, and which can share one.

The seeded watershed (``skimage.segmentation.watershed``) floods from a binary heap ordered by
(value, age). Every marker pixel enters with age 0 and its own image value; every later entry gets
a unique, increasing age. So within one 4-connected component the only keys that can tie are those
of marker pixels with equal values, and the pop order of tied keys depends on the whole heap
(other components included). Hence:

- a component with a single seed label becomes that label everywhere (flooding reaches all of it);
- components whose marker values are pairwise distinct have a strict order on their own keys, so
  a shared call pops each component's pixels in exactly the order of a call on that component
  alone (elements of other components never enter its neighbourhoods): one call serves them all;
- components with tied marker values keep one call each, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from skimage.segmentation import watershed

__all__ = ["ComponentPlan", "component_plan"]


@dataclass(frozen=True)
class ComponentPlan:
    """How each component of a block is flooded.

    Attributes
    ----------
    fill : (n_comps + 1,) uint32
        Label of each single-seed component (0 for the others and for background).
    batched : (n_comps + 1,) bool
        Components with several seed labels and distinct marker values: one shared call.
    solo : (k,) intp
        Components with several seed labels and tied marker values: one call each.
    """

    fill: npt.NDArray[np.uint32]
    batched: npt.NDArray[np.bool_]
    solo: npt.NDArray[np.intp]


@lru_cache(maxsize=1)
def markers_keyed_by_value() -> bool:
    """Whether this scikit-image enters markers with their image value (the proof above needs it).

    Newer releases may enter every marker at -inf: then all markers of a component tie and every
    multi-seed component gets its own call.
    """
    image = np.array([[5.0, 0.0, 0.0, 0.0, 1.0]])
    markers = np.array([[1, 0, 0, 0, 2]], np.int32)
    return bool(np.array_equal(watershed(image, markers, connectivity=1), [[1, 2, 2, 2, 2]]))


def _tied_components(
    comp_px: npt.NDArray[np.intp], value_px: npt.NDArray[np.floating]
) -> npt.NDArray[np.intp]:
    """Components (ids) in which two marker pixels have the same value.

    Values equal as floats are equal as float32 (a wider input may merge a few more: harmless,
    those components just get their own call) and, with -0.0 folded into +0.0 as ``==`` does,
    have equal bit patterns, so one sort of (component, bits) keys finds every tie.
    """
    bits = (value_px.astype(np.float32) + np.float32(0.0)).view(np.uint32).astype(np.int64)
    keys = np.sort((comp_px.astype(np.int64) << 32) | bits)
    dup = keys[1:] == keys[:-1]
    return np.unique(keys[1:][dup] >> 32).astype(np.intp)


def component_plan(
    bd: npt.NDArray[np.floating],
    seeds: npt.NDArray[np.int32],
    comps: npt.NDArray[np.int32],
    n_comps: int,
) -> ComponentPlan:
    """Sort the components of a block into single-seed, batched and solo ones.

    Parameters
    ----------
    bd : (H, W) float, YX
        The flooded image (smoothed boundary distance).
    seeds : (H, W) int32, YX
        Seed labels (0 = none), only inside the foreground.
    comps : (H, W) int32, YX
        4-connected foreground components 1..n_comps.
    n_comps : int
        Number of components.

    Returns
    -------
    ComponentPlan
    """
    where = np.flatnonzero(seeds)
    comp_px = comps.ravel()[where].astype(np.intp)
    seed_px = seeds.ravel()[where]
    lo = np.full(n_comps + 1, np.iinfo(np.int32).max, np.int32)
    hi = np.zeros(n_comps + 1, np.int32)
    np.minimum.at(lo, comp_px, seed_px)
    np.maximum.at(hi, comp_px, seed_px)
    single = (hi > 0) & (lo == hi)
    multi = (hi > 0) & (lo != hi)
    multi[0] = single[0] = False
    fill = np.where(single, lo, 0).astype(np.uint32)
    if not multi.any():
        return ComponentPlan(fill, multi, np.zeros(0, np.intp))
    if not markers_keyed_by_value() or np.isnan(bd).any():
        return ComponentPlan(fill, np.zeros_like(multi), np.flatnonzero(multi))
    in_multi = multi[comp_px]
    solo = _tied_components(comp_px[in_multi], bd.ravel()[where[in_multi]])
    batched = multi.copy()
    batched[solo] = False
    return ComponentPlan(fill, batched, solo.astype(np.intp))
