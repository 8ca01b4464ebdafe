"""Outputs do not depend on how the inference loop batches blocks: batch sizes, thread counts and
batches that mix blocks of different slides all give byte-identical labels and tables.

A batched stand-in model (the classical model's maps behind ``batched = True``, slowed a little
so that the loop's queue fills and batches form across shards and slides) goes through the same
loop as PathoSAM on a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.cohort import ManifestEntry, run_cohort
from pathosam_wsi.config import ModelConfig, TilingConfig, TissueConfig
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.classical import ClassicalModel
from pathosam_wsi.model.registry import register_model
from tests.helpers import read_outputs
from tests.synthetic import draw_nuclei, write_pyramid

_BATCHES: list[list[str]] = []
_LOCK = threading.Lock()


class _BatchedClassical:
    """Classical maps, served as a device model; records the tiles (by digest) of each batch."""

    batched = True
    name = "batched_classical_test"
    class_names = None

    def __init__(self, mpp: float, max_batch: int) -> None:
        self.inner = ClassicalModel(mpp)
        self.max_batch = max_batch

    def max_batch_size(self) -> int:
        return self.max_batch

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        with _LOCK:
            _BATCHES.append([_digest(t) for t in tiles])
        time.sleep(0.03)  # a "device" slower than the readers: the queue fills, batches form
        return self.inner.predict(tiles)


def _digest(tile: npt.NDArray[np.uint8]) -> str:
    return hashlib.sha1(np.ascontiguousarray(tile).tobytes()).hexdigest()


@register_model("batched_classical_test")
def _build(config: ModelConfig, mpp: float) -> _BatchedClassical:
    return _BatchedClassical(mpp, config.batch_size or 6)


def _slide(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    h, w = 448, 512
    n = h * w // 700
    centres = list(zip(rng.uniform(6, h - 6, n), rng.uniform(6, w - 6, n), strict=True))
    rgb, _ = draw_nuclei(h, w, centres, radius_px=5.5, seed=seed)
    return write_pyramid(path, rgb, 0.5, levels=1, tile=128)


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("batching")
    return [_slide(d / f"s{i}.tif", seed=10 + i) for i in range(2)]


def _config(batch_size: int | None, threads: int, blocks_per_task: int) -> RunConfig:
    return RunConfig(
        tiling=TilingConfig(tile_px=128, halo_px=32),
        tissue=TissueConfig(enabled=False),
        model=ModelConfig(name="batched_classical_test", batch_size=batch_size),
        blocks_per_task=blocks_per_task,
        threads=threads,
    )


def _assert_same(a: Path, b: Path) -> None:
    la, ta = read_outputs(a)
    lb, tb = read_outputs(b)
    np.testing.assert_array_equal(la, lb)
    pd.testing.assert_frame_equal(ta, tb)
    assert (a / "nuclei.parquet").read_bytes() == (b / "nuclei.parquet").read_bytes()


def test_same_bytes_whatever_the_batches(two_slides: list[Path], tmp_path: Path) -> None:
    # Reference: one slide at a time, one block per model call, one thread.
    for p in two_slides:
        segment_slide(p, tmp_path / "ref", _config(1, 1, 1))
    # The two slides together, 3 threads, batches of up to 6 blocks from any slide.
    _BATCHES.clear()
    entries = [ManifestEntry(str(p), p.stem, _config(6, 3, 2)) for p in two_slides]
    rows = run_cohort(entries, tmp_path / "mixed", slides_in_flight=2)
    assert [r.state for r in rows] == ["done", "done"]
    for p in two_slides:
        _assert_same(tmp_path / "ref" / p.stem, tmp_path / "mixed" / p.stem)
    assert max(len(b) for b in _BATCHES) > 1, "no multi-block batch was formed"
    # At least one batch carried blocks of both slides (the blocks' digests tell them apart).
    per_slide = [_slide_digests(p) for p in two_slides]
    mixed = [b for b in _BATCHES if any(d in per_slide[0] for d in b)]
    assert any(any(d in per_slide[1] for d in b) for b in mixed), "no batch mixed two slides"


def _slide_digests(path: Path) -> set[str]:
    from pathosam_wsi.pipeline.segment import plan_slide

    handle, _, frame, grid = plan_slide(path, ".", _config(1, 1, 1))
    slide = handle.open()
    return {_digest(frame.read(slide, b.outer_px)) for b in grid}


def test_open_files_and_memory_flat_over_a_50_slide_cohort(tmp_path: Path) -> None:
    src = _slide(tmp_path / "one.tif", seed=3)
    paths = []
    for i in range(50):
        p = tmp_path / f"slide{i:02d}.tif"
        os.link(src, p)
        paths.append(p)
    config = dataclasses.replace(_config(4, 2, 4), model=ModelConfig())
    fds: list[int] = []
    rss: list[int] = []

    def on_event(event: str, payload: object) -> None:
        if event == "slide_finished":
            fds.append(len(os.listdir("/proc/self/fd")))
            rss.append(_rss_bytes())

    entries = [ManifestEntry(str(p), p.stem, config) for p in paths]
    rows = run_cohort(entries, tmp_path / "out", slides_in_flight=2, on_event=on_event)
    assert all(r.state == "done" for r in rows)
    assert len(fds) == 50
    # Steady state: the last slides hold no more files than the first (a file left open per
    # slide would add 40); a momentary extra file or two of the slide in flight is allowed.
    assert sorted(fds[-10:])[5] <= max(fds[:10]), f"open files grow: {fds}"
    assert max(fds) <= max(fds[:10]) + 4, f"open files grow: {fds}"
    # A leak raises the floor; the default (learned) model's torch temporaries add transient
    # peaks of tens of MiB at whichever slide the sample lands on, so floor and peak are bounded
    # separately (a 1 MiB-per-slide leak moves the floor by 40 MiB).
    trace = f"RSS grows: {[r >> 20 for r in rss]} MiB"
    assert min(rss[-10:]) - min(rss[:10]) < 32 << 20, trace
    assert max(rss[10:]) - max(rss[:10]) < 128 << 20, trace


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.distributed
def test_same_bytes_on_a_cluster_with_batched_model(two_slides: list[Path], tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    config = _config(4, 3, 2)
    local = segment_slide(two_slides[0], tmp_path / "local", config)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = segment_slide(two_slides[0], tmp_path / "cluster", config, client=client)
    _assert_same(local.output_dir, remote.output_dir)
