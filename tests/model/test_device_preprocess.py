"""Device-side preprocessing: bit-identical to the host path (PIL bilinear, numpy min-max)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.preprocess import (
    _minmax_stretch_torch,
    minmax_stretch,
    pil_bilinear_coefficients,
    postprocess_maps,
    preprocess_on_device,
    preprocess_tiles,
    resize_bilinear_like_pil,
)


def _pil(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((hw[1], hw[0]), Image.Resampling.BILINEAR))


def _ours(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    chw = torch.from_numpy(image).permute(2, 0, 1)  # (3, H, W)
    return resize_bilinear_like_pil(chw, hw).permute(1, 2, 0).numpy()


# Up and down, odd sizes, 1-px sides, the runner's 640 -> 1024 and the three pass-order regimes of
# Pillow (vertical first only when the height shrinks > 2x as much as the width).
FIXED_CASES = [
    ((640, 640), (1024, 1024)),
    ((512, 512), (1024, 1024)),
    ((448, 296), (1024, 677)),
    ((640, 301), (1024, 482)),
    ((1, 1), (1024, 1024)),
    ((1, 640), (2, 1024)),
    ((2048, 1537), (1024, 768)),
    ((999, 17), (311, 16)),
    ((293, 248), (90, 163)),
    ((100, 50), (40, 20)),
    ((40, 50), (100, 20)),
    ((1023, 1023), (1024, 1024)),
    ((1024, 1023), (1023, 1024)),
]


@pytest.mark.parametrize(("src", "dst"), FIXED_CASES)
def test_resize_matches_pil_fixed_cases(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(src) + sum(dst))
    image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_ours(image, dst), _pil(image, dst))


def test_resize_matches_pil_on_many_random_sizes() -> None:
    """Random content and random source/target sizes, including extreme values 0 and 255."""
    rng = np.random.default_rng(2026)
    for case in range(120):
        limit = 1100 if case % 2 else 64
        src = tuple(int(v) for v in rng.integers(1, limit, 2))
        dst = tuple(int(v) for v in rng.integers(1, 1100 if case % 3 else 64, 2))
        image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
        if case % 4 == 0:  # saturated pixels probe the clipping
            image[rng.random(src) < 0.3] = 255
            image[rng.random(src) < 0.3] = 0
        ours, ref = _ours(image, dst), _pil(image, dst)
        assert np.array_equal(ours, ref), f"case {case}: {src} -> {dst}"


def test_resize_batched_equals_single_and_keeps_identity() -> None:
    rng = np.random.default_rng(3)
    batch = torch.from_numpy(rng.integers(0, 256, (4, 3, 77, 130), dtype=np.uint8))
    out = resize_bilinear_like_pil(batch, (200, 338))  # (4, 3, 200, 338)
    for i in range(4):
        assert torch.equal(out[i], resize_bilinear_like_pil(batch[i], (200, 338)))
    assert resize_bilinear_like_pil(batch, (77, 130)) is batch
    with pytest.raises(ConfigError, match="uint8"):
        resize_bilinear_like_pil(batch.float(), (10, 10))


def test_coefficients_are_normalised_fixed_point() -> None:
    for in_size, out_size in [(640, 1024), (2048, 1024), (7, 3), (1, 5)]:
        index, weight = pil_bilinear_coefficients(in_size, out_size)
        assert index.shape == weight.shape
        assert index.min() >= 0
        assert index.max() < in_size
        assert np.abs(weight.sum(axis=1) - (1 << 22)).max() <= weight.shape[1]


def test_minmax_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    for i in range(60):
        hw = tuple(int(v) for v in rng.integers(1, 40, 2))
        tile = rng.integers(0, 256, (*hw, 3), dtype=np.uint8) // int(rng.integers(1, 40))
        tile = (tile + int(rng.integers(0, 200))).astype(np.uint8)
        if i % 5 == 0:
            tile[..., 1] = 17  # constant channel -> 0
        chw = torch.from_numpy(tile).permute(2, 0, 1)[None]
        ours = _minmax_stretch_torch(chw)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, minmax_stretch(tile))


@pytest.mark.parametrize("intensity", ["none", "per_tile_minmax"])
def test_device_path_equals_host_path_for_mixed_sizes(he_tile, intensity: str) -> None:
    rng = np.random.default_rng(9)
    tiles = [
        rng.integers(0, 256, (640, 640, 3), dtype=np.uint8),
        he_tile(150, 256, 2),
        rng.integers(30, 200, (640, 640, 3), dtype=np.uint8),
        he_tile(97, 33, 4),
        np.full((64, 80, 3), 240, np.uint8),
    ]
    host = preprocess_tiles(tiles, intensity, 1024)
    device = preprocess_on_device([torch.from_numpy(t) for t in tiles], intensity, 1024)
    assert torch.equal(device.pixels, host.pixels)
    assert device.input_sizes == host.input_sizes
    assert device.original_sizes == host.original_sizes
    one_by_one = [preprocess_on_device([torch.from_numpy(t)], intensity, 1024) for t in tiles]
    for i, single in enumerate(one_by_one):
        assert torch.equal(single.pixels[0], device.pixels[i])


def test_device_path_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="intensity"):
        preprocess_on_device([torch.zeros((4, 4, 3), dtype=torch.uint8)], "zscore")
    with pytest.raises(ConfigError, match="no tiles"):
        preprocess_on_device([])


def test_batched_maps_back_equal_single() -> None:
    maps = torch.rand(3, 2, 256, 256)
    batched = postprocess_maps(maps, (200, 256), (500, 640))  # (3, 2, 500, 640)
    for i in range(3):
        assert torch.equal(batched[i], postprocess_maps(maps[i], (200, 256), (500, 640)))


def test_tf32_is_a_valid_precision() -> None:
    assert ModelConfig(precision="tf32").precision == "tf32"
    with pytest.raises(ConfigError, match="tf32"):
        ModelConfig(precision="int8")
