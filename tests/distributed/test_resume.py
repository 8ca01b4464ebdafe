"""Cohort reruns: finished slides skipped, unfinished ones resumed per block, changed parameters."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import (
    TILE_ARGS,
    assert_same_outputs,
    small_config,
    write_manifest,
    write_synthetic_slide,
)

from pathosam_wsi.cli import main
from pathosam_wsi.cohort import read_manifest, run_cohort
from pathosam_wsi.pipeline.segment import segment_slide

pytestmark = [
    # SlideHandle's per-thread slide cache (slide/open.py) leaves the file to the garbage
    # collector when a scheduler thread ends; reported to the lead, ignored until it closes it.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


class _Crash(Exception):
    """Stands for a run killed after some blocks."""


def _crash_after_first_batch(event: str, payload: Any) -> None:
    if event == "blocks":
        raise _Crash


def test_rerun_skips_finished_and_resumes_blocks(
    synthetic_slides: list[Path], reference_outputs: Path, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.csv", synthetic_slides)
    out = tmp_path / "out"
    args = ["run", str(manifest), "-o", str(out), "--cluster", "none", *TILE_ARGS]
    assert CliRunner().invoke(main, args).exit_code == 0
    run_json = (out / "syn2" / "run.json").read_bytes()
    shutil.rmtree(out / "syn0")
    shutil.rmtree(out / "syn1")
    config = dataclasses.replace(small_config(blocks_per_task=1), threads=1)
    with pytest.raises(_Crash):
        segment_slide(synthetic_slides[1], out, config, on_progress=_crash_after_first_batch)
    kept = len(list((out / "syn1.partial" / "blocks").glob("*.npz")))
    assert 1 <= kept < 9
    events: list[tuple[str, Any]] = []
    rows = run_cohort(
        read_manifest(manifest, config), out, on_event=lambda ev, p: events.append((ev, p))
    )
    assert [r.state for r in rows] == ["done"] * 3
    assert (out / "syn2" / "run.json").read_bytes() == run_json, "finished slide was redone"
    reused = [
        s
        for ev, (sid, p) in ((e, p) for e, p in events if e == "blocks")
        if sid == "syn1"
        for s in p
        if s.batch_size == 0
    ]
    assert len(reused) == kept
    for p in synthetic_slides:
        assert_same_outputs(reference_outputs / p.stem, out / p.stem)
    assert len(pd.read_parquet(out / "nuclei")) == sum(r.nuclei or 0 for r in rows)


def test_changed_parameters_refused_unless_overwrite(
    synthetic_slides: list[Path], tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.csv", synthetic_slides[:1])
    out = tmp_path / "out"
    base = ["run", str(manifest), "-o", str(out), "--cluster", "none", *TILE_ARGS]
    assert CliRunner().invoke(main, base).exit_code == 0
    changed = [*base, "--min-size", "40"]
    res = CliRunner().invoke(main, changed)
    assert res.exit_code == 2
    assert "other parameters" in res.output and "--overwrite" in res.output
    res = CliRunner().invoke(main, [*changed, "--overwrite"])
    assert res.exit_code == 0, res.output
    status = CliRunner().invoke(main, ["status", str(out)])
    assert status.exit_code == 0 and "syn0" in status.output and "done" in status.output


@pytest.mark.distributed
def test_sigkill_whole_run_then_resume(tmp_path: Path) -> None:
    slide = write_synthetic_slide(tmp_path / "big.tif", seed=11, hw_px=(512, 640))
    segment_slide(slide, tmp_path / "ref", small_config())
    manifest = write_manifest(tmp_path / "m.csv", [slide])
    out = tmp_path / "out"
    args = [
        "run",
        str(manifest),
        "-o",
        str(out),
        "--cluster",
        "none",
        "--threads",
        "1",
        *TILE_ARGS[:-3],
        "--blocks-per-task",
        "1",
        "-q",
    ]
    cli = Path(sys.executable).with_name("pathosam-wsi")
    proc = subprocess.Popen(
        [str(cli), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    blocks = out / "big.partial" / "blocks"
    try:
        deadline = time.monotonic() + 60
        while len(list(blocks.glob("*.npz"))) < 2 and proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail("the run produced no block files within 60 s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "big").exists()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert_same_outputs(tmp_path / "ref" / "big", out / "big")
