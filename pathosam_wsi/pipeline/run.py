"""The stage sequence of one planned slide: shards of blocks -> global ids -> paint + table.

This is the one place that decides what runs after what; ``distributed/executor.py`` runs the
tasks (threads here, or workers of a dask cluster) and knows nothing of the stages. Every task
is a function of the plan (shared once per worker) and small arguments, reads and writes files of
the staging folder, and returns something small, so the driver only submits and records:

1. ``run_shard`` per shard of ``blocks_per_task`` blocks (read, model via the per-process
   inference loop, watershed, ownership, measurements, one result file per block);
2. ``assign_ids``: global ids from every block's keys -> ``ids.npz`` (one task);
3. ``paint_shard`` per shard of blocks and ``write_slide_table`` (one task), side by side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pathosam_wsi.distributed.executor import TaskExecutor
from pathosam_wsi.model.registry import model_class_names
from pathosam_wsi.pipeline.assemble import (
    blocks_to_paint,
    blocks_under,
    global_luts,
    paint_blocks,
    wide_label_boxes,
    write_table,
)
from pathosam_wsi.pipeline.blocks import run_shard
from pathosam_wsi.pipeline.plan import SlidePlan
from pathosam_wsi.pipeline.results import BlockSummary, GlobalIds

__all__ = [
    "FINISH_PRIORITY",
    "SHARD_PRIORITY",
    "SlideRunResult",
    "assign_ids",
    "paint_shard",
    "run_slide_stages",
    "write_slide_table",
]

SHARD_PRIORITY = 0
FINISH_PRIORITY = 1_000_000
"""Added to the slide's priority for the tasks that finish it (ids, paint, table)."""
_PAINT_SHARD_MIN = 16


@dataclass
class SlideRunResult:
    """What a slide's stages produced."""

    summaries: list[BlockSummary] = field(default_factory=list)
    nuclei: int = 0
    stage_s: dict[str, float] = field(default_factory=dict)


def _shards(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def assign_ids(plan: SlidePlan) -> int:
    """Global ids of every owned nucleus -> ``ids.npz``; returns the slide's nucleus count."""
    ids = GlobalIds.from_luts(global_luts(plan), wide_label_boxes(plan))
    ids.save(plan.work_dir)
    return ids.nuclei


def paint_shard(plan: SlidePlan, block_ids: Sequence[int]) -> int:
    """Paint the final labels of these blocks' cores (neighbours' tables from ``ids.npz``)."""
    ids = GlobalIds.load(plan.work_dir)
    wide = ids.wide_boxes()
    needed = set(block_ids) | blocks_under(plan, wide, block_ids)
    for b in block_ids:
        needed.update(n.block_id for n in plan.grid.neighbours(plan.grid.block(b)))
    return paint_blocks(plan, block_ids, ids.luts(needed), wide)


def write_slide_table(plan: SlidePlan) -> int:
    """Write ``nuclei.parquet`` of the staging folder; returns rows written."""
    luts = GlobalIds.load(plan.work_dir).luts(plan.block_ids)
    class_names = model_class_names(plan.config.model)
    return write_table(plan, luts, plan.staging.table, class_names)


def _finish(
    executor: TaskExecutor, plan: SlidePlan, shared: Any, priority: int
) -> dict[str, float]:
    """Paint shards and the table, all queued at once (they only read ``ids.npz``).

    Returns the seconds spent in the table task (``table_s``) and summed over paint tasks
    (``paint_s``).
    """
    paint_ids = blocks_to_paint(plan, GlobalIds.load(plan.work_dir).wide_boxes())
    shards = _shards(paint_ids, max(plan.config.blocks_per_task, _PAINT_SHARD_MIN))
    tasks: list[tuple[Any, ...]] = [(write_slide_table, shared)]
    tasks += [(paint_shard, shared, s) for s in shards]
    timed = executor.map("finish", _timed, tasks, priority=priority + FINISH_PRIORITY)
    return {"table_s": timed[0][1], "paint_s": sum(t for _, t in timed[1:])}


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), seconds it took)``."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0


def run_slide_stages(
    executor: TaskExecutor,
    plan: SlidePlan,
    on_blocks: Callable[[list[BlockSummary]], None] | None = None,
    priority: int = 0,
) -> SlideRunResult:
    """Run every stage of one planned slide on ``executor``.

    Parameters
    ----------
    executor : TaskExecutor
        Threads of this process or a dask cluster; with a cluster the staging folder must be on
        a file system that every worker sees at the same path.
    plan : SlidePlan
        The planned slide (staging folder and label store exist).
    on_blocks : callable, optional
        Called with the summaries of each finished shard (progress).
    priority : int
        Higher runs first; a cohort gives earlier slides higher priorities.

    Returns
    -------
    SlideRunResult
    """
    result = SlideRunResult()
    shared = executor.share(plan)
    t0 = time.perf_counter()
    shards = _shards(plan.block_ids, plan.config.blocks_per_task)
    for summaries in executor.map(
        "blocks",
        run_shard,
        [(shared, s) for s in shards],
        on_blocks,
        priority=priority + SHARD_PRIORITY,
    ):
        result.summaries.extend(summaries)
    t1 = time.perf_counter()
    result.nuclei = executor.call("ids", assign_ids, shared, priority=priority + FINISH_PRIORITY)
    t2 = time.perf_counter()
    finish_s = _finish(executor, plan, shared, priority)
    t3 = time.perf_counter()
    result.stage_s = {"blocks_s": t1 - t0, "ids_s": t2 - t1, "finish_s": t3 - t2, **finish_s}
    return result
