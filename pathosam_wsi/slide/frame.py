"""The working frame: the pixel grid the model sees, and its mapping to level 0.

Working px -> level-0 px: ``x_l0 = x_px * downsample`` (pixel centres at +0.5 in both frames). The
working frame covers the whole slide; the ROI is a box inside it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.errors import MissingResolutionError, PathoSamWarning, TilingError
from pathosam_wsi.slide.open import Slide

__all__ = ["WorkingFrame", "plan_frame"]

_LEVEL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class WorkingFrame:
    """Where and how working-frame pixels come from.

    Attributes
    ----------
    mpp_l0 : float
        Level-0 pixel size, µm/px.
    downsample : float
        Working px size in level-0 px (1.0 = level 0).
    level : int
        Pyramid level the pixels are read from.
    level_downsample : float
        That level's downsample relative to level 0.
    wh_px : tuple of int
        (width, height) of the working frame in px.
    roi_px : BoxXYXY
        Region to segment, half-open (x0, y0, x1, y1), working px.
    """

    mpp_l0: float
    downsample: float
    level: int
    level_downsample: float
    wh_px: tuple[int, int]
    roi_px: BoxXYXY

    @property
    def mpp(self) -> float:
        """Working pixel size, µm/px."""
        return self.mpp_l0 * self.downsample

    @property
    def resampled(self) -> bool:
        """True when working pixels are resampled from the read level."""
        return abs(self.downsample - self.level_downsample) > _LEVEL_TOLERANCE * self.downsample

    def read(self, slide: Slide, box_px: BoxXYXY) -> npt.NDArray[np.uint8]:
        """Working-frame pixels of ``box_px`` as (h, w, 3) uint8, YXC."""
        if not self.resampled:
            return slide.read_level(self.level, box_px)
        return _read_resampled(slide, self, box_px)


def _read_resampled(slide: Slide, frame: WorkingFrame, box_px: BoxXYXY) -> npt.NDArray[np.uint8]:
    """Read around the box at the source level and resample it exactly onto the working grid."""
    scale = frame.downsample / frame.level_downsample
    x0, y0, x1, y1 = box_px
    lw, lh = slide.level_dimensions[frame.level]
    margin = math.ceil(scale) + 2
    # Wanted source window; parts beyond the level (the last working pixel may overhang it by
    # less than a pixel) are filled by edge replication, as a resize of the whole level would.
    sx0, sy0 = int(x0 * scale) - margin, int(y0 * scale) - margin
    sx1, sy1 = math.ceil(x1 * scale) + margin, math.ceil(y1 * scale) + margin
    cx0, cy0, cx1, cy1 = max(sx0, 0), max(sy0, 0), min(sx1, lw), min(sy1, lh)
    src = slide.read_level(frame.level, (cx0, cy0, cx1, cy1))
    pad = ((cy0 - sy0, sy1 - cy1), (cx0 - sx0, sx1 - cx1), (0, 0))
    if any(p for pair in pad for p in pair):
        src = np.pad(src, pad, mode="edge")
    box = (x0 * scale - sx0, y0 * scale - sy0, x1 * scale - sx0, y1 * scale - sy0)
    out = Image.fromarray(src).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out)


def _pick_level(slide: Slide, downsample: float) -> int:
    """Coarsest level that is not coarser than ``downsample``."""
    best = 0
    for level, ds in enumerate(slide.level_downsamples):
        if ds <= downsample * (1 + _LEVEL_TOLERANCE) and ds >= slide.level_downsamples[best]:
            best = level
    return best


def _roi_px(
    roi_xywh_l0: tuple[int, int, int, int] | None,
    wh_l0: tuple[int, int],
    wh_px: tuple[int, int],
    downsample: float,
    path: str,
) -> BoxXYXY:
    if roi_xywh_l0 is None:
        return (0, 0, wh_px[0], wh_px[1])
    x, y, w, h = roi_xywh_l0
    cx0, cy0 = max(x, 0), max(y, 0)
    cx1, cy1 = min(x + w, wh_l0[0]), min(y + h, wh_l0[1])
    if cx0 >= cx1 or cy0 >= cy1:
        raise TilingError(
            f"{path}: ROI {roi_xywh_l0!r} (x y w h, level-0 px) lies outside the slide of "
            f"{wh_l0[0]}x{wh_l0[1]} px; give an ROI inside the slide"
        )
    if (cx0, cy0, cx1, cy1) != (x, y, x + w, y + h):
        warnings.warn(
            f"ROI {roi_xywh_l0!r} extends beyond the slide ({wh_l0[0]}x{wh_l0[1]} px); clipped",
            PathoSamWarning,
            stacklevel=3,
        )
    return (
        int(cx0 / downsample),
        int(cy0 / downsample),
        min(math.ceil(cx1 / downsample), wh_px[0]),
        min(math.ceil(cy1 / downsample), wh_px[1]),
    )


def plan_frame(
    slide: Slide,
    target_mpp: float | None = None,
    roi_xywh_l0: tuple[int, int, int, int] | None = None,
) -> WorkingFrame:
    """Choose the read level and working grid for a slide.

    Parameters
    ----------
    slide : Slide
        An opened slide whose ``mpp`` is set (from metadata or an override).
    target_mpp : float, optional
        Pixel size the model should see, µm/px; None keeps level 0.
    roi_xywh_l0 : tuple of int, optional
        (x, y, width, height) in level-0 px.

    Raises
    ------
    MissingResolutionError
        The slide has no pixel size.
    TilingError
        The ROI lies outside the slide.
    """
    if slide.mpp is None:
        raise MissingResolutionError(
            f"{slide.path}: no pixel size in the file's metadata; pass --mpp (µm per pixel, "
            "e.g. 0.25 for 40x, 0.5 for 20x)"
        )
    downsample = 1.0 if target_mpp is None else target_mpp / slide.mpp
    if downsample < 1 - _LEVEL_TOLERANCE:
        warnings.warn(
            f"target mpp {target_mpp} is finer than the slide's {slide.mpp:.4f} µm/px; "
            "pixels are upsampled",
            PathoSamWarning,
            stacklevel=2,
        )
    level = _pick_level(slide, downsample)
    level_ds = slide.level_downsamples[level]
    wh_l0 = slide.level_dimensions[0]
    if abs(downsample - level_ds) <= _LEVEL_TOLERANCE * downsample:
        downsample = level_ds
        wh_px = slide.level_dimensions[level]
    else:
        wh_px = (max(1, round(wh_l0[0] / downsample)), max(1, round(wh_l0[1] / downsample)))
    roi = _roi_px(roi_xywh_l0, wh_l0, wh_px, downsample, str(slide.path))
    return WorkingFrame(slide.mpp, downsample, level, level_ds, tuple(wh_px), roi)  # type: ignore[arg-type]
