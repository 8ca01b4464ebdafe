"""Per-block progress from the workers of a dask cluster to the driver's console.

Block tasks report each finished block to the listeners of their own process
(``pipeline/progress.py``); on worker processes nobody listens, so without this the driver would
hear of blocks only when a whole shard returns. A worker plugin forwards every block as a dask
event (``Worker.log_event``, safe from task threads) and the client hands each to ``on_block``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from distributed import WorkerPlugin

from pathosam_wsi.pipeline.progress import BlockDone, listening

if TYPE_CHECKING:
    from distributed import Client, Worker

__all__ = ["TOPIC", "BlockForwarder", "forward_block_progress"]

TOPIC = "pathosam-wsi-block"
"""The dask event topic of finished blocks."""


class BlockForwarder(WorkerPlugin):
    """On each worker: forward every finished block to the scheduler's event log."""

    name = "pathosam-wsi-block-progress"

    def __init__(self) -> None:
        self._worker: Any = None
        self._listening: Any = None

    def setup(self, worker: Worker) -> None:
        """Start listening to the worker process's block tasks."""
        self._worker = worker
        self._listening = listening(self._forward)
        self._listening.__enter__()

    def teardown(self, worker: Worker) -> None:
        """Stop listening."""
        if self._listening is not None:
            self._listening.__exit__(None, None, None)
            self._listening = None

    def _forward(self, event: BlockDone) -> None:
        self._worker.log_event(TOPIC, dataclasses.asdict(event))


@contextmanager
def forward_block_progress(
    client: Client | None, on_block: Callable[[BlockDone], None]
) -> Iterator[None]:
    """While open, every block finished on a worker of ``client`` reaches ``on_block``.

    ``on_block`` runs on the client's event-loop thread. Blocks of an in-process worker may
    arrive twice (directly and forwarded): count them by (slide id, block id).
    """
    if client is None:
        yield
        return
    fields = [f.name for f in dataclasses.fields(BlockDone)]

    def handle(event: tuple[float, dict[str, Any]]) -> None:
        # the scheduler adds the sending worker's address to the message
        on_block(BlockDone(**{k: event[1][k] for k in fields}))

    client.subscribe_topic(TOPIC, handle)
    client.register_plugin(BlockForwarder())
    try:
        yield
    finally:
        # The cluster may be gone already (lost scheduler, killed workers): nothing to undo then.
        with suppress(OSError, ValueError, TimeoutError):
            client.unregister_worker_plugin(BlockForwarder.name)
        with suppress(OSError, ValueError, TimeoutError):
            client.unsubscribe_topic(TOPIC)
