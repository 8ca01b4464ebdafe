"""``pathosam-wsi info SLIDE``: vendor, levels, sizes, pixel size and planned blocks."""

from __future__ import annotations

from pathlib import Path

import click

from pathosam_wsi.cli.errors import error_line, fail
from pathosam_wsi.config import RunConfig, SlideConfig
from pathosam_wsi.errors import PathoSamError

__all__ = ["describe_slide", "info"]


def describe_slide(path: Path, mpp: float | None = None) -> str:
    """Multi-line description of a slide and its planned block grid."""
    from pathosam_wsi.pipeline.segment import plan_slide
    from pathosam_wsi.slide.open import open_slide

    slide = open_slide(path, mpp)
    lines = [f"file      {path}", f"vendor    {slide.vendor}"]
    lines.append(f"mpp       {slide.mpp if slide.mpp is not None else 'unknown (pass --mpp)'}")
    for i, ((w, h), ds) in enumerate(
        zip(slide.level_dimensions, slide.level_downsamples, strict=True)
    ):
        level_mpp = f"{slide.mpp * ds:.4f} µm/px" if slide.mpp else "?"
        lines.append(f"level {i}   {w} x {h} px  downsample {ds:g}  {level_mpp}")
    slide.close()
    if slide.mpp is not None:
        config = RunConfig(slide=SlideConfig(mpp=mpp))
        _, _, _, grid = plan_slide(path, ".", config)
        rows, cols = grid.shape
        lines.append(
            f"blocks    {len(grid)} ({rows} x {cols}) of {config.tiling.tile_px} px "
            f"+ {config.tiling.halo_px} px halo at level 0"
        )
    return "\n".join(lines)


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option("--mpp", type=float, help="Level-0 pixel size in µm/px (overrides metadata).")
def info(slide: Path, mpp: float | None) -> None:
    """Print vendor, levels, sizes, pixel size and the planned block count of SLIDE."""
    try:
        click.echo(describe_slide(slide, mpp))
    except PathoSamError as err:
        fail(error_line(err))
