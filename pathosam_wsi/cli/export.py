"""``pathosam-wsi export qupath`` and ``pathosam-wsi qc``: outputs for viewers and people."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pathosam_wsi.errors import PathoSamError

__all__ = ["export", "qc"]


def _result_dir(path: Path) -> Path:
    """Check that ``path`` is an ``OUT/<slide_id>`` folder with a nucleus table."""
    if not (path / "nuclei.parquet").is_file():
        click.echo(
            f"error: {path} has no nuclei.parquet; give OUT/<slide_id> of a finished run", err=True
        )
        sys.exit(2)
    return path


@click.group()
def export() -> None:
    """Convert a slide's results for other tools (QuPath, ...)."""


@export.command("qupath")
@click.argument("result_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file (default: RESULT_DIR/nuclei.geojson[.gz]).",
)
@click.option(
    "--gzip",
    "compress",
    is_flag=True,
    help="gzip the output (gunzip before importing into QuPath).",
)
@click.option(
    "--object-type",
    type=click.Choice(["detection", "cell", "annotation"]),
    default="detection",
    show_default=True,
    help="QuPath object type of each nucleus.",
)
def qupath(result_dir: Path, out_path: Path | None, compress: bool, object_type: str) -> None:
    """Write RESULT_DIR's nuclei as a QuPath GeoJSON FeatureCollection (File > Import objects)."""
    from pathosam_wsi.export.qupath import default_output, export_qupath

    table = _result_dir(result_dir) / "nuclei.parquet"
    dest = out_path or default_output(result_dir, compress)
    try:
        n = export_qupath(table, dest, compress=compress, object_type=object_type)  # type: ignore[arg-type]
    except PathoSamError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"{n} nuclei -> {dest}")


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
        paths = write_qc(_result_dir(result_dir), n_crops=crops, crop_px=crop_px)
    except PathoSamError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    for p in paths:
        click.echo(str(p))
