"""Check that classical runs do not depend on the tile size: labels and tables identical.

    python benchmarks/check_tile_invariance.py                    # sample slide, tiles 128-1024
    python benchmarks/check_tile_invariance.py --time-runs 3      # + CPU time at tile 512

Runs ``segment_slide`` (the production path) once per tile size into a temporary folder, prints
the nucleus count of each run and whether its level-0 label array and its table (sorted by
``nucleus_id``, every column but ``tile_id``, which names the block and so depends on the tiling
by definition) are identical to those of the first tile size. With ``--time-runs N`` it also runs
the slide N more times at tile 512, each in a fresh subprocess, and prints the median CPU time
(user + system) of those runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import zarr

from pathosam_wsi import RunConfig, segment_slide
from pathosam_wsi.config import ModelConfig, TilingConfig


def _outputs(folder: Path) -> tuple[np.ndarray, pd.DataFrame]:
    labels = zarr.open_group(str(folder / "labels.ome.zarr"), mode="r")["labels/nuclei/s0"][:]
    table = pd.read_parquet(folder / "nuclei.parquet").drop(columns=["tile_id"])
    return labels, table.sort_values("nucleus_id", kind="stable").reset_index(drop=True)


def _table_bytes(table: pd.DataFrame) -> bytes:
    """The table's Arrow IPC serialisation: equal bytes <=> equal columns, types and values."""
    sink = pa.BufferOutputStream()
    batch = pa.Table.from_pandas(table, preserve_index=False)
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return bytes(sink.getvalue())


def _run(
    slide: Path, out: Path, tile_px: int, halo_px: int, threads: int, model: str = "classical"
) -> Path:
    config = RunConfig(
        model=ModelConfig(name=model),  # the guarantee covers classical (README)
        tiling=TilingConfig(tile_px=tile_px, halo_px=halo_px),
        threads=threads,
    )
    return segment_slide(slide, out / f"t{tile_px}", config).output_dir


def _cpu_seconds(slide: Path, halo_px: int, threads: int) -> float:
    """CPU time (user + system) of one tile-512 run in a fresh subprocess."""
    code = (
        "import sys, tempfile; from pathlib import Path;"
        "sys.path.insert(0, sys.argv[1]);"
        "from check_tile_invariance import _run;"
        "d = tempfile.mkdtemp();"
        "_run(Path(sys.argv[2]), Path(d), 512, int(sys.argv[3]), int(sys.argv[4]))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    here = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as cwd:  # not the checkout: PYTHONPATH picks the code
        subprocess.run(
            [sys.executable, "-c", code, here, str(slide), str(halo_px), str(threads)],
            check=True,
            cwd=cwd,
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, help="slide (default: the cached sample slide)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-runs", type=int, default=0, help="CPU-timed runs at tile 512")
    parser.add_argument("--model", default="classical", help="model (default classical)")
    args = parser.parse_args()
    slide = args.slide
    if slide is None:
        from pathosam_wsi.datasets import fetch

        slide = fetch("cmu_small_region")
    with tempfile.TemporaryDirectory() as tmp:
        first: tuple[np.ndarray, pd.DataFrame, bytes] | None = None
        for tile in args.tiles:
            labels, table = _outputs(
                _run(slide, Path(tmp), tile, args.halo, args.threads, args.model)
            )
            blob = _table_bytes(table)
            if first is None:
                first = (labels, table, blob)
                same = f"(reference for the comparisons below, tile {tile})"
            else:
                same_labels = np.array_equal(labels, first[0])
                same_table = blob == first[2]
                same = f"labels identical: {same_labels}, table identical: {same_table}"
            print(f"tile {tile:5d}: {len(table):6d} nuclei  {same}", flush=True)
    if args.time_runs:
        times = [_cpu_seconds(slide, args.halo, args.threads) for _ in range(args.time_runs)]
        print(
            f"tile 512 CPU time over {args.time_runs} runs: "
            f"median {statistics.median(times):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )


if __name__ == "__main__":
    main()
