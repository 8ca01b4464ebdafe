"""Type aliases shared across stages (frames and axis orders are in the names)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

XY: TypeAlias = tuple[int, int]
"""An (x, y) pair, x first as the name says."""
WH: TypeAlias = tuple[int, int]
"""A (width, height) pair."""
BoxXYXY: TypeAlias = tuple[int, int, int, int]
"""A half-open box (x0, y0, x1, y1)."""

RGBImage: TypeAlias = npt.NDArray[np.uint8]
"""(H, W, 3) uint8, YXC."""
AisMaps: TypeAlias = npt.NDArray[np.float32]
"""(3, H, W) float32, CYX: foreground probability, centre distance, boundary distance."""
LabelImage: TypeAlias = npt.NDArray[np.uint32]
"""(H, W) uint32, YX, 0 = background."""
