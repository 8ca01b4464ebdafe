"""Losing the dask scheduler mid-run: a clear error, then a rerun resumes to identical outputs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    TILE_ARGS,
    assert_same_outputs,
    small_config,
    start_scheduler,
    start_worker,
    write_manifest,
    write_synthetic_slide,
)

from pathosam_wsi.cli import main
from pathosam_wsi.pipeline.segment import segment_slide

pytestmark = [
    pytest.mark.distributed,
    # worker threads' cached slide handles are closed by the garbage collector
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_scheduler_killed_mid_run_then_resume(tmp_path: Path) -> None:
    slide = write_synthetic_slide(tmp_path / "big.tif", seed=12, hw_px=(640, 768))
    segment_slide(slide, tmp_path / "ref", small_config())
    manifest = write_manifest(tmp_path / "m.csv", [slide])
    scheduler, sched_file = start_scheduler(tmp_path)
    worker = None
    run = None
    out = tmp_path / "out"
    try:
        worker = start_worker(sched_file, tmp_path)
        cli = Path(sys.executable).with_name("pathosam-wsi")
        args = [*TILE_ARGS[:-3], "--blocks-per-task", "1", "-q"]
        run = subprocess.Popen(
            [str(cli), "run", str(manifest), "-o", str(out), "--scheduler", str(sched_file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        blocks = out / "big.partial" / "blocks"
        deadline = time.monotonic() + 120
        while len(list(blocks.glob("*.npz"))) < 2 and run.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail("the run produced no block files within 120 s")
            time.sleep(0.05)
        scheduler.send_signal(signal.SIGKILL)
        _, stderr = run.communicate(timeout=180)
    finally:
        for proc in (run, worker, scheduler):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert run.returncode not in (0, None), "the run finished before the scheduler was killed"
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert errors, stderr
    assert "scheduler" in errors[-1]
    assert not (out / "big").exists()
    res = CliRunner().invoke(
        main, ["run", str(manifest), "-o", str(out), "--cluster", "none", *args]
    )
    assert res.exit_code == 0, res.output
    assert_same_outputs(tmp_path / "ref" / "big", out / "big")
