"""Cohorts: a manifest of slides -> ``OUT/<slide_id>/``, ``OUT/status.parquet``, ``OUT/nuclei/``.

Slides run one after another or several at once (driver threads sharing one dask client); a slide
that cannot be read is marked failed with its error and the others go on. A rerun skips finished
slides (``run.json`` with the same ``params_hash``) and resumes unfinished ones block by block;
a finished slide whose parameters changed is refused unless ``overwrite``. Paths and those
decisions belong to ``pipeline/layout.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pathosam_wsi.config import RunConfig, SlideConfig, TilingConfig
from pathosam_wsi.distributed.executor import TaskExecutor, ThreadExecutor, make_executor
from pathosam_wsi.errors import ConfigError, OutputExistsError, PathoSamError
from pathosam_wsi.files import atomic_write, atomic_write_json
from pathosam_wsi.pipeline.layout import CohortLayout
from pathosam_wsi.pipeline.segment import run_params_hash, segment_slide, slide_id_of
from pathosam_wsi.pipeline.slide_ids import STATUS_FILE, check_slide_id

__all__ = [
    "STATUS_FILE",
    "ManifestEntry",
    "SlideStatus",
    "default_slides_in_flight",
    "read_manifest",
    "read_status",
    "run_cohort",
]

log = logging.getLogger(__name__)

_MAX_SLIDES_IN_FLIGHT = 64
# Per-slide override columns of a manifest: column -> (config section, field, parser).
_OVERRIDES: dict[str, tuple[str, str, Callable[[Any], Any]]] = {
    "mpp": ("slide", "mpp", float),
    "target_mpp": ("slide", "target_mpp", float),
    "roi": ("slide", "roi_xywh_l0", lambda v: tuple(int(x) for x in str(v).split())),
    "tile_px": ("tiling", "tile_px", int),
    "halo_px": ("tiling", "halo_px", int),
}
_STATUS_SCHEMA = pa.schema(
    [
        ("slide_id", pa.string()),
        ("path", pa.string()),
        ("state", pa.string()),
        ("nuclei", pa.int64()),
        ("blocks", pa.int64()),
        ("seconds", pa.float64()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class ManifestEntry:
    """One slide of a cohort with its own configuration."""

    path: str
    slide_id: str
    config: RunConfig


@dataclass
class SlideStatus:
    """One row of ``status.parquet``."""

    slide_id: str
    path: str
    state: str = "pending"
    """pending | running | done | failed (read_status also shows interrupted)"""
    nuclei: int | None = None
    blocks: int | None = None
    seconds: float | None = None
    error: str | None = None


def _load_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read manifest {str(path)!r}: {err}") from err


def _entry_config(base: RunConfig, row: dict[str, Any], where: str) -> RunConfig:
    """``base`` with the row's non-empty override columns applied."""
    changes: dict[str, dict[str, Any]] = {"slide": {}, "tiling": {}}
    for column, (section, name, parse) in _OVERRIDES.items():
        value = row.get(column)
        missing = value is None or (isinstance(value, float) and pd.isna(value))
        if missing or str(value).strip() == "":
            continue
        try:
            changes[section][name] = parse(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{where}: column {column!r} has {value!r}: {err}; fix that cell"
            ) from err
    slide = dataclasses.replace(base.slide, **changes["slide"]) if changes["slide"] else base.slide
    tiling = base.tiling
    try:
        if changes["tiling"]:
            tiling = dataclasses.replace(base.tiling, **changes["tiling"])
        return dataclasses.replace(
            base,
            slide=SlideConfig(**dataclasses.asdict(slide)),
            tiling=TilingConfig(**dataclasses.asdict(tiling)),
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err


def read_manifest(path: str | Path, base: RunConfig) -> list[ManifestEntry]:
    """Read a CSV or Parquet manifest.

    Parameters
    ----------
    path : path-like
        Columns: ``path`` (required; relative paths are taken from the manifest's folder),
        optional ``slide_id`` and per-slide overrides ``mpp``, ``target_mpp``, ``roi``
        ("x y w h", level-0 px), ``tile_px``, ``halo_px``; empty cells keep ``base``.
    base : RunConfig
        Parameters of every slide before its overrides.

    Returns
    -------
    list of ManifestEntry

    Raises
    ------
    ConfigError
        Unreadable manifest, missing ``path`` column, unknown column, bad value, duplicate id.
    """
    path = Path(path)
    table = _load_table(path)
    allowed = {"path", "slide_id", *_OVERRIDES}
    unknown = [c for c in table.columns if c not in allowed]
    if "path" not in table.columns or unknown:
        raise ConfigError(
            f"manifest {str(path)!r} has columns {list(table.columns)!r}; expected 'path' and "
            f"optionally {sorted(allowed - {'path'})!r}"
        )
    entries, seen, problems = [], set(), []
    for i, row in enumerate(table.to_dict("records")):
        where = f"{path}: row {i + 1}"
        slide_path = Path(str(row["path"]))
        if not slide_path.is_absolute():
            slide_path = path.parent / slide_path
        sid = str(row.get("slide_id") or "").strip() or slide_id_of(slide_path)
        try:
            check_slide_id(sid)
            if sid.casefold() in seen:
                raise ConfigError(
                    f"slide id {sid!r} is a duplicate (ids are compared ignoring case); give a "
                    "unique slide_id column value"
                )
            seen.add(sid.casefold())
            entries.append(ManifestEntry(str(slide_path), sid, _entry_config(base, row, where)))
        except ConfigError as err:
            text = str(err)
            problems.append(text if text.startswith(where) else f"{where}: {text}")
    if problems:
        raise ConfigError(
            f"{len(problems)} bad manifest row(s): " + " | ".join(problems)
            if len(problems) > 1
            else problems[0]
        )
    return entries


def read_status(out_dir: str | Path) -> pd.DataFrame:
    """``OUT/status.parquet`` as a data frame (empty when the cohort never ran).

    ``running`` rows of a process that is gone (``.status-owner.json``) read as ``interrupted``.
    """
    layout = CohortLayout(Path(out_dir))
    path = layout.status_parquet
    if not path.exists():
        return _STATUS_SCHEMA.empty_table().to_pandas()
    try:
        rows = pd.read_parquet(path, dtype_backend="numpy_nullable")
        missing = [c for c in _STATUS_SCHEMA.names if c not in rows.columns]
        if missing:
            raise ValueError(f"columns {missing!r} are missing")
    except (OSError, ValueError, pa.ArrowException) as err:
        raise ConfigError(
            f"{path}: cannot read the cohort status ({' '.join(str(err).split())}); expected "
            "the status.parquet of a pathosam-wsi run; rerun the same 'run' command to rewrite it"
        ) from err
    if not _owner_alive(layout):
        rows.loc[rows["state"] == "running", "state"] = "interrupted"
    return rows


def _write_owner(layout: CohortLayout) -> None:
    """Record this process as the writer of ``status.parquet``."""
    atomic_write_json(layout.status_owner_json, {"host": socket.gethostname(), "pid": os.getpid()})


def _owner_alive(layout: CohortLayout) -> bool:
    """Whether the process that last wrote the status may still run (unknown hosts: yes)."""
    try:
        owner = json.loads(layout.status_owner_json.read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _StatusBook:
    """Rows of the cohort, rewritten atomically to ``status.parquet`` on every change."""

    def __init__(self, layout: CohortLayout, rows: list[SlideStatus]) -> None:
        self.path = layout.status_parquet
        self.rows = {r.slide_id: r for r in rows}
        self.lock = threading.Lock()
        _write_owner(layout)
        self.write()

    def update(self, slide_id: str, **values: Any) -> SlideStatus:
        with self.lock:
            row = dataclasses.replace(self.rows[slide_id], **values)
            self.rows[slide_id] = row
            self.write()
        return row

    def write(self) -> None:
        table = pa.Table.from_pylist(
            [dataclasses.asdict(r) for r in self.rows.values()], schema=_STATUS_SCHEMA
        )
        atomic_write(self.path, lambda fh: pq.write_table(table, fh))


def _finished_status(entry: ManifestEntry, layout: CohortLayout) -> SlideStatus | None:
    """Status of an already finished slide of the same parameters, None when it must run."""
    slide = layout.slide(entry.slide_id)
    info = slide.finished_info(run_params_hash(entry.path, entry.config))
    if info is None:
        return None
    return SlideStatus(
        entry.slide_id,
        entry.path,
        "done",
        info["counts"]["nuclei"],
        info["counts"]["blocks"],
        info["timings_s"].get("total_s"),
    )


def _check_conflicts(entries: Sequence[ManifestEntry], layout: CohortLayout) -> None:
    """Refuse finished outputs made with other parameters (before anything runs)."""
    out_dir = layout.out_dir
    stale = [
        e.slide_id
        for e in entries
        if layout.slide(e.slide_id).final.path.exists() and _finished_status(e, layout) is None
    ]
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        raise OutputExistsError(
            f"{len(stale)} finished slide(s) in {out_dir} were made with other parameters "
            f"({shown}); pass --overwrite to redo them or choose another -o"
        )


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


def _client_lost(client: Any) -> bool:
    status = getattr(client, "status", "running")
    return client is not None and status not in ("running", "newly-created")


def _is_comm_error(err: BaseException) -> bool:
    """Whether ``err`` or an exception it was raised from is a network/connection failure."""
    from distributed.comm.core import CommClosedError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, CommClosedError | ConnectionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _scheduler_lost(client: Any, err: BaseException, wait_s: float = 10.0) -> bool:
    """A lost scheduler, as opposed to a failure of the slide itself.

    A connection error can reach us before the client notices that the scheduler is gone, so
    after one the client's status is polled for ``wait_s`` seconds.
    """
    if client is None:
        return False
    if _client_lost(client):
        return True
    if not _is_comm_error(err):
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if _client_lost(client):
            return True
        time.sleep(0.2)
    return False


def _run_one(
    entry: ManifestEntry,
    layout: CohortLayout,
    book: _StatusBook,
    client: Any,
    overwrite: bool,
    on_event: Callable[[str, Any], None],
    executor: TaskExecutor,
    priority: int,
) -> SlideStatus:
    """Segment one slide; any error of this slide becomes its failed row."""
    book.update(entry.slide_id, state="running", error=None)
    on_event("slide_started", entry.slide_id)
    t0 = time.perf_counter()
    try:
        if overwrite:
            layout.slide(entry.slide_id).discard_staging()
        result = segment_slide(
            entry.path,
            layout.out_dir,
            entry.config,
            slide_id=entry.slide_id,
            overwrite=overwrite,
            executor=executor,
            priority=priority,
            on_progress=lambda ev, p: on_event(ev, (entry.slide_id, p)),
        )
        layout.publish_table(entry.slide_id)
    except Exception as err:
        if _scheduler_lost(client, err):
            raise PathoSamError(
                f"lost the dask scheduler while running {entry.slide_id!r} ({_one_line(err)}); "
                "restart the cluster and rerun the same command to resume"
            ) from err
        log.warning(
            "slide %s failed: %s",
            entry.slide_id,
            _one_line(err),
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        row = book.update(
            entry.slide_id, state="failed", error=_one_line(err), seconds=time.perf_counter() - t0
        )
    else:
        row = book.update(
            entry.slide_id,
            state="done",
            nuclei=result.nuclei,
            blocks=result.blocks,
            seconds=time.perf_counter() - t0,
        )
    on_event("slide_finished", row)
    return row


def default_slides_in_flight(worker_threads: int, slides: int) -> int:
    """Slides at once: enough that every worker thread has work across slide boundaries.

    A slide's serial steps (plan, ids) and its last, partly filled shards leave threads idle;
    with about twice as many slides in flight as threads, other slides' blocks fill them. Slides
    in flight cost one idle driver thread and a few small files each, no pixels.
    """
    return max(1, min(slides, max(2, 2 * worker_threads), _MAX_SLIDES_IN_FLIGHT))


def run_cohort(
    entries: Sequence[ManifestEntry],
    out_dir: str | Path,
    *,
    client: Any = None,
    overwrite: bool = False,
    slides_in_flight: int | None = None,
    on_event: Callable[[str, Any], None] | None = None,
) -> list[SlideStatus]:
    """Segment every slide of a cohort, skipping finished ones.

    Parameters
    ----------
    entries : sequence of ManifestEntry
        The slides (see :func:`read_manifest`).
    out_dir : path-like
        Output root: ``<slide_id>/``, ``status.parquet`` and ``nuclei/<slide_id>.parquet``.
    client : distributed.Client, optional
        Run the slides' tasks on this cluster (default: threads in this process).
    overwrite : bool
        Redo every slide from scratch, whatever exists.
    slides_in_flight : int, optional
        Slides processed at once (default: sized from the cluster, see
        :func:`default_slides_in_flight`).
    on_event : callable, optional
        ``on_event(event, payload)``: ``slide_started`` (id), ``planned`` / ``blocks``
        ((id, payload) as in :func:`segment_slide`), ``slide_finished`` (SlideStatus).

    Returns
    -------
    list of SlideStatus
        In manifest order.

    Raises
    ------
    OutputExistsError
        A finished slide was made with other parameters and ``overwrite`` is False.
    PathoSamError
        The dask scheduler was lost; finished blocks and slides are kept for a rerun.
    """
    for e in entries:
        check_slide_id(e.slide_id)  # entries may be built without read_manifest
    layout = CohortLayout(Path(out_dir))
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        _check_conflicts(entries, layout)
    rows, todo = [], []
    for e in entries:
        done = None if overwrite else _finished_status(e, layout)
        rows.append(done or SlideStatus(e.slide_id, e.path))
        if done is None:
            todo.append(e)
        else:
            layout.publish_table(e.slide_id)
    book = _StatusBook(layout, rows)
    emit = on_event or (lambda _e, _p: None)
    threads = entries[0].config.threads if entries else None
    executor = make_executor(client, threads)
    width = slides_in_flight or default_slides_in_flight(executor.threads(), len(todo))
    try:
        with ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="slide") as pool:
            # Earlier slides get higher task priorities, so they finish first while the blocks of
            # later slides fill the workers that would otherwise idle at slide boundaries.
            futures = [
                pool.submit(
                    _run_one, e, layout, book, client, overwrite, emit, executor, len(todo) - i
                )
                for i, e in enumerate(todo)
            ]
            for fut in futures:
                fut.result()
    finally:
        if isinstance(executor, ThreadExecutor):
            executor.close()
    return [book.rows[e.slide_id] for e in entries]
