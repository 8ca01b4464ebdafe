"""Which local cluster is faster on this machine: ``--cluster threads`` or ``--cluster local``?

    python benchmarks/bench_cluster_default.py --json out.json   # --sample SLIDE --repeats N

Runs ``pathosam-wsi run`` on a manifest of the sample slide twice (two slide ids) with each kind,
alternating kinds so that load from other jobs hits both alike, each run a fresh process (cluster
start and shutdown included, as a user sees it). Prints wall seconds per run, the load average
before each, and whether stderr held dask's "Worker process still alive" shutdown warnings.
``--cluster auto`` picks ``threads`` without GPUs (pathosam_wsi/distributed/cluster.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _sample() -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "pathosam_wsi.cli", "sample-data"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def _run(kind: str, manifest: Path, out: Path) -> dict[str, Any]:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pathosam_wsi.cli", "run", str(manifest), "-o", str(out),
         "--cluster", kind, "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    return {
        "kind": kind,
        "wall_s": round(wall, 2),
        "load_before": round(load, 2),
        "still_alive_warnings": proc.stderr.count("still alive"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, help="Slide (default: pathosam-wsi sample-data).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    slide = args.sample or _sample()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.csv"
        manifest.write_text(f"path,slide_id\n{slide},s1\n{slide},s2\n")
        for r in range(args.repeats):
            for kind in ("threads", "local"):
                runs.append(_run(kind, manifest, Path(tmp) / f"out-{kind}-{r}"))
                print(json.dumps(runs[-1]), flush=True)
    summary = {
        kind: min(x["wall_s"] for x in runs if x["kind"] == kind) for kind in ("threads", "local")
    }
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "slide": str(slide),
        "runs": runs,
        "best_wall_s": summary,
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
