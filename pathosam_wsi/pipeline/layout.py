"""The output layout: every path under ``OUT`` and the decisions taken on them.

::

    OUT/
      <slide_id>/            finished slide (ResultFolder): labels.ome.zarr, nuclei.parquet,
                             run.json, tissue_mask.png, thumbnail.png, .pathosam-wsi (marker)
      <slide_id>.partial/    staging folder of a running or interrupted slide: the same files plus
                             params.json, blocks/b<id>.npz, ids.npz (segment) or tasks/t<k>.npz
                             (prompt), removed before it is renamed to <slide_id>/
      <slide_id>.old/        the previous result during ``--overwrite``, for a moment
      status.parquet         cohort status (CohortLayout), .status-owner.json its writer
      nuclei/<slide_id>.parquet   cohort-wide link to each slide's table

:class:`SlideLayout` decides "is this slide finished with these parameters" (``run.json`` with the
same ``params_hash``), "can this staging folder be resumed" (``params.json``) and publishes a
staging folder (rename to the final name; only folders that carry the marker for the same slide
id, directly inside ``OUT``, are ever removed, see ``slide_ids.remove_ours``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathosam_wsi.errors import OutputExistsError
from pathosam_wsi.files import atomic_write_json
from pathosam_wsi.pipeline.slide_ids import (
    MARKER,
    NUCLEI_DIR,
    OLD_SUFFIX,
    PARTIAL_SUFFIX,
    STATUS_FILE,
    check_slide_id,
    is_ours,
    remove_ours,
    write_marker,
)

__all__ = [
    "LABELS_ZARR",
    "MARKER",
    "OLD_SUFFIX",
    "PARTIAL_SUFFIX",
    "RUN_JSON",
    "TABLE_FILE",
    "CohortLayout",
    "ResultFolder",
    "SlideLayout",
]

log = logging.getLogger(__name__)

LABELS_ZARR = "labels.ome.zarr"
TABLE_FILE = "nuclei.parquet"
RUN_JSON = "run.json"
OUTPUTS = {"labels": LABELS_ZARR, "table": TABLE_FILE}
"""What run.json's ``outputs`` names (paths relative to the slide folder)."""


@dataclass(frozen=True)
class ResultFolder:
    """The files of one slide folder, finished (``OUT/<id>``) or staging (``OUT/<id>.partial``)."""

    path: Path

    @property
    def labels(self) -> Path:
        """The OME-Zarr label store."""
        return self.path / LABELS_ZARR

    @property
    def labels_s0(self) -> Path:
        """Full-resolution label array inside the store."""
        return self.labels / "labels" / "nuclei" / "s0"

    @property
    def table(self) -> Path:
        """The GeoParquet nucleus table."""
        return self.path / TABLE_FILE

    @property
    def run_json(self) -> Path:
        """Versions, parameters, timings and counts of the run."""
        return self.path / RUN_JSON

    @property
    def marker(self) -> Path:
        """The file that says the folder was made by pathosam-wsi for this slide."""
        return self.path / MARKER

    @property
    def tissue_mask_png(self) -> Path:
        """The tissue mask at thumbnail resolution (when the mask is on)."""
        return self.path / "tissue_mask.png"

    @property
    def thumbnail_png(self) -> Path:
        """The slide thumbnail the tissue mask was computed on."""
        return self.path / "thumbnail.png"

    @property
    def qc_dir(self) -> Path:
        """QC pictures (``export/qc.py``)."""
        return self.path / "qc"

    @property
    def params_json(self) -> Path:
        """Staging only: the ``params_hash`` the folder's partial results belong to."""
        return self.path / "params.json"

    @property
    def blocks_dir(self) -> Path:
        """Staging only: one result file per finished block (segment)."""
        return self.path / "blocks"

    def block_file(self, block_id: int) -> Path:
        """Staging only: the result file of one block."""
        return self.blocks_dir / f"b{block_id:07d}.npz"

    @property
    def ids_npz(self) -> Path:
        """Staging only: the global id tables of every block (``results.GlobalIds``)."""
        return self.path / "ids.npz"

    @property
    def tasks_dir(self) -> Path:
        """Staging only: one mask file per finished prompt task (prompt)."""
        return self.path / "tasks"

    def task_file(self, task: int) -> Path:
        """Staging only: the masks of one prompt task."""
        return self.tasks_dir / f"t{task}.npz"

    def read_run_info(self) -> dict[str, Any] | None:
        """``run.json`` as a dict, None when it is missing or unreadable."""
        try:
            info = json.loads(self.run_json.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def write_run_info(self, info: dict[str, Any]) -> None:
        """Write ``run.json`` atomically."""
        atomic_write_json(self.run_json, info)

    def has_outputs(self) -> bool:
        """Whether run.json and the nucleus table are present (the label store is checked by
        the readers that open it)."""
        return self.run_json.is_file() and self.table.is_file()


@dataclass(frozen=True)
class SlideLayout:
    """Paths of one slide under an output root, and the decisions taken on them.

    Parameters
    ----------
    out_dir : Path
        The output root ``OUT``.
    slide_id : str
        A safe slide id (checked here, see ``slide_ids.check_slide_id``).
    """

    out_dir: Path
    slide_id: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        check_slide_id(self.slide_id)

    @property
    def final(self) -> ResultFolder:
        """``OUT/<slide_id>``: the finished outputs."""
        return ResultFolder(self.out_dir / self.slide_id)

    @property
    def staging(self) -> ResultFolder:
        """``OUT/<slide_id>.partial``: where a run builds its outputs."""
        return ResultFolder(self.out_dir / f"{self.slide_id}{PARTIAL_SUFFIX}")

    @property
    def old(self) -> Path:
        """``OUT/<slide_id>.old``: the replaced result during a publish."""
        return self.out_dir / f"{self.slide_id}{OLD_SUFFIX}"

    def final_exists(self) -> bool:
        """Whether something (folder, file or link) sits at the final path."""
        path = self.final.path
        return path.exists() or path.is_symlink()

    def finished_info(self, phash: str) -> dict[str, Any] | None:
        """run.json of a finished result made with ``params_hash == phash``, else None."""
        info = self.final.read_run_info()
        return info if info is not None and info.get("params_hash") == phash else None

    def check_writable(self, overwrite: bool) -> None:
        """Refuse an existing result without ``overwrite``; with it, refuse one that is not ours.

        Raises
        ------
        OutputExistsError
            The final folder exists and ``overwrite`` is False, or it was not made by
            pathosam-wsi for this slide.
        """
        if not self.final_exists():
            return
        if not overwrite:
            raise OutputExistsError(
                f"{self.final.path}: output folder exists; pass --overwrite to replace it or "
                "choose another -o"
            )
        remove_ours(self.old, self.out_dir, self.slide_id)
        if not is_ours(self.final.path, self.slide_id):
            remove_ours(self.final.path, self.out_dir, self.slide_id)  # raises: not ours

    def staging_matches(self, phash: str) -> bool:
        """Whether the staging folder holds partial results of ``params_hash == phash``."""
        work = self.staging.path
        if not work.is_dir() or work.is_symlink():
            return False
        try:
            recorded = json.loads(self.staging.params_json.read_text()).get("params_hash")
            return bool(recorded == phash)
        except (OSError, ValueError, AttributeError):
            return False

    def prepare_staging(self, phash: str, subdirs: tuple[str, ...] = ()) -> bool:
        """Reuse a staging folder of the same parameters, else start it afresh (only if ours).

        ``subdirs`` (e.g. ``("blocks",)``) are created inside it. Returns whether it resumed.
        """
        work = self.staging.path
        if self.staging_matches(phash):  # resuming never deletes; old versions get the marker
            log.info("resuming from %s", work)
            if not is_ours(work, self.slide_id):
                write_marker(work, self.slide_id)
            for sub in subdirs:
                (work / sub).mkdir(exist_ok=True)
            return True
        self.discard_staging()
        work.mkdir(parents=True)
        for sub in subdirs:
            (work / sub).mkdir()
        write_marker(work, self.slide_id)
        atomic_write_json(self.staging.params_json, {"params_hash": phash})
        return False

    def discard_staging(self) -> None:
        """Remove the staging folder (raises if something else than ours sits there)."""
        remove_ours(self.staging.path, self.out_dir, self.slide_id)

    def clean_staging(self) -> None:
        """Remove the staging-only entries (blocks, ids, tasks, params) before publishing."""
        s = self.staging
        for folder in (s.blocks_dir, s.tasks_dir):
            if folder.is_dir():
                shutil.rmtree(folder)
        for path in (s.params_json, s.ids_npz):
            path.unlink(missing_ok=True)

    def publish(self) -> Path:
        """Move the finished staging folder to the final path; an old result is removed only
        after the move. Returns the final path.

        Raises
        ------
        OutputExistsError
            Something not made by pathosam-wsi for this slide is in the way.
        """
        final, sid, out = self.final.path, self.slide_id, self.out_dir
        if final.exists() or final.is_symlink():
            remove_ours(self.old, out, sid)
            if not is_ours(final, sid):
                remove_ours(final, out, sid)  # raises: not made by us for this slide
            final.rename(self.old)
        self.staging.path.rename(final)
        remove_ours(self.old, out, sid)
        return final


@dataclass(frozen=True)
class CohortLayout:
    """Cohort-level paths under an output root."""

    out_dir: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def status_parquet(self) -> Path:
        """One row per slide (``cohort.SlideStatus``)."""
        return self.out_dir / STATUS_FILE

    @property
    def status_owner_json(self) -> Path:
        """Which process (host, pid) last wrote the status."""
        return self.out_dir / ".status-owner.json"

    @property
    def slurm_dir(self) -> Path:
        """``OUT/.slurm``: job scripts and logs of ``--cluster slurm``."""
        return self.out_dir / ".slurm"

    @property
    def nuclei_dir(self) -> Path:
        """``OUT/nuclei``: every slide's table as ``<slide_id>.parquet``."""
        return self.out_dir / NUCLEI_DIR

    def slide(self, slide_id: str) -> SlideLayout:
        """The layout of one slide of the cohort."""
        return SlideLayout(self.out_dir, slide_id)

    def cohort_table(self, slide_id: str) -> Path:
        """``OUT/nuclei/<slide_id>.parquet``."""
        return self.nuclei_dir / f"{slide_id}.parquet"

    def publish_table(self, slide_id: str) -> None:
        """Expose a slide's table as ``OUT/nuclei/<id>.parquet`` (hard link, else a copy),
        replacing an older one atomically."""
        src, dst = self.slide(slide_id).final.table, self.cohort_table(slide_id)
        self.nuclei_dir.mkdir(exist_ok=True)
        tmp = self.nuclei_dir / f".{slide_id}.parquet.tmp"
        tmp.unlink(missing_ok=True)
        if dst.exists() and os.path.samefile(src, dst):
            return  # already linked (os.replace between two links of one inode would do nothing)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        tmp.unlink(missing_ok=True)
