"""Typed results that cross task boundaries, each owning its file format.

- :class:`BlockSummary`: what a block task reports to the driver (small; no arrays).
- :class:`BlockFile`: one block's result file (``blocks/b<id>.npz``), the one reader and writer of
  its format (label images zstd-packed, see ``stitch/packing.py``).
- :class:`GlobalIds`: the local -> global id tables of every block of a slide, computed once on a
  worker and kept in ``ids.npz`` of the staging folder, where paint and table tasks read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.files import atomic_write
from pathosam_wsi.pipeline.layout import ResultFolder
from pathosam_wsi.pipeline.plan import SlidePlan, atomic_save_npz, block_file
from pathosam_wsi.stitch.packing import unpack_array, unpack_arrays

__all__ = ["BlockFile", "BlockSummary", "BlockTimings", "GlobalIds"]


@dataclass(frozen=True)
class BlockTimings:
    """Seconds spent on one block, per stage (wall time of the thread that did it)."""

    read_s: float = 0.0
    model_s: float = 0.0
    """The block's share of its batch's model call."""
    watershed_s: float = 0.0
    stitch_s: float = 0.0
    """Ownership, outlines and measurements."""
    write_blocks_s: float = 0.0

    @staticmethod
    def names() -> tuple[str, ...]:
        """Stage names, as run.json spells them with a ``sum_`` prefix."""
        return ("read_s", "model_s", "watershed_s", "stitch_s", "write_blocks_s")


@dataclass(frozen=True)
class BlockSummary:
    """One processed block as the driver sees it."""

    block_id: int
    nuclei: int
    at_halo_edge: int
    max_edge_area_px: int
    timings: BlockTimings = field(default_factory=BlockTimings)
    batch_size: int = 0
    """Tiles in the model call that carried this block (0: resumed from its file)."""
    regions_refit: int = 0
    """Foreground regions cut by the block's halo box and re-segmented in a larger window."""
    regions_exceeding_window: int = 0
    """Of those, regions that did not fit ``TilingConfig.max_window_px`` either."""


@dataclass(frozen=True)
class BlockFile:
    """One block's result file in the staging folder."""

    path: Path

    @classmethod
    def of(cls, plan: SlidePlan, block_id: int) -> BlockFile:
        """The result file of ``block_id`` in ``plan``'s staging folder."""
        return cls(block_file(plan, block_id))

    def exists(self) -> bool:
        """Whether the block is finished (files appear whole or not at all)."""
        return self.path.exists()

    def save(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Write the block's arrays atomically."""
        atomic_save_npz(self.path, dict(arrays))

    def load(self, *names: str) -> dict[str, npt.NDArray[Any]]:
        """The named arrays (every array when no name is given)."""
        with np.load(self.path) as data:
            if not names:
                return unpack_arrays(data)
            return {name: unpack_array(data, name) for name in names}

    def load_except(self, *names: str) -> dict[str, npt.NDArray[Any]]:
        """Every array but the named ones (e.g. all per-nucleus columns without ``labels``)."""
        with np.load(self.path) as data:
            return unpack_arrays(data, exclude=names)


@dataclass(frozen=True)
class GlobalIds:
    """Local -> global nucleus id tables of a slide's blocks.

    Attributes
    ----------
    block_ids : (B,) int64
        Processed blocks, ascending.
    offsets : (B + 1,) int64
        Block ``block_ids[i]`` has ``offsets[i + 1] - offsets[i]`` owned nuclei.
    gids : (N,) uint32
        Global ids of every owned nucleus, block after block in local id order.
    """

    block_ids: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    gids: npt.NDArray[np.uint32]
    wide_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    """(K,) blocks whose label tile reaches beyond their halo box (the window rule)."""
    wide_boxes_px: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    """(K, 4) their label tiles' boxes (x0, y0, x1, y1), working px."""

    @classmethod
    def from_luts(
        cls,
        luts: Mapping[int, npt.NDArray[np.uint32]],
        wide: Mapping[int, tuple[int, int, int, int]] | None = None,
    ) -> GlobalIds:
        """From ``block -> (n_b + 1,) uint32`` tables as ``assign_global_ids`` returns them,
        and ``wide``: block -> label box of the blocks whose box is not their halo box."""
        blocks = sorted(luts)
        sizes = np.array([luts[b].size - 1 for b in blocks], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        gids = np.concatenate([luts[b][1:] for b in blocks]) if blocks else np.zeros(0)
        wide = wide or {}
        wide_ids = np.array(sorted(wide), np.int64)
        boxes = np.array([wide[b] for b in sorted(wide)], np.int64).reshape(-1, 4)
        return cls(np.array(blocks, np.int64), offsets, gids.astype(np.uint32), wide_ids, boxes)

    def wide_boxes(self) -> dict[int, tuple[int, int, int, int]]:
        """block -> label box of the blocks whose label tile is larger than their halo box."""
        return {
            int(b): tuple(int(v) for v in box)  # type: ignore[misc]
            for b, box in zip(self.wide_ids, self.wide_boxes_px, strict=True)
        }

    @property
    def nuclei(self) -> int:
        """Owned nuclei in all."""
        return int(self.gids.size)

    def lut(self, block_id: int) -> npt.NDArray[np.uint32]:
        """(n_b + 1,) uint32 table of one block, index 0 -> 0."""
        i = int(np.searchsorted(self.block_ids, block_id))
        if i >= self.block_ids.size or self.block_ids[i] != block_id:
            raise KeyError(block_id)
        lut = np.zeros(int(self.offsets[i + 1] - self.offsets[i]) + 1, np.uint32)
        lut[1:] = self.gids[self.offsets[i] : self.offsets[i + 1]]
        return lut

    def luts(self, block_ids: Iterable[int]) -> dict[int, npt.NDArray[np.uint32]]:
        """Tables of those of ``block_ids`` that were processed."""
        present = set(self.block_ids.tolist())
        return {b: self.lut(b) for b in block_ids if b in present}

    def save(self, work_dir: str | Path) -> None:
        """Write ``ids.npz`` atomically into the staging folder."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "block_ids": self.block_ids,
            "offsets": self.offsets,
            "gids": self.gids,
            "wide_ids": self.wide_ids,
            "wide_boxes_px": self.wide_boxes_px,
        }
        path = ResultFolder(Path(work_dir)).ids_npz
        atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]

    @classmethod
    def load(cls, work_dir: str | Path) -> GlobalIds:
        """Read ``ids.npz`` of the staging folder."""
        with np.load(ResultFolder(Path(work_dir)).ids_npz) as data:
            if "wide_ids" not in data.files:
                return cls(data["block_ids"], data["offsets"], data["gids"])
            return cls(
                data["block_ids"],
                data["offsets"],
                data["gids"],
                data["wide_ids"],
                data["wide_boxes_px"],
            )
