"""Stage 1, per shard of blocks: read -> model (via the inference loop) -> watershed -> ownership
-> measurements -> file.

Everything here is a function of the plan and block ids; results go to one file per block so that
memory stays flat and finished blocks survive an interrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.loop import loop_for
from pathosam_wsi.pipeline.plan import SlidePlan
from pathosam_wsi.pipeline.progress import BlockDone, block_done
from pathosam_wsi.pipeline.results import BlockFile, BlockSummary, BlockTimings
from pathosam_wsi.tiling.grid import Block

__all__ = ["block_arrays", "run_shard"]


def block_arrays(
    plan: SlidePlan, block: Block, output: ModelOutput, tile: npt.NDArray[np.uint8]
) -> tuple[dict[str, npt.NDArray[Any]], dict[str, float]]:
    """Watershed, ownership and measurements of one block -> arrays of its result file.

    ``tile`` is the block's outer box, (h, w, 3) uint8, YXC, working px (for colour features).
    """
    # Imported here: the module's import block belongs to the pipeline restructuring.
    from pathosam_wsi.postprocess.block import postprocess_block

    timing: dict[str, float] = {}
    arrays = postprocess_block(
        output.ais,
        output.semantic,
        tile,
        block,
        plan.frame.wh_px,
        plan.frame.downsample,
        plan.frame.mpp_l0,
        plan.frame.mpp,
        plan.config.watershed,
        timing,
    )
    return arrays, timing


def run_shard(plan: SlidePlan, block_ids: Sequence[int]) -> list[BlockSummary]:
    """Read, predict, post-process and save a shard of a slide's blocks -> one summary each.

    The shard reads all its blocks and hands them to the process's inference loop before it
    post-processes the first one, so the device works on this shard (batched with the shards of
    other threads and slides) while this thread post-processes. Blocks whose result file already
    exists are not redone (resume).
    """
    files = {b: BlockFile.of(plan, b) for b in block_ids}
    done = {b for b, f in files.items() if f.exists()}
    summaries = [
        _summary(b, files[b].load("key", "at_halo_edge", "area_px")) for b in block_ids if b in done
    ]
    todo = [b for b in block_ids if b not in done]
    if not todo:
        return summaries
    loop = loop_for(plan.config.model, plan.frame.mpp)
    slide = plan.slide.open()
    pending = []
    for b in todo:
        t0 = time.perf_counter()
        tile = plan.frame.read(slide, plan.grid.block(b).outer_px)
        pending.append((b, tile, time.perf_counter() - t0, loop.submit(tile)))
    for b, tile, read_s, future in pending:
        prediction = future.result()
        arrays, timing = block_arrays(plan, plan.grid.block(b), prediction.output, tile)
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


def _summary(
    block_id: int,
    arrays: dict[str, npt.NDArray[Any]],
    timings: BlockTimings | None = None,
    batch_size: int = 0,
) -> BlockSummary:
    edge = arrays["at_halo_edge"]
    return BlockSummary(
        block_id=block_id,
        nuclei=int(arrays["key"].size),
        at_halo_edge=int(edge.sum()),
        max_edge_area_px=int(arrays["area_px"][edge].max()) if edge.any() else 0,
        timings=timings or BlockTimings(),
        batch_size=batch_size,
    )
