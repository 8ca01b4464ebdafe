"""CPU milliseconds per block for every stage outside the model (median over N blocks).

Stages: read (tiffslide), watershed, ownership, rings, features (incl. fg mean / classes), write
(block result file), paint (paint + OME-Zarr write of the core), table (GeoParquet rows). Maps come
from the built-in ``classical`` model (not timed). Two slides: the sample slide (CMU-1-Small-Region,
fetched by ``pathosam-wsi sample-data``) and a dense synthetic slide (tests/synthetic.py, touching
nuclei). CPU time is ``time.process_time`` (all threads of this process: decoder and BLAS threads
count), so other jobs on the machine do not inflate it.

Usage: ``python benchmarks/profile_block.py [--blocks N] [--cprofile]`` from the repository root.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathosam_wsi.config import ModelConfig, RunConfig
from pathosam_wsi.export.omezarr import create_label_image
from pathosam_wsi.model.registry import get_model
from pathosam_wsi.pipeline.assemble import global_luts, paint_blocks, write_table
from pathosam_wsi.pipeline.blocks import block_arrays
from pathosam_wsi.pipeline.plan import SlidePlan, atomic_save_npz, block_file
from pathosam_wsi.pipeline.segment import plan_slide
from pathosam_wsi.postprocess.features import nucleus_features
from pathosam_wsi.postprocess.polygons import label_rings
from pathosam_wsi.postprocess.watershed import ais_watershed
from pathosam_wsi.stitch.ownership import own_nuclei

log = logging.getLogger("profile_block")
STAGES = ("read", "watershed", "ownership", "rings", "features", "write", "paint", "table")


def _dense_slide(path: Path) -> Path:
    """2048² synthetic slide at 0.5 µm/px with touching nuclei everywhere."""
    from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

    rgb, _ = draw_nuclei(2048, 2048, grid_centres(2048, 2048, 22, 12, 5, seed=3), 8.0, seed=4)
    return write_pyramid(path, rgb, 0.5, levels=2)


def _sample_slide() -> Path:
    from pathosam_wsi.datasets import fetch

    return Path(fetch("cmu_small_region"))


def _cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, (time.process_time() - t0) * 1e3


def _stage_kernels(plan: SlidePlan, block: Any, output: Any, tile: Any) -> dict[str, float]:
    """Time the kernels of ``block_arrays`` one by one (the same calls, split for the report)."""
    cfg = plan.config.watershed
    labels, t_ws = _cpu(lambda: ais_watershed(output.ais, cfg))
    owned, t_own = _cpu(lambda: own_nuclei(labels, block, plan.frame.wh_px))
    rings, t_rings = _cpu(lambda: label_rings(owned.labels, owned.count))
    _, t_feat = _cpu(
        lambda: nucleus_features(owned.labels, tile, owned.count, plan.frame.mpp, rings=rings)
    )
    _, t_all = _cpu(lambda: block_arrays(plan, block, output, tile))
    rest = max(t_all - (t_ws + t_own + t_rings + t_feat), 0.0)
    return {
        "watershed": t_ws,
        "ownership": t_own,
        "rings": t_rings,
        "features": t_feat + rest,
        "block_arrays": t_all,
    }


def profile_slide(slide: Path, n_blocks: int, work: Path, profiler: Any) -> dict[str, list[float]]:
    """Per-stage CPU ms of the first ``n_blocks`` blocks of ``slide``."""
    config = RunConfig(model=ModelConfig(name="classical"))  # the profiled figures' model
    handle, sid, frame, grid = plan_slide(slide, work, config)
    ids = tuple(range(min(n_blocks, len(grid))))
    plan = SlidePlan(handle, sid, frame, grid, config, str(work), ids)
    plan.blocks_dir.mkdir(parents=True, exist_ok=True)
    create_label_image(plan.labels_path, frame.wh_px, config.tiling.tile_px, frame.mpp, sid)
    model = get_model(config.model, frame.mpp)
    times: dict[str, list[float]] = {k: [] for k in (*STAGES, "block_arrays", "nuclei")}
    handle_slide = handle.open()
    for b in ids:
        block = grid.block(b)
        tile, t_read = _cpu(lambda block=block: frame.read(handle_slide, block.outer_px))
        output = model.predict([tile])[0]
        if profiler is not None:
            profiler.enable()
        for k, v in _stage_kernels(plan, block, output, tile).items():
            times[k].append(v)
        arrays, _ = block_arrays(plan, block, output, tile)
        _, t_write = _cpu(lambda b=b, arrays=arrays: atomic_save_npz(block_file(plan, b), arrays))
        if profiler is not None:
            profiler.disable()
        times["read"].append(t_read)
        times["write"].append(t_write)
        times["nuclei"].append(float(arrays["key"].size))
    luts = global_luts(plan)
    painted = [b for b in ids]
    if profiler is not None:
        profiler.enable()
    _, t_paint = _cpu(lambda: paint_blocks(plan, painted, luts))
    _, t_table = _cpu(lambda: write_table(plan, luts, work / "nuclei.parquet", None))
    if profiler is not None:
        profiler.disable()
    times["paint"] = [t_paint / len(ids)] * len(ids)
    times["table"] = [t_table / len(ids)] * len(ids)
    return times


def _report(name: str, times: dict[str, list[float]]) -> None:
    med = {k: float(np.median(v)) for k, v in times.items()}
    total = sum(med[k] for k in STAGES)
    cells = "  ".join(f"{k} {med[k]:6.1f}" for k in STAGES)
    log.info(
        "%-9s blocks %d, nuclei/block %.0f | %s | total %.1f ms (block_arrays %.1f)",
        name,
        len(times["read"]),
        med["nuclei"],
        cells,
        total,
        med["block_arrays"],
    )


def main() -> None:
    """Print median CPU ms per block per stage for the sample and a dense synthetic slide."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=12, help="blocks per slide (default 12)")
    parser.add_argument("--cprofile", action="store_true", help="print the top cProfile entries")
    parser.add_argument("--only", choices=("sample", "dense"), help="profile one slide only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    profiler = cProfile.Profile() if args.cprofile else None
    with tempfile.TemporaryDirectory() as tmp:
        slides = {}
        if args.only != "dense":
            slides["sample"] = _sample_slide()
        if args.only != "sample":
            slides["dense"] = _dense_slide(Path(tmp) / "dense.tiff")
        for name, path in slides.items():
            times = profile_slide(path, args.blocks, Path(tmp) / name, profiler)
            _report(name, times)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
