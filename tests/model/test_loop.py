"""The per-process inference loop: batches across threads, per-tile results, failure isolation."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.loop import InferenceLoop


class _Recorder:
    """A batched stand-in model: maps = tile mean per channel; records each batch's size."""

    batched = True
    name = "recorder"
    class_names = None

    def __init__(self, delay_s: float = 0.0, bad_value: int | None = None) -> None:
        self.delay_s, self.bad_value = delay_s, bad_value
        self.batches: list[int] = []
        self.threads: set[int] = set()

    def max_batch_size(self) -> int:
        return 4

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        self.batches.append(len(tiles))
        self.threads.add(threading.get_ident())
        time.sleep(self.delay_s)
        if self.bad_value is not None and any(int(t[0, 0, 0]) == self.bad_value for t in tiles):
            raise ValueError("bad tile")
        return [
            ModelOutput(ais=np.broadcast_to(t.mean(axis=(0, 1))[:, None, None], (3, 2, 2)))
            for t in tiles
        ]


def _tile(value: int) -> npt.NDArray[np.uint8]:
    return np.full((4, 4, 3), value, np.uint8)


def test_batches_form_across_threads_and_results_are_per_tile() -> None:
    model = _Recorder(delay_s=0.02)
    loop = InferenceLoop(model)
    results: dict[int, float] = {}

    def task(v: int) -> None:
        results[v] = float(loop.submit(_tile(v)).result().output.ais[0, 0, 0])

    threads = [threading.Thread(target=task, args=(v,)) for v in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loop.close()
    assert results == {v: float(v) for v in range(16)}
    assert sum(model.batches) == 16
    assert max(model.batches) > 1, "no batch was formed across threads"
    assert max(model.batches) <= 4
    assert len(model.threads) == 1, "the model must be called from the loop thread only"
    assert loop.stats.blocks == 16 and loop.stats.batches == len(model.batches)
    assert 0 < loop.stats.busy_fraction <= 1.0


def test_a_bad_tile_fails_only_its_own_future() -> None:
    loop = InferenceLoop(_Recorder(delay_s=0.01, bad_value=7))
    futures = [loop.submit(_tile(v)) for v in (1, 7, 3, 4)]
    with pytest.raises(ValueError, match="bad tile"):
        futures[1].result()
    assert [float(f.result().output.ais[0, 0, 0]) for i, f in enumerate(futures) if i != 1] == [
        1.0,
        3.0,
        4.0,
    ]
    loop.close()


def test_unbatched_model_runs_in_the_calling_thread() -> None:
    model = _Recorder()
    model.batched = False  # type: ignore[misc]
    loop = InferenceLoop(model)
    got = loop.predict([_tile(2), _tile(5)])
    assert [float(p.output.ais[1, 0, 0]) for p in got] == [2.0, 5.0]
    assert model.threads == {threading.get_ident()}
    assert [p.batch_size for p in got] == [1, 1]
