"""``pathosam-wsi status OUT``: the cohort's status table, one compact row per slide."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

__all__ = ["echo_status", "status", "status_table"]

_COLUMNS = ("slide_id", "state", "nuclei", "blocks", "seconds", "error")
_MIN_ERROR_CHARS = 20


def _cell(value: Any) -> str:
    import pandas as pd

    if pd.isna(value):  # None, NaN, pandas NA
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return " ".join(str(value).split())


def status_table(rows: Any, width: int) -> str:
    """Rows of ``status.parquet`` as an aligned text table at most ``width`` characters wide.

    The error column is cut (ending in "...") to what is left of ``width``, at least
    20 characters; the full messages stay in ``status.parquet``.
    """
    if not len(rows):
        return "(no slides)"
    cells = [[_cell(v) for v in row] for row in rows[list(_COLUMNS)].itertuples(index=False)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(_COLUMNS[:-1])]
    room = max(_MIN_ERROR_CHARS, width - sum(w + 2 for w in widths))
    lines = []
    for row in [list(_COLUMNS), *cells]:
        error = row[-1] if len(row[-1]) <= room else row[-1][: room - 3] + "..."
        numeric = [False, False, True, True, True]
        left = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row[:-1], widths, numeric, strict=True)
        ]
        lines.append(("  ".join(left) + "  " + error).rstrip())
    return "\n".join(lines)


def echo_status(rows: Any) -> None:
    """Print the status table to fit the terminal (100 columns when not a terminal)."""
    width = shutil.get_terminal_size((100, 24)).columns
    click.echo(status_table(rows, width))


@click.command()
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def status(out_dir: Path) -> None:
    """Print OUT/status.parquet of a cohort run (errors cut to the terminal width)."""
    from pathosam_wsi.cohort import read_status

    echo_status(read_status(out_dir))
