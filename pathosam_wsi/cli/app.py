"""The ``pathosam-wsi`` click group; every command is added here by name (no import magic)."""

from __future__ import annotations

import logging

import click

from pathosam_wsi.cli.data import sample_data
from pathosam_wsi.cli.errors import CliGroup, set_debug
from pathosam_wsi.cli.evaluate import evaluate
from pathosam_wsi.cli.export import export
from pathosam_wsi.cli.finetune import finetune
from pathosam_wsi.cli.info import info
from pathosam_wsi.cli.models import models
from pathosam_wsi.cli.prompt import prompt
from pathosam_wsi.cli.qc import qc
from pathosam_wsi.cli.run import run
from pathosam_wsi.cli.segment import segment
from pathosam_wsi.cli.status import status

__all__ = ["main"]


@click.group(
    cls=CliGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="pathosam-wsi")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error.")
def main(verbose: int, debug: bool) -> None:
    """Segment every nucleus in whole-slide images with PathoSAM (or the built-in classical model).

    Outputs per slide: an OME-Zarr label image, a GeoParquet nucleus table and run.json.
    Expected failures print one line, "error: <what>: <why>; <fix>", and exit with 2.
    """
    set_debug(debug)
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(False)


main.add_command(segment)
main.add_command(info)
main.add_command(run)
main.add_command(status)
main.add_command(models)
main.add_command(sample_data)
main.add_command(evaluate)
main.add_command(export)
main.add_command(qc)
main.add_command(prompt)
main.add_command(finetune)
