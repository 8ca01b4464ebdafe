"""The batched seeded watershed equals the old one-call-per-component watershed, bit for bit."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from pathosam_wsi.config import WatershedConfig
from pathosam_wsi.postprocess.components import markers_keyed_by_value
from pathosam_wsi.postprocess.watershed import ais_watershed, watershed_per_component


def reference_watershed_per_component(
    bd: npt.NDArray[np.float32], seeds: npt.NDArray[np.int32], fg_mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint32]:
    """REFERENCE (old, slow): one skimage watershed call per 4-connected foreground component."""
    comps, _ = ndi.label(fg_mask)
    out = np.zeros(bd.shape, np.uint32)
    for i, sl in enumerate(ndi.find_objects(comps), start=1):
        if sl is None:
            continue
        mask = comps[sl] == i
        markers = np.where(mask, seeds[sl], 0)
        if not markers.any():
            continue
        ws = watershed(bd[sl], markers=markers, mask=mask, connectivity=1)
        out[sl][mask] = ws[mask]
    return out


def _random_case(
    rng: np.random.Generator, hw: tuple[int, int], levels: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Blobby foreground, many seeds per blob, a boundary map quantised into plateaus."""
    fg = ndi.gaussian_filter(rng.random(hw), rng.uniform(1.0, 4.0)) > rng.uniform(0.45, 0.52)
    bd = ndi.gaussian_filter(rng.random(hw), rng.uniform(0.5, 3.0))
    bd = (bd - bd.min()) / max(float(np.ptp(bd)), 1e-9)
    if levels:  # plateaus: few distinct values, so marker values tie often
        bd = np.round(bd * levels) / levels
    seed_mask = fg & (rng.random(hw) < rng.uniform(0.002, 0.05))
    seed_mask = ndi.binary_dilation(seed_mask, iterations=int(rng.integers(0, 2))) & fg
    seeds, _ = ndi.label(seed_mask, structure=np.ones((3, 3), bool))
    return bd.astype(np.float32), seeds.astype(np.int32), fg


@pytest.mark.parametrize("levels", [0, 2, 5, 40])
def test_batched_equals_per_component_on_random_blocks(levels: int) -> None:
    rng = np.random.default_rng(levels)
    for _ in range(40):
        hw = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
        bd, seeds, fg = _random_case(rng, hw, levels)
        got = watershed_per_component(bd, seeds, fg)
        want = reference_watershed_per_component(bd, seeds, fg)
        assert got.dtype == want.dtype == np.uint32
        np.testing.assert_array_equal(got, want)


def test_batched_equals_per_component_on_constant_and_border_cases() -> None:
    rng = np.random.default_rng(7)
    for fill in (0.0, 1.0, -0.0):
        for _ in range(20):
            hw = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
            bd = np.full(hw, fill, np.float32)  # one plateau: every marker value ties
            if fill == 0.0:  # +0.0 and -0.0 compare equal: a tie the batching must see
                bd[rng.random(hw) < 0.5] = -0.0
            fg = rng.random(hw) < 0.8
            seeds, _ = ndi.label(fg & (rng.random(hw) < 0.1), structure=np.ones((3, 3), bool))
            got = watershed_per_component(bd, seeds.astype(np.int32), fg)
            want = reference_watershed_per_component(bd, seeds.astype(np.int32), fg)
            np.testing.assert_array_equal(got, want)
    empty = np.zeros((16, 16), bool)
    np.testing.assert_array_equal(
        watershed_per_component(
            np.zeros((16, 16), np.float32), np.zeros((16, 16), np.int32), empty
        ),
        np.zeros((16, 16), np.uint32),
    )


def test_ais_watershed_on_dense_maps_equals_reference() -> None:
    rng = np.random.default_rng(3)
    config = WatershedConfig()
    for _ in range(6):
        maps = rng.random((3, 128, 128)).astype(np.float32)
        maps[0] = ndi.gaussian_filter(maps[0], 3) * 2
        labels = ais_watershed(maps, config)
        fg, cd, bd = (
            ndi.gaussian_filter(maps[0], 1.0, mode="mirror", truncate=3.0),
            ndi.gaussian_filter(maps[1], 1.6, mode="mirror", truncate=3.0),
            ndi.gaussian_filter(maps[2], 1.6, mode="mirror", truncate=3.0),
        )
        fg_mask = fg > 0.5
        seeds, _ = ndi.label((cd < 0.5) & (bd < 0.5) & fg_mask, structure=np.ones((3, 3), bool))
        np.testing.assert_array_equal(labels, reference_watershed_per_component(bd, seeds, fg_mask))


def test_this_scikit_image_keys_markers_by_value() -> None:
    # The batching proof (postprocess/components.py) needs it; otherwise the code falls back.
    assert markers_keyed_by_value()
