"""Stages 2-4: global ids from all blocks' keys, painting the label image, writing the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pathosam_wsi.export.geoparquet import NucleusTableWriter, PolygonRings
from pathosam_wsi.export.omezarr import open_levels, write_core
from pathosam_wsi.pipeline.plan import SlidePlan
from pathosam_wsi.pipeline.results import BlockFile
from pathosam_wsi.postprocess.features import FEATURE_COLUMNS
from pathosam_wsi.stitch.ids import assign_global_ids
from pathosam_wsi.stitch.paint import OwnedTile, paint_core

__all__ = [
    "blocks_to_paint",
    "blocks_under",
    "global_luts",
    "paint_blocks",
    "wide_label_boxes",
    "write_table",
]

Luts = Mapping[int, npt.NDArray[np.uint32]]


Box = tuple[int, int, int, int]


def global_luts(plan: SlidePlan) -> dict[int, npt.NDArray[np.uint32]]:
    """Local -> global id tables of every processed block (reads only the ``key`` arrays)."""
    keys = {}
    for b in plan.block_ids:
        keys[b] = BlockFile.of(plan, b).load("key")["key"]
    return assign_global_ids(keys)


def wide_label_boxes(plan: SlidePlan) -> dict[int, Box]:
    """block -> label box of the blocks whose label tile reaches beyond their halo box."""
    wide: dict[int, Box] = {}
    for b in plan.block_ids:
        try:
            box = tuple(
                int(v) for v in BlockFile.of(plan, b).load("labels_box_px")["labels_box_px"]
            )
        except KeyError:  # files of blocks written without the window rule
            continue
        if box != plan.grid.block(b).outer_px:
            wide[b] = box  # type: ignore[assignment]
    return wide


def _meets(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def blocks_under(plan: SlidePlan, wide: Mapping[int, Box], block_ids: Sequence[int]) -> set[int]:
    """The blocks of ``wide`` whose label box meets the core of one of ``block_ids``."""
    out: set[int] = set()
    for b in block_ids:
        core = plan.grid.block(b).core_px
        out.update(w for w, box in wide.items() if _meets(box, core))
    return out


def blocks_to_paint(plan: SlidePlan, wide: Mapping[int, Box] | None = None) -> list[int]:
    """Processed blocks and their neighbours (nuclei may spill into a skipped neighbour), and
    every block under a wide label box."""
    out = set(plan.block_ids)
    for b in plan.block_ids:
        out.update(n.block_id for n in plan.grid.neighbours(plan.grid.block(b)))
    for box in (wide or {}).values():
        out.update(b.block_id for b in plan.grid if _meets(box, b.core_px))
    return sorted(out)


def paint_blocks(
    plan: SlidePlan, block_ids: Sequence[int], luts: Luts, wide: Mapping[int, Box] | None = None
) -> int:
    """Paint and write the final labels of these blocks' cores; returns pixels labelled.

    ``wide`` maps the blocks whose label tile is larger than their halo box to that box.
    """
    levels = open_levels(plan.labels_path)
    processed = set(plan.block_ids)
    wide = wide or {}

    @lru_cache(maxsize=16)
    def tile_labels(b: int) -> npt.NDArray[np.uint32]:
        return BlockFile.of(plan, b).load("labels")["labels"]

    def owned_tile(b: int) -> OwnedTile:
        box = wide.get(b, plan.grid.block(b).outer_px)
        return OwnedTile(b, box, tile_labels(b), luts[b])

    painted = 0
    for b in block_ids:
        block = plan.grid.block(b)
        near = {n.block_id for n in [block, *plan.grid.neighbours(block)]} & processed
        near |= blocks_under(plan, wide, [b]) & processed
        tiles = [owned_tile(n) for n in sorted(near)]
        core = paint_core(block.core_px, b, tiles)
        write_core(levels, block.core_px, core)
        painted += int(np.count_nonzero(core))
    return painted


def _block_columns(
    plan: SlidePlan, b: int, lut: npt.NDArray[np.uint32], class_names: Sequence[str] | None
) -> dict[str, object]:
    d = BlockFile.of(plan, b).load_except("labels")
    mpp_l0, mpp = plan.frame.mpp_l0, plan.frame.mpp
    cols: dict[str, object] = {
        "nucleus_id": lut[1:].astype(np.int64),
        "slide_id": pa.array([plan.slide_id] * d["key"].size, pa.string()),
        "geometry": PolygonRings(d["ring_xy_l0"], d["ring_offsets"]),
        "centroid_x_l0": d["centroid_x_l0"],
        "centroid_y_l0": d["centroid_y_l0"],
        "centroid_x_um": d["centroid_x_l0"] * mpp_l0,
        "centroid_y_um": d["centroid_y_l0"] * mpp_l0,
        "area_px": d["area_px"],
        "area_um2": d["area_px"] * mpp**2,
        "perimeter_um": d["perimeter_um"],
        "fg_prob_mean": d["fg_prob_mean"],
        "tile_id": np.full(d["key"].size, b, np.int64),
        "at_halo_edge": d["at_halo_edge"],
    }
    if class_names is not None:
        names = np.asarray(class_names, dtype=object)
        cols["class_id"] = d["class_id"]
        cols["class_name"] = pa.array(names[d["class_id"]].tolist(), pa.string())
        cols["class_prob"] = d["class_prob"]
    cols.update({name: d[name] for name in FEATURE_COLUMNS})
    order = np.argsort(cols["nucleus_id"], kind="stable")  # type: ignore[arg-type]
    return {
        k: (v.take(pa.array(order)) if isinstance(v, pa.Array) else np.asarray(v)[order])
        if not isinstance(v, PolygonRings)
        else v.take(order)
        for k, v in cols.items()
    }


def write_table(plan: SlidePlan, luts: Luts, path: Path, class_names: Sequence[str] | None) -> int:
    """Write ``nuclei.parquet`` block by block (C-order), never holding the whole table."""
    writer = NucleusTableWriter(path, classes=class_names is not None)
    try:
        for b in plan.block_ids:
            writer.append(_block_columns(plan, b, luts[b], class_names))
    finally:
        writer.close()
    return writer.rows_written
