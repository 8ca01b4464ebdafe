"""The model's window grid over a slide and which window serves each prompt.

Windows have the encoder's input size S (fixed by the model, never by ``--tile``). Their cores
tile the slide with stride ``S - 2 * margin``; a window is its core grown by the margin on every
side, shifted inwards at the slide's edges (so a window lies inside the slide whenever the slide
is at least S wide and high). A prompt is served by the window whose core holds its centre. If
its box and points do not lie inside that window, it gets a window of its own, centred on it, of
side max(S, extent + 2 * margin), scaled to S when larger: such prompts are counted and reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.prompts.parse import PromptSet

__all__ = ["Window", "WindowGrid", "assign_windows"]


@dataclass(frozen=True)
class Window:
    """One encoder pass: the level-0 region it reads and the prompts it serves."""

    window_id: int
    box_xyxy: tuple[int, int, int, int]
    """Half-open level-0 region read (may extend past the slide, then zero-padded)."""
    scale: float
    """Level-0 px per model px (1 for grid windows; > 1 for a large prompt's own window)."""
    prompts: npt.NDArray[np.int64]
    """Indices into the PromptSet, ascending."""


@dataclass(frozen=True)
class WindowGrid:
    """Grid of S x S windows over a (w, h) level-0 frame."""

    wh: tuple[int, int]
    size: int
    margin: int

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.margin < self.size:
            raise ConfigError(
                f"window margin {self.margin} px with window {self.size} px leaves no core; "
                "expected 0 <= 2 * margin < window"
            )

    @property
    def core(self) -> int:
        """Core side (the grid's stride) in px."""
        return self.size - 2 * self.margin

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        return math.ceil(self.wh[1] / self.core), math.ceil(self.wh[0] / self.core)

    def _origin(self, index: int, length: int) -> int:
        start = index * self.core - self.margin
        return max(0, min(start, length - self.size))

    def window_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Half-open level-0 box of grid window (row, col)."""
        x0, y0 = self._origin(col, self.wh[0]), self._origin(row, self.wh[1])
        return x0, y0, x0 + self.size, y0 + self.size

    def cell_of(self, xy: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """(P, 2) row, col of the core that holds each (x, y); clipped to the grid."""
        rows, cols = self.shape
        c = np.clip(np.floor(xy[:, 0] / self.core), 0, cols - 1).astype(np.int64)
        r = np.clip(np.floor(xy[:, 1] / self.core), 0, rows - 1).astype(np.int64)
        return np.column_stack([r, c])


def _own_window(
    extent: npt.NDArray[np.float64], grid: WindowGrid
) -> tuple[tuple[int, int, int, int], float]:
    """A window centred on a prompt's extent, side >= S, and its scale."""
    side = max(
        grid.size, math.ceil(max(extent[2] - extent[0], extent[3] - extent[1]) + 2 * grid.margin)
    )
    cx, cy = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
    x0, y0 = math.floor(cx - side / 2), math.floor(cy - side / 2)
    if side == grid.size:  # keep an unscaled window inside the slide where it fits
        x0 = max(0, min(x0, grid.wh[0] - side))
        y0 = max(0, min(y0, grid.wh[1] - side))
    return (x0, y0, x0 + side, y0 + side), side / grid.size


def assign_windows(prompts: PromptSet, grid: WindowGrid) -> list[Window]:
    """Windows that serve at least one prompt: grid windows in row-major order, then own windows.

    Window ids are stable: grid window (r, c) has id ``r * cols + c``; own windows follow the grid
    ids in prompt order. The assignment depends only on the prompts and the grid.
    """
    rows, cols = grid.shape
    cells = grid.cell_of(prompts.centre_xy())
    extent = prompts.extent_xyxy()
    windows: list[Window] = []
    own: list[int] = []
    by_cell: dict[int, list[int]] = {}
    for i in range(len(prompts)):
        r, c = int(cells[i, 0]), int(cells[i, 1])
        x0, y0, x1, y1 = grid.window_box(r, c)
        e = extent[i]
        if e[0] >= x0 and e[1] >= y0 and e[2] <= x1 and e[3] <= y1:
            by_cell.setdefault(r * cols + c, []).append(i)
        else:
            own.append(i)
    # Cells whose windows coincide (shifted inwards at the slide's edges) share one encoder pass
    by_box: dict[tuple[int, int, int, int], tuple[int, list[int]]] = {}
    for cell in sorted(by_cell):
        box = grid.window_box(cell // cols, cell % cols)
        _, members = by_box.setdefault(box, (cell, []))
        members.extend(by_cell[cell])
    for box, (cell, members) in sorted(by_box.items(), key=lambda kv: kv[1][0]):
        windows.append(Window(cell, box, 1.0, np.asarray(sorted(members), np.int64)))
    for k, i in enumerate(own):
        box, scale = _own_window(extent[i], grid)
        windows.append(Window(rows * cols + k, box, scale, np.asarray([i], np.int64)))
    return windows
