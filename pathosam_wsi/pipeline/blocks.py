"""Stage 1, per batch of blocks: read -> model -> watershed -> ownership -> measurements -> file.

Everything here is a function of the plan and block ids; results go to one file per block so that
memory stays flat and finished blocks survive an interrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.model.base import ModelOutput, get_model
from pathosam_wsi.pipeline.plan import SlidePlan, atomic_save_npz, block_file
from pathosam_wsi.postprocess.features import nucleus_features
from pathosam_wsi.postprocess.measure import label_means, semantic_classes
from pathosam_wsi.postprocess.polygons import label_rings
from pathosam_wsi.postprocess.watershed import ais_watershed
from pathosam_wsi.stitch.ownership import own_nuclei
from pathosam_wsi.tiling.grid import Block

__all__ = [
    "InferredBatch",
    "block_arrays",
    "infer_blocks",
    "postprocess_blocks",
    "process_blocks",
]


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


@dataclass
class InferredBatch:
    """Model outputs of a batch of blocks, handed from the inference to the post-processing step.

    On a cluster with GPU workers this object stays in the memory of the worker that produced it:
    the post-processing task runs there too (data locality), on a CPU thread.
    """

    block_ids: list[int]
    tiles: list[npt.NDArray[np.uint8]]
    outputs: list[ModelOutput]
    existing: list[int]
    read_s: float = 0.0
    model_s: float = 0.0


def infer_blocks(plan: SlidePlan, block_ids: Sequence[int]) -> InferredBatch:
    """Read and predict the blocks that have no result file yet (resume skips the others)."""
    todo = [b for b in block_ids if not block_file(plan, b).exists()]
    existing = [b for b in block_ids if b not in todo]
    if not todo:
        return InferredBatch([], [], [], existing)
    t0 = time.perf_counter()
    slide = plan.slide.open()
    tiles = [plan.frame.read(slide, plan.grid.block(b).outer_px) for b in todo]
    t1 = time.perf_counter()
    outputs = get_model(plan.config.model, plan.frame.mpp).predict(tiles)
    t2 = time.perf_counter()
    return InferredBatch(todo, tiles, outputs, existing, t1 - t0, t2 - t1)


def postprocess_blocks(plan: SlidePlan, batch: InferredBatch) -> list[dict[str, Any]]:
    """Watershed, ownership, measurements and result files of an inferred batch -> summaries."""
    summaries = [_summary_of_existing(plan, b) for b in batch.existing]
    n = max(len(batch.block_ids), 1)
    for b, output, tile in zip(batch.block_ids, batch.outputs, batch.tiles, strict=True):
        arrays, timing = block_arrays(plan, plan.grid.block(b), output, tile)
        t3 = time.perf_counter()
        atomic_save_npz(block_file(plan, b), arrays)
        timing["write_blocks_s"] = time.perf_counter() - t3
        timing.update(read_s=batch.read_s / n, model_s=batch.model_s / n)
        summaries.append(_summary(b, arrays, timing))
    return summaries


def process_blocks(plan: SlidePlan, block_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Stage 1 on a batch of blocks in one call; one small summary per block.

    Blocks whose result file already exists are skipped (resume).
    """
    return postprocess_blocks(plan, infer_blocks(plan, block_ids))


def _summary(
    block_id: int, arrays: dict[str, npt.NDArray[Any]], timing: dict[str, float]
) -> dict[str, Any]:
    edge = arrays["at_halo_edge"]
    return {
        "block_id": block_id,
        "nuclei": int(arrays["key"].size),
        "at_halo_edge": int(edge.sum()),
        "max_edge_area_px": int(arrays["area_px"][edge].max()) if edge.any() else 0,
        "timings": timing,
    }


def _summary_of_existing(plan: SlidePlan, block_id: int) -> dict[str, Any]:
    with np.load(block_file(plan, block_id)) as data:
        arrays = {k: data[k] for k in ("key", "at_halo_edge", "area_px")}
    return _summary(block_id, arrays, {})
