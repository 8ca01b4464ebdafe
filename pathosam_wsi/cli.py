"""Command-line interface: ``pathosam-wsi segment | info | ...`` (thin: parses, calls the API)."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import warnings
from pathlib import Path
from typing import Any

import click

from pathosam_wsi.cli_errors import CliGroup, check_out_dir, error_line, fail, set_debug
from pathosam_wsi.config import (
    ModelConfig,
    RunConfig,
    SlideConfig,
    TilingConfig,
    TissueConfig,
    WatershedConfig,
)
from pathosam_wsi.errors import PathoSamError

__all__ = ["main"]

log = logging.getLogger("pathosam_wsi")


def _fail(err: BaseException, code: int = 2) -> None:
    fail(error_line(err), code)


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


def _slide_options(f: Any) -> Any:
    opts = [
        click.option("--mpp", type=float, help="Level-0 pixel size in µm/px (overrides metadata)."),
        click.option(
            "--target-mpp",
            type=float,
            help="Resolution the model sees, µm/px (default: level 0). Outputs stay in level-0 px.",
        ),
        click.option(
            "--roi",
            nargs=4,
            type=int,
            metavar="X Y W H",
            help="Only this region, level-0 px (x, y, width, height).",
        ),
        click.option(
            "--tile", type=int, default=512, show_default=True, help="Core block side, px."
        ),
        click.option(
            "--halo", type=int, default=64, show_default=True, help="Context on each side, px."
        ),
        click.option("--no-tissue-mask", is_flag=True, help="Process every block, tissue or not."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _model_options(f: Any) -> Any:
    opts = [
        click.option(
            "--model",
            default="classical",
            show_default=True,
            help="classical | vit_b_histopathology | vit_l_histopathology | vit_h_histopathology.",
        ),
        click.option(
            "--checkpoint", type=click.Path(dir_okay=False), help="Local encoder checkpoint."
        ),
        click.option(
            "--decoder", type=click.Path(dir_okay=False), help="Local AIS decoder checkpoint."
        ),
        click.option(
            "--semantic-decoder",
            type=click.Path(dir_okay=False),
            help="Local PanNuke semantic decoder checkpoint.",
        ),
        click.option(
            "--classes", is_flag=True, help="Add PanNuke classes per nucleus (PathoSAM vit_b)."
        ),
        click.option(
            "--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N."
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "tf32", "bf16", "fp16"]),
            default="fp32",
            show_default=True,
        ),
        click.option(
            "--batch-size", type=int, help="Blocks per model call (default: from free memory)."
        ),
        click.option("--compile", "compile_", is_flag=True, help="Try torch.compile."),
        click.option(
            "--intensity",
            type=click.Choice(["none", "per_tile_minmax"]),
            default="none",
            show_default=True,
            help="Input stretch: none (as trained) or micro-sam>=1.7's.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _watershed_options(f: Any) -> Any:
    d = WatershedConfig()
    opts = [
        click.option(
            "--center-distance-thresh",
            type=float,
            default=d.center_distance_thresh,
            show_default=True,
        ),
        click.option(
            "--boundary-distance-thresh",
            type=float,
            default=d.boundary_distance_thresh,
            show_default=True,
        ),
        click.option(
            "--foreground-thresh", type=float, default=d.foreground_thresh, show_default=True
        ),
        click.option(
            "--foreground-smoothing",
            type=float,
            default=d.foreground_smoothing_px,
            show_default=True,
            help="Gaussian sigma, px.",
        ),
        click.option(
            "--distance-smoothing",
            type=float,
            default=d.distance_smoothing_px,
            show_default=True,
            help="Gaussian sigma, px.",
        ),
        click.option(
            "--min-size",
            type=int,
            default=d.min_size_px,
            show_default=True,
            help="Drop nuclei smaller than this, px.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _config_options(f: Any) -> Any:
    """``--config`` and ``--blocks-per-task``, shared by ``segment`` and ``run``."""
    f = click.option(
        "--blocks-per-task",
        type=int,
        default=8,
        show_default=True,
        help="Blocks per scheduled task (read + model + watershed together).",
    )(f)
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        help="TOML file with [tiling], [model], [watershed], ... sections.",
    )(f)


def _build_config(kw: dict[str, Any]) -> RunConfig:
    base = RunConfig.from_toml(kw["config"]) if kw.get("config") else RunConfig()
    return dataclasses.replace(
        base,
        slide=SlideConfig(
            mpp=kw["mpp"],
            target_mpp=kw["target_mpp"],
            roi_xywh_l0=tuple(kw["roi"]) if kw["roi"] else None,
        ),
        tiling=TilingConfig(tile_px=kw["tile"], halo_px=kw["halo"]),
        tissue=dataclasses.replace(
            base.tissue if kw.get("config") else TissueConfig(), enabled=not kw["no_tissue_mask"]
        ),
        watershed=WatershedConfig(
            center_distance_thresh=kw["center_distance_thresh"],
            boundary_distance_thresh=kw["boundary_distance_thresh"],
            foreground_thresh=kw["foreground_thresh"],
            foreground_smoothing_px=kw["foreground_smoothing"],
            distance_smoothing_px=kw["distance_smoothing"],
            min_size_px=kw["min_size"],
        ),
        model=ModelConfig(
            name=kw["model"],
            checkpoint=kw["checkpoint"],
            decoder=kw["decoder"],
            semantic_decoder=kw["semantic_decoder"],
            classes=kw["classes"],
            device=kw["device"],
            precision=kw["precision"],
            batch_size=kw["batch_size"],
            compile=kw["compile_"],
            intensity=kw["intensity"],
        ),
        blocks_per_task=kw["blocks_per_task"],
        threads=kw["threads"],
    )


@main.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output root; results go to OUT/<slide_id>/.",
)
@_model_options
@_slide_options
@_watershed_options
@click.option("--slide-id", help="Output folder and table slide_id (default: file name stem).")
@_config_options
@click.option("--threads", type=int, help="Local worker threads (default: all CPUs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def segment(
    slide: Path, out_dir: Path, overwrite: bool, quiet: bool, slide_id: str | None, **kw: Any
) -> None:
    """Segment all nuclei of SLIDE into OUT/<slide_id>/ (labels, nucleus table, run.json)."""
    from pathosam_wsi.cli_progress import BlockProgress
    from pathosam_wsi.pipeline.segment import segment_slide

    try:
        config = _build_config(kw)
        check_out_dir(out_dir)
        with BlockProgress(disable=quiet) as progress, warnings.catch_warnings():
            warnings.simplefilter("default")
            result = segment_slide(
                slide, out_dir, config, slide_id=slide_id, overwrite=overwrite, on_progress=progress
            )
    except PathoSamError as err:
        _fail(err)
    except KeyboardInterrupt:
        _fail(RuntimeError("interrupted; rerun the same command to resume"), 130)
    if not quiet:
        click.echo(
            f"{result.nuclei} nuclei in {result.blocks - result.blocks_skipped} blocks "
            f"({result.blocks_skipped} without tissue skipped) -> {result.output_dir}"
        )


@main.command()
@click.argument("slide", type=click.Path(path_type=Path))
@click.option("--mpp", type=float, help="Level-0 pixel size in µm/px (overrides metadata).")
def info(slide: Path, mpp: float | None) -> None:
    """Print vendor, levels, sizes, pixel size and the planned block count of SLIDE."""
    from pathosam_wsi.cli_progress import describe_slide

    try:
        click.echo(describe_slide(slide, mpp))
    except PathoSamError as err:
        _fail(err)


def _attach_optional_commands() -> None:
    """Commands that live in their own modules."""
    for module, attr in (
        ("pathosam_wsi.cli_models", "models"),
        ("pathosam_wsi.cli_data", "sample_data"),
        ("pathosam_wsi.cli_evaluate", "evaluate"),
        ("pathosam_wsi.cli_cohort", "run"),
        ("pathosam_wsi.cli_cohort", "status"),
        ("pathosam_wsi.cli_export", "export"),
        ("pathosam_wsi.cli_export", "qc"),
        ("pathosam_wsi.cli_prompt", "prompt"),
        ("pathosam_wsi.cli_finetune", "finetune"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        main.add_command(getattr(mod, attr))


_attach_optional_commands()
