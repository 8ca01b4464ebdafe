"""Stage 1, per shard of blocks: read -> model (via the inference loop) -> watershed -> ownership
-> measurements -> file.

Everything here is a function of the plan and block ids; results go to one file per block so that
memory stays flat and finished blocks survive an interrupted run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage as ndi

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.loop import loop_for
from pathosam_wsi.pipeline.plan import SlidePlan
from pathosam_wsi.pipeline.progress import BlockDone, block_done
from pathosam_wsi.pipeline.results import BlockFile, BlockSummary, BlockTimings
from pathosam_wsi.pipeline.windows import (
    BlockFit,
    Window,
    context_box,
    fit_block,
    model_context_px,
    segment_fn,
    watershed_reach_px,
)
from pathosam_wsi.postprocess.tissue import keep_on_tissue
from pathosam_wsi.postprocess.watershed import ais_watershed
from pathosam_wsi.tiling.grid import Block

__all__ = ["block_arrays", "run_shard"]


def block_arrays(
    plan: SlidePlan,
    block: Block,
    output: ModelOutput,
    tile: npt.NDArray[np.uint8],
    read_box_px: BoxXYXY | None = None,
    segment_box: Callable[[BoxXYXY], Window] | None = None,
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, float]]:
    """Watershed, ownership and measurements of one block -> arrays of its result file.

    ``tile`` is the block's outer box, (h, w, 3) uint8, YXC, working px (for colour features).
    With ``segment_box`` (a model with local maps), ``tile`` and ``output`` cover ``read_box_px``
    (the outer box with the model's context) and the window rule applies.
    """
    from pathosam_wsi.postprocess.block import measure_owned

    if segment_box is not None and read_box_px is not None:
        segment = segment_fn(plan.config.watershed)
        first = Window.crop(read_box_px, tile, output, block.outer_px, segment)
        arrays, timings, _ = fitted_block_arrays(plan, block, first, segment_box)
        return arrays, timings

    t0 = time.perf_counter()
    labels = _on_tissue(plan, ais_watershed(output.ais, plan.config.watershed), block.outer_px)
    t1 = time.perf_counter()
    arrays = measure_owned(
        labels,
        output.ais[0],
        output.semantic,
        tile,
        block,
        plan.frame.wh_px,
        plan.frame.downsample,
        plan.frame.mpp_l0,
        plan.frame.mpp,
    )
    return arrays, {"watershed_s": t1 - t0, "stitch_s": time.perf_counter() - t1}


@lru_cache(maxsize=4)
def _tissue_mask(work_dir: str, stamp: int) -> tuple[npt.NDArray[np.bool_], float] | None:
    """The slide's tissue mask grown by one pixel, and its level-0 px per pixel (None: no mask).

    ``stamp`` (the mask file's mtime) keeps a rewritten mask from being served from the cache.
    """
    work = Path(work_dir)
    try:
        downsample_l0 = float(json.loads((work / "tissue_mask.json").read_text())["downsample_l0"])
        mask = np.asarray(Image.open(work / "tissue_mask.png")) > 0
    except FileNotFoundError:
        return None
    return ndi.binary_dilation(mask, np.ones((3, 3), bool)), downsample_l0


def _on_tissue(
    plan: SlidePlan, labels: npt.NDArray[np.uint32], box_px: BoxXYXY
) -> npt.NDArray[np.uint32]:
    """``labels`` (box px) without nuclei off the tissue, when the run uses a tissue mask."""
    if not plan.config.tissue.enabled:
        return labels
    try:
        stamp = (Path(plan.work_dir) / "tissue_mask.json").stat().st_mtime_ns
    except FileNotFoundError:
        return labels  # a staging folder of an older version: blocks decide, as before
    tissue = _tissue_mask(plan.work_dir, stamp)
    if tissue is None:
        return labels
    return keep_on_tissue(labels, box_px, plan.frame.downsample, tissue[0], tissue[1])


def fitted_block_arrays(
    plan: SlidePlan, block: Block, first: Window, segment_box: Callable[[BoxXYXY], Window]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, float], BlockFit]:
    """The window rule (``pipeline/windows.py``), then ownership and measurements of one block.

    ``first`` is the block's segmented halo box; ``segment_box`` reads and segments a window.
    """
    from pathosam_wsi.postprocess.block import measure_owned

    t0 = time.perf_counter()
    reach = watershed_reach_px(plan.config.watershed)
    fit = fit_block(
        block, first, plan.frame.wh_px, reach, plan.config.tiling.max_window_px, segment_box
    )
    fit.labels = _on_tissue(plan, fit.labels, fit.box_px)
    t1 = time.perf_counter()
    pseudo = Block(block.block_id, block.row, block.col, block.core_px, fit.box_px)
    arrays = measure_owned(
        fit.labels,
        fit.fg_prob,
        fit.semantic,
        fit.tile,
        pseudo,
        plan.frame.wh_px,
        plan.frame.downsample,
        plan.frame.mpp_l0,
        plan.frame.mpp,
    )
    # A nucleus is at the edge only when its region did not fit the largest window.
    arrays["at_halo_edge"] = _exceeded(arrays["labels"], fit)
    arrays["regions_refit"] = np.array([fit.regions_refit, fit.regions_exceeding_window], np.int64)
    return arrays, {"watershed_s": t1 - t0, "stitch_s": time.perf_counter() - t1}, fit


def _exceeded(labels: npt.NDArray[np.uint32], fit: BlockFit) -> npt.NDArray[np.bool_]:
    """(n,) bool per owned nucleus (local ids of ``labels``): from a region that did not fit."""
    n = int(labels.max(initial=0))
    flags = np.zeros(n + 1, bool)
    if fit.exceeded_ids:
        before = fit.labels.ravel()
        after = labels.ravel()
        hit = np.isin(before, np.fromiter(fit.exceeded_ids, np.int64)) & (after > 0)
        flags[after[hit]] = True
    return flags[1:]


def _window_reader(
    plan: SlidePlan, slide: Any, loop: Any, context_px: int
) -> Callable[[BoxXYXY], Window]:
    """``box -> Window``: read with the model's context, predict, crop, segment."""
    segment = segment_fn(plan.config.watershed)

    def segment_box(box: BoxXYXY) -> Window:
        read_box = context_box(box, context_px, plan.frame.wh_px)
        tile = plan.frame.read(slide, read_box)
        output = loop.submit(tile).result().output
        return Window.crop(read_box, tile, output, box, segment)

    return segment_box


def run_shard(plan: SlidePlan, block_ids: Sequence[int]) -> list[BlockSummary]:
    """Read, predict, post-process and save a shard of a slide's blocks -> one summary each.

    The shard reads all its blocks and hands them to the process's inference loop before it
    post-processes the first one, so the device works on this shard (batched with the shards of
    other threads and slides) while this thread post-processes. Blocks whose result file already
    exists are not redone (resume). A model with local maps (``context_px``) gets that much more
    of the slide around every block, and the window rule applies (``pipeline/windows.py``).
    """
    files = {b: BlockFile.of(plan, b) for b in block_ids}
    done = {b for b, f in files.items() if f.exists()}
    summaries = [_summary(b, _load_summary_arrays(files[b])) for b in block_ids if b in done]
    todo = [b for b in block_ids if b not in done]
    if not todo:
        return summaries
    loop = loop_for(plan.config.model, plan.frame.mpp)
    context_px = model_context_px(loop.model)
    slide = plan.slide.open()
    pending = []
    for b in todo:
        t0 = time.perf_counter()
        outer = plan.grid.block(b).outer_px
        read_box = outer if context_px is None else context_box(outer, context_px, plan.frame.wh_px)
        tile = plan.frame.read(slide, read_box)
        pending.append((b, read_box, tile, time.perf_counter() - t0, loop.submit(tile)))
    segment_box = None if context_px is None else _window_reader(plan, slide, loop, context_px)
    for b, read_box, tile, read_s, future in pending:
        prediction = future.result()
        block = plan.grid.block(b)
        arrays, timing = block_arrays(plan, block, prediction.output, tile, read_box, segment_box)
        t3 = time.perf_counter()
        files[b].save(arrays)
        timings = BlockTimings(
            read_s=read_s,
            model_s=prediction.device_s,
            watershed_s=timing["watershed_s"],
            stitch_s=timing["stitch_s"],
            write_blocks_s=time.perf_counter() - t3,
        )
        summaries.append(_summary(b, arrays, timings, prediction.batch_size))
        block_done(BlockDone(plan.slide_id, b, summaries[-1].nuclei, prediction.device_s))
    return summaries


def _load_summary_arrays(file: BlockFile) -> dict[str, npt.NDArray[Any]]:
    """The arrays a summary needs from a finished block's file (resume)."""
    try:
        return file.load("key", "at_halo_edge", "area_px", "regions_refit")
    except KeyError:  # a block of a model without the window rule
        return file.load("key", "at_halo_edge", "area_px")


def _summary(
    block_id: int,
    arrays: dict[str, npt.NDArray[Any]],
    timings: BlockTimings | None = None,
    batch_size: int = 0,
) -> BlockSummary:
    edge = arrays["at_halo_edge"]
    refit = arrays.get("regions_refit", np.zeros(2, np.int64))
    return BlockSummary(
        block_id=block_id,
        nuclei=int(arrays["key"].size),
        at_halo_edge=int(edge.sum()),
        max_edge_area_px=int(arrays["area_px"][edge].max()) if edge.any() else 0,
        timings=timings or BlockTimings(),
        batch_size=batch_size,
        regions_refit=int(refit[0]),
        regions_exceeding_window=int(refit[1]),
    )
