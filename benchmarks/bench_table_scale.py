"""Scale benchmark: histolytics' 592k-polygon nucleus table through our writer and QuPath export.

Usage: python benchmarks/bench_table_scale.py [--out DIR] [--json FILE]

Times (a) ``NucleusTableWriter`` writing all rows (GeoParquet, nuclei/s; column preparation such
as centroids is not timed) and (b) ``export_qupath`` on the written table (GeoJSON, nuclei/s), and
reports peak RSS after each step (``resource.getrusage``; ru_maxrss is a high-water mark).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from pathosam_wsi.datasets import fetch
from pathosam_wsi.export.geoparquet import NucleusTableWriter
from pathosam_wsi.export.qupath import export_qupath
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS

log = logging.getLogger("bench_table_scale")

_CLASSES = ("neoplastic", "inflammatory", "connective", "dead", "macrophage_cell", "macrophage_nucleus")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _columns(path: Path, chunk_rows: int) -> list[dict[str, Any]]:
    """The histolytics table as writer-ready column chunks (untimed preparation)."""
    table = pq.read_table(path, columns=["geometry", "class_name"])
    chunks = []
    for start in range(0, table.num_rows, chunk_rows):
        t = table.slice(start, chunk_rows)
        geoms = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
        n = len(geoms)
        cen = shapely.get_coordinates(shapely.centroid(geoms))
        names = np.asarray(t["class_name"].to_pylist(), dtype=object)
        cols: dict[str, Any] = {
            "nucleus_id": np.arange(start + 1, start + n + 1, dtype=np.int64),
            "slide_id": pa.array(["hgsc"] * n, pa.string()),
            "geometry": geoms,
            "centroid_x_l0": cen[:, 0], "centroid_y_l0": cen[:, 1],
            "centroid_x_um": cen[:, 0] * 0.5, "centroid_y_um": cen[:, 1] * 0.5,
            "area_px": np.round(shapely.area(geoms)).astype(np.int64),
            "area_um2": shapely.area(geoms) * 0.25,
            "perimeter_um": shapely.length(geoms) * 0.5,
            "fg_prob_mean": np.ones(n, np.float32),
            "tile_id": np.zeros(n, np.int64),
            "at_halo_edge": np.zeros(n, bool),
            "class_id": np.array([_CLASSES.index(c) + 1 for c in names], np.int16),
            "class_name": pa.array(names.tolist(), pa.string()),
            "class_prob": np.ones(n, np.float32),
        }
        rng = np.random.default_rng(start)
        cols.update({k: rng.random(n, dtype=np.float32) for k in FEATURE_COLUMNS})
        chunks.append(cols)
    return chunks


def run(out_dir: Path, chunk_rows: int = 4096) -> dict[str, Any]:
    """Run both steps; returns the figures."""
    src = fetch("hgsc_nuclei_wsi")
    chunks = _columns(src, chunk_rows)
    n = sum(len(c["nucleus_id"]) for c in chunks)
    rss_prepared = _peak_rss_mib()
    table_path = out_dir / "nuclei.parquet"
    t0 = time.perf_counter()
    writer = NucleusTableWriter(table_path, classes=True)
    for c in chunks:
        writer.append(c)
    writer.close()
    write_s = time.perf_counter() - t0
    rss_write = _peak_rss_mib()
    del chunks
    t0 = time.perf_counter()
    n_json = export_qupath(table_path, out_dir / "nuclei.geojson")
    json_s = time.perf_counter() - t0
    return {
        "nuclei": n, "geoparquet_write_s": write_s, "geoparquet_nuclei_per_s": n / write_s,
        "geojson_features": n_json, "geojson_s": json_s, "geojson_nuclei_per_s": n_json / json_s,
        "geojson_bytes": (out_dir / "nuclei.geojson").stat().st_size,
        "peak_rss_mib_after_prepare": rss_prepared, "peak_rss_mib_after_write": rss_write,
        "peak_rss_mib_after_geojson": _peak_rss_mib(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "pyarrow": pa.__version__,
                    "shapely": shapely.__version__, "loadavg_1min": os.getloadavg()[0]},
    }


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Work folder (default: a temporary one).")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        figures = run(out)
    text = json.dumps(figures, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)  # noqa: T201 - a benchmark's report goes to stdout


if __name__ == "__main__":
    main()
