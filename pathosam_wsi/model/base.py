"""The model interface every nucleus model implements.

A model maps a batch of RGB blocks to PathoSAM's three AIS maps per block (and, optionally, class
probabilities). Everything downstream (watershed, ownership, stitching, export) is shared.
Models are built by name from ``model/registry.py`` and cached once per process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["ModelOutput", "NucleusModel"]


@dataclass(frozen=True)
class ModelOutput:
    """What a model returns for one block.

    Attributes
    ----------
    ais : (3, H, W) float32, CYX, block pixels
        Channel 0 foreground probability, 1 normalised distance to the nucleus centre, 2 normalised
        inverted distance to the boundary; both distances are ~0 at a centre and ~1 at a boundary
        and in background (docs/pathosam-reference.md §4.3).
    semantic : (C, H, W) float32, CYX, or None
        Per-class probabilities (PanNuke: C = 6, class 0 = background), when the model has classes.
    """

    ais: npt.NDArray[np.float32]
    semantic: npt.NDArray[np.float32] | None = None


class NucleusModel(Protocol):
    """A nucleus model: a batch of blocks in, one ``ModelOutput`` per block out."""

    name: str
    class_names: tuple[str, ...] | None
    """Names of the semantic classes (index = class id), or None without classes."""

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Predict the maps for each tile.

        Parameters
        ----------
        tiles : sequence of (H_i, W_i, 3) uint8, YXC, working-resolution pixels
            Blocks including their halo; sizes may differ (blocks at the slide edge are clipped).

        Returns
        -------
        list of ModelOutput
            One per tile, maps of the tile's own (H_i, W_i) size. The result for a tile must not
            depend on the other tiles of the batch.
        """
        ...
