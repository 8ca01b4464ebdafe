"""``pathosam-wsi segment SLIDE -o OUT``: one slide (thin: parses, calls ``segment_slide``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from pathosam_wsi.cli.errors import EXIT_INTERRUPTED, check_out_dir, error_line, fail
from pathosam_wsi.cli.options import (
    config_options,
    model_options,
    out_dir_option,
    run_config,
    slide_options,
    watershed_options,
)
from pathosam_wsi.cli.progress import ConsoleProgress, cpu_seconds_per_block
from pathosam_wsi.errors import PathoSamError

__all__ = ["segment"]


@click.command()
@click.argument("slide", type=click.Path(path_type=Path))
@out_dir_option("Output root; results go to OUT/<slide_id>/.")
@model_options
@slide_options
@watershed_options
@click.option("--slide-id", help="Output folder and table slide_id (default: file name stem).")
@config_options("Local worker threads (default: all CPUs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def segment(
    ctx: click.Context,
    slide: Path,
    out_dir: Path,
    overwrite: bool,
    quiet: bool,
    slide_id: str | None,
    **_options: Any,
) -> None:
    """Segment all nuclei of SLIDE into OUT/<slide_id>/ (labels, nucleus table, run.json).

    Settings: defaults < --config TOML < options given here. Progress goes to stderr: one
    redrawn line on a terminal, plain lines in a log file.
    """
    from pathosam_wsi.pipeline.segment import segment_slide

    try:
        config = run_config(ctx)
        check_out_dir(out_dir)
        progress = ConsoleProgress(disable=quiet, cpu_s_per_block=cpu_seconds_per_block(config))
        with progress, warnings.catch_warnings():
            warnings.simplefilter("default")
            result = segment_slide(
                slide, out_dir, config, slide_id=slide_id, overwrite=overwrite, on_progress=progress
            )
    except PathoSamError as err:
        fail(error_line(err))
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume", EXIT_INTERRUPTED)
    if not quiet:
        click.echo(
            f"{result.nuclei} nuclei in {result.blocks - result.blocks_skipped} blocks "
            f"({result.blocks_skipped} without tissue skipped) -> {result.output_dir}"
        )
