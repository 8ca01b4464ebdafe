"""Tiny synthetic training sets and the tiny U-Net configuration of the finetune tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from pathosam_wsi.finetune.augment import Augment
from pathosam_wsi.finetune.data import Sample
from pathosam_wsi.finetune.train import EpochLog, TrainConfig
from tests.synthetic import draw_nuclei, grid_centres

TINY = TrainConfig(
    widths=(8, 16),
    epochs=10,
    steps_per_epoch=10,
    batch_size=4,
    crop_px=64,
    lr=1e-2,
    val_frac=0.0,
    eval_train=True,
    augment=Augment(enabled=False),
    seed=3,
)
"""A U-Net of 8 and 16 channels on 64-px crops: about 0.1 s per step on one CPU core."""


def synthetic_pair(
    seed: int, side: int = 96
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """An RGB image with purple elliptical nuclei (radius ~6 px) on pink, and its labels."""
    centres = grid_centres(side, side, spacing_px=20, offset_px=12, jitter=2, seed=seed)
    return draw_nuclei(side, side, centres, radius_px=6.0, seed=seed)


def pair_folders(root: Path) -> tuple[Path, Path]:
    """``root/images`` (two synthetic PNGs) and ``root/labels`` (their .npy labels)."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(2):
        image, lab = synthetic_pair(i)
        Image.fromarray(image).save(images / f"p{i}.png")
        np.save(labels / f"p{i}.npy", lab)
    return images, labels


class Interrupted(Exception):
    """Raised by :func:`stop_after` to cut a training run short."""


def stop_after(epoch: int) -> Callable[[EpochLog], None]:
    """An ``on_epoch`` hook that raises :class:`Interrupted` after ``epoch``."""

    def on_epoch(log: EpochLog) -> None:
        if log.epoch == epoch:
            raise Interrupted

    return on_epoch


@pytest.fixture
def tiny_samples() -> list[Sample]:
    """Two 96x96 synthetic images with about 16 nuclei each."""
    return [Sample(f"s{i}", *synthetic_pair(i)) for i in range(2)]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine two OpenMP threads wait on each other at
    every small op (17x slower measured here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
