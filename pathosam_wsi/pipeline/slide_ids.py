"""Slide ids that are one safe path component, and the marker of folders this project made.

The names under ``OUT`` that a slide id must not take are defined here; ``pipeline/layout.py``
builds every path from them. A slide id names ``OUT/<slide_id>/`` and its working folder
``OUT/<slide_id>.partial/``, so it must never reach outside ``OUT`` nor collide with another
slide's folders. ``--overwrite`` only ever removes a folder that carries :data:`MARKER` naming the
same slide id, directly inside ``OUT``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from pathosam_wsi.errors import ConfigError, OutputExistsError
from pathosam_wsi.files import atomic_write_text

__all__ = [
    "MARKER",
    "MAX_SLIDE_ID_CHARS",
    "NUCLEI_DIR",
    "OLD_SUFFIX",
    "PARTIAL_SUFFIX",
    "RESERVED_SUFFIXES",
    "STATUS_FILE",
    "check_slide_id",
    "is_ours",
    "remove_ours",
    "write_marker",
]

MAX_SLIDE_ID_CHARS = 128
"""Longest accepted slide id (file systems allow 255 bytes per name; ids get suffixes)."""
PARTIAL_SUFFIX = ".partial"
"""``OUT/<slide_id>.partial``: the staging folder of a run."""
OLD_SUFFIX = ".old"
"""``OUT/<slide_id>.old``: the replaced result while a new one is published."""
RESERVED_SUFFIXES = (PARTIAL_SUFFIX, OLD_SUFFIX, ".tmp")
"""Suffixes of the project's own working folders and files."""
STATUS_FILE = "status.parquet"
"""``OUT/status.parquet``: the cohort status."""
NUCLEI_DIR = "nuclei"
"""``OUT/nuclei/``: every slide's table of a cohort."""
_RESERVED_NAMES = {NUCLEI_DIR, STATUS_FILE}
# A letter or digit first, then letters, digits, spaces or '._-+=@,()'
# (Unicode letters and digits included): no separators, no leading dot, no control characters.
_ALLOWED = re.compile(r"[^\W_][\w.+=@,() -]*")
MARKER = ".pathosam-wsi"
"""File inside every folder the project makes under ``OUT``: JSON ``{"slide_id": ...}``."""


def check_slide_id(sid: str) -> str:
    """Return ``sid`` when it is a safe slide id, else raise.

    Parameters
    ----------
    sid : str
        1 to 128 characters: a letter or digit first, then letters, digits, spaces or
        ``. _ - + = @ , ( )``; not ending in ``.partial``, ``.old`` or ``.tmp``; not ``nuclei`` or
        ``status.parquet``.

    Returns
    -------
    str
        ``sid`` unchanged.

    Raises
    ------
    ConfigError
        The id could escape ``OUT``, hide, or collide with the project's own folders.
    """
    if not isinstance(sid, str) or not sid:
        raise ConfigError(f"slide id: got {sid!r}; expected a non-empty name; pass --slide-id")
    problem = None
    if len(sid) > MAX_SLIDE_ID_CHARS:
        problem = f"is {len(sid)} characters long, the limit is {MAX_SLIDE_ID_CHARS}"
    elif _ALLOWED.fullmatch(sid) is None or sid.strip() != sid:
        problem = (
            "must start with a letter or digit and hold only letters, digits, spaces and "
            "'._-+=@,()' (no '/', '\\', leading dot or control characters)"
        )
    elif sid.lower().endswith(RESERVED_SUFFIXES):
        problem = f"must not end in {', '.join(RESERVED_SUFFIXES)} (the project's working folders)"
    elif sid in _RESERVED_NAMES:
        problem = f"is reserved ({', '.join(sorted(_RESERVED_NAMES))} are OUT's own entries)"
    if problem:
        raise ConfigError(
            f"slide id {sid!r}: {problem}; pass --slide-id (or a manifest slide_id) such as "
            "'case_001'"
        )
    return sid


def write_marker(folder: Path, sid: str) -> None:
    """Mark ``folder`` as made by pathosam-wsi for slide ``sid``."""
    atomic_write_text(folder / MARKER, json.dumps({"slide_id": sid}) + "\n")


def is_ours(folder: Path, sid: str) -> bool:
    """Whether ``folder`` is a real folder (not a link) that carries our marker for ``sid``."""
    marker = folder / MARKER
    if folder.is_symlink() or not folder.is_dir() or not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("slide_id") == sid)
    except (OSError, ValueError, AttributeError):
        return False


def remove_ours(folder: Path, out_dir: Path, sid: str) -> None:
    """Delete ``folder`` only if it sits directly in ``out_dir`` and carries our marker for ``sid``.

    Raises
    ------
    OutputExistsError
        The folder exists but was not made by pathosam-wsi for this slide, or is outside OUT.
    """
    if not folder.exists() and not folder.is_symlink():
        return
    inside = folder.parent.resolve() == out_dir.resolve() and not folder.is_symlink()
    if not inside or not is_ours(folder, sid):
        raise OutputExistsError(
            f"{folder}: exists but was not made by pathosam-wsi for slide {sid!r} (no {MARKER} "
            "marker), so it is not removed; move it away or choose another -o"
        )
    shutil.rmtree(folder)
