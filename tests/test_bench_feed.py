"""Smoke run of benchmarks/bench_feed.py --quick on tiny synthetic inputs (no GPU, no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

REPO = Path(__file__).resolve().parents[1]


def test_bench_feed_quick(tmp_path: Path) -> None:
    rgb, _ = draw_nuclei(1024, 1024, grid_centres(1024, 1024, 30, 15, 6, seed=3), 6.0, seed=4)
    sample = write_pyramid(tmp_path / "sample.tif", rgb, 0.5, levels=2, tile=256)
    out = tmp_path / "feed.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    args = ["--quick", "--skip-cohort", "--sample", str(sample), "--synthetic-side", "1024"]
    args += ["--rates", "40", "--workdir", str(tmp_path / "work"), "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_feed.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cpu_ms_per_block" in proc.stdout
    res = json.loads(out.read_text())
    synth = res["cpu"]["synthetic_1024"]
    assert synth["blocks"] == 4
    assert synth["cpu_ms_per_block"] > 0
    assert synth["ceiling_blocks_per_s_per_core"] > 0
    assert res["cpu"]["sample"]["blocks"] >= 1
    (busy,) = res["busy"]
    assert busy["device"]["blocks"] == 4
    assert 0.0 < busy["device_busy_frac"] <= 1.0
    assert busy["device"]["busy_s"] >= 4 / 40 * 0.9
    assert res["machine"]["cpu_count"] >= 1
    assert res["cohort"] is None
