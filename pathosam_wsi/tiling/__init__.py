"""Block grid: square core blocks with a halo of context, clipped at the slide edge."""

from pathosam_wsi.tiling.grid import Block, Grid, cover

__all__ = ["Block", "Grid", "cover"]
