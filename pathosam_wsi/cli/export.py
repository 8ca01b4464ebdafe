"""``pathosam-wsi export qupath``: a slide's nuclei for viewers (QuPath)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pathosam_wsi.cli.errors import check_result_dir
from pathosam_wsi.errors import PathoSamError

__all__ = ["export"]


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

    table = check_result_dir(result_dir) / "nuclei.parquet"
    dest = out_path or default_output(result_dir, compress)
    try:
        n = export_qupath(table, dest, compress=compress, object_type=object_type)  # type: ignore[arg-type]
    except PathoSamError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"{n} nuclei -> {dest}")
