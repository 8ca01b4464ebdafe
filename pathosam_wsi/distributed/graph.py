"""One dask graph per slide: batches of blocks -> global ids -> painted chunks -> table.

Tasks are batches of blocks (``RunConfig.blocks_per_task``), so a slide has hundreds to low
thousands of tasks; each task returns only a small summary, block results go to files, so memory
stays flat whatever the slide size. Locally the graph runs on dask's threaded scheduler.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
from dask.callbacks import Callback

from pathosam_wsi.pipeline.assemble import blocks_to_paint, global_luts, paint_blocks, write_table
from pathosam_wsi.pipeline.blocks import process_blocks
from pathosam_wsi.pipeline.plan import SlidePlan

__all__ = ["SlideRunResult", "run_slide_graph"]


@dataclass
class SlideRunResult:
    """What a slide's graph produced."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    nuclei: int = 0
    stage_s: dict[str, float] = field(default_factory=dict)


class _OnTask(Callback):  # type: ignore[misc]
    """Calls ``fn(result)`` after each task whose key starts with ``prefix``."""

    def __init__(self, prefix: str, fn: Callable[[Any], None]) -> None:
        super().__init__()
        self.prefix, self.fn = prefix, fn

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self.prefix):
            self.fn(result)


def _batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def _run_tasks(
    name: str,
    fn: Callable[..., Any],
    arg_lists: Sequence[tuple[Any, ...]],
    threads: int,
    on_result: Callable[[Any], None] | None,
) -> list[Any]:
    tasks = [
        dask.delayed(fn, pure=False)(*args, dask_key_name=f"{name}-{i}")
        for i, args in enumerate(arg_lists)
    ]
    if not tasks:
        return []
    callback = _OnTask(f"{name}-", on_result or (lambda _: None))
    with callback:
        return list(dask.compute(*tasks, scheduler="threads", num_workers=threads))


def run_slide_graph(
    plan: SlidePlan, on_blocks: Callable[[list[dict[str, Any]]], None] | None = None
) -> SlideRunResult:
    """Run every stage of one slide locally.

    Parameters
    ----------
    plan : SlidePlan
        The planned run; its staging folder and label store must exist.
    on_blocks : callable, optional
        Called with the summaries of each finished batch of blocks (progress reporting).
    """
    threads = plan.config.threads or os.cpu_count() or 1
    result = SlideRunResult()
    t0 = time.perf_counter()
    batches = _batches(plan.block_ids, plan.config.blocks_per_task)
    for summaries in _run_tasks(
        "blocks", process_blocks, [(plan, b) for b in batches], threads, on_blocks
    ):
        result.summaries.extend(summaries)
    t1 = time.perf_counter()
    luts = global_luts(plan)
    paint_ids = blocks_to_paint(plan)
    paint_batches = _batches(paint_ids, max(plan.config.blocks_per_task, 16))
    args = []
    for batch in paint_batches:
        needed = {n.block_id for b in batch for n in plan.grid.neighbours(plan.grid.block(b))}
        needed.update(batch)
        args.append((plan, batch, {b: luts[b] for b in needed if b in luts}))
    _run_tasks("paint", paint_blocks, args, threads, None)
    t2 = time.perf_counter()
    classes = plan.config.model.classes
    class_names = _class_names(plan) if classes else None
    result.nuclei = write_table(plan, luts, Path(plan.work_dir) / "nuclei.parquet", class_names)
    t3 = time.perf_counter()
    result.stage_s = {"blocks_s": t1 - t0, "paint_s": t2 - t1, "table_s": t3 - t2}
    return result


def _class_names(plan: SlidePlan) -> Sequence[str] | None:
    from pathosam_wsi.model.base import get_model

    return get_model(plan.config.model, plan.frame.mpp).class_names
