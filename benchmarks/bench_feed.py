"""Feed benchmark without a GPU: how much CPU the engine spends per block, and how busy it keeps
a simulated device of R blocks/s (GitHub issue "Feed the GPU", item 6).

    python benchmarks/bench_feed.py --workdir /tmp/bench_feed --json feed.json   # --quick: smoke

The model is ``replay`` (``pathosam_wsi/model/replay.py``): realistic AIS maps computed once by
the ``classical`` model on tissue blocks of the sample slide, returned after ``n / R`` seconds of
GIL-free sleep per batch of ``n`` blocks. Everything else is the real engine, driven only through
the public API (``segment_slide``, ``run_cohort``), so the same script measures any engine version.

Figures:

- ``cpu_ms_per_block``: process CPU time (user + sys, all threads) of ``segment_slide`` / blocks
  processed, at R = ``--fast-rate`` (device time negligible); stage columns are run.json's
  per-stage sums (thread seconds) / blocks. Median of ``--runs`` for the sample and the
  synthetic slide. ``ceiling_blocks_per_s_per_core`` = 1000 / cpu_ms_per_block.
- ``device_busy_frac`` at each of ``--rates``: replay busy seconds / (last call end - first call
  start), synthetic slide (``--busy-roi`` limits it to a centred square).
- ``cohort_utilisation``: ``--cohort-slides`` synthetic 1024² slides (4 blocks each) through
  ``run_cohort`` on a LocalCluster(2 processes x 1 thread): busy worker time (dask task stream,
  compute intervals merged per worker) / (wall x workers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pathosam_wsi.model.replay import (  # noqa: E402
    BANK_ENV,
    LOG_ENV,
    RATE_ENV,
    build_bank,
    replay_stats,
    reset_replay_stats,
)

log = logging.getLogger("bench_feed")

SYNTH_MPP = 0.5
PATTERN_PX = 2048
BLOCK_OUTER_PX = 640  # 512 core + 2 x 64 halo, the engine's default read


# ----------------------------------------------------------------------------- inputs


def _bank(sample: Path, k: int, workdir: Path) -> Path:
    """The replay bank for ``sample``: K tissue windows of 640², classical maps, cached."""
    from pathosam_wsi import open_slide

    st = sample.stat()
    key = hashlib.sha256(
        f"{sample.resolve()}|{st.st_size}|{st.st_mtime_ns}|{k}".encode()
    ).hexdigest()
    path = workdir / f"replay_bank_k{k}_{key[:12]}.npy"
    if path.exists():
        return path
    slide = open_slide(sample)
    w, h = slide.level_dimensions[0]
    side = min(BLOCK_OUTER_PX, w, h)
    scored = []
    for y in range(0, h - side + 1, 128):
        for x in range(0, w - side + 1, 128):
            tile = slide.read_level(0, (x, y, x + side, y + side))
            scored.append((_tissue_frac(tile), y, x, tile))
    scored.sort(key=lambda s: -s[0])
    # The K most tissue-filled windows, preferring ones that do not overlap much.
    chosen: list[tuple[float, int, int, npt.NDArray[np.uint8]]] = []
    for s in scored:
        if all(abs(s[1] - c[1]) >= side // 2 or abs(s[2] - c[2]) >= side // 2 for c in chosen):
            chosen.append(s)
        if len(chosen) == k:
            break
    chosen += [s for s in scored if s not in chosen][: k - len(chosen)]
    build_bank([c[3] for c in chosen], float(slide.mpp or SYNTH_MPP), path)
    return path


def _tissue_frac(tile: npt.NDArray[np.uint8]) -> float:
    """Fraction of pixels with HSV saturation above 0.1 (stained, not glass)."""
    rgb = tile.astype(np.float32)
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    return float(np.mean((mx - mn) > 0.1 * np.maximum(mx, 1.0)))


def _pattern(side: int, seed: int) -> npt.NDArray[np.uint8]:
    """A side² H&E-like image densely covered with nuclei (tests/synthetic.py)."""
    from tests.synthetic import draw_nuclei, grid_centres

    centres = grid_centres(side, side, spacing_px=24, offset_px=12, jitter=5, seed=seed)
    rgb, _ = draw_nuclei(side, side, centres, radius_px=6.0, seed=seed + 1)
    return rgb


def _synthetic_slide(path: Path, side: int, pattern_px: int = PATTERN_PX, seed: int = 1) -> Path:
    """Tiled 3-level pyramidal TIFF (mpp 0.5) of a nucleus pattern repeated; cached."""
    import tifffile

    if path.exists():
        return path
    pattern = _pattern(min(pattern_px, side), seed)
    tmp = path.with_name(path.name + ".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for k in range(3):
            f = 2**k
            base = pattern.reshape(pattern.shape[0] // f, f, pattern.shape[1] // f, f, 3)
            base = base.mean(axis=(1, 3)).astype(np.uint8)
            lside = side // f
            mpp = SYNTH_MPP * f
            tif.write(
                _tiles(base, lside),
                shape=(lside, lside, 3),
                dtype=np.uint8,
                photometric="rgb",
                tile=(256, 256),
                compression="zlib",
                resolution=(1e4 / mpp, 1e4 / mpp),
                resolutionunit="CENTIMETER",
                **({"subifds": 2} if k == 0 else {"subfiletype": 1}),
            )
    tmp.replace(path)
    return path


def _tiles(base: npt.NDArray[np.uint8], side: int) -> Any:
    """256² tiles of ``base`` repeated over a side² image, row-major."""
    bh, bw = base.shape[:2]
    for y in range(0, side, 256):
        rows = base[np.arange(y, y + 256) % bh]
        for x in range(0, side, 256):
            yield np.ascontiguousarray(rows[:, np.arange(x, x + 256) % bw])


# ----------------------------------------------------------------------------- measurements


def _segment(slide: Path, out: Path, rate: float, roi: tuple[int, int, int, int] | None) -> dict:
    """One ``segment_slide`` run with the replay model at ``rate``; CPU, wall, run.json, device."""
    from pathosam_wsi import PathoSamWarning, RunConfig, segment_slide
    from pathosam_wsi.config import ModelConfig, SlideConfig

    config = RunConfig(model=ModelConfig(name="replay"), slide=SlideConfig(roi_xywh_l0=roi))
    os.environ[RATE_ENV] = repr(float(rate))
    reset_replay_stats()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PathoSamWarning)  # halo-edge notes from replayed maps
        segment_slide(slide, out, config, slide_id="feed", overwrite=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    info = json.loads((out / "feed" / "run.json").read_text())  # OUT/<slide_id>/run.json
    blocks = int(info["counts"]["blocks_processed"])
    dev = replay_stats()
    log.info("%s R=%g: %d blocks, wall %.1f s, cpu %.1f s", slide.name, rate, blocks, wall, cpu)
    return {
        "rate_blocks_per_s": rate,
        "blocks": blocks,
        "nuclei": int(info["counts"].get("nuclei", -1)),
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_block": 1e3 * cpu / blocks,
        "stage_ms_per_block": {
            k: 1e3 * float(v) / blocks for k, v in info.get("timings_s", {}).items()
        },
        "blocks_per_s": blocks / wall,
        "device": dev.as_dict(),
        "device_busy_frac": dev.busy_frac,
        "device_busy_over_wall": dev.busy_s / wall,
    }


def _median_runs(runs: list[dict]) -> dict:
    """Medians of the per-run figures (stages key by key)."""
    keys = ("wall_s", "cpu_s", "cpu_ms_per_block", "blocks_per_s")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    stages = sorted({s for r in runs for s in r["stage_ms_per_block"]})
    med["stage_ms_per_block"] = {
        s: statistics.median(r["stage_ms_per_block"].get(s, 0.0) for r in runs) for s in stages
    }
    med["ceiling_blocks_per_s_per_core"] = 1e3 / med["cpu_ms_per_block"]
    med["blocks"] = runs[0]["blocks"]
    med["nuclei"] = runs[0]["nuclei"]
    return med


def _merged_s(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Total length of the union of intervals, clipped to [lo, hi]."""
    total, end = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, end), min(b, hi)
        if b > a:
            total += b - a
            end = b
    return total


def _warm_worker() -> None:
    """Import the engine and register the models on a worker before the timed part."""
    import pathosam_wsi.cohort  # noqa: F401
    from pathosam_wsi.model.registry import available_models

    available_models()


def _cohort(slides: list[Path], workdir: Path, rate: float, runs: int) -> dict:
    """``run_cohort`` on LocalCluster(2 x 1 thread): utilisation from the dask task stream."""
    from distributed import Client, LocalCluster, get_task_stream

    from pathosam_wsi import PathoSamWarning, RunConfig
    from pathosam_wsi.cohort import ManifestEntry, run_cohort
    from pathosam_wsi.config import ModelConfig

    n_workers = 2
    calls = workdir / "cohort_replay_log.jsonl"
    os.environ[RATE_ENV] = repr(float(rate))
    os.environ[LOG_ENV] = str(calls)
    config = RunConfig(model=ModelConfig(name="replay"))
    entries = [ManifestEntry(str(p), p.stem, config) for p in slides]
    results = []
    try:
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", PathoSamWarning)
            client.run(_warm_worker)
            for i in range(runs):
                calls.unlink(missing_ok=True)
                t0, p0 = time.time(), time.perf_counter()
                with get_task_stream(client) as ts:
                    rows = run_cohort(
                        entries, workdir / f"cohort_out{i}", client=client, overwrite=True
                    )
                wall, t1 = time.perf_counter() - p0, time.time()
                results.append(_cohort_figures(ts.data, rows, calls, n_workers, t0, t1, wall))
                log.info("cohort run %d: wall %.1f s", i, wall)
    finally:
        os.environ.pop(LOG_ENV, None)
    med = {
        k: statistics.median(r[k] for r in results)
        for k in ("wall_s", "utilisation", "device_busy_over_wall")
    }
    return {
        "slides": len(slides),
        "workers": n_workers,
        "rate": rate,
        "median": med,
        "runs": results,
    }


def _cohort_figures(
    stream: list[dict],
    rows: list[Any],
    log_path: Path,
    n_workers: int,
    t0: float,
    t1: float,
    wall: float,
) -> dict:
    """Utilisation of one cohort run from its task stream and the replay log."""
    per_worker: dict[str, list[tuple[float, float]]] = {}
    for task in stream:
        for s in task.get("startstops", ()):
            if s["action"] == "compute":
                per_worker.setdefault(str(task["worker"]), []).append((s["start"], s["stop"]))
    busy = {w: _merged_s(iv, t0, t1) for w, iv in per_worker.items()}
    calls = (
        [json.loads(line) for line in log_path.read_text().splitlines()]
        if log_path.exists()
        else []
    )
    device_s = sum(c["t_end"] - c["t_start"] for c in calls)
    return {
        "wall_s": wall,
        "states": sorted({str(getattr(r, "state", "?")) for r in rows}),
        "blocks": sum(getattr(r, "blocks", 0) or 0 for r in rows),
        "nuclei": sum(getattr(r, "nuclei", 0) or 0 for r in rows),
        "tasks": len(stream),
        "busy_s_per_worker": busy,
        "utilisation": sum(busy.values()) / (wall * n_workers),
        "model_calls": len(calls),
        "model_blocks": sum(c["n"] for c in calls),
        "model_pids": len({c["pid"] for c in calls}),
        "device_busy_over_wall": device_s / (wall * n_workers),
    }


# ----------------------------------------------------------------------------- report


def _machine() -> dict:
    """Cores, load and versions, git commit of the checkout."""

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return proc.stdout.strip()

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": version("torch"),
        "dask": version("dask"),
        "distributed": version("distributed"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _stage_label(key: str) -> str:
    """Short column name of a run.json timing key (``sum_`` = summed over worker threads)."""
    name = key.removesuffix("_s")
    return f"Σ{name.removeprefix('sum_')}" if name.startswith("sum_") else f"{name} (wall)"


def _print_report(res: dict) -> None:
    """Readable tables of the figures."""
    print(
        f"\nFeed benchmark  cores={res['machine']['cpus_usable']}  load start/end="
        f"{res['load_avg_start']} / {res['load_avg_end']}"
    )
    print("\ncpu_ms_per_block (R fast, median of runs; stages = run.json thread-seconds / block)")
    cols = sorted({s for m in res["cpu"].values() for s in m["stage_ms_per_block"]})
    print(
        "| slide | blocks | cpu ms/block | ceiling blocks/s/core | wall s | "
        + " | ".join(_stage_label(c) for c in cols)
        + " |"
    )
    for name, m in res["cpu"].items():
        stages = " | ".join(f"{m['stage_ms_per_block'].get(c, 0.0):.0f}" for c in cols)
        print(
            f"| {name} | {m['blocks']} | {m['cpu_ms_per_block']:.0f} | "
            f"{m['ceiling_blocks_per_s_per_core']:.2f} | {m['wall_s']:.1f} | {stages} |"
        )
    print(f"\ndevice_busy_frac ({res['busy_slide']})")
    print("| R blocks/s | blocks | wall s | blocks/s | busy s | busy frac | busy / wall |")
    for b in res["busy"]:
        print(
            f"| {b['rate_blocks_per_s']:g} | {b['blocks']} | {b['wall_s']:.1f} | "
            f"{b['blocks_per_s']:.2f} | {b['device']['busy_s']:.1f} | "
            f"{b['device_busy_frac']:.3f} | {b['device_busy_over_wall']:.3f} |"
        )
    if res.get("cohort"):
        c = res["cohort"]
        print(
            f"\ncohort_utilisation ({c['slides']} slides x 4 blocks, {c['workers']} workers x 1 "
            f"thread, R={c['rate']:g}): {c['median']['utilisation']:.3f}  "
            f"wall {c['median']['wall_s']:.1f} s  device busy/wall "
            f"{c['median']['device_busy_over_wall']:.3f}"
        )


def _parse_args() -> argparse.Namespace:
    """Command line, with the ``--quick`` defaults resolved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_feed")
    parser.add_argument("--sample", type=Path, help="default: the sample slide (sample-data)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--fast-rate", type=float, default=1000.0)
    parser.add_argument("--bank-size", type=int, default=16)
    parser.add_argument("--synthetic-side", type=int, help="default 8192 (--quick: 2048)")
    parser.add_argument("--busy-roi", type=int, default=0, help="centred square side px; 0 = all")
    parser.add_argument("--cohort-slides", type=int, help="default 20 (--quick: 4)")
    parser.add_argument("--skip-cohort", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small inputs, 1 run: smoke test")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.synthetic_side = args.synthetic_side or (2048 if args.quick else 8192)
    args.runs = 1 if args.quick else args.runs
    args.cohort_slides = args.cohort_slides or (4 if args.quick else 20)
    args.bank_size = min(args.bank_size, 4) if args.quick else args.bank_size
    if args.sample is None:
        from pathosam_wsi.datasets import fetch

        args.sample = fetch("cmu_small_region")
    return args


def _measure(args: argparse.Namespace) -> dict:
    """Prepare the inputs (cached in the workdir) and take every figure."""
    side, runs = args.synthetic_side, args.runs
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.environ[BANK_ENV] = str(_bank(args.sample, args.bank_size, args.workdir))
    synth = _synthetic_slide(args.workdir / f"synthetic_{side}.tif", side)
    out = args.workdir / "out"
    _segment(args.sample, out, args.fast_rate, None)  # warm-up: imports, caches
    cpu = {}
    for name, slide in (("sample", args.sample), (f"synthetic_{side}", synth)):
        per_run = [_segment(slide, out, args.fast_rate, None) for _ in range(runs)]
        cpu[name] = {**_median_runs(per_run), "runs": per_run}
    roi = None
    if args.busy_roi:
        a = max(0, (side - args.busy_roi) // 2)
        roi = (a, a, args.busy_roi, args.busy_roi)
    busy = [_segment(synth, out, r, roi) for r in args.rates]
    cohort = None
    if not args.skip_cohort:
        cdir = args.workdir / "cohort"
        cdir.mkdir(exist_ok=True)
        slides = [
            _synthetic_slide(cdir / f"c{i:02d}.tif", 1024, 1024, seed=10 + i)
            for i in range(args.cohort_slides)
        ]
        cohort = _cohort(slides, args.workdir, args.fast_rate, runs)
    return {
        "sample": str(args.sample),
        "bank": {"path": os.environ[BANK_ENV], "k": args.bank_size},
        "fast_rate_blocks_per_s": args.fast_rate,
        "cpu": cpu,
        "busy_slide": f"synthetic_{side}" + (f" roi {roi}" if roi else ""),
        "busy": busy,
        "cohort": cohort,
    }


def main() -> None:
    """Measure, print and optionally save JSON with machine info."""
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    machine = _machine()  # at the start: the commit measured, the load before
    t_all = time.perf_counter()
    figures = _measure(args)
    res = {
        "benchmark": "bench_feed",
        "argv": sys.argv[1:],
        "load_avg_start": machine["load_avg_1_5_15"],
        "load_avg_end": [round(v, 2) for v in os.getloadavg()],
        "elapsed_s": time.perf_counter() - t_all,
        **figures,
        "machine": machine,
    }
    _print_report(res)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":  # LocalCluster workers re-import __main__
    main()
