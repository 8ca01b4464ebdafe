"""Console helpers of the CLI: the block progress bar and the ``info`` report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from pathosam_wsi.config import RunConfig

__all__ = ["BlockProgress", "describe_slide"]


class BlockProgress:
    """tqdm bar over blocks: done/total, blocks/s, ETA and nuclei so far."""

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self.bar: tqdm | None = None  # type: ignore[type-arg]
        self.nuclei = 0

    def __enter__(self) -> BlockProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, event: str, payload: Any) -> None:
        if event == "planned":
            self.bar = tqdm(total=payload, unit="block", disable=self.disable, dynamic_ncols=True)
        elif event == "blocks" and self.bar is not None:
            self.nuclei += sum(s.nuclei for s in payload)
            self.bar.set_postfix(nuclei=self.nuclei, refresh=False)
            self.bar.update(len(payload))


def describe_slide(path: Path, mpp: float | None = None) -> str:
    """Multi-line description of a slide and its planned block grid."""
    from pathosam_wsi.config import SlideConfig
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
