"""Session fixtures: a synthetic pyramidal slide with nuclei at known positions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.synthetic import BACKGROUND_RGB, WHITE, draw_nuclei, grid_centres, write_pyramid

os.environ.setdefault("OMP_NUM_THREADS", "2")

SLIDE_MPP = 0.5
SLIDE_HW = (768, 1024)


@dataclass(frozen=True)
class SyntheticSlide:
    path: Path
    rgb: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int32]
    mpp: float


def _make_rgb_and_labels() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    h, w = SLIDE_HW
    centres = grid_centres(h, w, spacing_px=40, offset_px=20, jitter=8, seed=1)
    # Nuclei straddling the edges and corners of 128- and 256-px blocks.
    for y in (128, 256, 384, 512, 640):
        for x in (128, 256, 512, 768):
            centres.append((y + 0.3, x - 0.4))
    centres = _drop_overlapping(centres, min_dist=18)
    rgb, labels = draw_nuclei(h, w, centres, radius_px=6.0, seed=2)
    # A white (no tissue) band on the right: those blocks are skipped by the tissue mask.
    band = np.zeros((h, w), bool)
    band[:, 900:] = True
    rgb[band] = WHITE
    labels[band] = 0
    return rgb, _relabel(labels)


def _drop_overlapping(
    centres: list[tuple[float, float]], min_dist: float
) -> list[tuple[float, float]]:
    kept: list[tuple[float, float]] = []
    for c in sorted(
        centres, key=lambda c: (c[0] in (128.3, 256.3, 384.3, 512.3, 640.3), c), reverse=True
    ):
        if all((c[0] - k[0]) ** 2 + (c[1] - k[1]) ** 2 >= min_dist**2 for k in kept):
            kept.append(c)
    return kept


def _relabel(labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    ids = np.unique(labels)
    lut = np.zeros(int(ids.max()) + 1, np.int32)
    lut[ids] = np.arange(ids.size)
    return lut[labels]


@pytest.fixture(scope="session")
def synthetic_slide(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSlide:
    rgb, labels = _make_rgb_and_labels()
    path = write_pyramid(tmp_path_factory.mktemp("slides") / "synthetic.tiff", rgb, SLIDE_MPP)
    return SyntheticSlide(path, rgb, labels, SLIDE_MPP)


@pytest.fixture(scope="session")
def blank_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb = np.full((512, 512, 3), 245, np.uint8)
    return write_pyramid(tmp_path_factory.mktemp("slides") / "blank.tiff", rgb, SLIDE_MPP, levels=2)


@pytest.fixture(scope="session")
def no_mpp_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb = np.full((256, 256, 3), BACKGROUND_RGB, np.uint8)
    return write_pyramid(tmp_path_factory.mktemp("slides") / "nompp.tiff", rgb, None, levels=1)
