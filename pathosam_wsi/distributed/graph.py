"""One dask graph per slide: batches of blocks -> global ids -> painted chunks -> table.

Tasks are batches of blocks (``RunConfig.blocks_per_task``), so a slide has hundreds to low
thousands of tasks; each task returns only a small summary, block results go to files, so memory
stays flat whatever the slide size. Without a client the graph runs on dask's threaded scheduler
in this process; with a ``distributed.Client`` the same stage functions run as futures on its
workers (any number of slides may share one client from several driver threads).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
from dask.callbacks import Callback

from pathosam_wsi.model.base import model_class_names
from pathosam_wsi.pipeline.assemble import blocks_to_paint, global_luts, paint_blocks, write_table
from pathosam_wsi.pipeline.blocks import infer_blocks, postprocess_blocks, process_blocks
from pathosam_wsi.pipeline.plan import SlidePlan

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["SlideRunResult", "run_slide_graph"]

# Futures pending per worker thread (at least _MIN_IN_FLIGHT): enough to hide the
# client -> scheduler -> worker -> client round trip (a few ms per task), few enough that the
# scheduler never holds a whole slide's tasks. Pending tasks hold no pixels (a task reads its
# blocks when it starts), so worker memory stays flat whatever the window.
_IN_FLIGHT_PER_THREAD = 4
_MIN_IN_FLIGHT = 16


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


@dataclass(frozen=True)
class _Runner:
    """Where a stage's tasks run: local threads or a distributed client."""

    threads: int
    client: Client | None = None
    slide_id: str = ""

    def run(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None = None,
        resources: dict[str, float] | None = None,
        then: Callable[[Any, Any], Any] | None = None,
    ) -> list[Any]:
        """Run ``fn(*args)`` for every entry of ``arg_lists``; results in input order.

        With ``then``, each result ``r`` is followed by ``then(args[0], r)``: on a client the first
        task carries ``resources`` (the GPU) and the second does not, so it runs on a CPU thread of
        the worker that holds ``r`` while the GPU goes on with the next batch.
        """
        if not arg_lists:
            return []
        if self.client is None:
            if then is not None:
                fn = _compose(fn, then)
            return self._run_threads(name, fn, arg_lists, on_result)
        return self._run_client(name, fn, arg_lists, on_result, resources, then)

    def _run_threads(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None,
    ) -> list[Any]:
        # dask callbacks are global: a unique prefix keeps concurrent slides' progress apart.
        prefix = f"{name}-{self.slide_id}-{uuid.uuid4().hex[:8]}-"
        tasks = [
            dask.delayed(fn, pure=False)(*args, dask_key_name=f"{prefix}{i}")
            for i, args in enumerate(arg_lists)
        ]
        with _OnTask(prefix, on_result or (lambda _: None)):
            return list(dask.compute(*tasks, scheduler="threads", num_workers=self.threads))

    def _run_client(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None,
        resources: dict[str, float] | None,
        then: Callable[[Any, Any], Any] | None = None,
    ) -> list[Any]:
        """Submit with a bounded number of futures pending (``_IN_FLIGHT_PER_THREAD``)."""
        from distributed import as_completed

        client = self.client
        if client is None:  # pragma: no cover - guarded by run()
            raise RuntimeError("no client")
        token = uuid.uuid4().hex[:8]
        limit = max(_MIN_IN_FLIGHT, _IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))
        results: list[Any] = [None] * len(arg_lists)
        index: dict[Any, int] = {}

        def submit(i: int) -> Any:
            key = f"{name}-{self.slide_id}-{token}-{i}"
            fut = client.submit(fn, *arg_lists[i], key=key, resources=resources)
            if then is not None:
                # No resources: may run while the worker's GPU slot serves the next batch.
                fut = client.submit(then, arg_lists[i][0], fut, key=f"{key}-post")
            index[fut.key] = i
            return fut

        pending = iter(range(len(arg_lists)))
        queue = as_completed([submit(i) for _, i in zip(range(limit), pending, strict=False)])
        for fut in queue:
            i = index.pop(fut.key)
            results[i] = fut.result()
            fut.release()
            if on_result is not None:
                on_result(results[i])
            nxt = next(pending, None)
            if nxt is not None:
                queue.add(submit(nxt))
        return results


def _compose(first: Callable[..., Any], then: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    def both(*args: Any) -> Any:
        return then(args[0], first(*args))

    return both


def gpu_resources(client: Client | None) -> dict[str, float] | None:
    """``{"GPU": 1}`` when some worker of the client advertises a GPU resource, else None."""
    from pathosam_wsi.distributed.cluster import has_gpu_workers

    return {"GPU": 1} if client is not None and has_gpu_workers(client) else None


def run_slide_graph(
    plan: SlidePlan,
    on_blocks: Callable[[list[dict[str, Any]]], None] | None = None,
    client: Client | None = None,
) -> SlideRunResult:
    """Run every stage of one slide, locally or on a dask.distributed cluster.

    Parameters
    ----------
    plan : SlidePlan
        The planned run; its staging folder and label store must exist and, with a client, be
        on a file system that every worker sees at the same path.
    on_blocks : callable, optional
        Called with the summaries of each finished batch of blocks (progress reporting).
    client : distributed.Client, optional
        Run the block and paint tasks on this client's workers (model inference carries the
        ``GPU`` resource when the cluster has GPU workers). None: dask's threaded scheduler.

    Returns
    -------
    SlideRunResult
    """
    threads = plan.config.threads or os.cpu_count() or 1
    runner = _Runner(threads, client, plan.slide_id)
    result = SlideRunResult()
    t0 = time.perf_counter()
    batches = _batches(plan.block_ids, plan.config.blocks_per_task)
    resources = gpu_resources(client)
    if resources is None:
        block_results = runner.run(
            "blocks", process_blocks, [(plan, b) for b in batches], on_blocks
        )
    else:
        block_results = runner.run(
            "blocks",
            infer_blocks,
            [(plan, b) for b in batches],
            on_blocks,
            resources,
            then=postprocess_blocks,
        )
    for summaries in block_results:
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
    runner.run("paint", paint_blocks, args)
    t2 = time.perf_counter()
    class_names = model_class_names(plan.config.model)
    result.nuclei = write_table(plan, luts, Path(plan.work_dir) / "nuclei.parquet", class_names)
    t3 = time.perf_counter()
    result.stage_s = {"blocks_s": t1 - t0, "paint_s": t2 - t1, "table_s": t3 - t2}
    return result
