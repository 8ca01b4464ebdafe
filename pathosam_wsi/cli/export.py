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
    help="gzip the output (.geojson.gz; QuPath imports it as it is, menu or drag and drop).",
)
@click.option(
    "--object-type",
    type=click.Choice(["detection", "cell", "annotation"]),
    default="detection",
    show_default=True,
    help="QuPath object type of each nucleus (cell: the outline is also its nucleus).",
)
@click.option(
    "--region",
    "region",
    type=(float, float, float, float),
    metavar="X Y W H",
    help="Only nuclei whose centroid lies in this box (level-0 px). QuPath holds the whole file "
    "in memory (~1 GB of heap per 42,000 nuclei): export a large slide one region at a time.",
)
@click.option(
    "--max-objects",
    type=click.IntRange(min=0),
    help="Write at most this many nuclei (a warning counts the rest).",
)
def qupath(
    result_dir: Path,
    out_path: Path | None,
    compress: bool,
    object_type: str,
    region: tuple[float, float, float, float] | None,
    max_objects: int | None,
) -> None:
    """Write RESULT_DIR's nuclei as a QuPath GeoJSON FeatureCollection (File > Import objects)."""
    from pathosam_wsi.export.qupath import default_output, export_qupath
    from pathosam_wsi.pipeline.layout import ResultFolder

    table = ResultFolder(check_result_dir(result_dir)).table
    dest = out_path or default_output(result_dir, compress)
    if region is not None and (region[2] <= 0 or region[3] <= 0):
        click.echo(
            f"error: --region {' '.join(f'{v:g}' for v in region)}: width and height must be "
            "positive; give X Y W H in level-0 px",
            err=True,
        )
        sys.exit(2)
    try:
        n = export_qupath(
            table,
            dest,
            compress=compress,
            object_type=object_type,  # type: ignore[arg-type]
            region_xywh_l0=region,
            max_objects=max_objects,
        )
    except PathoSamError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"{n} nuclei -> {dest}")
