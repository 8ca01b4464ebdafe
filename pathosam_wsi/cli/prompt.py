"""``pathosam-wsi prompt SLIDE --prompts FILE -o OUT``: masks from boxes and points."""

from __future__ import annotations

from pathlib import Path

import click

from pathosam_wsi.errors import PathoSamError

__all__ = ["prompt"]


@click.command(name="prompt")
@click.argument("slide", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--prompts",
    "prompts_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV/Parquet (xmin,ymin,xmax,ymax and/or x,y[,label][,object_id]) or GeoJSON, level-0 px.",
)
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    default="litemedsam",
    show_default=True,
    help="litemedsam, vit_b_histopathology, vit_l_histopathology or vit_h_histopathology.",
)
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), help="Weights file.")
@click.option("--mpp", type=float, help="Level-0 pixel size in µm/px (overrides metadata).")
@click.option(
    "--tile",
    type=int,
    default=1024,
    show_default=True,
    help="Scheduling unit and label chunk (px); the model's window grid does not change.",
)
@click.option("--batch", type=int, default=32, show_default=True, help="Prompts per decoder call.")
@click.option("--slide-id", help="Output folder and table slide_id (default: file name stem).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option(
    "--from",
    "from_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Refine OUT/<slide_id>: --prompts holds correction points with object_id = nucleus_id.",
)
def prompt(
    slide: Path,
    prompts_path: Path,
    out_dir: Path,
    model: str,
    checkpoint: Path | None,
    mpp: float | None,
    tile: int,
    batch: int,
    slide_id: str | None,
    overwrite: bool,
    from_dir: Path | None,
) -> None:
    """Segment the nuclei that boxes and points in --prompts designate on SLIDE.

    Each prompt is decoded in the model's window (256 px for LiteMedSAM, 1024 px for PathoSAM)
    whose core holds its centre; where masks overlap the higher predicted IoU wins. Outputs as
    ``segment``: OUT/<slide_id>/labels.ome.zarr, nuclei.parquet (with prompt_id and score),
    run.json. A rerun with the same inputs resumes.
    """
    from pathosam_wsi.model.prompt_models import load_prompt_model
    from pathosam_wsi.prompts.refine import refine_output
    from pathosam_wsi.prompts.run import prompt_slide

    try:
        net = load_prompt_model(model, checkpoint)
        if from_dir is not None:
            refined = refine_output(
                slide, from_dir, prompts_path, out_dir, net, mpp=mpp, tile=tile, batch=batch,
                slide_id=slide_id, overwrite=overwrite,
            )  # fmt: skip
            click.echo(f"{refined.prompts} objects refined -> {refined.output_dir}")
            return
        result = prompt_slide(
            slide,
            prompts_path,
            out_dir,
            net,
            mpp=mpp,
            tile=tile,
            batch=batch,
            slide_id=slide_id,
            overwrite=overwrite,
        )
    except PathoSamError as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"{result.nuclei} nuclei from {result.prompts} prompts in {result.windows} windows "
        f"({result.own_windows} of their own) -> {result.output_dir}"
    )
