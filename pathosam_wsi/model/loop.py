"""One long-lived inference loop per process and model: the device never waits on the CPU.

Block tasks (any slide, any thread of the process) read their blocks and ``submit`` the uint8
tiles; a single loop thread owns the model, takes every tile that is waiting (up to the model's
batch size) and runs them as one batch, so batches form across tasks and across slides while the
device is busy, and a batch starts as soon as the device is free (no waiting for a full batch).
The queue is bounded, so readers block, and hold no more pixels, once the device is saturated.

Models that are pure CPU code and thread-safe (the ``classical`` model) say so with
``batched = False``: their tiles are predicted in the submitting thread, so every worker thread
computes in parallel, through the same interface.

Under dask every worker process gets its own loop on first use (the per-worker service: the model
and its weights are loaded once per process, see ``get_model``), so no dask code is needed here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.model.base import ModelOutput, NucleusModel
from pathosam_wsi.model.registry import get_model

__all__ = ["InferenceLoop", "LoopStats", "Prediction", "loop_for"]

log = logging.getLogger(__name__)

_DEFAULT_MAX_BATCH = 8
_QUEUE_BATCHES = 3
"""Queue capacity in batches: enough to form the next batch while one runs, little memory."""


@dataclass(frozen=True)
class Prediction:
    """A tile's model output and its share of the device time of the batch that carried it."""

    output: ModelOutput
    device_s: float
    batch_size: int


@dataclass
class LoopStats:
    """What the loop did since it started (all times from ``time.perf_counter``)."""

    batches: int = 0
    blocks: int = 0
    busy_s: float = 0.0
    first_start: float | None = None
    last_end: float | None = None
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def record(self, n: int, t0: float, t1: float) -> None:
        """Account one model call of ``n`` tiles from ``t0`` to ``t1``."""
        self.batches += 1
        self.blocks += n
        self.busy_s += t1 - t0
        self.first_start = t0 if self.first_start is None else min(self.first_start, t0)
        self.last_end = t1 if self.last_end is None else max(self.last_end, t1)
        self.batch_sizes[n] = self.batch_sizes.get(n, 0) + 1

    @property
    def busy_fraction(self) -> float:
        """Busy time over the span from the first call's start to the last call's end."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        span = self.last_end - self.first_start
        return self.busy_s / span if span > 0 else 1.0


@dataclass
class _Request:
    tile: npt.NDArray[np.uint8]
    future: Future[Prediction]


def _max_batch(model: NucleusModel) -> int:
    """The model's preferred batch size (from free device memory for PathoSAM runners)."""
    size = getattr(model, "max_batch_size", None)
    if callable(size):
        return max(1, int(size()))
    return _DEFAULT_MAX_BATCH


class InferenceLoop:
    """A model behind a bounded queue, served by one thread that forms batches greedily.

    Parameters
    ----------
    model : NucleusModel
        Its ``predict`` must give each tile a result independent of the rest of the batch.
    max_batch : int, optional
        Upper bound on tiles per call (default: the model's ``max_batch_size()``, else 8).
    """

    def __init__(self, model: NucleusModel, max_batch: int | None = None) -> None:
        self.model = model
        self.batched = bool(getattr(model, "batched", False))
        self._fixed_batch = max_batch
        self.stats = LoopStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[_Request | None] | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def max_batch(self) -> int:
        """Tiles per model call at most."""
        return self._fixed_batch or _max_batch(self.model)

    def submit(self, tile: npt.NDArray[np.uint8]) -> Future[Prediction]:
        """Queue one (H, W, 3) uint8 YXC tile; the future holds its :class:`Prediction`.

        Blocks while the queue is full (the device is saturated). With an unbatched model the
        tile is predicted right here, in the calling thread.
        """
        future: Future[Prediction] = Future()
        if not self.batched:
            self._serve([_Request(tile, future)])
            return future
        self._ensure_thread().put(_Request(tile, future))
        return future

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[Prediction]:
        """Submit every tile, then wait for all of them (results in input order)."""
        futures = [self.submit(t) for t in tiles]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the loop thread after the tiles already queued (idempotent)."""
        with self._start_lock:
            if self._queue is not None and self._thread is not None:
                self._queue.put(None)
                self._thread.join()
            self._queue, self._thread = None, None

    def _ensure_thread(self) -> queue.Queue[_Request | None]:
        with self._start_lock:
            if self._queue is None or self._thread is None:
                self._queue = queue.Queue(maxsize=_QUEUE_BATCHES * self.max_batch())
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="inference-loop", daemon=True
                )
                self._thread.start()
            return self._queue

    def _run(self, requests: queue.Queue[_Request | None]) -> None:
        while True:
            first = requests.get()
            if first is None:
                return
            batch, stop = [first], False
            limit = self.max_batch()
            while len(batch) < limit:
                try:
                    nxt = requests.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._serve(batch)
            if stop:
                return

    def _serve(self, batch: list[_Request]) -> None:
        """Run the batch's requests that were not cancelled."""
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if live:
            self._call(live)

    def _call(self, live: list[_Request]) -> None:
        """One model call; on failure each tile is retried alone, so one bad tile fails only its
        own future, never the other slides' tiles that shared its batch."""
        t0 = time.perf_counter()
        try:
            outputs = self.model.predict([r.tile for r in live])
        except Exception as err:
            if len(live) == 1:
                live[0].future.set_exception(err)
                return
            log.debug("batch of %d failed (%s); retrying tile by tile", len(live), err)
            for r in live:
                self._call([r])
            return
        t1 = time.perf_counter()
        with self._stats_lock:
            self.stats.record(len(live), t0, t1)
        share = (t1 - t0) / len(live)
        for r, out in zip(live, outputs, strict=True):
            r.future.set_result(Prediction(out, share, len(live)))


_LOOPS: dict[tuple[ModelConfig, float], InferenceLoop] = {}
_LOOPS_LOCK = threading.Lock()


def loop_for(config: ModelConfig, mpp: float) -> InferenceLoop:
    """The process-wide loop of this model configuration (model built once per process)."""
    key = (config, float(mpp))
    with _LOOPS_LOCK:
        loop = _LOOPS.get(key)
        if loop is None:
            loop = InferenceLoop(get_model(config, mpp))
            _LOOPS[key] = loop
        return loop
