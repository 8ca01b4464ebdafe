"""Up-front checks of a cohort: every manifest row's slide opens (header only) before any runs."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from pathosam_wsi.cohort import ManifestEntry
from pathosam_wsi.errors import ConfigError, PathoSamError
from pathosam_wsi.slide.frame import plan_frame
from pathosam_wsi.slide.open import open_slide

__all__ = ["BadRow", "check_manifest_slides", "describe_bad_rows"]


@dataclass(frozen=True)
class BadRow:
    """A manifest row whose slide cannot be run, and why."""

    row: int
    """1-based row number in the manifest (header excluded)."""
    entry: ManifestEntry
    reason: str


def check_manifest_slides(entries: Sequence[ManifestEntry]) -> list[BadRow]:
    """Open every slide (header and pixel size only) and plan its working frame.

    Parameters
    ----------
    entries : sequence of ManifestEntry
        The cohort in manifest order, as ``read_manifest`` returns it.

    Returns
    -------
    list of BadRow
        Every row that would fail before its first block (missing or unreadable file, no pixel
        size, ROI outside the slide), in manifest order; empty when all rows are fine.
    """
    bad = []
    for row, entry in enumerate(entries, start=1):
        try:
            slide = open_slide(entry.path, entry.config.slide.mpp)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the run itself warns (ROI clipped, ...)
                    plan_frame(slide, entry.config.slide.target_mpp, entry.config.slide.roi_xywh_l0)
            finally:
                slide.close()
        except (PathoSamError, OSError, ValueError) as err:
            bad.append(BadRow(row, entry, " ".join(str(err).split())))
    return bad


def describe_bad_rows(manifest: str, bad: Sequence[BadRow], total: int) -> ConfigError:
    """One error naming every bad row, with the fix."""
    rows = " | ".join(f"row {b.row} ({b.entry.slide_id}): {b.reason}" for b in bad)
    return ConfigError(
        f"manifest {manifest!r}: {len(bad)} of {total} row(s) cannot be run: {rows}; fix those "
        "rows, or pass --skip-bad to run the others and mark these failed"
    )
