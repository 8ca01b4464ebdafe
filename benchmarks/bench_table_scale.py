"""Scale benchmark: histolytics' 592k-polygon nucleus table through our writer and QuPath export.

Usage: python benchmarks/bench_table_scale.py [--repeats 3] [--chunk-rows 1024] [--json FILE]

Each stage runs in a fresh subprocess, so its peak RSS is its own:

* ``write``: the table, prepared untimed as the pipeline hands it over (``PolygonRings`` outline
  rings plus numpy/Arrow columns, ``--chunk-rows`` nuclei per ``append`` like one block), is
  written by ``NucleusTableWriter`` (timed: WKB, bbox, Arrow columns, Parquet encoding, zstd).
* ``geojson``: ``export_qupath`` turns the written GeoParquet into a QuPath GeoJSON file.

Both stages also run on the first quarter of the rows: "flat" RSS means the stage's peak RSS
above its starting RSS is the same for a quarter and for all of the table. RSS is sampled from
``/proc/self/statm`` every 5 ms during the timed part (``ru_maxrss`` also includes the untimed
preparation). Rates are nuclei per wall-clock second; CPU seconds (all threads) are reported too,
as the machine may be shared. Medians over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from pathosam_wsi.datasets import fetch
from pathosam_wsi.export.geoparquet import NucleusTableWriter, PolygonRings
from pathosam_wsi.export.qupath import export_qupath
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS

log = logging.getLogger("bench_table_scale")

_CLASSES = (
    "neoplastic",
    "inflammatory",
    "connective",
    "dead",
    "macrophage_cell",
    "macrophage_nucleus",
)
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE_MIB


class _RssPeak:
    """Highest RSS seen while the context is open (sampled every ``period_s``)."""

    def __init__(self, period_s: float = 0.005) -> None:
        self.start_mib = self.peak_mib = _rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.peak_mib = max(self.peak_mib, _rss_mib())

    @contextmanager
    def watch(self) -> Iterator[_RssPeak]:
        """Sample RSS until the block ends."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self.peak_mib, _rss_mib())


def _chunks(table: pa.Table, chunk_rows: int) -> list[dict[str, Any]]:
    """The histolytics rows as writer-ready column chunks, as the pipeline provides them."""
    chunks = []
    for start in range(0, table.num_rows, chunk_rows):
        t = table.slice(start, chunk_rows)
        geoms = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
        n = len(geoms)
        cen = shapely.get_coordinates(shapely.centroid(geoms))
        area = shapely.area(geoms)
        names = t["class_name"].to_numpy(zero_copy_only=False)
        kinds, kind_of_row = np.unique(names, return_inverse=True)
        cols: dict[str, Any] = {
            "nucleus_id": np.arange(start + 1, start + n + 1, dtype=np.int64),
            "slide_id": pa.array(["hgsc"] * n, pa.string()),
            "geometry": PolygonRings.from_shapely(geoms),
            "centroid_x_l0": cen[:, 0],
            "centroid_y_l0": cen[:, 1],
            "centroid_x_um": cen[:, 0] * 0.5,
            "centroid_y_um": cen[:, 1] * 0.5,
            "area_px": np.round(area).astype(np.int64),
            "area_um2": area * 0.25,
            "perimeter_um": shapely.length(geoms) * 0.5,
            "fg_prob_mean": np.ones(n, np.float32),
            "tile_id": np.full(n, start // chunk_rows, np.int64),
            "at_halo_edge": np.zeros(n, bool),
            "class_id": np.array([_CLASSES.index(k) + 1 for k in kinds], np.int16)[kind_of_row],
            "class_name": pa.array(names, pa.string()),
            "class_prob": np.ones(n, np.float32),
        }
        rng = np.random.default_rng(start)
        cols.update({k: rng.random(n, dtype=np.float32) for k in FEATURE_COLUMNS})
        chunks.append(cols)
    return chunks


def _stage_write(work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    table = pq.read_table(fetch("hgsc_nuclei_wsi"), columns=["geometry", "class_name"]).slice(
        0, rows
    )
    chunks = _chunks(table, chunk_rows)
    del table
    path = work / f"nuclei_{rows}.parquet"
    with _RssPeak().watch() as rss:
        t0, c0 = time.perf_counter(), time.process_time()
        writer = NucleusTableWriter(path, classes=True)
        for c in chunks:
            writer.append(c)
        writer.close()
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "rows": writer.rows_written,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "rss_start_mib": rss.start_mib,
        "rss_peak_mib": rss.peak_mib,
        "bytes": path.stat().st_size,
    }


def _stage_geojson(work: Path, rows: int) -> dict[str, Any]:
    out = work / f"nuclei_{rows}.geojson"
    with _RssPeak().watch() as rss:
        t0, c0 = time.perf_counter(), time.process_time()
        n = export_qupath(work / f"nuclei_{rows}.parquet", out)
        wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    size = out.stat().st_size
    out.unlink()
    return {
        "rows": n,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "rss_start_mib": rss.start_mib,
        "rss_peak_mib": rss.peak_mib,
        "bytes": size,
    }


def _run_stage(stage: str, work: Path, rows: int, chunk_rows: int) -> dict[str, Any]:
    """One stage in a fresh interpreter; returns its figures."""
    cmd = [
        sys.executable,
        __file__,
        "--stage",
        stage,
        "--work",
        str(work),
        "--rows",
        str(rows),
        "--chunk-rows",
        str(chunk_rows),
    ]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    figures: dict[str, Any] = json.loads(res.stdout)
    figures["ru_maxrss_mib"] = figures.pop("_ru_maxrss_mib")
    figures["loadavg_1min"] = os.getloadavg()[0]
    log.info(
        "%s %d rows: %.2f s, peak RSS %.0f MiB",
        stage,
        rows,
        figures["wall_s"],
        figures["rss_peak_mib"],
    )
    return figures


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    rows = runs[0]["rows"]
    return {
        "rows": rows,
        "nuclei_per_s": rows / med("wall_s"),
        "nuclei_per_cpu_s": rows / med("cpu_s"),
        "wall_s": med("wall_s"),
        "cpu_s": med("cpu_s"),
        "rss_start_mib": med("rss_start_mib"),
        "rss_peak_mib": med("rss_peak_mib"),
        "rss_growth_mib": med("rss_peak_mib") - med("rss_start_mib"),
        "bytes": runs[0]["bytes"],
        "runs": runs,
    }


def run(work: Path, repeats: int, chunk_rows: int) -> dict[str, Any]:
    """All stages, ``repeats`` times, full table and a quarter of it; returns the figures."""
    n_all = pq.read_metadata(fetch("hgsc_nuclei_wsi")).num_rows
    sizes = {"all": n_all, "quarter": n_all // 4}
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeats):
        for size, rows in sizes.items():
            for stage in ("write", "geojson"):
                runs.setdefault(f"{stage}_{size}", []).append(
                    _run_stage(stage, work, rows, chunk_rows)
                )
    return {
        "stages": {name: _summary(r) for name, r in runs.items()},
        "chunk_rows": chunk_rows,
        "repeats": repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
            "shapely": shapely.__version__,
            "loadavg_1_5_15min_at_end": os.getloadavg(),
        },
    }


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--chunk-rows", type=int, default=1024, help="Nuclei per append (one block)."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument("--stage", choices=["write", "geojson"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        figures = (
            _stage_write(args.work, args.rows, args.chunk_rows)
            if args.stage == "write"
            else _stage_geojson(args.work, args.rows)
        )
        figures["_ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return
    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(Path(tmp), args.repeats, args.chunk_rows)
    text = json.dumps(figures, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
