"""Per-nucleus shape and colour features of one block, vectorised over all its nuclei.

Shape features come from second-order image moments accumulated with ``np.bincount`` (the same
definitions as ``skimage.measure.regionprops``: axis lengths are 4 sqrt(eigenvalue) of the pixel
coordinate covariance); solidity is the outline polygon's area over its convex hull's area (exact
integer arithmetic on the half-pixel vertices, equal to GEOS's areas); colour
features are means over the nucleus pixels, haematoxylin optical density from
``skimage.color.rgb2hed`` (Ruifrok & Johnston colour deconvolution).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.color.colorconv import hed_from_rgb
from skimage.util import img_as_float

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.postprocess.hull import ring_solidity
from pathosam_wsi.postprocess.pixels import LabelPixels, label_pixels
from pathosam_wsi.postprocess.polygons import label_rings

__all__ = ["FEATURE_COLUMNS", "features_from_pixels", "nucleus_features"]

FEATURE_COLUMNS: tuple[str, ...] = (
    "equivalent_diameter_um",
    "major_axis_um",
    "minor_axis_um",
    "eccentricity",
    "orientation_deg",
    "solidity",
    "hematoxylin_od_mean",
    "mean_r",
    "mean_g",
    "mean_b",
)
"""Names of the feature columns, in table order (all float32)."""

Rings = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]

# rgb2hed's per-channel optical density, log(max(v / 255, 1e-6)) / log(1e-6), for v = 0..255.
_OD_LUT = np.log(np.maximum(img_as_float(np.arange(256, dtype=np.uint8)), 1e-6)) / np.log(1e-6)


def _moment_features(px: LabelPixels, n: int) -> dict[str, npt.NDArray[np.float64]]:
    """Axes (px), eccentricity and orientation (deg) from per-label pixel coordinate moments."""

    def total(w: npt.NDArray[np.float64] | None = None) -> npt.NDArray[np.float64]:
        return px.sums(n, w)

    # Coordinates relative to each nucleus's first pixel (raster order): the same numbers in any
    # block or window that holds the nucleus, so the float sums below are bit-identical there.
    labels, first = np.unique(px.ids, return_index=True)  # pixels are in raster order
    ref_row = np.zeros(n + 1, np.intp)
    ref_col = np.zeros(n + 1, np.intp)
    ref_row[labels], ref_col[labels] = px.rows[first], px.cols[first]
    rows, cols = px.rows - ref_row[px.ids], px.cols - ref_col[px.ids]
    area = np.maximum(total(), 1.0)
    x, y = cols.astype(np.float64), rows.astype(np.float64)
    mx, my = total(x) / area, total(y) / area
    # Central second moments per pixel; clip tiny negatives from cancellation.
    cxx = np.maximum(total(x * x) / area - mx * mx, 0.0)
    cyy = np.maximum(total(y * y) / area - my * my, 0.0)
    cxy = total(x * y) / area - mx * my
    half_diff = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    lam1 = (cxx + cyy) / 2 + half_diff
    lam2 = np.maximum((cxx + cyy) / 2 - half_diff, 0.0)
    ecc = np.sqrt(1.0 - np.divide(lam2, lam1, out=np.ones_like(lam1), where=lam1 > 0))
    theta = 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy))
    theta = np.where(theta >= 90.0, theta - 180.0, theta)
    return {
        "major": 4 * np.sqrt(lam1),
        "minor": 4 * np.sqrt(lam2),
        "eccentricity": ecc,
        "orientation_deg": theta,
    }


def _solidity(rings: Rings, n: int) -> npt.NDArray[np.float64]:
    """Polygon area / convex hull area of each outline ring (exact; ``hull.ring_solidity``)."""
    ring_xy, offsets = rings
    return ring_solidity(ring_xy, offsets, n)


def nucleus_features(
    labels: npt.NDArray[np.uint32],
    rgb: npt.NDArray[np.uint8],
    n: int,
    mpp: float,
    rings: Rings | None = None,
) -> dict[str, npt.NDArray[np.float32]]:
    """Shape and colour features of labels 1..n.

    Parameters
    ----------
    labels : (h, w) uint32, YX, working px
        Nuclei 1..n, 0 = background.
    rgb : (h, w, 3) uint8, YXC, working px
        The image the labels were segmented from, same frame.
    n : int
        Number of labels.
    mpp : float
        Pixel size of ``labels`` in µm/px (lengths are returned in µm).
    rings : (ring_xy (P, 2) float64, offsets (n + 1,) int64), optional
        Outline rings of the labels as returned by ``label_rings`` (computed when omitted).

    Returns
    -------
    dict of str to (n,) float32
        The ``FEATURE_COLUMNS``: equivalent diameter, major and minor axis (µm); eccentricity
        (0 = circle); orientation (degrees in [-90, 90), angle from the +x axis to the major axis,
        positive towards +y, i.e. clockwise on screen); solidity; mean haematoxylin OD; mean R, G,
        B (0-255).

    Raises
    ------
    ConfigError
        If the shapes of ``labels`` and ``rgb`` differ.
    """
    if rgb.shape != (*labels.shape, 3):
        raise ConfigError(
            f"rgb shape {rgb.shape} does not match labels {labels.shape}; expected (h, w, 3)"
        )
    rings = rings if rings is not None else label_rings(labels, n)
    return features_from_pixels(label_pixels(labels), rgb, n, mpp, rings)


def _hematoxylin_od(rgb_px: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """Haematoxylin OD of (m, 3) uint8 pixels, bit for bit ``rgb2hed(tile)[..., 0]`` there.

    ``rgb2hed`` is ``max(log(max(rgb / 255, 1e-6)) / log(1e-6) @ hed_from_rgb, 0)``: the log part
    depends on one channel value only (a 256-entry table, the same elementwise operations), and
    the (m, 3) @ (3, 3) product is the one rgb2hed makes (checked on all 2^24 colours).
    """
    return np.maximum(_OD_LUT[rgb_px] @ hed_from_rgb, 0)[:, 0]


def features_from_pixels(
    px: LabelPixels, rgb: npt.NDArray[np.uint8], n: int, mpp: float, rings: Rings
) -> dict[str, npt.NDArray[np.float32]]:
    """``nucleus_features`` from the labels' pixel lists (raster order) and outline rings."""
    area = np.maximum(px.sums(n), 1.0)
    mom = _moment_features(px, n)
    pixels = rgb.reshape(-1, 3)[px.index]
    hem = _hematoxylin_od(pixels) if px.index.size else np.zeros(0)
    out = {
        "equivalent_diameter_um": np.sqrt(4 * area / np.pi) * mpp,
        "major_axis_um": mom["major"] * mpp,
        "minor_axis_um": mom["minor"] * mpp,
        "eccentricity": mom["eccentricity"],
        "orientation_deg": mom["orientation_deg"],
        "solidity": _solidity(rings, n),
        "hematoxylin_od_mean": px.sums(n, hem) / area,
    }
    for c, name in enumerate(("mean_r", "mean_g", "mean_b")):
        out[name] = px.sums(n, pixels[:, c]) / area
    return {k: out[k].astype(np.float32) for k in FEATURE_COLUMNS}
