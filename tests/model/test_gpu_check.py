"""benchmarks/gpu_check.py: the dry run (CPU, tiny model) passes; without CUDA it fails loudly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_passes_and_reports_every_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--json", str(out), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = [r["run"] for r in report["rows"]]
    assert runs[:4] == ["fp32", "tf32", "bf16", "bf16+compile"]
    assert runs[4].startswith("cohort x2")
    fp32, tf32 = report["rows"][0], report["rows"][1]
    assert fp32["nuclei"] > 0
    assert tf32["nuclei"] == fp32["nuclei"]  # tf32 is fp32 on the CPU
    assert all(0 < r["busy_frac"] <= 1 for r in report["rows"])
    assert report["map_deviation"]["tf32"] == 0.0
    assert "| run |" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_without_cuda_it_fails_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load().main(["--quick"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
