"""Refinement: an existing output plus correction points -> a new output where only the corrected
objects change.

The corrections file holds points (``x, y, label``) and optionally boxes, with ``object_id`` = the
``nucleus_id`` of the object they correct (an id absent from the table adds a new object). A
corrected object is decoded again from its table box (unless the file gives one) and all of its
correction points. Its new mask may take background pixels and pixels of corrected objects
(ordered by the usual overlap rule), never pixels of an uncorrected object, so every other label
and table row is copied unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import zarr

from pathosam_wsi.errors import ConfigError, MissingResolutionError
from pathosam_wsi.export.geoparquet import NucleusTableWriter
from pathosam_wsi.export.omezarr import create_label_image, open_levels, write_core
from pathosam_wsi.export.runinfo import versions
from pathosam_wsi.model.prompt_models import PromptModel
from pathosam_wsi.pipeline.layout import OUTPUTS, ResultFolder, SlideLayout
from pathosam_wsi.pipeline.segment import slide_id_of
from pathosam_wsi.prompts.decode import PromptMask, decode_window, read_window, window_pixels
from pathosam_wsi.prompts.paint import paint_order
from pathosam_wsi.prompts.parse import PromptSet, read_prompts
from pathosam_wsi.prompts.run import PromptResult
from pathosam_wsi.prompts.table import EXTRA_COLUMNS, window_columns
from pathosam_wsi.prompts.windows import WindowGrid, assign_windows
from pathosam_wsi.slide.open import open_slide

__all__ = ["refine_output"]


def _old_table(source: ResultFolder) -> pa.Table:
    path = source.table
    if not path.is_file():
        raise ConfigError(
            f"--from {source.path}: no {path.name}; expected an OUT/<slide_id> folder"
        )
    return pq.read_table(path)


def _with_table_boxes(corr: PromptSet, old: pa.Table) -> PromptSet:
    """Give corrected objects without a box in the file their table box."""
    ids = old.column("nucleus_id").to_numpy()
    bbox = old.column("bbox").flatten()
    boxes = np.column_stack([b.to_numpy() for b in bbox])
    row_of = {int(i): k for k, i in enumerate(ids)}
    box = corr.box_xyxy.copy()
    for j, pid in enumerate(corr.prompt_id):
        if np.isnan(box[j, 0]) and int(pid) in row_of:
            box[j] = boxes[row_of[int(pid)]]
    return PromptSet(
        corr.prompt_id, box, corr.point_xy, corr.point_label, corr.point_prompt, corr.source_row
    )


def _old_columns(old: pa.Table, keep: npt.NDArray[np.bool_]) -> dict[str, Any]:
    """Unchanged rows as NucleusTableWriter columns (prompt columns filled for segment tables)."""
    t = old.filter(pa.array(keep))
    cols: dict[str, Any] = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = col.to_pylist()
        else:
            cols[name] = col.to_numpy()
    cols["geometry"] = shapely.from_wkb(t.column("geometry").to_numpy(zero_copy_only=False))
    n = t.num_rows
    defaults = {
        "prompt_id": t.column("nucleus_id").to_numpy(),
        "score": np.full(n, np.nan, np.float32),
        "prompt_type": ["segment"] * n,
        "window_scale": np.full(n, np.nan, np.float32),
    }
    for name, value in defaults.items():
        cols.setdefault(name, value)
    return cols


def _mpp(mpp: float | None, slide_path: str | Path) -> float:
    if mpp is None:
        raise MissingResolutionError(
            f"{slide_path}: no pixel size in the file; pass --mpp (level-0 µm/px)"
        )
    return mpp


def refine_output(
    slide_path: str | Path,
    from_dir: str | Path,
    corrections_path: str | Path,
    out_dir: str | Path,
    model: PromptModel,
    *,
    mpp: float | None = None,
    tile: int = 1024,
    batch: int = 32,
    slide_id: str | None = None,
    overwrite: bool = False,
) -> PromptResult:
    """Write ``out_dir/<slide_id>/`` = ``from_dir`` with the corrected objects decoded again.

    Raises
    ------
    ConfigError
        Missing inputs or bad corrections (row named). ``OutputExistsError`` without overwrite.
    """
    t0 = time.perf_counter()
    from_dir = Path(from_dir)
    layout = SlideLayout(Path(out_dir), slide_id or slide_id_of(slide_path))
    sid, source = layout.slide_id, ResultFolder(from_dir)
    if layout.final.path.resolve() == from_dir.resolve():
        raise ConfigError(f"-o would overwrite --from {from_dir}; expected another output root")
    layout.check_writable(overwrite)
    old = _old_table(source)
    s0 = source.labels_s0
    old_labels = np.asarray(zarr.open_array(str(s0), mode="r", zarr_format=2)[:])
    slide = open_slide(slide_path, mpp)
    wh = (int(slide.level_dimensions[0][0]), int(slide.level_dimensions[0][1]))
    mpp_l0 = _mpp(slide.mpp, slide_path)
    if old_labels.shape != (wh[1], wh[0]):
        raise ConfigError(
            f"--from labels are {old_labels.shape[::-1]} px, the slide {wh}; "
            "expected the same slide"
        )
    corr = _with_table_boxes(read_prompts(corrections_path), old)
    grid = WindowGrid(wh, model.input_px, model.input_px // 8)
    windows = assign_windows(corr, grid)

    def read(box: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
        return slide.read_level(0, box)

    masks: list[PromptMask] = []
    for w in windows:
        masks += decode_window(
            model, corr, w, window_pixels(read, wh, w, model.input_px), wh, batch
        )
    masks.sort(key=lambda m: m.index)
    old_ids = old.column("nucleus_id").to_numpy()
    next_id = int(max(old_ids.max(initial=0), old_labels.max(initial=0))) + 1
    new_ids = [
        int(p) if int(p) in set(old_ids.tolist()) else next_id + k
        for k, p in enumerate(corr.prompt_id)
    ]
    values = np.asarray([new_ids[m.index] for m in masks], np.uint32)
    corrected = np.isin(old_labels, values)
    labels = np.where(corrected, 0, old_labels).astype(np.uint32)
    free = (old_labels == 0) | corrected
    scores = np.asarray([m.score for m in masks])
    for k in paint_order(scores, corr.prompt_id[[m.index for m in masks]]):
        m = masks[int(k)]
        (x0, y0), (h, w) = m.origin_xy, m.mask.shape
        dst, ok = labels[y0 : y0 + h, x0 : x0 + w], free[y0 : y0 + h, x0 : x0 + w]
        dst[m.mask & ok & (dst == 0)] = values[int(k)]
    layout.discard_staging()
    layout.prepare_staging("refine")  # never resumed: the staging folder was just removed
    work = layout.staging
    create_label_image(work.labels, wh, tile, mpp_l0, sid, slide)
    levels = open_levels(work.labels)
    for y in range(0, wh[1], tile):
        for x in range(0, wh[0], tile):
            region = (x, y, min(x + tile, wh[0]), min(y + tile, wh[1]))
            write_core(levels, region, labels[region[1] : region[3], region[0] : region[2]])
    writer = NucleusTableWriter(work.table, extra=EXTRA_COLUMNS)
    try:
        writer.append(_old_columns(old, ~np.isin(old_ids, values)))
        for w in windows:
            x0, y0, x1, y1 = w.box_xyxy
            region = (max(x0, 0), max(y0, 0), min(x1, wh[0]), min(y1, wh[1]))
            owned = [masks[int(i)] for i in w.prompts]
            cols = window_columns(
                region,
                labels[region[1] : region[3], region[0] : region[2]],
                read_window(read, wh, region),
                owned,
                np.asarray([new_ids[m.index] for m in owned], np.uint32),
                {
                    "slide_id": sid,
                    "mpp": mpp_l0,
                    "prompt_id": corr.prompt_id[w.prompts],
                    "prompt_type": ["refined"] * len(owned),
                    "window_scale": [w.scale] * len(owned),
                },
            )
            if cols is not None:
                writer.append(cols)
    finally:
        writer.close()
    info: dict[str, Any] = {
        "slide_id": sid,
        "command": "prompt --from",
        "versions": versions(),
        "refined_from": str(from_dir.resolve()),
        "parameters": {
            "model": model.name,
            "input_px": model.input_px,
            "tile": tile,
            "batch": batch,
        },
        "input": {
            "path": str(Path(slide_path).resolve()),
            "corrections": str(Path(corrections_path).resolve()),
        },
        "counts": {
            "corrected_objects": int(np.isin(values, old_ids).sum()),
            "new_objects": int((~np.isin(values, old_ids)).sum()),
            "correction_points": int(corr.point_xy.shape[0]),
            "nuclei": writer.rows_written,
        },
        "timings_s": {"total_s": time.perf_counter() - t0},
        "outputs": dict(OUTPUTS),
    }
    prev = source.read_run_info()
    if prev is not None:
        info["previous_run"] = prev.get("params_hash")
    work.write_run_info(info)
    layout.clean_staging()
    final = layout.publish()
    slide.close()
    return PromptResult(final, writer.rows_written, len(corr), len(windows), 0)
