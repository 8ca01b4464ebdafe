"""``postprocess_block`` equals the old kernel chain (reference implementations), every array."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.draw import ellipse

from pathosam_wsi.config import WatershedConfig
from pathosam_wsi.model.classical import distance_maps
from pathosam_wsi.postprocess.block import postprocess_block
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS, _moment_features
from pathosam_wsi.postprocess.pixels import label_pixels
from pathosam_wsi.postprocess.watershed import smooth_maps
from pathosam_wsi.tiling import cover
from pathosam_wsi.tiling.grid import Block
from tests.postprocess.test_hull import reference_solidity
from tests.postprocess.test_outlines import reference_label_rings
from tests.postprocess.test_watershed_batched import reference_watershed_per_component
from tests.stitch.test_ownership_pixels import reference_own_nuclei


def _reference_means(values: npt.NDArray[Any], labels: npt.NDArray[np.uint32], n: int) -> Any:
    """REFERENCE (old label_means): bincount over the whole image."""
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1)[1:]
    sums = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=n + 1)[1:]
    return sums / np.maximum(counts, 1)


def _reference_features(
    labels: npt.NDArray[np.uint32], rgb: npt.NDArray[np.uint8], n: int, mpp: float, rings: Any
) -> dict[str, npt.NDArray[np.float32]]:
    """REFERENCE (old nucleus_features): rgb2hed of the whole tile, GEOS solidity."""
    where = np.flatnonzero(labels.ravel())
    ids = labels.ravel()[where].astype(np.intp)
    area = np.maximum(np.bincount(ids, minlength=n + 1)[1:], 1).astype(np.float64)
    mom = _moment_features(label_pixels(labels), n)
    pixels = rgb.reshape(-1, 3)[where]
    hem = rgb2hed(rgb).reshape(-1, 3)[where, 0] if where.size else np.zeros(0)
    out = {
        "equivalent_diameter_um": np.sqrt(4 * area / np.pi) * mpp,
        "major_axis_um": mom["major"] * mpp,
        "minor_axis_um": mom["minor"] * mpp,
        "eccentricity": mom["eccentricity"],
        "orientation_deg": mom["orientation_deg"],
        "solidity": reference_solidity(rings[0], rings[1], n),
        "hematoxylin_od_mean": np.bincount(ids, weights=hem, minlength=n + 1)[1:] / area,
    }
    for c, name in enumerate(("mean_r", "mean_g", "mean_b")):
        out[name] = np.bincount(ids, weights=pixels[:, c], minlength=n + 1)[1:] / area
    return {k: out[k].astype(np.float32) for k in FEATURE_COLUMNS}


def reference_block(
    ais: Any, semantic: Any, tile: Any, block: Block, wh: tuple[int, int], ds: float, cfg: Any
) -> dict[str, npt.NDArray[Any]]:
    """REFERENCE (old block_arrays body) built from the old implementations."""
    fg, cd, bd = smooth_maps(ais, cfg)
    fg_mask = fg > cfg.foreground_thresh
    seeds, _ = ndi.label((cd < 0.5) & (bd < 0.5) & fg_mask, structure=np.ones((3, 3), bool))
    labels = reference_watershed_per_component(bd, seeds, fg_mask)
    owned = reference_own_nuclei(labels, block, wh)
    n = owned.count
    ring_xy, offsets = reference_label_rings(owned.labels, n)
    ring_l0 = (ring_xy + np.array([block.outer_px[0], block.outer_px[1]])) * ds
    seg = np.diff(ring_l0, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1]) if len(seg) else np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    perimeter_l0 = cum[offsets[1:] - 1] - cum[offsets[:-1]] if n else np.zeros(0)
    centroid = (owned.sum_yx_px / np.maximum(owned.area_px, 1)[:, None] + 0.5) * ds
    arrays: dict[str, npt.NDArray[Any]] = {
        "labels": owned.labels,
        "key": owned.key,
        "area_px": owned.area_px,
        "centroid_x_l0": centroid[:, 1],
        "centroid_y_l0": centroid[:, 0],
        "perimeter_um": perimeter_l0 * 0.25,
        "fg_prob_mean": _reference_means(ais[0], owned.labels, n).astype(np.float32),
        "at_halo_edge": owned.at_halo_edge,
        "ring_xy_l0": ring_l0,
        "ring_offsets": offsets,
        "labels_box_px": np.asarray(block.outer_px, np.int64),
    }
    arrays.update(_reference_features(owned.labels, tile, n, 0.5, (ring_xy, offsets)))
    if semantic is not None:
        means = np.stack([_reference_means(semantic[c], owned.labels, n) for c in range(1, 4)])
        best = np.argmax(means, axis=0)
        prob = means[best, np.arange(n)] if n else np.zeros(0)
        arrays["class_id"], arrays["class_prob"] = (
            (best + 1).astype(np.int16),
            prob.astype(np.float32),
        )
    return arrays


def _scene(rng: np.random.Generator, hw: tuple[int, int], count: int) -> Any:
    """Touching ellipses -> classical AIS maps (noisy, with plateaus), an RGB tile, 4 classes."""
    gt = np.zeros(hw, np.int32)
    for k in range(1, count + 1):
        cy, cx = rng.uniform(-5, hw[0] + 5), rng.uniform(-5, hw[1] + 5)
        rr, cc = ellipse(cy, cx, rng.uniform(2, 12), rng.uniform(2, 12), hw, rng.uniform(0, 3))
        gt[rr, cc] = k
    centre, boundary = distance_maps(gt)
    ais = np.stack([(gt > 0).astype(np.float32), centre, boundary]).astype(np.float32)
    ais += rng.normal(0, 0.05, ais.shape).astype(np.float32)
    ais[2] = np.round(ais[2] * 8) / 8  # plateaus on the flooded map
    tile = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    semantic = rng.random((4, *hw)).astype(np.float32)
    return ais.astype(np.float32), semantic, tile


_SUMMED_DIFFERENTLY = {
    "perimeter_um",
    "major_axis_um",
    "minor_axis_um",
    "eccentricity",
    "orientation_deg",
}
"""Sums now taken per nucleus (perimeter) or relative to its first pixel (moments), so that a
nucleus gets the same bits in every block: equal to the old chain up to rounding."""


@pytest.mark.parametrize("count", [0, 1, 40, 250])
def test_postprocess_block_equals_old_chain(count: int) -> None:
    rng = np.random.default_rng(count)
    wh, ds, cfg = (300, 260), 2.0, WatershedConfig()
    for block in list(cover((0, 0, *wh), wh, 128, 32))[:4]:
        ais, semantic, tile = _scene(rng, block.outer_hw, count)
        for sem in (None, semantic):
            got = postprocess_block(ais, sem, tile, block, wh, ds, 0.25, 0.5, cfg)
            want = reference_block(ais, sem, tile, block, wh, ds, cfg)
            assert got.keys() == want.keys()
            for name in want:
                assert got[name].dtype == want[name].dtype, name
                if name in _SUMMED_DIFFERENTLY:
                    np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)
                else:
                    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
