"""H&E augmentations for training crops: scale, flips, 90° rotations, stain and colour jitter.

All randomness comes from the ``numpy.random.Generator`` passed in, so a seed fixes every crop.
Labels follow the image geometrically (nearest-neighbour when resized); colour changes touch the
image only. Stain jitter scales and shifts the haematoxylin and eosin optical densities of the
Ruifrok & Johnston deconvolution (``skimage.color.rgb2hed``), as in Tellez et al. 2018 (HED
augmentation). Colour jitter (off by default) moves each CIELAB channel's mean and spread within the
tissue, the change that Reinhard colour normalisation undoes (Reinhard et al. 2001), so a model
trained on one lab's stain does not hinge on its exact hue: ``skimage.color.rgb2lab``, per channel
``(x - mean) * U(1 - s, 1 + s) + mean + U(-d, d)``, with d = 100 * s for L and 127 * s for a, b
scaled by ``colour_shift_frac``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.color import hed2rgb, lab2rgb, rgb2hed, rgb2lab
from skimage.transform import resize

from pathosam_wsi.errors import ConfigError

__all__ = ["Augment", "random_crop"]


@dataclass(frozen=True, kw_only=True)
class Augment:
    """Augmentation strengths; ``Augment(enabled=False)`` crops only."""

    enabled: bool = True
    scale_range: tuple[float, float] = (0.85, 1.15)
    """Zoom factor range (output px per input px)."""
    stain_scale: float = 0.15
    """Haematoxylin / eosin density multiplied by 1 + U(-s, s)."""
    stain_shift: float = 0.02
    """... and shifted by U(-s, s) (rgb2hed units)."""
    colour_jitter: float = 0.0
    """CIELAB channel spread multiplied by 1 + U(-s, s) (0 = off); see the module docstring."""
    colour_shift_frac: float = 0.5
    """... and the channel mean shifted by U(-d, d), d = colour_jitter * this * channel range."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.colour_jitter <= 0.5:
            raise ConfigError(
                f"colour_jitter must be between 0 and 0.5, got {self.colour_jitter!r}; "
                "pass e.g. --colour-jitter 0.2 (0 = off)"
            )


def random_crop(
    image: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int32],
    crop_px: int,
    rng: np.random.Generator,
    aug: Augment,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """One augmented (crop_px, crop_px) training crop of an image and its labels.

    Parameters
    ----------
    image : (H, W, 3) uint8, YXC
    labels : (H, W) int32, YX, 0 = background
    crop_px : int
        Output side; images smaller than the (scaled) crop are padded with white / background.
    rng : numpy Generator
        The only source of randomness.
    aug : Augment

    Returns
    -------
    (crop_px, crop_px, 3) uint8 and (crop_px, crop_px) int32
    """
    zoom = float(rng.uniform(*aug.scale_range)) if aug.enabled else 1.0
    side = max(1, round(crop_px / zoom))
    image, labels = _pad_to(image, labels, side)
    y0 = int(rng.integers(0, image.shape[0] - side + 1))
    x0 = int(rng.integers(0, image.shape[1] - side + 1))
    img = image[y0 : y0 + side, x0 : x0 + side]
    lab = labels[y0 : y0 + side, x0 : x0 + side]
    if side != crop_px:
        img = _resize_rgb(img, crop_px)
        lab = resize(lab, (crop_px, crop_px), order=0, preserve_range=True, anti_aliasing=False)
        lab = lab.astype(np.int32)
    if not aug.enabled:
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)
    k = int(rng.integers(0, 4))
    img, lab = np.rot90(img, k), np.rot90(lab, k)
    if rng.random() < 0.5:
        img, lab = img[:, ::-1], lab[:, ::-1]
    img = _stain_jitter(np.ascontiguousarray(img), rng, aug)
    if aug.colour_jitter > 0:
        img = _colour_jitter(img, rng, aug)
    return img, np.ascontiguousarray(lab)


def _pad_to(
    image: npt.NDArray[np.uint8], labels: npt.NDArray[np.int32], side: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Pad (bottom/right) with white and background to at least ``side`` x ``side``."""
    ph, pw = max(0, side - image.shape[0]), max(0, side - image.shape[1])
    if ph == 0 and pw == 0:
        return image, labels
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=255)
    return image, np.pad(labels, ((0, ph), (0, pw)))


def _resize_rgb(img: npt.NDArray[np.uint8], side: int) -> npt.NDArray[np.uint8]:
    out = resize(img, (side, side, 3), order=1, preserve_range=True, anti_aliasing=False)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _stain_jitter(
    img: npt.NDArray[np.uint8], rng: np.random.Generator, aug: Augment
) -> npt.NDArray[np.uint8]:
    """Scale and shift the haematoxylin and eosin densities; DAB (channel 2) is left alone."""
    hed = rgb2hed(img)
    for c in (0, 1):
        hed[..., c] = hed[..., c] * (1.0 + rng.uniform(-aug.stain_scale, aug.stain_scale))
        hed[..., c] = hed[..., c] + rng.uniform(-aug.stain_shift, aug.stain_shift)
    return _unit_to_uint8(hed2rgb(hed))


_LAB_RANGE = (100.0, 127.0, 127.0)
"""Half-width-ish scale of the CIELAB channels L, a, b used for the mean shift."""
_TISSUE_L = 90.0
"""Pixels darker than this L* are tissue; the statistics are taken over them (glass is ~95+)."""


def _colour_jitter(
    img: npt.NDArray[np.uint8], rng: np.random.Generator, aug: Augment
) -> npt.NDArray[np.uint8]:
    """Scale and shift each CIELAB channel about its tissue mean; glass stays glass."""
    lab = rgb2lab(img)
    tissue = lab[..., 0] < _TISSUE_L
    draws = rng.uniform(-1.0, 1.0, size=(2, 3))  # always drawn: one seed, one stream
    if tissue.sum() < 16:
        return img
    out = lab.copy()
    for c in range(3):
        mean = float(lab[..., c][tissue].mean())
        scale = 1.0 + aug.colour_jitter * draws[0, c]
        shift = aug.colour_jitter * aug.colour_shift_frac * _LAB_RANGE[c] * draws[1, c]
        out[..., c] = np.where(tissue, (lab[..., c] - mean) * scale + mean + shift, lab[..., c])
    out[..., 0] = np.clip(out[..., 0], 0.0, 100.0)
    return _unit_to_uint8(lab2rgb(out))


def _unit_to_uint8(rgb: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """(H, W, 3) float RGB in [0, 1] (skimage's colour conversions) -> uint8, rounded."""
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
