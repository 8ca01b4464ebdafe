"""``--scheduler``: a separately started ``dask scheduler`` and two ``dask worker`` processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import (
    TILE_ARGS,
    assert_same_outputs,
    corrupt_copy,
    start_scheduler,
    start_worker,
    write_manifest,
)

from pathosam_wsi.cli import main

pytestmark = [
    pytest.mark.distributed,
    # SlideHandle's per-thread slide cache (slide/open.py) leaves the file to the garbage
    # collector when a scheduler thread ends; reported to the lead, ignored until it closes it.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=15)


@pytest.fixture
def scheduler_file(tmp_path: Path) -> Iterator[Path]:
    """A scheduler and two single-threaded workers on 127.0.0.1, stopped afterwards."""
    from distributed import Client

    scheduler, sched = start_scheduler(tmp_path)
    procs = [scheduler]
    try:
        procs += [start_worker(sched, tmp_path) for _ in range(2)]
        with Client(scheduler_file=str(sched), timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield sched
    finally:
        _stop(procs)


def test_cohort_through_external_scheduler(
    scheduler_file: Path, synthetic_slides: list[Path], reference_outputs: Path, tmp_path: Path
) -> None:
    bad = corrupt_copy(synthetic_slides[1], tmp_path / "bad.svs")
    manifest = write_manifest(tmp_path / "m.csv", synthetic_slides, bad)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        main,
        [
            "run",
            str(manifest),
            "-o",
            str(out),
            "--scheduler",
            str(scheduler_file),
            "--slides-in-flight",
            "3",
            "--skip-bad",  # the corrupt slide is found up front; run the others
            *TILE_ARGS,
        ],
    )
    assert res.exit_code == 3, res.output
    status = pd.read_parquet(out / "status.parquet").set_index("slide_id")
    assert status["state"].to_dict() == {
        "syn0": "done",
        "syn1": "done",
        "syn2": "done",
        "bad": "failed",
    }
    for p in synthetic_slides:
        assert_same_outputs(reference_outputs / p.stem, out / p.stem)
