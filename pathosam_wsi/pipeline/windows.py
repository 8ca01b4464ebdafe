"""The window rule: a block re-reads a larger window for the foreground regions its box cuts.

For a model with local maps (it declares ``context_px``, the reach of its local filters; the
``classical`` model does), every window is read with ``context_px`` of extra context around it and
the model's maps are cropped back to the window, so the maps of a region that lies inside the
window depend only on the slide (``stitch/regions.py`` says exactly when). After the watershed on
the block's halo box, the regions that come within the watershed's reach of a cut edge (an edge of
the box that is not an image edge), and the regions next to them, are *cut*; those whose box meets
the block's core may hold nuclei the block owns. For all of them together, the block reads one
window around them, grown until they and their neighbours no longer come near the window's cut
edges, up to ``TilingConfig.max_window_px`` on a side, re-runs the model and the watershed there
and keeps, of those regions, the nuclei whose centroid lies in its core. What still does not fit
is kept from the largest window tried, flagged ``at_halo_edge`` and counted.

Models whose maps depend on the whole tile (PathoSAM's ViT resizes every tile to 1024 px, so a
larger window changes every map) declare no ``context_px``: for them the rule is off, blocks work
on their halo box as before and nuclei that reach its edge are only flagged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.postprocess.watershed import ais_watershed_and_mask
from pathosam_wsi.stitch.ownership import own_nuclei
from pathosam_wsi.stitch.regions import (
    cut_regions,
    edge_band,
    regions_near,
    support_regions,
    watershed_reach_px,
)
from pathosam_wsi.tiling.grid import Block

__all__ = [
    "BlockFit",
    "Window",
    "context_box",
    "fit_block",
    "model_context_px",
    "segment_fn",
    "watershed_reach_px",
]

_GROW_PX = 64
"""Least px added on a side where a region is still cut (else a quarter of the window)."""
_START_PX = 16
"""Extra px around the cut regions in the first window."""


def model_context_px(model: Any) -> int | None:
    """The model's declared ``context_px`` (local maps), or None (maps depend on the whole tile)."""
    value = getattr(model, "context_px", None)
    return None if value is None else int(value)


def context_box(box_px: BoxXYXY, context_px: int, image_wh_px: tuple[int, int]) -> BoxXYXY:
    """``box_px`` grown by ``context_px`` on every side, clipped to the image."""
    x0, y0, x1, y1 = box_px
    w, h = image_wh_px
    c = context_px
    return (max(x0 - c, 0), max(y0 - c, 0), min(x1 + c, w), min(y1 + c, h))


@dataclass(frozen=True)
class Window:
    """One segmented window: its box, image, model maps and watershed result (window px)."""

    box_px: BoxXYXY
    tile: npt.NDArray[np.uint8]
    """(h, w, 3) uint8, YXC."""
    output: ModelOutput
    """Maps (3, h, w) (and semantic (C, h, w)) of the window."""
    labels: npt.NDArray[np.uint32]
    """(h, w) uint32, YX, watershed labels."""
    fg_mask: npt.NDArray[np.bool_]
    """(h, w) bool, YX, the watershed's foreground."""

    @classmethod
    def crop(
        cls,
        read_box_px: BoxXYXY,
        tile: npt.NDArray[np.uint8],
        output: ModelOutput,
        box_px: BoxXYXY,
        segment: Callable[[npt.NDArray[np.float32]], tuple[Any, Any]],
    ) -> Window:
        """The window ``box_px`` cut out of a read of ``read_box_px`` (which contains it)."""
        x0, y0 = box_px[0] - read_box_px[0], box_px[1] - read_box_px[1]
        sl = (slice(y0, y0 + box_px[3] - box_px[1]), slice(x0, x0 + box_px[2] - box_px[0]))
        ais = np.ascontiguousarray(output.ais[:, sl[0], sl[1]])
        sem = output.semantic
        out = ModelOutput(ais, None if sem is None else np.ascontiguousarray(sem[:, sl[0], sl[1]]))
        labels, fg_mask = segment(ais)
        return cls(box_px, np.ascontiguousarray(tile[sl]), out, labels, fg_mask)


@dataclass
class BlockFit:
    """A block's segmentation after the window rule, ready for ``measure_owned``."""

    box_px: BoxXYXY
    labels: npt.NDArray[np.uint32]
    """(h, w) uint32, YX, box px: the block's safe nuclei and the nuclei of refitted regions."""
    fg_prob: npt.NDArray[np.float32]
    semantic: npt.NDArray[np.float32] | None
    tile: npt.NDArray[np.uint8]
    exceeded_ids: set[int] = field(default_factory=set)
    """Labels (in ``labels``) of nuclei from regions that did not fit the largest window."""
    regions_refit: int = 0
    regions_exceeding_window: int = 0
    max_window_px: int = 0


@dataclass
class _Fit:
    window: Window
    region: npt.NDArray[np.bool_]
    """(h, w) bool, window px: the refitted regions."""
    unfit: npt.NDArray[np.bool_]
    """(h, w) bool, window px: those of them that are still cut (the window hit its maximum)."""
    unfit_count: int


def _union(a: BoxXYXY, b: BoxXYXY) -> BoxXYXY:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _bbox(mask: npt.NDArray[np.bool_], origin: tuple[int, int]) -> BoxXYXY:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (
        origin[0] + int(cols[0]),
        origin[1] + int(rows[0]),
        origin[0] + int(cols[-1]) + 1,
        origin[1] + int(rows[-1]) + 1,
    )


def _meets(box: BoxXYXY, other: BoxXYXY) -> bool:
    return box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]


class _Rule:
    """Region bookkeeping of one block (see the module docstring)."""

    def __init__(
        self,
        block: Block,
        image_wh_px: tuple[int, int],
        reach_px: int,
        max_window_px: int,
        segment_box: Callable[[BoxXYXY], Window],
    ) -> None:
        self.block = block
        self.image_wh_px = image_wh_px
        self.reach_px = reach_px
        self.band_px = reach_px + 2
        self.max_window_px = max_window_px
        self.segment_box = segment_box
        self.largest_px = 0

    def cut(self, window: Window) -> tuple[npt.NDArray[np.int32], int, set[int], set[int]]:
        """Regions of a window, those cut by its edges and those cut or next to a cut one."""
        regions, n = support_regions(window.output.ais, window.fg_mask)
        band = edge_band(window.box_px, self.image_wh_px, self.band_px)
        cut = cut_regions(regions, n, band)
        return regions, n, cut, regions_near(regions, n, cut, self.reach_px)

    def grow(self, box: BoxXYXY, zone: npt.NDArray[np.bool_], window: Window) -> BoxXYXY:
        """Next window: the zone's box plus the band, and ``_GROW_PX`` more where it was cut."""
        zx0, zy0, zx1, zy1 = _bbox(zone, (window.box_px[0], window.box_px[1]))
        pad = self.band_px + self.reach_px + 1
        x0, y0, x1, y1 = zx0 - pad, zy0 - pad, zx1 + pad, zy1 + pad
        bx0, by0, bx1, by1 = window.box_px
        gx, gy = max(_GROW_PX, (bx1 - bx0) // 4), max(_GROW_PX, (by1 - by0) // 4)
        x0 -= gx if zx0 - bx0 < self.band_px else 0
        y0 -= gy if zy0 - by0 < self.band_px else 0
        x1 += gx if bx1 - zx1 < self.band_px else 0
        y1 += gy if by1 - zy1 < self.band_px else 0
        w, h = self.image_wh_px
        grown = _union(box, (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)))
        return grown

    def fit(self, target_yx: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]) -> _Fit:
        """Grow a window around the region holding ``target_yx`` (image px) until it fits."""
        ys, xs = target_yx
        pad = self.band_px + self.reach_px + 1 + _START_PX
        w, h = self.image_wh_px
        box = (
            max(int(xs.min()) - pad, 0),
            max(int(ys.min()) - pad, 0),
            min(int(xs.max()) + 1 + pad, w),
            min(int(ys.max()) + 1 + pad, h),
        )
        while True:
            side = max(box[2] - box[0], box[3] - box[1])
            if side > self.max_window_px:
                box = _clamp(box, self.max_window_px, target_yx)
            window = self.segment_box(box)
            self.largest_px = max(self.largest_px, box[2] - box[0], box[3] - box[1])
            regions, n, cut, near_cut = self.cut(window)
            inside = (ys >= box[1]) & (ys < box[3]) & (xs >= box[0]) & (xs < box[2])
            ids = set(np.unique(regions[ys[inside] - box[1], xs[inside] - box[0]]).tolist()) - {0}
            chosen = np.zeros(n + 1, bool)
            chosen[list(ids)] = True
            region = chosen[regions]
            zone_ids = regions_near(regions, n, ids, self.reach_px)
            fits = not (zone_ids & cut)
            if fits or side > self.max_window_px:
                unfit_ids = ids & near_cut
                chosen[:] = False
                chosen[list(unfit_ids)] = True
                return _Fit(window, region, chosen[regions], len(unfit_ids))
            zone = np.zeros(n + 1, bool)
            zone[list(zone_ids)] = True
            box = self.grow(box, zone[regions], window)


def _clamp(box: BoxXYXY, side_px: int, target_yx: tuple[Any, Any]) -> BoxXYXY:
    """A box of at most ``side_px`` on a side inside ``box``, centred on the target's middle."""
    ys, xs = target_yx
    cy, cx = int(np.median(ys)), int(np.median(xs))
    out = []
    for lo, hi, c in ((box[0], box[2], cx), (box[1], box[3], cy)):
        if hi - lo <= side_px:
            out.append((lo, hi))
            continue
        start = min(max(c - side_px // 2, lo), hi - side_px)
        out.append((start, start + side_px))
    return (out[0][0], out[1][0], out[0][1], out[1][1])


def _targets(rule: _Rule, first: Window) -> tuple[list[tuple[Any, Any]], npt.NDArray[np.bool_]]:
    """Pixels (image px) of each cut region whose box meets the core, and the mask of all cut."""
    regions, n, _, near_cut = rule.cut(first)
    drop = np.zeros(n + 1, bool)
    drop[list(near_cut)] = True
    ox, oy = first.box_px[0], first.box_px[1]
    targets = []
    for i, sl in enumerate(ndi.find_objects(regions), start=1):
        if sl is None or not drop[i]:
            continue
        box = (sl[1].start + ox, sl[0].start + oy, sl[1].stop + ox, sl[0].stop + oy)
        if _meets(box, rule.block.core_px):
            ys, xs = np.nonzero(regions[sl] == i)
            targets.append((ys + sl[0].start + oy, xs + sl[1].start + ox))
    return targets, drop[regions]


def fit_block(
    block: Block,
    first: Window,
    image_wh_px: tuple[int, int],
    watershed_reach: int,
    max_window_px: int,
    segment_box: Callable[[BoxXYXY], Window],
) -> BlockFit:
    """Apply the window rule to one block whose halo box has been segmented (``first``).

    ``segment_box(box_px)`` reads, predicts (with the model's context) and segments a window.
    """
    rule = _Rule(block, image_wh_px, watershed_reach, max_window_px, segment_box)
    targets, cut_mask = _targets(rule, first)
    labels = np.where(cut_mask, 0, first.labels).astype(np.uint32) if targets else first.labels
    fit = BlockFit(
        first.box_px,
        labels,
        first.output.ais[0],
        first.output.semantic,
        first.tile,
        max_window_px=max(first.tile.shape[:2]),
    )
    if not targets:
        return fit
    ys = np.concatenate([t[0] for t in targets])
    xs = np.concatenate([t[1] for t in targets])
    fits = [rule.fit((ys, xs))]  # one window for all: they mostly share the block's surroundings
    _merge(fit, block, image_wh_px, fits)
    fit.regions_refit = len(targets)
    fit.regions_exceeding_window = fits[0].unfit_count
    fit.max_window_px = max(fit.max_window_px, rule.largest_px)
    return fit


def _owned_part(fit: _Fit, block: Block, image_wh_px: tuple[int, int]) -> npt.NDArray[np.uint32]:
    """Labels (window px) of the region's nuclei whose centroid lies in the block's core."""
    window = fit.window
    labels = np.where(fit.region, window.labels, 0).astype(np.uint32)
    pseudo = Block(block.block_id, block.row, block.col, block.core_px, window.box_px)
    return own_nuclei(labels, pseudo, image_wh_px).labels


def _merge(fit: BlockFit, block: Block, image_wh_px: tuple[int, int], fits: list[_Fit]) -> None:
    """Paste the owned nuclei of every refitted region into the block's arrays (grown to fit)."""
    parts = [(f, _owned_part(f, block, image_wh_px)) for f in fits]
    box = fit.box_px
    for f, owned in parts:
        if owned.any():
            box = _union(box, _bbox(owned > 0, (f.window.box_px[0], f.window.box_px[1])))
    h, w = box[3] - box[1], box[2] - box[0]

    def grown(array: npt.NDArray[Any], src_box: BoxXYXY) -> npt.NDArray[Any]:
        out = np.zeros((*array.shape[:-2], h, w), array.dtype)
        _paste(out, box, array, src_box)
        return out

    labels = grown(fit.labels, fit.box_px)
    fg = grown(fit.fg_prob, fit.box_px)
    tile = np.moveaxis(grown(np.moveaxis(fit.tile, -1, 0), fit.box_px), 0, -1)
    sem = None if fit.semantic is None else grown(fit.semantic, fit.box_px)
    next_id = int(labels.max()) + 1
    for f, owned in parts:
        win = f.window
        _paste(fg, box, win.output.ais[0], win.box_px)
        _paste(np.moveaxis(tile, -1, 0), box, np.moveaxis(win.tile, -1, 0), win.box_px)
        if sem is not None and win.output.semantic is not None:
            _paste(sem, box, win.output.semantic, win.box_px)
        shifted = np.where(owned > 0, owned + np.uint32(next_id - 1), 0).astype(np.uint32)
        _paste(labels, box, shifted, win.box_px, only_empty=True)
        if f.unfit_count:
            hit = np.unique(owned[f.unfit & (owned > 0)])
            fit.exceeded_ids.update((hit + next_id - 1).tolist())
        next_id += int(owned.max(initial=0))
    fit.box_px, fit.labels, fit.fg_prob, fit.tile, fit.semantic = box, labels, fg, tile, sem


def _paste(
    dst: npt.NDArray[Any],
    dst_box: BoxXYXY,
    src: npt.NDArray[Any],
    src_box: BoxXYXY,
    only_empty: bool = False,
) -> None:
    """Copy the overlap of ``src`` (.., h, w) at ``src_box`` into ``dst`` at ``dst_box``."""
    x0, y0 = max(dst_box[0], src_box[0]), max(dst_box[1], src_box[1])
    x1, y1 = min(dst_box[2], src_box[2]), min(dst_box[3], src_box[3])
    if x0 >= x1 or y0 >= y1:
        return
    d = dst[..., y0 - dst_box[1] : y1 - dst_box[1], x0 - dst_box[0] : x1 - dst_box[0]]
    s = src[..., y0 - src_box[1] : y1 - src_box[1], x0 - src_box[0] : x1 - src_box[0]]
    if only_empty:
        np.copyto(d, s, where=(d == 0) & (s > 0))
    else:
        np.copyto(d, s)


def segment_fn(watershed_config: Any) -> Callable[[npt.NDArray[np.float32]], tuple[Any, Any]]:
    """The watershed as ``Window.crop`` calls it."""
    return lambda ais: ais_watershed_and_mask(ais, watershed_config)
