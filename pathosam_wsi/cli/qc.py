"""``pathosam-wsi qc OUT/<slide_id>``: QC pictures (density heatmap, outlined crops)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pathosam_wsi.cli.errors import check_result_dir
from pathosam_wsi.errors import PathoSamError

__all__ = ["qc"]


@click.command()
@click.argument("result_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--crops",
    type=click.IntRange(0, 100),
    default=4,
    show_default=True,
    help="Full-resolution crops.",
)
@click.option(
    "--crop-px",
    type=click.IntRange(16, 8192),
    default=512,
    show_default=True,
    help="Crop side, level-0 px.",
)
def qc(result_dir: Path, crops: int, crop_px: int) -> None:
    """Write QC pictures to RESULT_DIR/qc/: density heatmap and outlined crops."""
    from pathosam_wsi.export.qc import write_qc

    try:
        paths = write_qc(check_result_dir(result_dir), n_crops=crops, crop_px=crop_px)
    except PathoSamError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    for p in paths:
        click.echo(str(p))
