"""Per-block progress: block tasks report each finished block to the listeners of their process.

A shard of ``blocks_per_task`` blocks can take minutes (a SAM model on a CPU), so waiting for the
shard's result would leave a progress display still for that long. ``run_shard`` calls
:func:`block_done` after each block it writes; a console registers a listener with
:func:`listening`. Listeners see the blocks of tasks that run in this process (threads, or an
in-process dask worker); tasks on other processes still report per shard through the executor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["BlockDone", "BlockListener", "block_done", "listening"]


@dataclass(frozen=True)
class BlockDone:
    """One block computed and written (not reported for blocks reused on resume)."""

    slide_id: str
    block_id: int
    nuclei: int
    model_s: float
    """Seconds of the model batch this block was in (the batch's device time)."""


BlockListener = Callable[[BlockDone], None]

_LISTENERS: list[BlockListener] = []
_LOCK = threading.Lock()


def block_done(event: BlockDone) -> None:
    """Tell every listener of this process that a block finished (called from task threads)."""
    with _LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(event)


@contextmanager
def listening(listener: BlockListener) -> Iterator[None]:
    """Register ``listener`` for the duration of the ``with`` block."""
    with _LOCK:
        _LISTENERS.append(listener)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(listener)
