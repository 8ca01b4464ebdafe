"""Benchmark cohorts on a LocalCluster: wall time with 1 and 2 workers (ratio from the same run),
scheduler overhead per task and per block, peak RSS per worker.

    python benchmarks/bench_cohort.py --json out.json    # --sample SLIDE, default: sample-data

The cohort is the sample slide plus two synthetic slides (dark round nuclei on pink, mpp 0.5).
Overhead is measured twice: (a) no-op tasks pushed through the same bounded submit loop the
slide graph uses (pure scheduling cost), (b) in the real run, (wall x worker threads - summed
task compute) / tasks from the task stream (an upper bound: it also counts idle tails).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _synthetic(path: Path, side: int, seed: int) -> Path:
    """A side x side single-level TIFF (0.5 µm/px) with nuclei at random places."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.synthetic import draw_nuclei, write_pyramid

    rng = np.random.default_rng(seed)
    n = side * side // 900
    centres = list(zip(rng.uniform(6, side - 6, n), rng.uniform(6, side - 6, n), strict=True))
    rgb, _ = draw_nuclei(side, side, centres, radius_px=5.5, seed=seed)
    return write_pyramid(path, rgb, 0.5, levels=1, tile=256)


def _noop(i: int) -> int:
    return i


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _task_compute_s(stream: list[dict[str, Any]], prefix: str) -> tuple[float, int]:
    total, n = 0.0, 0
    for task in stream:
        if str(task["key"]).startswith(prefix):
            n += 1
            total += sum(
                s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute"
            )
    return total, n


def _run(n_workers: int, entries: list[Any], out: Path, noop_tasks: int) -> dict[str, Any]:
    from distributed import Client, LocalCluster, get_task_stream

    from pathosam_wsi.cohort import run_cohort
    from pathosam_wsi.distributed.executor import ClientExecutor

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("pathosam_wsi.pipeline.blocks"))
        t_start = time.perf_counter() - t0
        runner = ClientExecutor(client)
        t1 = time.perf_counter()
        runner.map("noop", _noop, [(i,) for i in range(noop_tasks)])
        noop_s = time.perf_counter() - t1
        t1 = time.perf_counter()
        client.gather(client.map(_noop, range(noop_tasks), pure=False))
        map_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        with get_task_stream(client) as ts:
            rows = run_cohort(entries, out, client=client, slides_in_flight=len(entries))
        wall = time.perf_counter() - t2
        compute_s, n_tasks = _task_compute_s(ts.data, "blocks-")
        paint_s, n_paint = _task_compute_s(ts.data, "finish-")
        rss = client.run(_peak_rss_mib)
    blocks = sum(r.blocks or 0 for r in rows)
    return {
        "workers": n_workers,
        "load_avg_1min_before": round(load, 2),
        "cluster_start_s": round(t_start, 2),
        "cohort_wall_s": round(wall, 2),
        "states": [r.state for r in rows],
        "nuclei": sum(r.nuclei or 0 for r in rows),
        "blocks": blocks,
        "block_tasks": n_tasks,
        "paint_tasks": n_paint,
        "sum_task_compute_s": round(compute_s + paint_s, 2),
        "noop_tasks": noop_tasks,
        "noop_wall_s": round(noop_s, 3),
        "noop_overhead_ms_per_task": round(1e3 * noop_s * n_workers / noop_tasks, 3),
        "noop_map_all_wall_s": round(map_s, 3),
        "noop_map_all_ms_per_task": round(1e3 * map_s * n_workers / noop_tasks, 3),
        "run_overhead_ms_per_task_upper": round(
            1e3 * (wall * n_workers - compute_s - paint_s) / max(n_tasks + n_paint, 1), 1
        ),
        "peak_rss_mib_per_worker": sorted(round(v, 1) for v in rss.values()),
    }


def main() -> None:
    """Build the cohort, run it with each worker count, print and optionally save JSON."""
    from pathosam_wsi.cohort import ManifestEntry
    from pathosam_wsi.config import ModelConfig, RunConfig, TilingConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, help="default: the sample slide (sample-data)")
    parser.add_argument("--synthetic-side", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--blocks-per-task", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--noop-tasks", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    try:
        if args.sample is None:
            from pathosam_wsi.datasets import fetch

            args.sample = fetch("cmu_small_region")
        slides = [args.sample] if args.sample.exists() else []
        slides += [_synthetic(tmp / f"syn{i}.tif", args.synthetic_side, i) for i in range(2)]
        config = RunConfig(
            model=ModelConfig(name="classical"),  # the engine figures are the classical model's
            tiling=TilingConfig(tile_px=args.tile, halo_px=64),
            blocks_per_task=args.blocks_per_task,
        )
        entries = [ManifestEntry(str(p), p.stem, config) for p in slides]
        runs = [_run(n, entries, tmp / f"out{n}", args.noop_tasks) for n in args.workers]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = runs[0]["cohort_wall_s"]
    result = {
        "benchmark": "bench_cohort",
        "slides": [str(s) for s in slides],
        "tile_px": args.tile,
        "blocks_per_task": args.blocks_per_task,
        "runs": runs,
        "wall_ratio_vs_first": [round(base / r["cohort_wall_s"], 2) for r in runs],
        "driver_peak_rss_mib": round(_peak_rss_mib(), 1),
        "load_avg_1_5_15_at_end": [round(v, 2) for v in os.getloadavg()],
        "hardware": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "python": platform.python_version(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":  # LocalCluster workers re-import __main__ (docs/stack.md P11)
    main()
