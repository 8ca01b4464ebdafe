"""Segment given AIS maps through the production pipeline (``segment_slide``).

The maps, quantised to 8 bits, are written as the RGB pixels of a slide (R = foreground, G =
centre distance, B = boundary distance) and the ``pixel_maps_test`` model reads them back
(``pixel / 255``, exactly what ``codes.astype(float32) / 255`` gives), so a test runs the same block
reading, window rule, watershed, ownership, id assignment and painting as a user's run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import ModelConfig, TilingConfig, TissueConfig, WatershedConfig
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.registry import register_model
from tests.helpers import read_outputs
from tests.synthetic import write_pyramid

MODEL = "pixel_maps_test"


class PixelMapsModel:
    """Maps = the tile's pixels / 255: local (``context_px`` 0), so the window rule applies."""

    name = MODEL
    class_names = None
    context_px = 0

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """(3, h, w) float32 maps of each (h, w, 3) uint8 tile."""
        return [
            ModelOutput(np.ascontiguousarray(np.moveaxis(t, -1, 0)).astype(np.float32) / 255.0)
            for t in tiles
        ]


@register_model(MODEL)
def _build(config: ModelConfig, mpp: float) -> PixelMapsModel:
    return PixelMapsModel()


def codes_of(maps: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """(3, H, W) maps in [0, 1] -> (H, W, 3) uint8 codes."""
    return np.moveaxis(np.clip(np.round(maps * 255.0), 0, 255).astype(np.uint8), 0, -1)


def write_maps_slide(path: Path, codes: npt.NDArray[np.uint8]) -> Path:
    """A one-level slide (mpp 0.5) whose pixels are the (H, W, 3) uint8 map codes."""
    return write_pyramid(path, np.ascontiguousarray(codes), 0.5, levels=1, tile=256)


def segment_maps(
    slide: Path,
    out: Path,
    tile_px: int,
    halo_px: int,
    watershed: WatershedConfig | None = None,
    max_window_px: int = 2048,
    **run: int,
) -> tuple[npt.NDArray[np.uint32], object, Path]:
    """Run ``segment_slide`` on a maps slide -> (level-0 labels, table, output folder)."""
    config = RunConfig(
        tiling=TilingConfig(tile_px=tile_px, halo_px=halo_px, max_window_px=max_window_px),
        tissue=TissueConfig(enabled=False),
        watershed=watershed or WatershedConfig(),
        model=ModelConfig(name=MODEL),
        **run,  # type: ignore[arg-type]
    )
    result = segment_slide(slide, out, config, slide_id="maps")
    labels, table = read_outputs(result.output_dir)
    return labels, table, result.output_dir
