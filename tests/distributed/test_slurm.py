"""``pathosam-wsi run --cluster slurm`` against a real single-node SLURM cluster.

The cluster comes from ``slurm_node`` (started by ``.ci/slurm-setup.sh`` where possible, else the
tests skip with the reason). Worker jobs are 1-thread, 1 GiB jobs; the driver runs as a
subprocess, as a user would start it, so that a job can be ``scancel``-ed while it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    TILE_ARGS,
    assert_same_outputs,
    corrupt_copy,
    small_config,
    write_manifest,
    write_synthetic_slide,
)
from slurm_node import slurm_node  # noqa: F401  (fixture)

from pathosam_wsi.errors import ConfigError

pytestmark = [
    # SlideHandle's per-thread slide cache (slide/open.py) leaves the file to the garbage
    # collector when a scheduler thread ends; reported to the lead, ignored until it closes it.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

REPO = Path(__file__).resolve().parents[2]
JOB_NAME = "pathosam-worker"
SLURM_ARGS = ["--cluster", "slurm", "--jobs", "2", "--job-memory", "1GiB", "--skip-bad"]
SLURM_ARGS += ["--job-walltime", "00:15:00"]


def _fake_interfaces(monkeypatch: pytest.MonkeyPatch, addrs: dict[str, str]) -> None:
    import socket
    from types import SimpleNamespace

    import psutil

    table = {k: [SimpleNamespace(family=socket.AF_INET, address=v)] for k, v in addrs.items()}
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: table)


def test_scheduler_address_is_private(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathosam_wsi.distributed.slurm import _interface_address, private_address

    _fake_interfaces(monkeypatch, {"eth0": "8.8.4.4", "ib0": "10.3.0.7", "lo": "127.0.0.1"})
    assert private_address() == ("10.3.0.7", "ib0")
    assert _interface_address("ib0") == "10.3.0.7"
    with pytest.raises(ConfigError, match="public address"):
        _interface_address("eth0")
    with pytest.raises(ConfigError, match="no IPv4 address"):
        _interface_address("ib9")
    _fake_interfaces(monkeypatch, {"eth0": "8.8.4.4", "lo": "127.0.0.1"})
    assert private_address() == ("127.0.0.1", "lo")


def _env() -> dict[str, str]:
    """The driver's environment: this checkout first on the path (jobs inherit it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _cli(manifest: Path, out: Path, *args: str) -> list[str]:
    code = "from pathosam_wsi.cli import main; main()"
    return [sys.executable, "-c", code, "run", str(manifest), "-o", str(out), *args, *TILE_ARGS]


def _our_jobs(*states: str) -> list[str]:
    """Ids of this user's worker jobs (default: pending, running or completing)."""
    only = ["-t", ",".join(states)] if states else []
    out = subprocess.run(
        ["squeue", "--me", "-h", "-n", JOB_NAME, *only, "-o", "%i"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return out.split()


def _wait_no_jobs(timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _our_jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _our_jobs(), "worker jobs left in the queue after the run"


def _timed(cmd: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    res = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240, check=False
    )
    return res, time.perf_counter() - t0


@pytest.mark.distributed
@pytest.mark.usefixtures("slurm_node")
def test_cohort_on_slurm_matches_segment(
    synthetic_slides: list[Path], reference_outputs: Path, tmp_path: Path
) -> None:
    _wait_no_jobs()
    good = synthetic_slides[:2]
    bad = corrupt_copy(synthetic_slides[2], tmp_path / "bad.svs")
    manifest = write_manifest(tmp_path / "m.csv", good, bad)

    res, slurm_s = _timed(_cli(manifest, tmp_path / "out", *SLURM_ARGS), tmp_path)
    assert res.returncode == 3, res.stderr[-3000:]
    assert "dashboard: http://127.0.0.1:" in res.stderr
    out = tmp_path / "out"
    status = pd.read_parquet(out / "status.parquet").set_index("slide_id")
    assert status["state"].to_dict() == {"syn0": "done", "syn1": "done", "bad": "failed"}
    assert "SlideReadError" in status.loc["bad", "error"]
    for p in good:
        assert_same_outputs(reference_outputs / p.stem, out / p.stem)
    # Every worker job ran as SLURM job, logged where asked; certificates in a private folder.
    logs = sorted((out / ".slurm" / "logs").glob(f"{JOB_NAME}-*.err"))
    assert len(logs) >= 2
    assert "Registered to:      tls://" in logs[0].read_text()
    assert (out / ".slurm" / "tls").stat().st_mode & 0o777 == 0o700
    _wait_no_jobs()

    local, local_s = _timed(
        _cli(manifest, tmp_path / "local", "--cluster", "local", "--workers", "2", "--skip-bad"),
        tmp_path,
    )
    assert local.returncode == 3, local.stderr[-3000:]
    for p in good:
        assert_same_outputs(out / p.stem, tmp_path / "local" / p.stem)
    timings = {"slurm_s": slurm_s, "local_s": local_s, "ratio": slurm_s / local_s}
    if os.environ.get("PATHOSAM_SLURM_TIMINGS"):
        Path(os.environ["PATHOSAM_SLURM_TIMINGS"]).write_text(json.dumps(timings) + "\n")


@pytest.mark.distributed
@pytest.mark.usefixtures("slurm_node")
def test_scancel_worker_job_mid_run(synthetic_slides: list[Path], tmp_path: Path) -> None:
    from pathosam_wsi.pipeline.segment import segment_slide

    _wait_no_jobs()
    big = write_synthetic_slide(tmp_path / "big.tif", seed=11, hw_px=(1024, 1280))
    slides = [big, synthetic_slides[0]]
    for p in slides:
        segment_slide(p, tmp_path / "ref", small_config())
    manifest = write_manifest(tmp_path / "m.csv", slides)
    out = tmp_path / "out"
    # Ended jobs are looked for every 0.3 s, so the replacement happens while the cohort runs.
    args = [*SLURM_ARGS, "--blocks-per-task", "1", "--slides-in-flight", "1"]
    args += ["--job-check-interval", "0.3"]
    proc = subprocess.Popen(
        _cli(manifest, out, *args),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.partial/blocks/*.npz")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no block finished within 120 s"
            time.sleep(0.2)
        running = _our_jobs("RUNNING")
        assert running, "no running worker job to cancel"
        subprocess.run(["scancel", running[0]], check=True, timeout=30)
        _stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"job(s) {running[0]} ended; submitting 1 replacement" in stderr, stderr[-3000:]
    status = pd.read_parquet(out / "status.parquet").set_index("slide_id")
    assert set(status["state"]) == {"done"}
    for p in slides:
        assert_same_outputs(tmp_path / "ref" / p.stem, out / p.stem)
    _wait_no_jobs()
