"""The block grid over the working-resolution frame.

Core blocks tile the region of interest without overlap. Cells are aligned to multiples of
``tile_px`` in the image frame (so each core lies inside one output chunk, whatever the ROI) and
each core is its cell clipped to the region. Each block's outer box is the core grown by
``halo_px`` on every side and clipped to the image, never padded (as the reference's blocking,
docs/pathosam-reference.md §6.1). Block ids are C-order (row-major) over the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.errors import TilingError

__all__ = ["Block", "Grid", "cover"]


@dataclass(frozen=True)
class Block:
    """One unit of work.

    Attributes
    ----------
    block_id : int
        C-order index in the grid.
    row, col : int
        Grid position.
    core_px : BoxXYXY
        Half-open core box (x0, y0, x1, y1) in working-frame px; nuclei whose centroid lies here
        belong to this block.
    outer_px : BoxXYXY
        Core plus halo, clipped to the image; what the model sees.
    """

    block_id: int
    row: int
    col: int
    core_px: BoxXYXY
    outer_px: BoxXYXY

    @property
    def outer_hw(self) -> tuple[int, int]:
        """(h, w) of the outer box."""
        x0, y0, x1, y1 = self.outer_px
        return (y1 - y0, x1 - x0)

    @property
    def core_in_outer(self) -> BoxXYXY:
        """Core box relative to the outer box origin (tile-local px)."""
        ox, oy = self.outer_px[0], self.outer_px[1]
        x0, y0, x1, y1 = self.core_px
        return (x0 - ox, y0 - oy, x1 - ox, y1 - oy)


@dataclass(frozen=True)
class Grid:
    """Grid of core blocks over ``region_px`` inside an image of size ``image_wh_px``."""

    region_px: BoxXYXY
    image_wh_px: tuple[int, int]
    tile_px: int
    halo_px: int

    def __post_init__(self) -> None:
        x0, y0, x1, y1 = self.region_px
        w, h = self.image_wh_px
        if self.tile_px < 1 or self.halo_px < 0:
            raise TilingError(
                f"tile must be >= 1 px and halo >= 0 px, got tile={self.tile_px!r} "
                f"halo={self.halo_px!r}"
            )
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise TilingError(
                f"region {self.region_px!r} (x0, y0, x1, y1) is not inside the image of "
                f"{w}x{h} px; give an ROI inside the slide"
            )

    @property
    def origin_cell(self) -> tuple[int, int]:
        """(row, col) of the first cell in the image-aligned cell grid."""
        return (self.region_px[1] // self.tile_px, self.region_px[0] // self.tile_px)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        _, _, x1, y1 = self.region_px
        r0, c0 = self.origin_cell
        return (math.ceil(y1 / self.tile_px) - r0, math.ceil(x1 / self.tile_px) - c0)

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def block(self, block_id: int) -> Block:
        """The block with C-order id ``block_id``."""
        rows, cols = self.shape
        if not 0 <= block_id < rows * cols:
            raise TilingError(f"block id {block_id!r} outside the grid of {rows}x{cols} blocks")
        row, col = divmod(block_id, cols)
        return self.block_at(row, col)

    def block_at(self, row: int, col: int) -> Block:
        """The block at grid position (row, col)."""
        rx0, ry0, rx1, ry1 = self.region_px
        w, h = self.image_wh_px
        r0, c0 = self.origin_cell
        cx0, cy0 = (c0 + col) * self.tile_px, (r0 + row) * self.tile_px
        core = (
            max(cx0, rx0),
            max(cy0, ry0),
            min(cx0 + self.tile_px, rx1),
            min(cy0 + self.tile_px, ry1),
        )
        outer = (
            max(core[0] - self.halo_px, 0),
            max(core[1] - self.halo_px, 0),
            min(core[2] + self.halo_px, w),
            min(core[3] + self.halo_px, h),
        )
        return Block(row * self.shape[1] + col, row, col, core, outer)

    def neighbours(self, block: Block) -> list[Block]:
        """The up to 8 blocks around ``block`` (C-order), excluding itself."""
        rows, cols = self.shape
        return [
            self.block_at(r, c)
            for r in range(block.row - 1, block.row + 2)
            for c in range(block.col - 1, block.col + 2)
            if (r, c) != (block.row, block.col) and 0 <= r < rows and 0 <= c < cols
        ]

    def __iter__(self) -> Iterator[Block]:
        for block_id in range(len(self)):
            yield self.block(block_id)


def cover(region_px: BoxXYXY, image_wh_px: tuple[int, int], tile_px: int, halo_px: int) -> Grid:
    """Build the grid covering ``region_px`` (x0, y0, x1, y1, working px) of an image.

    Raises
    ------
    TilingError
        If the region is empty or not inside the image, or the sizes are invalid.
    """
    return Grid(tuple(int(v) for v in region_px), image_wh_px, int(tile_px), int(halo_px))  # type: ignore[arg-type]
