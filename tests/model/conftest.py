"""Shared fixtures of the model tests: modest torch threading and tiny model configurations."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pytest
import torch

# Tiny SAM encoder: 256-px input -> (B, 32, 16, 16) embeddings; windowed blocks need padding
# (16 tokens, window 6) and block 1 is global, so both attention paths are exercised.
TINY_ENCODER = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "global_attn_indexes": (1,),
    "img_size": 256,
    "window_size": 6,
    "out_chans": 32,
}
TINY_DECODER = {"in_channels": 32, "width": 8}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tests share a small machine: one intra-op thread, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_encoder_kwargs() -> dict[str, object]:
    return dict(TINY_ENCODER)


@pytest.fixture
def tiny_decoder_kwargs() -> dict[str, int]:
    return dict(TINY_DECODER)


@pytest.fixture
def he_tile() -> Callable[[int, int, int], npt.NDArray[np.uint8]]:
    """Factory: (h, w, seed) -> (h, w, 3) uint8 H&E-like tile."""
    return _he_like_tile


def _he_like_tile(h: int, w: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A (h, w, 3) uint8 tile: pink background, purple discs, noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.float32)
    img[:] = (232.0, 196.0, 222.0)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(max(1, h * w // 1500)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 11)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (90.0, 50.0, 145.0)
    img += rng.normal(0.0, 6.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
