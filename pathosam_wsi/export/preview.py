"""A small RGB preview of the slide as the NGFF multiscale image at the root of ``labels.ome.zarr``.

Viewers (napari-ome-zarr, ``ome_zarr.reader.Reader``) open the store's root, show the preview and
find the label image ``labels/nuclei`` under it (its ``image-label.source.image`` is ``"../../"``).

Alignment rule: every array in the store maps index ``i`` to world ``i * scale`` µm, translation 0
(napari-ome-zarr 0.10 reads only the first transform of dataset 0, the scale, and napari ignores
per-level translations, so a translation would be dropped anyway). This is the frame napari uses
for each level of a slide shown with ``scale = level downsample * mpp``. The preview is read from
the slide level ``L`` (downsample ``ds_L``) and pooled by an integer factor ``f``; preview pixel
``j`` is the mean of level-``L`` pixels ``j*f - f//2 .. j*f + f//2`` (an odd window centred on
pixel ``j*f``, edges replicated), so it lies on that level pixel, whose world position is
``j * f * ds_L * mpp`` = ``j * scale`` of the preview. The slide's own level ``L`` averages
level-0 pixels ``m*ds_L .. m*ds_L + ds_L - 1``, so the preview content sits ``(ds_L - 1) / 2``
level-0 px (less than half a preview pixel) right of and below the labels, as that slide level does
in napari; it is exact when the preview is read from level 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from numcodecs import Zstd

from pathosam_wsi.slide.open import Slide

__all__ = ["PREVIEW_MAX_SIDE_PX", "PREVIEW_MIN_MPP", "Preview", "read_preview", "write_preview"]

PREVIEW_MAX_SIDE_PX = 4096
"""Long side of the preview is at most this many px."""
PREVIEW_MIN_MPP = 2.0
"""The preview is never finer than this (µm/px): it is an overview; the slide has the detail."""
_CHUNK_PX = 1024
_SOURCE_WINDOW_PX = 2048  # level px read at a time (per side), so memory stays bounded


@dataclass(frozen=True)
class Preview:
    """Preview pixels and where they lie.

    Attributes
    ----------
    rgb : (3, h, w) uint8, CYX, preview px
        The pooled slide.
    downsample_l0 : float
        Preview px size in level-0 px (``= ds_L * f``).
    mpp : float
        Preview px size, µm/px (the NGFF scale).
    """

    rgb: npt.NDArray[np.uint8]
    downsample_l0: float
    mpp: float


def pool_centred(window_px: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """Mean of the odd window of side ``2*(factor//2)+1`` centred on every ``factor``-th pixel.

    Parameters
    ----------
    window_px : (H + 2*(factor//2), W + 2*(factor//2), 3) uint8, YXC, level px
        Pixels of a region of one slide level (H x W, its origin a multiple of ``factor``) with a
        margin of ``factor//2`` px on every side (edge-replicated beyond the level).
    factor : int
        Stride >= 1; output pixel ``j`` sits on region pixel ``j * factor``.

    Returns
    -------
    (ceil(H / factor), ceil(W / factor), 3) uint8, YXC
    """
    half = factor // 2
    side = 2 * half + 1
    out: npt.NDArray[Any] = window_px
    for axis in (0, 1):
        n_out = -(-(out.shape[axis] - 2 * half) // factor)
        # Output j's window is margin-frame pixels j*f .. j*f + 2*half: f pixels, plus the next
        # one when f is even.
        head = out[: n_out * factor] if axis == 0 else out[:, : n_out * factor]
        shape = (*out.shape[:axis], n_out, factor, *out.shape[axis + 1 :])
        sums = head.reshape(shape).sum(axis=axis + 1, dtype=np.uint32)
        if side > factor:
            nxt = out[factor::factor] if axis == 0 else out[:, factor::factor]
            sums += np.take(nxt, np.arange(n_out), axis=axis)
        out = sums
    return ((out + side**2 // 2) // side**2).astype(np.uint8)  # rounded mean (no ties: odd)


def _preview_level(slide: Slide, wanted_ds: float) -> tuple[int, int]:
    """(level, factor): the coarsest level not coarser than ``wanted_ds``, and the integer factor
    that makes a preview pixel at least ``wanted_ds`` level-0 px."""
    level = 0
    for i, ds in enumerate(slide.level_downsamples):
        if slide.level_downsamples[level] <= ds <= wanted_ds:
            level = i
    return level, max(1, math.ceil(wanted_ds / slide.level_downsamples[level] - 1e-9))


def _read_margined(
    slide: Slide, level: int, box_xyxy: tuple[int, int, int, int], half: int
) -> npt.NDArray[np.uint8]:
    """(h + 2*half, w + 2*half, 3) uint8 pixels of a level box with margins (edges replicated)."""
    x0, y0, x1, y1 = box_xyxy
    lw, lh = slide.level_dimensions[level]
    rx0, ry0, rx1, ry1 = (
        max(x0 - half, 0),
        max(y0 - half, 0),
        min(x1 + half, lw),
        min(y1 + half, lh),
    )
    src = slide.read_level(level, (rx0, ry0, rx1, ry1))
    pad = (
        (half - (y0 - ry0), half - (ry1 - y1)),
        (half - (x0 - rx0), half - (rx1 - x1)),
        (0, 0),
    )
    return np.pad(src, pad, mode="edge")


def read_preview(slide: Slide) -> Preview:
    """Read the slide's preview (long side <= 4096 px, >= 2 µm/px) window by window.

    Parameters
    ----------
    slide : Slide
        An opened slide (``slide.mpp`` None counts as 1 µm/px).

    Returns
    -------
    Preview
    """
    mpp_l0 = slide.mpp or 1.0
    wanted = max(
        1.0, max(slide.level_dimensions[0]) / PREVIEW_MAX_SIDE_PX, PREVIEW_MIN_MPP / mpp_l0
    )
    level, factor = _preview_level(slide, wanted)
    lw, lh = slide.level_dimensions[level]
    out = np.empty((-(-lh // factor), -(-lw // factor), 3), np.uint8)
    step = max(1, _SOURCE_WINDOW_PX // factor) * factor  # windows start on multiples of factor
    for y0 in range(0, lh, step):
        for x0 in range(0, lw, step):
            box = (x0, y0, min(x0 + step, lw), min(y0 + step, lh))
            tile = pool_centred(_read_margined(slide, level, box, factor // 2), factor)
            ty, tx = y0 // factor, x0 // factor
            out[ty : ty + tile.shape[0], tx : tx + tile.shape[1]] = tile
    ds_l0 = slide.level_downsamples[level] * factor
    return Preview(np.ascontiguousarray(out.transpose(2, 0, 1)), ds_l0, ds_l0 * mpp_l0)


def write_preview(path: Path, preview: Preview, name: str) -> None:
    """Write the preview as the NGFF 0.4 multiscale image at the root of an existing store.

    Parameters
    ----------
    path : Path
        The ``labels.ome.zarr`` folder (made by ``create_label_image``).
    preview : Preview
        What :func:`read_preview` returned.
    name : str
        Image name (the slide id).
    """
    root = zarr.open_group(str(path), mode="r+", zarr_format=2)
    _, h, w = preview.rgb.shape
    arr = root.create_array(
        "s0",
        shape=preview.rgb.shape,
        chunks=(1, min(h, _CHUNK_PX), min(w, _CHUNK_PX)),
        dtype="uint8",
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        compressors=Zstd(level=3),
        overwrite=True,
    )
    arr[:] = preview.rgb
    multiscale: dict[str, Any] = {
        "version": "0.4",
        "name": name,
        "axes": [
            {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": [
            {
                "path": "s0",
                "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, preview.mpp, preview.mpp]}
                ],
            }
        ],
        "type": "mean",
        "metadata": {
            "description": f"preview of {name}: mean of slide pixels, "
            f"{preview.downsample_l0:g} level-0 px per pixel",
        },
    }
    channels: list[dict[str, Any]] = [
        {
            "label": label,
            "color": color,
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
            "window": {"start": 0, "end": 255, "min": 0, "max": 255},
        }
        for label, color in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
    ]
    attrs: dict[str, Any] = {
        "multiscales": [multiscale],
        "omero": {
            "name": name,
            "version": "0.4",
            "channels": channels,
            "rdefs": {"model": "color"},
        },
    }
    root.attrs.update(attrs)
