"""The classical model holds its nucleus counts across its supported working pixel sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.model.classical import ClassicalModel, distance_maps
from pathosam_wsi.model.registry import check_model_mpp, model_mpp_range
from pathosam_wsi.postprocess.watershed import ais_watershed
from tests.synthetic import draw_nuclei, grid_centres


def _count(rgb: np.ndarray, mpp: float) -> int:
    return int(ais_watershed(ClassicalModel(mpp).maps(rgb)).max())


def test_counts_hold_from_half_to_one_micron() -> None:
    centres = grid_centres(512, 512, spacing_px=32, offset_px=16, jitter=6, seed=3)
    rgb, labels = draw_nuclei(512, 512, centres, radius_px=7.0, seed=4)
    native = _count(rgb, 0.5)
    half = rgb[::2, ::2]  # the same tissue at 1.0 µm/px
    coarse = _count(half, 1.0)
    assert native >= 0.9 * labels.max()
    assert coarse >= 0.7 * native, (native, coarse)


def test_declared_range_and_warning() -> None:
    config = ModelConfig(name="classical")
    assert model_mpp_range(config) == (0.25, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_mpp(config, 0.5)
        check_model_mpp(config, 1.0)
    with pytest.warns(PathoSamWarning, match="supported 0.25-1"):
        check_model_mpp(config, 4.0)


def test_centre_is_first_tied_maximum_in_raster_order() -> None:
    nuclei = np.zeros((12, 14), np.int32)
    nuclei[2:6, 2:12] = 1  # a 4 x 10 bar: many tied deepest points
    centre, _ = distance_maps(nuclei)
    shifted = np.zeros((15, 20), np.int32)
    shifted[5:9, 7:17] = 1
    centre_shifted, _ = distance_maps(shifted)
    np.testing.assert_array_equal(centre[2:6, 2:12], centre_shifted[5:9, 7:17])
    # The interior (without the inner boundary) is rows 3-4, columns 3-10, all at depth 1: the
    # first of them in raster order is the centre.
    assert list(zip(*np.nonzero(centre == 0), strict=True)) == [(3, 3)]
