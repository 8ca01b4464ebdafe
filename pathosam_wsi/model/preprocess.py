"""Per-tile input preparation and output resizing as the reference.

See docs/pathosam-reference.md §3 and §4.3.

uint8 RGB tile -> optional per-channel min-max stretch (micro-sam >= 1.7) -> PIL bilinear resize of
the longest side to 1024 -> SAM normalisation -> zero padding (bottom/right) to 1024 x 1024.
Maps go back by cropping the padding and a bilinear resize (align_corners=False) to the tile size.

Two implementations of the input side: the host path (numpy + PIL, one tile at a time) and the
device path (:func:`preprocess_on_device`, torch ops on uint8 tensors already on the device). The
device path reproduces Pillow's fixed-point bilinear resampling exactly (libImaging/Resample.c:
double-precision triangle-filter coefficients normalised per output pixel and rounded to 22-bit
integers, two separable passes that each round and clip to uint8, vertical pass first when the
height shrinks more than twice as much as the width), so both paths give bit-identical pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image

from pathosam_wsi.errors import ConfigError

__all__ = [
    "INTENSITY_MODES",
    "SAM_INPUT_PX",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "PreparedBatch",
    "check_tile",
    "minmax_stretch",
    "normalize_and_pad",
    "pil_bilinear_coefficients",
    "postprocess_maps",
    "preprocess_on_device",
    "preprocess_tile",
    "preprocess_tiles",
    "resize_bilinear_like_pil",
    "resize_longest_side",
    "resized_shape",
]

SAM_INPUT_PX = 1024
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
INTENSITY_MODES = ("none", "per_tile_minmax")


def check_tile(tile: npt.NDArray[np.uint8]) -> None:
    """Raise ConfigError unless ``tile`` is a non-empty (H, W, 3) uint8 array."""
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise ConfigError(
            f"a tile must be (H, W, 3) uint8, got shape {tile.shape} dtype {tile.dtype}; "
            "convert the block to RGB uint8 first"
        )
    if tile.shape[0] < 1 or tile.shape[1] < 1:
        raise ConfigError(f"a tile must not be empty, got shape {tile.shape}")


def minmax_stretch(tile: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Per-channel min-max stretch to 0..255, as micro-sam >= 1.7 ``_to_image``.

    In float32 per channel: subtract the minimum, divide by (shifted maximum + 1e-7), multiply by
    255 and cast with truncation. A constant channel becomes 0.

    Parameters
    ----------
    tile : (H, W, 3) uint8, YXC

    Returns
    -------
    (H, W, 3) uint8, YXC
    """
    check_tile(tile)
    x = tile.astype(np.float32)
    x -= x.min(axis=(0, 1), keepdims=True)
    x /= x.max(axis=(0, 1), keepdims=True) + np.float32(1e-7)
    x *= np.float32(255.0)
    return x.astype(np.uint8)


def resized_shape(h: int, w: int, target_px: int = SAM_INPUT_PX) -> tuple[int, int]:
    """(h', w') with the longest side scaled to ``target_px``; sizes rounded half up.

    Same arithmetic as segment-anything ``ResizeLongestSide.get_preprocess_shape``.
    """
    scale = target_px * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(
    tile: npt.NDArray[np.uint8], target_px: int = SAM_INPUT_PX
) -> npt.NDArray[np.uint8]:
    """PIL bilinear resize (uint8 in and out) of the longest side to ``target_px``.

    Parameters
    ----------
    tile : (H, W, 3) uint8, YXC

    Returns
    -------
    (h', w', 3) uint8, YXC, with ``(h', w') = resized_shape(H, W, target_px)``
    """
    check_tile(tile)
    new_h, new_w = resized_shape(tile.shape[0], tile.shape[1], target_px)
    if (new_h, new_w) == tile.shape[:2]:
        return tile
    image = Image.fromarray(np.ascontiguousarray(tile))
    return np.array(image.resize((new_w, new_h), Image.Resampling.BILINEAR))


def normalize_and_pad(
    resized: npt.NDArray[np.uint8], target_px: int = SAM_INPUT_PX
) -> torch.Tensor:
    """SAM normalisation ``(x - mean) / std`` in float32, then zero padding to target_px.

    Parameters
    ----------
    resized : (h', w', 3) uint8, YXC, with h', w' <= target_px

    Returns
    -------
    (3, target_px, target_px) float32 tensor, CYX
    """
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float()  # (3, h', w')
    mean = torch.tensor(SAM_PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD, dtype=torch.float32).view(3, 1, 1)
    x = (x - mean) / std
    pad_h, pad_w = target_px - x.shape[1], target_px - x.shape[2]
    return F.pad(x, (0, pad_w, 0, pad_h))


def preprocess_tile(
    tile: npt.NDArray[np.uint8], intensity: str = "none", target_px: int = SAM_INPUT_PX
) -> tuple[torch.Tensor, tuple[int, int]]:
    """One tile to the encoder input.

    Parameters
    ----------
    tile : (H, W, 3) uint8, YXC
    intensity : {"none", "per_tile_minmax"}
        ``none`` keeps uint8 as in training (micro-sam <= 1.6); ``per_tile_minmax`` applies
        :func:`minmax_stretch` first (micro-sam >= 1.7).
    target_px : int
        Encoder input size (1024 for SAM).

    Returns
    -------
    pixels : (3, target_px, target_px) float32 tensor, CYX
    input_size : (h', w')
        Size of the resized image inside the padding.
    """
    if intensity not in INTENSITY_MODES:
        raise ConfigError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
    check_tile(tile)
    if intensity == "per_tile_minmax":
        tile = minmax_stretch(tile)
    resized = resize_longest_side(tile, target_px)
    return normalize_and_pad(resized, target_px), (resized.shape[0], resized.shape[1])


@dataclass(frozen=True)
class PreparedBatch:
    """Encoder input for a batch of tiles.

    Attributes
    ----------
    pixels : (B, 3, T, T) float32 tensor, CYX, normalised and padded
    input_sizes : list of (h', w')
        Resized size of each tile inside the padding.
    original_sizes : list of (H, W)
        Each tile's own size (the size its maps are resized back to).
    """

    pixels: torch.Tensor
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]


def preprocess_tiles(
    tiles: Sequence[npt.NDArray[np.uint8]], intensity: str = "none", target_px: int = SAM_INPUT_PX
) -> PreparedBatch:
    """Stack :func:`preprocess_tile` over tiles of possibly different sizes.

    Parameters
    ----------
    tiles : sequence of (H_i, W_i, 3) uint8, YXC
    intensity, target_px
        As :func:`preprocess_tile`.
    """
    if len(tiles) == 0:
        raise ConfigError("no tiles given; expected at least one (H, W, 3) uint8 tile")
    prepared = [preprocess_tile(t, intensity, target_px) for t in tiles]
    pixels = torch.stack([p for p, _ in prepared])  # (B, 3, T, T)
    return PreparedBatch(
        pixels=pixels,
        input_sizes=[size for _, size in prepared],
        original_sizes=[(t.shape[0], t.shape[1]) for t in tiles],
    )


def postprocess_maps(
    maps: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Decoder maps back to the tile's size (torch-em ``postprocess_masks``).

    Parameters
    ----------
    maps : (C, T, T) or (B, C, T, T) float tensor, CYX / BCYX, padded model frame
        One tile, or several tiles that share ``input_size`` and ``original_size``.
    input_size : (h', w')
        Resized size inside the padding.
    original_size : (H, W)
        The tile's size.

    Returns
    -------
    (C, H, W) or (B, C, H, W) tensor, tile pixels, same dtype and device as ``maps``
    """
    target_px = maps.shape[-1]
    x = maps[None] if maps.ndim == 3 else maps  # (B, C, T, T)
    # First step of the reference: resize to the encoder input size (an identity for SAM 1024).
    x = F.interpolate(x, (target_px, target_px), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(x.shape[-2:]) != tuple(original_size):
        x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x[0] if maps.ndim == 3 else x


_PIL_PRECISION_BITS = 32 - 8 - 2
"""Fixed-point bits of Pillow's 8-bit resampling coefficients (libImaging/Resample.c)."""


@lru_cache(maxsize=256)
def pil_bilinear_coefficients(
    in_size: int, out_size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """Source indices and 22-bit integer weights of Pillow's bilinear resampling along one axis.

    Same double-precision arithmetic, in the same order, as Pillow's ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` (triangle filter, support scaled by ``max(1, in/out)``).

    Parameters
    ----------
    in_size, out_size : int
        Axis length before and after resizing (>= 1).

    Returns
    -------
    index : (out_size, K) int64
        Source positions; unused slots point at the window start with weight 0.
    weight : (out_size, K) int32
        Weights in units of 2**-22.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = math.ceil(support) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C (int) truncation, >= 0
    xmax = np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    valid = taps[None, :] < xmax[:, None]  # (out, K)
    t = np.abs(((taps[None, :] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(valid & (t < 1.0), 1.0 - t, 0.0)
    ww = np.zeros(out_size, np.float64)
    for k in range(ksize):  # sequential sum, as the C loop
        ww += w[:, k]
    w = np.divide(w, ww[:, None], out=w, where=ww[:, None] != 0.0)
    fixed = np.where(
        w < 0, -0.5 + w * (1 << _PIL_PRECISION_BITS), 0.5 + w * (1 << _PIL_PRECISION_BITS)
    )
    index = np.where(valid, taps[None, :] + xmin[:, None], xmin[:, None])
    return index.astype(np.int64), np.trunc(fixed).astype(np.int32)


@lru_cache(maxsize=256)
def _device_coefficients(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`pil_bilinear_coefficients` as device tensors, copied once per device (the copy of a
    pageable host array would otherwise wait for the device's queued work on every call)."""
    index, weight = pil_bilinear_coefficients(in_size, out_size)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)


def _resample_axis(x: torch.Tensor, dim: int, out_size: int) -> torch.Tensor:
    """One Pillow pass along ``dim`` of an int32 tensor of uint8 values; int32 out, 0..255."""
    index, weight = _device_coefficients(int(x.shape[dim]), out_size, x.device)
    shape = [1] * x.ndim
    shape[dim] = out_size
    # int32 is exact: |sum| <= 255 * (2**22 + K) + 2**21 < 2**31
    acc = x.index_select(dim, index[:, 0]) * weight[:, 0].view(shape)
    acc += 1 << (_PIL_PRECISION_BITS - 1)
    for k in range(1, index.shape[1]):
        acc += x.index_select(dim, index[:, k]) * weight[:, k].view(shape)
    return torch.clamp(acc >> _PIL_PRECISION_BITS, 0, 255)


def resize_bilinear_like_pil(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of uint8 images, bit-identical to ``PIL.Image.resize(..., BILINEAR)``.

    Parameters
    ----------
    images : (..., H, W) uint8 tensor, any device (e.g. (B, 3, H, W), BCYX)
    size : (h, w)
        Output size.

    Returns
    -------
    (..., h, w) uint8 tensor, same device
    """
    if images.dtype != torch.uint8:
        raise ConfigError(f"images must be uint8, got {images.dtype}; expected raw pixel values")
    in_h, in_w = int(images.shape[-2]), int(images.shape[-1])
    out_h, out_w = size
    if (in_h, in_w) == (out_h, out_w):
        return images
    x = images.to(torch.int32)
    # Pillow's pass order (ImagingResampleInner): vertical first only when the height shrinks
    # more than twice as much as the width; the intermediate image is rounded to uint8.
    vertical_first = (in_h - out_h) > 0 and (in_h - out_h) > (in_w - out_w) * 2
    passes = [(-2, out_h), (-1, out_w)] if vertical_first else [(-1, out_w), (-2, out_h)]
    for dim, out_size in passes:
        if x.shape[dim] != out_size:
            x = _resample_axis(x, x.ndim + dim, out_size)
    return x.to(torch.uint8)


@lru_cache(maxsize=8)
def _sam_statistics(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM pixel mean and std as (1, 3, 1, 1) float32 tensors on ``device`` (copied once)."""
    mean = torch.tensor(SAM_PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    std = torch.tensor(SAM_PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1).to(device)
    return mean, std


def _minmax_stretch_torch(x: torch.Tensor) -> torch.Tensor:
    """:func:`minmax_stretch` on (B, 3, H, W) uint8 tensors; same float32 steps, same result."""
    v = x.to(torch.float32)
    v = v - v.amin(dim=(-2, -1), keepdim=True)
    v = v / (v.amax(dim=(-2, -1), keepdim=True) + torch.tensor(1e-7, dtype=torch.float32))
    return (v * 255.0).to(torch.uint8)  # values >= 0: the cast truncates like numpy's


def preprocess_on_device(
    tiles: Sequence[torch.Tensor], intensity: str = "none", target_px: int = SAM_INPUT_PX
) -> PreparedBatch:
    """:func:`preprocess_tiles` with torch ops, on the device that holds the tiles.

    Bit-identical to the host path (PIL resize included). Tiles of one size are processed together.

    Parameters
    ----------
    tiles : sequence of (H_i, W_i, 3) uint8 tensors, YXC, all on one device
    intensity, target_px
        As :func:`preprocess_tile`.

    Returns
    -------
    PreparedBatch
        ``pixels`` (B, 3, target_px, target_px) float32 on the tiles' device.
    """
    if intensity not in INTENSITY_MODES:
        raise ConfigError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
    if len(tiles) == 0:
        raise ConfigError("no tiles given; expected at least one (H, W, 3) uint8 tile")
    device = tiles[0].device
    pixels = torch.zeros((len(tiles), 3, target_px, target_px), dtype=torch.float32, device=device)
    mean, std = _sam_statistics(device)
    originals = [(int(t.shape[0]), int(t.shape[1])) for t in tiles]
    inputs = [resized_shape(h, w, target_px) for h, w in originals]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, hw in enumerate(originals):
        groups.setdefault(hw, []).append(i)
    for (h, w), members in groups.items():
        x = torch.stack([tiles[i] for i in members]).permute(0, 3, 1, 2)  # (G, 3, H, W) uint8
        if intensity == "per_tile_minmax":
            x = _minmax_stretch_torch(x)
        new_h, new_w = resized_shape(h, w, target_px)
        x = resize_bilinear_like_pil(x, (new_h, new_w))  # (G, 3, h', w') uint8
        normalised = (x.to(torch.float32) - mean) / std  # (G, 3, h', w')
        for j, i in enumerate(members):  # zero padding after normalisation
            pixels[i, :, :new_h, :new_w] = normalised[j]
    return PreparedBatch(pixels=pixels, input_sizes=inputs, original_sizes=originals)
