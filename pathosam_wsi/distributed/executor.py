"""Where tasks run: threads of this process, or the workers of a dask.distributed client.

The stage sequence of a slide lives in ``pipeline/run.py``; this module only executes what it is
given. Both executors offer the same three calls, safe to use from several driver threads at once
(one per slide in flight):

- ``share(obj)``: a handle to pass instead of ``obj`` (on a cluster the object is scattered once
  and each worker fetches it once, instead of shipping it with every task);
- ``call(name, fn, *args, priority=)``: run one task and return its result;
- ``map(name, fn, arg_lists, on_result=, priority=)``: run many, results in input order, with a
  bounded number pending so the scheduler never holds a whole slide.

Priorities: higher runs first. The pipeline gives the tasks that finish a slide a higher priority
than block tasks, and earlier slides a higher priority than later ones, so slides complete in
order while later slides' blocks keep every worker busy across slide boundaries.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClientExecutor", "TaskExecutor", "ThreadExecutor", "make_executor"]

# Futures pending per worker thread (at least _MIN_IN_FLIGHT): enough to hide the
# client -> scheduler -> worker -> client round trip, few enough that the scheduler never holds a
# whole slide's tasks. Pending tasks hold no pixels (a task reads its blocks when it starts).
_IN_FLIGHT_PER_THREAD = 4
_MIN_IN_FLIGHT = 16
_RETRIES = 1
"""Extra attempts of a task that raised (a task whose worker died is rescheduled by dask)."""


class TaskExecutor(Protocol):
    """What the pipeline needs from an executor."""

    def threads(self) -> int:
        """Worker threads in all (sizes slides in flight)."""
        ...

    def share(self, obj: Any) -> Any:
        """A handle that tasks receive in place of ``obj``."""
        ...

    def call(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Run one task; its result."""
        ...

    def start(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Start one task; a future whose ``result()`` waits for it."""
        ...

    def map(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Run ``fn(*args)`` for each entry; results in input order."""
        ...


class ThreadExecutor:
    """A pool of threads in this process that takes the highest-priority task first.

    Parameters
    ----------
    threads : int, optional
        Worker threads (default: all CPUs).
    """

    def __init__(self, threads: int | None = None) -> None:
        self._n = max(1, threads or os.cpu_count() or 1)
        self._heap: list[tuple[int, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False

    def threads(self) -> int:
        """Worker threads."""
        return self._n

    def share(self, obj: Any) -> Any:
        """The object itself (threads share memory)."""
        return obj

    def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Future[Any]:
        """Queue ``fn(*args)``; its future."""
        future: Future[Any] = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("executor is closed")
            heapq.heappush(self._heap, (-priority, next(self._order), lambda: fn(*args), future))
            if len(self._workers) < self._n:
                worker = threading.Thread(target=self._work, name="pathosam-task", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._cv.notify()
        return future

    def call(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Run one task on the pool; its result."""
        return self.submit(fn, *args, priority=priority).result()

    def start(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Start one task on the pool; its future."""
        return self.submit(fn, *args, priority=priority)

    def map(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Queue every task at once (pending tasks hold no pixels); results in input order."""
        futures = [self.submit(fn, *args, priority=priority) for args in arg_lists]
        results = []
        try:
            for fut in futures:
                results.append(fut.result())
                if on_result is not None:
                    on_result(results[-1])
        except BaseException:
            # The slide failed: its queued tasks must not go on using the workers.
            for fut in futures:
                fut.cancel()
            raise
        return results

    def close(self) -> None:
        """Finish queued tasks, then stop the threads."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for worker in self._workers:
            worker.join()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, task, future = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(task())
            except Exception as err:
                future.set_exception(err)
            except BaseException as err:
                # KeyboardInterrupt / SystemExit: the run is being stopped, start nothing more.
                self._abort()
                future.set_exception(err)
                return

    def _abort(self) -> None:
        """Cancel every queued task and let the threads end."""
        with self._cv:
            self._closed = True
            queued, self._heap = self._heap, []
            self._cv.notify_all()
        for _, _, _, future in queued:
            future.cancel()


class ClientExecutor:
    """Tasks as futures of a ``distributed.Client`` (the client may serve many slides)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def threads(self) -> int:
        """Worker threads of the cluster now."""
        return max(1, sum(self.client.nthreads().values()))

    def share(self, obj: Any) -> Any:
        """Send ``obj`` to every worker once; tasks receive the object itself.

        Broadcast rather than placed on one worker, so losing a worker never loses the only copy
        (scattered data cannot be recomputed); workers that join later fetch it from a peer.
        """
        return self.client.scatter(obj, hash=False, broadcast=True)

    def call(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Run one task on a worker; its result."""
        fut = self.start(name, fn, *args, priority=priority)
        try:
            return fut.result()
        finally:
            fut.release()

    def start(self, name: str, fn: Callable[..., Any], *args: Any, priority: int = 0) -> Any:
        """Submit one task; its ``distributed.Future``."""
        key = f"{name}-{uuid.uuid4().hex[:12]}"
        return self.client.submit(
            fn, *args, key=key, priority=priority, retries=_RETRIES, pure=False
        )

    def map(
        self,
        name: str,
        fn: Callable[..., Any],
        arg_lists: Sequence[tuple[Any, ...]],
        on_result: Callable[[Any], None] | None = None,
        priority: int = 0,
    ) -> list[Any]:
        """Submit with a bounded number of futures pending; results in input order."""
        from distributed import as_completed

        if not arg_lists:
            return []
        token = uuid.uuid4().hex[:8]
        limit = max(_MIN_IN_FLIGHT, _IN_FLIGHT_PER_THREAD * self.threads())
        results: list[Any] = [None] * len(arg_lists)
        index: dict[Any, int] = {}

        def submit(i: int) -> Any:
            fut = self.client.submit(
                fn,
                *arg_lists[i],
                key=f"{name}-{token}-{i}",
                priority=priority,
                retries=_RETRIES,
                pure=False,
            )
            index[fut.key] = i
            return fut

        pending = iter(range(len(arg_lists)))
        queue = as_completed([submit(i) for _, i in zip(range(limit), pending, strict=False)])
        try:
            for fut in queue:
                i = index.pop(fut.key)
                results[i] = fut.result()
                fut.release()
                if on_result is not None:
                    on_result(results[i])
                nxt = next(pending, None)
                if nxt is not None:
                    queue.add(submit(nxt))
        except BaseException:
            # The slide failed: release its other tasks rather than keep the workers on them.
            for fut in queue.futures:
                fut.cancel()
            raise
        return results


def make_executor(client: Client | None, threads: int | None = None) -> TaskExecutor:
    """A client's executor, or a thread pool of ``threads`` when there is no client."""
    if client is not None:
        return ClientExecutor(client)
    return ThreadExecutor(threads)
