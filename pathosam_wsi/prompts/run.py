"""``prompt_slide``: prompts + slide -> ``OUT/<slide_id>/`` exactly as ``segment`` lays it out.

Work happens in ``OUT/<slide_id>.partial/`` (paths and the resume and publish rules:
``pipeline/layout.py``): windows are grouped into tasks by ``--tile`` (a task holds the windows
whose core starts in one tile), each task's masks go to ``tasks/t<k>.npz``, and
a rerun with the same parameters skips finished tasks (resume). Labels and table are painted
from the masks afterwards, so they do not depend on the tile size, the task order or batching.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.errors import ConfigError, MissingResolutionError, PathoSamWarning
from pathosam_wsi.export.geoparquet import NucleusTableWriter
from pathosam_wsi.export.omezarr import create_label_image, open_levels, write_core
from pathosam_wsi.export.runinfo import params_hash, versions
from pathosam_wsi.files import atomic_write, sha256_file
from pathosam_wsi.model.prompt_models import PromptModel
from pathosam_wsi.pipeline.layout import OUTPUTS, ResultFolder, SlideLayout
from pathosam_wsi.pipeline.segment import slide_id_of
from pathosam_wsi.prompts.decode import PromptMask, decode_window, read_window, window_pixels
from pathosam_wsi.prompts.paint import paint_region
from pathosam_wsi.prompts.parse import PromptError, PromptSet, read_prompts
from pathosam_wsi.prompts.table import EXTRA_COLUMNS, window_columns
from pathosam_wsi.prompts.windows import Window, WindowGrid, assign_windows
from pathosam_wsi.slide.open import open_slide

__all__ = ["PromptResult", "prompt_slide"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptResult:
    """What a prompted run produced."""

    output_dir: Path
    nuclei: int
    prompts: int
    windows: int
    own_windows: int


def _check_inside(prompts: PromptSet, wh: tuple[int, int], where: str) -> None:
    """Every prompt must touch the slide."""
    ext = prompts.extent_xyxy()
    bad = np.flatnonzero(
        (ext[:, 2] < 0) | (ext[:, 3] < 0) | (ext[:, 0] > wh[0]) | (ext[:, 1] > wh[1])
    )
    if bad.size:
        i = int(bad[0])
        raise PromptError(
            f"{where} row {prompts.source_row[i]}: prompt {prompts.prompt_id[i]} at "
            f"{ext[i].round(1).tolist()} lies outside the slide (0..{wh[0]} x 0..{wh[1]} px, "
            f"level 0); {bad.size} such prompts; expected level-0 px coordinates"
        )


def _tasks(windows: Sequence[Window], grid: WindowGrid, tile: int) -> list[list[Window]]:
    """Windows grouped by the tile that holds their core's origin; own windows last."""
    rows, cols = grid.shape
    groups: dict[tuple[int, int], list[Window]] = {}
    for w in windows:
        if w.window_id < rows * cols:
            r, c = divmod(w.window_id, cols)
            key = (r * grid.core // tile, c * grid.core // tile)
        else:
            key = (1 << 40, 0)
        groups.setdefault(key, []).append(w)
    return [groups[k] for k in sorted(groups)]


def _save_masks(path: Path, masks: Sequence[PromptMask]) -> None:
    """One task's masks as an npz, written atomically."""
    arrays = {
        "index": np.asarray([m.index for m in masks], np.int64),
        "origin": np.asarray([m.origin_xy for m in masks], np.int64).reshape(-1, 2),
        "shape": np.asarray([m.mask.shape for m in masks], np.int64).reshape(-1, 2),
        "score": np.asarray([m.score for m in masks], np.float64),
        "window_id": np.asarray([m.window_id for m in masks], np.int64),
        "edge": np.asarray([m.at_window_edge for m in masks], bool),
        "flat": np.concatenate([m.mask.ravel() for m in masks]) if masks else np.zeros(0, bool),
    }
    atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]


def _load_masks(path: Path) -> list[PromptMask]:
    with np.load(path) as d:
        sizes = d["shape"].prod(axis=1)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return [
            PromptMask(
                int(d["index"][k]),
                (int(d["origin"][k, 0]), int(d["origin"][k, 1])),
                d["flat"][starts[k] : starts[k + 1]].reshape(d["shape"][k]),
                float(d["score"][k]),
                int(d["window_id"][k]),
                bool(d["edge"][k]),
            )
            for k in range(sizes.size)
        ]


def _bboxes(masks: Sequence[PromptMask]) -> npt.NDArray[np.int64]:
    """(M, 4) half-open level-0 boxes of the masks."""
    out = np.zeros((len(masks), 4), np.int64)
    for k, m in enumerate(masks):
        out[k] = (
            m.origin_xy[0],
            m.origin_xy[1],
            m.origin_xy[0] + m.mask.shape[1],
            m.origin_xy[1] + m.mask.shape[0],
        )
    return out


def _touching(
    boxes: npt.NDArray[np.int64], region: tuple[int, int, int, int]
) -> npt.NDArray[np.int64]:
    x0, y0, x1, y1 = region
    hit = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
    hit &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return np.flatnonzero(hit)


def _prompt_types(prompts: PromptSet) -> list[str]:
    n_pts = np.bincount(prompts.point_prompt, minlength=len(prompts))
    return [
        ("box+points" if n_pts[i] else "box") if prompts.has_box[i] else "points"
        for i in range(len(prompts))
    ]


def prompt_slide(
    slide_path: str | Path,
    prompts_path: str | Path,
    out_dir: str | Path,
    model: PromptModel,
    *,
    mpp: float | None = None,
    tile: int = 1024,
    margin_px: int | None = None,
    batch: int = 32,
    slide_id: str | None = None,
    overwrite: bool = False,
    on_task: Callable[[int, int], None] | None = None,
) -> PromptResult:
    """Masks for every prompt of a file on a slide, written like ``segment``'s outputs.

    Parameters
    ----------
    slide_path : path
        Slide or image file (anything ``open_slide`` reads); the model sees level 0.
    prompts_path : path
        CSV / Parquet / GeoJSON prompts in level-0 px (see ``prompts.parse``).
    out_dir : path
        Output root; results go to ``out_dir/<slide_id>/``.
    model : PromptModel
        Its ``input_px`` fixes the window grid.
    mpp : float, optional
        Level-0 µm/px when the file does not say.
    tile : int
        Scheduling only: windows whose core starts in one tile form one task (and one resume
        file); the label store's chunk side. Results do not depend on it.
    margin_px : int, optional
        Window margin; default ``input_px // 8``.
    batch : int
        Prompts per decoder call.

    Raises
    ------
    ConfigError
        Bad prompts (the row is named) or parameters. ``OutputExistsError`` without overwrite.
    """
    if tile < 64 or tile % 16:
        raise ConfigError(f"tile = {tile}; expected a multiple of 16, at least 64")
    t_start = time.perf_counter()
    layout = SlideLayout(Path(out_dir), slide_id or slide_id_of(slide_path))
    sid = layout.slide_id
    layout.check_writable(overwrite)
    slide = open_slide(slide_path, mpp)
    if slide.mpp is None:
        raise MissingResolutionError(
            f"{slide_path}: no pixel size in the file; pass --mpp (level-0 µm/px)"
        )
    wh = (int(slide.level_dimensions[0][0]), int(slide.level_dimensions[0][1]))
    prompts = read_prompts(prompts_path)
    _check_inside(prompts, wh, Path(prompts_path).name)
    margin = model.input_px // 8 if margin_px is None else margin_px
    grid = WindowGrid(wh, model.input_px, margin)
    windows = assign_windows(prompts, grid)
    params = {
        "model": model.name,
        "input_px": model.input_px,
        "margin_px": margin,
        "mpp_l0": slide.mpp,
        "prompts_sha256": sha256_file(Path(prompts_path)),
        "slide": str(Path(slide_path).resolve()),
    }
    phash = params_hash(params)
    layout.prepare_staging(phash, subdirs=("tasks",))
    work = layout.staging

    def read(box: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
        return slide.read_level(0, box)

    tasks = _tasks(windows, grid, tile)
    t_model = time.perf_counter()
    reused = 0
    for k, task in enumerate(tasks):
        path = work.task_file(k)
        if path.is_file():
            reused += 1
            continue
        masks: list[PromptMask] = []
        for w in task:
            masks += decode_window(
                model, prompts, w, window_pixels(read, wh, w, model.input_px), wh, batch
            )
        _save_masks(path, masks)
        if on_task:
            on_task(k + 1, len(tasks))
    model_s = time.perf_counter() - t_model
    all_masks = [m for k in range(len(tasks)) for m in _load_masks(work.task_file(k))]
    all_masks.sort(key=lambda m: m.index)
    nuclei, paint_s = _write_outputs(work, sid, slide, wh, prompts, windows, all_masks, tile)
    own = [w for w in windows if w.window_id >= grid.shape[0] * grid.shape[1]]
    if own:
        warnings.warn(
            f"{len(own)} prompts do not fit the {model.input_px}-px window around them (margin "
            f"{margin} px) and got windows of their own ({sum(w.scale > 1 for w in own)} scaled "
            f"down, largest factor {max(w.scale for w in own):.2f})",
            PathoSamWarning,
            stacklevel=2,
        )
    info = {
        "slide_id": sid,
        "command": "prompt",
        "versions": versions(),
        "parameters": {**params, "tile": tile, "batch": batch},
        "params_hash": phash,
        "input": {
            "path": str(Path(slide_path).resolve()),
            "size_bytes": Path(slide_path).stat().st_size,
            "sha256": sha256_file(Path(slide_path)),
            "mpp_l0": slide.mpp,
            "working_mpp": slide.mpp,
            "level": 0,
            "working_wh_px": list(wh),
            "prompts": str(Path(prompts_path).resolve()),
        },
        "timings_s": {
            "model_s": model_s,
            "paint_and_table_s": paint_s,
            "total_s": time.perf_counter() - t_start,
        },
        "counts": {
            "prompts": len(prompts),
            "prompts_with_box": int(prompts.has_box.sum()),
            "points": int(prompts.point_xy.shape[0]),
            "windows": len(windows),
            "windows_grid": len(windows) - len(own),
            "own_windows": len(own),
            "own_windows_scaled": sum(w.scale > 1 for w in own),
            "tasks": len(tasks),
            "tasks_reused": reused,
            "nuclei": nuclei,
            "prompts_without_pixels": len(prompts) - nuclei,
            "nuclei_at_window_edge": sum(m.at_window_edge for m in all_masks),
        },
        "outputs": dict(OUTPUTS),
    }
    work.write_run_info(info)
    layout.clean_staging()
    final = layout.publish()
    slide.close()
    return PromptResult(final, nuclei, len(prompts), len(windows), len(own))


def _write_outputs(
    work: ResultFolder,
    sid: str,
    slide: Any,
    wh: tuple[int, int],
    prompts: PromptSet,
    windows: Sequence[Window],
    masks: Sequence[PromptMask],
    tile: int,
) -> tuple[int, float]:
    """Paint the label store chunk by chunk and write the table window by window."""
    t0 = time.perf_counter()
    order = np.argsort(prompts.prompt_id, kind="stable")
    values = np.zeros(len(prompts), np.uint32)
    values[order] = np.arange(1, len(prompts) + 1, dtype=np.uint32)  # nucleus_id: prompt-id rank
    mask_values = values[[m.index for m in masks]]
    mask_pids = prompts.prompt_id[[m.index for m in masks]]
    boxes = _bboxes(masks)
    labels_path = work.labels
    if labels_path.exists():
        shutil.rmtree(labels_path)
    create_label_image(labels_path, wh, tile, float(slide.mpp), sid, slide)
    levels = open_levels(labels_path)
    for y in range(0, wh[1], tile):
        for x in range(0, wh[0], tile):
            region = (x, y, min(x + tile, wh[0]), min(y + tile, wh[1]))
            hit = _touching(boxes, region)
            if hit.size:
                core = paint_region(
                    region, [masks[int(k)] for k in hit], mask_values[hit], mask_pids[hit]
                )
                write_core(levels, region, core)
    types = _prompt_types(prompts)
    writer = NucleusTableWriter(work.table, extra=EXTRA_COLUMNS)
    by_index = {m.index: k for k, m in enumerate(masks)}
    try:
        for w in windows:
            x0, y0, x1, y1 = w.box_xyxy
            region = (max(x0, 0), max(y0, 0), min(x1, wh[0]), min(y1, wh[1]))
            hit = _touching(boxes, region)
            labels = paint_region(
                region, [masks[int(k)] for k in hit], mask_values[hit], mask_pids[hit]
            )
            owned_k = [by_index[int(i)] for i in w.prompts]
            owned = [masks[k] for k in owned_k]
            rgb = read_window(lambda b: slide.read_level(0, b), wh, region)
            cols = window_columns(
                region,
                labels,
                rgb,
                owned,
                mask_values[owned_k],
                {
                    "slide_id": sid,
                    "mpp": float(slide.mpp),
                    "prompt_id": mask_pids[owned_k],
                    "prompt_type": [types[m.index] for m in owned],
                    "window_scale": [w.scale] * len(owned),
                },
            )
            if cols is not None:
                writer.append(cols)
    finally:
        writer.close()
    return writer.rows_written, time.perf_counter() - t0
