"""``segment_slide``: one slide from file to OME-Zarr labels, GeoParquet table and run.json.

Outputs are built in ``OUT/<slide_id>.partial`` and renamed to ``OUT/<slide_id>`` only when
complete, so a killed run never leaves a folder that looks finished; a rerun with the same
parameters reuses the finished blocks of the partial folder. Every path and the resume and
publish decisions belong to ``pipeline/layout.py``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathosam_wsi.config import RunConfig
from pathosam_wsi.distributed.executor import TaskExecutor, ThreadExecutor, make_executor
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.export.omezarr import create_label_image
from pathosam_wsi.export.runinfo import params_hash, versions
from pathosam_wsi.files import atomic_write_json, sha256_file
from pathosam_wsi.model.registry import check_model_mpp
from pathosam_wsi.pipeline.layout import OUTPUTS, ResultFolder, SlideLayout
from pathosam_wsi.pipeline.plan import SlidePlan
from pathosam_wsi.pipeline.results import BlockTimings
from pathosam_wsi.pipeline.run import SlideRunResult, run_slide_stages
from pathosam_wsi.pipeline.slide_ids import check_slide_id
from pathosam_wsi.slide.frame import plan_frame
from pathosam_wsi.slide.open import SlideHandle
from pathosam_wsi.slide.tissue import block_has_tissue, read_thumbnail, tissue_mask
from pathosam_wsi.tiling.grid import Grid, cover

__all__ = [
    "SegmentResult",
    "plan_slide",
    "prepare_slide",
    "run_params_hash",
    "segment_slide",
    "slide_id_of",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentResult:
    """Where the outputs are and what they hold."""

    output_dir: Path
    nuclei: int
    blocks: int
    blocks_skipped: int
    at_halo_edge: int


def slide_id_of(path: str | Path) -> str:
    """Default slide id: the file name without its image extensions."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _tissue_blocks(
    handle: SlideHandle, grid: Grid, config: RunConfig, downsample: float, work: ResultFolder
) -> tuple[tuple[int, ...], float]:
    """Blocks with tissue (all when the mask is off); the mask is saved as PNG."""
    if not config.tissue.enabled:
        return tuple(range(len(grid))), 0.0
    t0 = time.perf_counter()
    slide = handle.open()
    thumb, thumb_ds = read_thumbnail(slide, config.tissue.thumbnail_mpp)
    mask = tissue_mask(thumb, (slide.mpp or 1.0) * thumb_ds, config.tissue)
    Image.fromarray((mask * 255).astype(np.uint8)).save(work.tissue_mask_png)
    atomic_write_json(work.tissue_mask_png.with_suffix(".json"), {"downsample_l0": thumb_ds})
    Image.fromarray(thumb).save(work.thumbnail_png)
    ids = tuple(
        b.block_id
        for b in grid
        if block_has_tissue(mask, thumb_ds, tuple(v * downsample for v in b.core_px))  # type: ignore[arg-type]
    )
    return ids, time.perf_counter() - t0


def plan_slide(
    slide_path: str | Path, out_dir: str | Path, config: RunConfig, slide_id: str | None = None
) -> tuple[SlideHandle, str, Any, Grid]:
    """Open the slide and plan its grid (raises on bad input before anything is written)."""
    handle = SlideHandle(str(slide_path), config.slide.mpp)
    slide = handle.open()
    frame = plan_frame(slide, config.slide.target_mpp, config.slide.roi_xywh_l0)
    grid = cover(frame.roi_px, frame.wh_px, config.tiling.tile_px, config.tiling.halo_px)
    return handle, slide_id or slide_id_of(slide_path), frame, grid


def run_params_hash(slide_path: str | Path, config: RunConfig) -> str:
    """The ``params_hash`` that run.json records for this slide and configuration."""
    return params_hash({"slide": str(Path(slide_path).resolve()), **config.output_params()})


def prepare_slide(
    slide_path: str | Path, out_dir: str | Path, config: RunConfig, slide_id: str
) -> tuple[SlidePlan, float]:
    """Open and plan the slide, make (or reuse) its staging folder, find the tissue blocks and
    create the label store -> (plan, seconds spent on the tissue mask). Runs as a task.

    Raises on bad input before anything is written.
    """
    handle, sid, frame, grid = plan_slide(slide_path, out_dir, config, slide_id)
    layout = SlideLayout(Path(out_dir), sid)
    layout.prepare_staging(run_params_hash(slide_path, config), subdirs=("blocks",))
    block_ids, tissue_s = _tissue_blocks(handle, grid, config, frame.downsample, layout.staging)
    plan = SlidePlan(handle, sid, frame, grid, config, str(layout.staging.path), block_ids)
    chunk_px = min(config.tiling.tile_px, max(frame.wh_px))  # never a chunk beyond the image
    create_label_image(plan.labels_path, frame.wh_px, chunk_px, frame.mpp, sid, handle.open())
    return plan, tissue_s


def _input_facts(slide_path: str | Path) -> dict[str, Any]:
    """Resolved path, size and sha256 of the input file (a task: it reads the whole file)."""
    p = Path(slide_path)
    return {"path": str(p.resolve()), "size_bytes": p.stat().st_size, "sha256": sha256_file(p)}


def segment_slide(
    slide_path: str | Path,
    out_dir: str | Path,
    config: RunConfig | None = None,
    *,
    slide_id: str | None = None,
    overwrite: bool = False,
    on_progress: Callable[[str, Any], None] | None = None,
    client: Any = None,
    executor: TaskExecutor | None = None,
    priority: int = 0,
) -> SegmentResult:
    """Segment every nucleus of one slide.

    Parameters
    ----------
    slide_path : path-like
        The slide (SVS, pyramidal TIFF, OME-TIFF, PNG, JPEG).
    out_dir : path-like
        Output root; results go to ``out_dir/<slide_id>/``.
    config : RunConfig, optional
        All parameters (defaults: classical model, 512/64 blocks, PathoSAM watershed defaults).
    slide_id : str, optional
        Name of the output folder and the table's ``slide_id`` (default: file name stem).
    overwrite : bool
        Replace an existing output folder.
    on_progress : callable, optional
        ``on_progress(event, payload)`` with events ``"planned"`` (block count) and ``"blocks"``
        (list of :class:`BlockSummary` of finished blocks).
    client : distributed.Client, optional
        Run the slide's tasks on this dask cluster (default: threads in this process).
    executor : TaskExecutor, optional
        Where tasks run, shared by the slides of a cohort (overrides ``client``).
    priority : int
        Task priority (higher first) when slides share an executor.

    Returns
    -------
    SegmentResult

    Raises
    ------
    SlideReadError, MissingResolutionError, TilingError, ConfigError, OutputExistsError
        Bad input; nothing is written.
    """
    config = config or RunConfig()
    t_start = time.perf_counter()
    sid = check_slide_id(slide_id or slide_id_of(slide_path))
    layout = SlideLayout(Path(out_dir), sid)
    layout.check_writable(overwrite)
    own = executor is None
    runner = executor or make_executor(client, config.threads)
    try:
        plan, tissue_s = runner.call(
            "plan", prepare_slide, slide_path, out_dir, config, sid, priority=priority + 2
        )
        check_model_mpp(config.model, plan.frame.mpp)
        facts_future = runner.start("hash", _input_facts, slide_path, priority=priority)
        if on_progress:
            on_progress("planned", len(plan.block_ids))
        result = run_slide_stages(
            runner, plan, (lambda s: on_progress("blocks", s)) if on_progress else None, priority
        )
        facts = facts_future.result()
    finally:
        if own and isinstance(runner, ThreadExecutor):
            runner.close()
    edge = sum(s.at_halo_edge for s in result.summaries)
    if not _warn_exceeding(result, config, edge) and edge:
        largest = max(s.max_edge_area_px for s in result.summaries)
        warnings.warn(
            f"{edge} nuclei reach the outer edge of their block's halo (largest {largest} px) "
            f"and may be cut; increase halo_px (now {config.tiling.halo_px})",
            PathoSamWarning,
            stacklevel=2,
        )
    phash = run_params_hash(slide_path, config)
    info = _run_info(plan, facts, phash, result, tissue_s, time.perf_counter() - t_start)
    layout.staging.write_run_info(info)
    layout.clean_staging()
    final = layout.publish()
    return SegmentResult(
        final, result.nuclei, len(plan.grid), len(plan.grid) - len(plan.block_ids), edge
    )


def _warn_exceeding(result: SlideRunResult, config: RunConfig, edge: int) -> bool:
    """One warning when foreground regions did not fit the largest window (pipeline/windows.py)."""
    exceeding = sum(s.regions_exceeding_window for s in result.summaries)
    if exceeding:
        warnings.warn(
            f"{exceeding} foreground regions ({edge} nuclei) did not fit a "
            f"{config.tiling.max_window_px} px window, so their nuclei may depend on the tile "
            f"size; increase max_window_px (--max-window)",
            PathoSamWarning,
            stacklevel=3,
        )
    return bool(exceeding)


def _run_info(
    plan: SlidePlan,
    facts: dict[str, Any],
    phash: str,
    result: SlideRunResult,
    tissue_s: float,
    total_s: float,
) -> dict[str, Any]:
    stages: dict[str, float] = {"tissue_s": tissue_s, **result.stage_s, "total_s": total_s}
    for name in BlockTimings.names():
        stages[f"sum_{name}"] = float(sum(getattr(s.timings, name) for s in result.summaries))
    batches = [s.batch_size for s in result.summaries if s.batch_size]
    return {
        "slide_id": plan.slide_id,
        "versions": versions(),
        "parameters": plan.config.to_dict(),
        "params_hash": phash,
        "input": {
            **facts,
            "mpp_l0": plan.frame.mpp_l0,
            "working_mpp": plan.frame.mpp,
            "level": plan.frame.level,
            "working_wh_px": list(plan.frame.wh_px),
            "roi_px": list(plan.frame.roi_px),
        },
        "timings_s": stages,
        "counts": {
            "blocks": len(plan.grid),
            "blocks_processed": len(plan.block_ids),
            "blocks_skipped": len(plan.grid) - len(plan.block_ids),
            "nuclei": result.nuclei,
            "nuclei_at_halo_edge": sum(s.at_halo_edge for s in result.summaries),
            "regions_refit": sum(s.regions_refit for s in result.summaries),
            "regions_exceeding_window": sum(s.regions_exceeding_window for s in result.summaries),
            "mean_model_batch": (sum(batches) / len(batches)) if batches else None,
        },
        "outputs": dict(OUTPUTS),
    }
