"""Synthetic slides and output comparison for the distributed tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.helpers import read_outputs
from tests.synthetic import draw_nuclei, write_pyramid

if TYPE_CHECKING:
    from distributed import Client

    from pathosam_wsi.config import RunConfig

TILE_ARGS = ["--tile", "128", "--halo", "32", "--no-tissue-mask", "--blocks-per-task", "2", "-q"]


def write_synthetic_slide(path: Path, seed: int, hw_px: tuple[int, int] = (320, 384)) -> Path:
    """Pink background with dark round nuclei, a tiled TIFF with mpp 0.5 (a few hundred px)."""
    rng = np.random.default_rng(seed)
    h, w = hw_px
    n = h * w // 900
    centres = list(zip(rng.uniform(6, h - 6, n), rng.uniform(6, w - 6, n), strict=True))
    rgb, _ = draw_nuclei(h, w, centres, radius_px=5.5, seed=seed)
    return write_pyramid(path, rgb, 0.5, levels=1, tile=128)


def assert_same_outputs(a: Path, b: Path) -> None:
    """Identical label values and identical tables."""
    la, ta = read_outputs(a)
    lb, tb = read_outputs(b)
    np.testing.assert_array_equal(la, lb)
    pd.testing.assert_frame_equal(ta, tb)


@pytest.fixture(scope="session")
def synthetic_slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three small synthetic slides (different seeds)."""
    d = tmp_path_factory.mktemp("slides")
    return [write_synthetic_slide(d / f"syn{i}.tif", seed=i) for i in range(3)]


def small_config(blocks_per_task: int = 2) -> RunConfig:
    """128-px blocks with a 32-px halo, every block processed."""
    from pathosam_wsi.config import RunConfig, TilingConfig, TissueConfig

    return RunConfig(
        tiling=TilingConfig(tile_px=128, halo_px=32),
        tissue=TissueConfig(enabled=False),
        blocks_per_task=blocks_per_task,
        threads=2,
    )


@pytest.fixture(scope="session")
def reference_outputs(
    synthetic_slides: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Single-process (threaded scheduler) outputs of the synthetic slides: OUT/<stem>/."""
    from pathosam_wsi.pipeline.segment import segment_slide

    out = tmp_path_factory.mktemp("reference")
    for path in synthetic_slides:
        segment_slide(path, out, small_config())
    return out


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A LocalCluster of two single-threaded worker processes (shared by a test module)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # no fixed port: parallel runs must not collide
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def write_manifest(path: Path, slides: list[Path], bad: Path | None = None) -> Path:
    """CSV manifest of the slides (ids from file names) plus an optional corrupt one."""
    rows = ["path,slide_id"] + [f"{p},{p.stem}" for p in slides]
    if bad is not None:
        rows.append(f"{bad},bad")
    path.write_text("\n".join(rows) + "\n")
    return path


def corrupt_copy(src: Path, dst: Path) -> Path:
    """A truncated copy of a TIFF named like a slide."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def start_scheduler(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A ``dask scheduler`` on 127.0.0.1 (random port); returns it and its scheduler file."""
    dask = str(Path(sys.executable).with_name("dask"))
    sched = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not sched.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("dask scheduler did not start")
        time.sleep(0.1)
    return proc, sched


def start_worker(sched: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """A single-threaded ``dask worker`` (no nanny) on 127.0.0.1 for the scheduler file."""
    dask = str(Path(sys.executable).with_name("dask"))
    return subprocess.Popen(
        [
            dask,
            "worker",
            "--scheduler-file",
            str(sched),
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--no-nanny",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )
