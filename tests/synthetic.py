"""Synthetic H&E-like slides with analytic nuclei and a known label image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import tifffile
from skimage.draw import ellipse

BACKGROUND_RGB = (236, 178, 206)  # eosin pink
NUCLEUS_RGB = (92, 62, 150)  # haematoxylin purple
WHITE = (245, 245, 245)


def draw_nuclei(
    h: int, w: int, centres_yx: list[tuple[float, float]], radius_px: float = 7.0, seed: int = 0
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """RGB image (h, w, 3) uint8 and labels (h, w) int32 with an ellipse per centre."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.int32)
    for i, (cy, cx) in enumerate(centres_yx, start=1):
        ry = radius_px * rng.uniform(0.8, 1.2)
        rx = radius_px * rng.uniform(0.8, 1.2)
        rr, cc = ellipse(cy, cx, ry, rx, shape=(h, w), rotation=rng.uniform(0, np.pi))
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = i
    rgb = np.empty((h, w, 3), np.float32)
    rgb[:] = BACKGROUND_RGB
    rgb[labels > 0] = NUCLEUS_RGB
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), labels


def grid_centres(
    h: int, w: int, spacing_px: int, offset_px: int, jitter: float, seed: int
) -> list[tuple[float, float]]:
    """Centres on a jittered grid, keeping 12 px from the image border."""
    rng = np.random.default_rng(seed)
    out = [
        (y + rng.uniform(-jitter, jitter), x + rng.uniform(-jitter, jitter))
        for y in range(offset_px, h - 12, spacing_px)
        for x in range(offset_px, w - 12, spacing_px)
    ]
    return [(min(max(y, 12), h - 13), min(max(x, 12), w - 13)) for y, x in out]


def write_pyramid(
    path: Path, rgb: npt.NDArray[np.uint8], mpp: float | None, levels: int = 3, tile: int = 256
) -> Path:
    """Tiled pyramidal TIFF (zlib, lossless) with SubIFD levels and resolution tags."""
    res = (
        {}
        if mpp is None
        else {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            rgb, photometric="rgb", tile=(tile, tile), compression="zlib", subifds=levels - 1, **res
        )
        img = rgb
        for k in range(1, levels):
            img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
            img = (
                img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2, 3)
                .mean(axis=(1, 3))
                .astype(np.uint8)
            )
            lres = (
                {}
                if mpp is None
                else {
                    "resolution": (1e4 / (mpp * 2**k), 1e4 / (mpp * 2**k)),
                    "resolutionunit": "CENTIMETER",
                }
            )
            tif.write(
                img, photometric="rgb", tile=(tile, tile), compression="zlib", subfiletype=1, **lres
            )
    return path
