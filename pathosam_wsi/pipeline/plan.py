"""What one slide's run needs to know, in one picklable object shipped with every task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathosam_wsi.config import RunConfig
from pathosam_wsi.files import atomic_write
from pathosam_wsi.pipeline.layout import ResultFolder
from pathosam_wsi.slide.frame import WorkingFrame
from pathosam_wsi.slide.open import SlideHandle
from pathosam_wsi.tiling.grid import Grid

__all__ = ["SlidePlan", "atomic_save_npz", "block_file"]


@dataclass(frozen=True)
class SlidePlan:
    """A planned slide run (small and picklable: tasks carry it, never arrays or models)."""

    slide: SlideHandle
    slide_id: str
    frame: WorkingFrame
    grid: Grid
    config: RunConfig
    work_dir: str
    """Staging folder of this run (``OUT/<slide_id>.partial``)."""
    block_ids: tuple[int, ...]
    """Blocks sent to the model (those with tissue), ascending."""

    @property
    def staging(self) -> ResultFolder:
        """The staging folder's paths (``pipeline/layout.py``)."""
        return ResultFolder(Path(self.work_dir))

    @property
    def blocks_dir(self) -> Path:
        """Where per-block results are kept until the outputs are assembled."""
        return self.staging.blocks_dir

    @property
    def labels_path(self) -> Path:
        """The OME-Zarr store."""
        return self.staging.labels


def block_file(plan: SlidePlan, block_id: int) -> Path:
    """Path of one block's result file."""
    return plan.staging.block_file(block_id)


def atomic_save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write an npz so that a reader sees either nothing or the whole file.

    Label images are zstd-compressed and the rest is stored raw (``stitch.packing``; read them
    back with ``unpack_array`` / ``unpack_arrays``): deflating everything cost ~20 ms per block.
    """
    from pathosam_wsi.stitch.packing import pack_arrays  # local: plan.py's imports stay as they are

    packed: dict[str, Any] = pack_arrays(arrays)
    atomic_write(path, lambda fh: np.savez(fh, **packed))
