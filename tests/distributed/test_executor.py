"""The thread executor: priorities, results in order, a failed map cancels its queued tasks."""

from __future__ import annotations

import threading
import time

import pytest

from pathosam_wsi.distributed.executor import ThreadExecutor


def test_higher_priority_runs_first_and_results_keep_input_order() -> None:
    ex = ThreadExecutor(1)
    gate = threading.Event()
    order: list[str] = []
    blocker = ex.submit(gate.wait)  # occupies the only thread while the rest is queued
    low = ex.submit(order.append, "low", priority=0)
    high = ex.submit(order.append, "high", priority=5)
    gate.set()
    for f in (blocker, low, high):
        f.result()
    assert order == ["high", "low"]
    assert ex.map("sq", pow, [(i, 2) for i in range(6)]) == [0, 1, 4, 9, 16, 25]
    ex.close()


def _fail_on(i: int) -> int:
    if i == 0:
        raise ValueError("boom")
    time.sleep(0.05)
    return i


def test_a_failed_map_cancels_its_queued_tasks() -> None:
    ex = ThreadExecutor(1)
    started: list[int] = []

    def task(i: int) -> int:
        started.append(i)
        return _fail_on(i)

    with pytest.raises(ValueError, match="boom"):
        ex.map("t", task, [(i,) for i in range(20)])
    time.sleep(0.2)
    assert len(started) <= 2, f"queued tasks kept running after the failure: {started}"
    ex.close()


def test_keyboard_interrupt_in_a_task_stops_the_pool() -> None:
    ex = ThreadExecutor(1)

    def interrupt() -> None:
        raise KeyboardInterrupt

    first = ex.submit(interrupt)
    with pytest.raises(KeyboardInterrupt):
        first.result()
    later = ex.submit  # the pool is closed now
    with pytest.raises(RuntimeError, match="closed"):
        later(print)
