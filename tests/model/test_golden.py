"""Golden conformance tests against the REAL reference code (micro-sam 1.8.14, CPU).

The fixture in ``tests/model/golden/`` was written by ``tests/model/golden/make_golden.py`` in the
reference environment (README.md there): deterministic random weights (only their sha256 is
stored; ``pathosam_wsi.model.synthetic_weights`` regenerates them), a synthetic H&E-like input, the
reference's ``_to_image`` output, encoder features, unsmoothed decoder maps and labels. Label images
are compared as partitions (one-to-one id mapping), never by raw ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from pathosam_wsi.config import WatershedConfig

log = logging.getLogger(__name__)

GOLDEN_DIR = Path(__file__).parent / "golden"
MAP_ATOL = 1e-4
"""Issue #3: decoder maps within 1e-4 max abs (the maps span about 0.02 with random weights)."""
TILED_MSA_MIN = 0.99
"""Lower bound on mSA(ours tiled, reference tiled) on the realistic 1024² maps. Measured: 1.0
(881 vs 881 objects; the foreground masks differ at 9 px, from the reference's in-place blockwise
smoothing). The bound leaves room for a few boundary pixels; golden/README.md explains."""


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    """Arrays of golden_ais.npz plus ``info`` (golden_ais.json)."""
    with np.load(GOLDEN_DIR / "golden_ais.npz") as npz:
        data: dict[str, Any] = {key: npz[key] for key in npz.files}
    data["info"] = json.loads((GOLDEN_DIR / "golden_ais.json").read_text())
    return data


@pytest.fixture(scope="module")
def realistic_maps(golden: dict[str, Any]) -> npt.NDArray[np.float32]:
    """(3, 1024, 1024) float32 maps exactly as the reference received them."""
    return golden["realistic_codes"].astype(np.float32) / 255.0


def _sha256(array: npt.NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def same_partition(ours: npt.NDArray[np.integer], ref: npt.NDArray[np.integer]) -> tuple[bool, str]:
    """True when both label images hold the same objects up to renumbering (background 0 fixed)."""
    if ours.shape != ref.shape:
        return False, f"shape {ours.shape} != {ref.shape}"
    if not np.array_equal(ours == 0, ref == 0):
        return False, f"background differs at {int(np.count_nonzero((ours == 0) != (ref == 0)))} px"
    fg = ref != 0
    pairs = np.unique(np.stack([ours[fg].astype(np.int64), ref[fg].astype(np.int64)]), axis=1)
    n_ours, n_ref = len(np.unique(ours[fg])), len(np.unique(ref[fg]))
    ok = pairs.shape[1] == n_ours == n_ref
    return ok, f"{n_ours} objects (ours), {n_ref} (reference), {pairs.shape[1]} id pairs"


def mean_segmentation_accuracy(pred: npt.NDArray[np.integer], gt: npt.NDArray[np.integer]) -> float:
    """mSA: mean over IoU thresholds 0.50..0.95 (step 0.05) of TP / (TP + FP + FN).

    A pair matches at threshold t when IoU > t; for t >= 0.5 such matches are unique.
    """
    pred_ids, pred_inv = np.unique(pred, return_inverse=True)
    gt_ids, gt_inv = np.unique(gt, return_inverse=True)
    overlap = np.zeros((len(pred_ids), len(gt_ids)), np.int64)
    np.add.at(overlap, (pred_inv.ravel(), gt_inv.ravel()), 1)
    union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
    iou = (overlap / union)[pred_ids != 0][:, gt_ids != 0]
    n_pred, n_gt = iou.shape
    scores = []
    for thresh in np.arange(0.5, 1.0, 0.05):
        tp = int(np.count_nonzero(iou > thresh))
        denom = tp + (n_pred - tp) + (n_gt - tp)
        scores.append(tp / denom if denom else 1.0)
    return float(np.mean(scores))


def test_fixture_comes_from_the_reference(golden: dict[str, Any]) -> None:
    info = golden["info"]
    assert info["versions"]["micro_sam"] == "1.8.14"
    assert info["weights"]["sam_vit_b"]["matches_spec"]
    assert info["weights"]["decoder"]["matches_spec"]
    assert info["decoder_training_mode"], "reference decoder ran in training mode (train-mode BN)"


def test_fixture_arrays_match_their_checksums(golden: dict[str, Any]) -> None:
    recorded = golden["info"]["arrays"]
    assert set(recorded) == set(golden) - {"info"}
    for key, meta in recorded.items():
        assert _sha256(golden[key]) == meta["sha256"], f"{key} was changed after generation"


def test_regenerated_decoder_weights_match_fixture(golden: dict[str, Any]) -> None:
    from pathosam_wsi.model.synthetic_weights import state_dict_sha256, synthetic_decoder_state_dict

    sha = state_dict_sha256(synthetic_decoder_state_dict())
    assert sha == golden["info"]["weights"]["decoder"]["sha256"]


def test_minmax_stretch_equals_reference_to_image(golden: dict[str, Any]) -> None:
    from pathosam_wsi.model.preprocess import minmax_stretch

    ours = minmax_stretch(golden["image"])
    assert not np.array_equal(golden["to_image"], golden["image"]), (
        "fixture input must exercise the stretch"
    )
    np.testing.assert_array_equal(ours, golden["to_image"])


def test_resize_and_normalise_equal_reference(golden: dict[str, Any]) -> None:
    from pathosam_wsi.model.preprocess import (
        normalize_and_pad,
        preprocess_tile,
        resize_longest_side,
    )

    ref = golden["info"]["preprocessing"]
    resized = resize_longest_side(golden["to_image"])
    assert list(resized.shape) == ref["resized_shape"]
    assert _sha256(resized) == ref["resized_uint8_sha256"], (
        "PIL bilinear resize differs from the reference"
    )
    pixels = normalize_and_pad(resized)[None].numpy()  # (1, 3, 1024, 1024)
    assert list(pixels.shape) == ref["encoder_input_shape"]
    np.testing.assert_allclose(
        pixels.mean(axis=(0, 2, 3), dtype=np.float64),
        ref["encoder_input_channel_mean"],
        rtol=0,
        atol=1e-9,
    )
    assert _sha256(pixels) == ref["encoder_input_sha256"], (
        "normalised encoder input is not bit-identical"
    )
    tensor, input_size = preprocess_tile(golden["image"], intensity="per_tile_minmax")
    assert tuple(input_size) == tuple(ref["input_size"])
    assert _sha256(tensor[None].numpy()) == ref["encoder_input_sha256"]


def test_device_preprocessing_equals_reference(golden: dict[str, Any]) -> None:
    """The runner's torch path (uint8 upload, PIL-exact resize on device) gives the same bytes."""
    from pathosam_wsi.model.preprocess import preprocess_on_device

    ref = golden["info"]["preprocessing"]
    prepared = preprocess_on_device([torch.from_numpy(golden["image"])], "per_tile_minmax")
    assert tuple(prepared.input_sizes[0]) == tuple(ref["input_size"])
    assert _sha256(prepared.pixels.numpy()) == ref["encoder_input_sha256"]


def _decode(
    features: torch.Tensor, golden: dict[str, Any], channels_last: bool = False
) -> npt.NDArray[np.float32]:
    """Our decoder (per-tile BN) + resize back, on (1, 256, 64, 64) features -> (3, H, W) maps."""
    from pathosam_wsi.model.preprocess import postprocess_maps
    from pathosam_wsi.model.synthetic_weights import synthetic_decoder_state_dict
    from pathosam_wsi.model.unetr_decoder import AISDecoder

    decoder = AISDecoder()
    decoder.load_state_dict(synthetic_decoder_state_dict(), strict=True)
    decoder.set_channels_last(channels_last)
    ref = golden["info"]["preprocessing"]
    with torch.inference_mode():
        out = decoder(features, batchnorm="per_tile")  # (1, 3, 1024, 1024)
        maps = postprocess_maps(out[0], tuple(ref["input_size"]), tuple(ref["original_size"]))
    return maps.numpy()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_decoder_maps_match_reference(
    golden: dict[str, Any], record_property: Any, channels_last: bool
) -> None:
    """Both layouts: NCHW (PyTorch's instance norm) and NHWC (the CPU runner's two-pass norm)."""
    maps = _decode(torch.from_numpy(golden["features"]), golden, channels_last)
    assert maps.shape == golden["maps"].shape
    max_abs = float(np.abs(maps - golden["maps"]).max())
    record_property("decoder_maps_max_abs_diff", max_abs)
    log.info("decoder maps vs reference (channels_last=%s): max abs %.3g", channels_last, max_abs)
    assert max_abs <= MAP_ATOL


@pytest.mark.slow
def test_encoder_and_full_path_match_reference(
    golden: dict[str, Any], record_property: Any
) -> None:
    from pathosam_wsi.model.checkpoints import load_image_encoder
    from pathosam_wsi.model.preprocess import preprocess_tile
    from pathosam_wsi.model.synthetic_weights import state_dict_sha256, synthetic_sam_state_dict

    sam_sd = synthetic_sam_state_dict()
    assert state_dict_sha256(sam_sd) == golden["info"]["weights"]["sam_vit_b"]["sha256"]
    encoder = load_image_encoder(sam_sd).eval()
    tensor, _ = preprocess_tile(golden["image"], intensity="per_tile_minmax")
    with torch.inference_mode():
        features = encoder(tensor[None])  # (1, 256, 64, 64)
    feat_diff = float(np.abs(features.numpy() - golden["features"]).max())
    maps_diff = float(np.abs(_decode(features, golden) - golden["maps"]).max())
    record_property("encoder_features_max_abs_diff", feat_diff)
    record_property("full_path_maps_max_abs_diff", maps_diff)
    log.info("encoder features max abs diff %.3g; full-path maps %.3g", feat_diff, maps_diff)
    assert feat_diff <= MAP_ATOL
    assert maps_diff <= MAP_ATOL


def _thresholds(golden: dict[str, Any], min_size_px: int) -> WatershedConfig:
    thr = golden["info"]["thresholds"]["model_maps_quantile"]
    return WatershedConfig(
        foreground_thresh=thr["foreground_threshold"],
        center_distance_thresh=thr["center_distance_threshold"],
        boundary_distance_thresh=thr["boundary_distance_threshold"],
        min_size_px=min_size_px,
    )


@pytest.mark.parametrize("key", ["labels_model_qthr", "labels_model_qthr_min10"])
def test_watershed_on_decoder_maps_at_quantile_thresholds(golden: dict[str, Any], key: str) -> None:
    from pathosam_wsi.postprocess.watershed import ais_watershed

    min_size_px = golden["info"]["min_size_px"][key]
    ours = ais_watershed(golden["maps"], _thresholds(golden, min_size_px))
    ok, detail = same_partition(ours, golden[key])
    assert golden["info"]["n_objects"][key] > 20, "fixture must hold objects"
    assert ok, detail


@pytest.mark.parametrize("key", ["labels_realistic", "labels_realistic_min100"])
def test_watershed_on_realistic_maps(
    golden: dict[str, Any], realistic_maps: npt.NDArray[np.float32], key: str
) -> None:
    from pathosam_wsi.postprocess.watershed import ais_watershed

    min_size_px = golden["info"]["min_size_px"][key]
    ours = ais_watershed(realistic_maps, WatershedConfig(min_size_px=min_size_px))
    ok, detail = same_partition(ours, golden[key])
    assert ok, detail


def test_tiled_path_against_reference_tiled(
    golden: dict[str, Any],
    realistic_maps: npt.NDArray[np.float32],
    record_property: Any,
    tmp_path: Path,
) -> None:
    """Ours owns nuclei per block (watershed per block with halo), through ``segment_slide``; the
    reference runs one global blockwise watershed on stitched maps. Same geometry as the
    reference: tile 384, halo 64."""
    from tests.pipeline.maps_slide import segment_maps, write_maps_slide

    tiling = golden["info"]["tiling"]
    slide = write_maps_slide(
        tmp_path / "maps.tiff", np.moveaxis(golden["realistic_codes"].astype(np.uint8), 0, -1)
    )
    ours, _, _ = segment_maps(slide, tmp_path / "out", tiling["tile_px"], tiling["halo_px"])
    ref = golden["labels_realistic_tiled"]
    msa = mean_segmentation_accuracy(ours, ref)
    mask_diff_px = int(np.count_nonzero((ours == 0) != (ref == 0)))
    record_property("tiled_msa_vs_reference_tiled", msa)
    record_property("tiled_foreground_mask_diff_px", mask_diff_px)
    log.info(
        "tiled mSA vs reference tiled: %.5f (%d vs %d objects, masks differ at %d px)",
        msa,
        len(np.unique(ours)) - 1,
        len(np.unique(ref)) - 1,
        mask_diff_px,
    )
    assert msa >= TILED_MSA_MIN
