"""Preprocessing and map resizing against the reference (docs/pathosam-reference.md §3, §4.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.preprocess import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    minmax_stretch,
    normalize_and_pad,
    postprocess_maps,
    preprocess_tile,
    preprocess_tiles,
    resize_longest_side,
    resized_shape,
)


def _tile_with_channel(values: list[int]) -> np.ndarray:
    tile = np.zeros((1, len(values), 3), np.uint8)
    tile[0, :, 0] = values
    tile[0, :, 1] = 7
    tile[0, :, 2] = np.arange(len(values)) % 2 + 100
    return tile


def test_minmax_stretch_reference_cases() -> None:
    full = np.arange(256, dtype=np.uint8)
    tile = np.stack([full, full, full], axis=-1)[None]
    assert np.array_equal(minmax_stretch(tile), tile)  # 0..255 maps to itself
    out = minmax_stretch(_tile_with_channel([10, 100, 200]))
    assert out[0, :, 0].tolist() == [0, 120, 255]
    assert out[0, :, 1].tolist() == [0, 0, 0]  # constant channel -> 0
    assert sorted(set(out[0, :, 2].tolist())) == [0, 254]  # range 1 -> {0, 254}
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((512, 512), (1024, 1024)),
        ((448, 512), (896, 1024)),
        ((448, 296), (1024, 677)),
        ((1024, 1024), (1024, 1024)),
        ((100, 3), (1024, 31)),
    ],
)
def test_resized_shape(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_shape(*hw) == expected


def test_resize_is_pil_bilinear(he_tile) -> None:
    tile = he_tile(448, 296, 1)
    out = resize_longest_side(tile)
    expected = np.asarray(Image.fromarray(tile).resize((677, 1024), Image.BILINEAR))
    assert out.shape == (1024, 677, 3)
    assert np.array_equal(out, expected)
    assert out.flags.writeable


def test_normalize_and_pad() -> None:
    resized = np.full((10, 20, 3), 200, np.uint8)
    x = normalize_and_pad(resized, 32)
    assert x.shape == (3, 32, 32)
    assert x.dtype == torch.float32
    for c in range(3):
        expected = (np.float32(200) - np.float32(SAM_PIXEL_MEAN[c])) / np.float32(SAM_PIXEL_STD[c])
        assert x[c, :10, :20].eq(float(expected)).all()
    assert x[:, 10:, :].eq(0).all()
    assert x[:, :, 20:].eq(0).all()


def test_preprocess_tile_modes(he_tile) -> None:
    tile = he_tile(300, 512, 2)
    raw, size = preprocess_tile(tile)
    stretched, size2 = preprocess_tile(tile, "per_tile_minmax")
    assert size == size2 == (600, 1024)
    assert raw.shape == (3, 1024, 1024)
    direct = normalize_and_pad(resize_longest_side(minmax_stretch(tile)))
    assert torch.equal(stretched, direct)
    assert not torch.equal(raw, stretched)
    with pytest.raises(ConfigError, match="intensity"):
        preprocess_tile(tile, "zscore")


def test_preprocess_tiles_mixed_sizes(he_tile) -> None:
    tiles = [he_tile(512, 512, 3), he_tile(200, 512, 4)]
    batch = preprocess_tiles(tiles)
    assert batch.pixels.shape == (2, 3, 1024, 1024)
    assert batch.input_sizes == [(1024, 1024), (400, 1024)]
    assert batch.original_sizes == [(512, 512), (200, 512)]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)],
)
def test_bad_tiles_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="uint8"):
        preprocess_tile(bad)
    with pytest.raises(ConfigError, match="no tiles"):
        preprocess_tiles([])


def test_postprocess_512_is_2x2_mean() -> None:
    maps = torch.rand(3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    out = postprocess_maps(maps, (1024, 1024), (512, 512))
    assert out.shape == (3, 512, 512)
    assert torch.allclose(out, F.avg_pool2d(maps[None], 2)[0], atol=1e-6)


def test_postprocess_crops_padding_before_resizing() -> None:
    maps = torch.zeros(3, 1024, 1024)
    maps[:, :600, :] = 1.0  # resized content; the padding below stays 0
    out = postprocess_maps(maps, (600, 1024), (300, 512))
    assert out.shape == (3, 300, 512)
    assert out.eq(1.0).all()  # no padding bled in
