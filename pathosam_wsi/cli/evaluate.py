"""``pathosam-wsi evaluate PRED GT``: the PathoSAM paper's metrics for a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pathosam_wsi.errors import ConfigError, PathoSamError
from pathosam_wsi.evaluate import evaluate_outputs

__all__ = ["evaluate"]


@click.command(name="evaluate")
@click.argument("pred", type=click.Path(exists=True, path_type=Path))
@click.argument("gt", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(pred: Path, gt: Path, as_json: bool) -> None:
    """Compare predicted nuclei PRED with ground truth GT.

    PRED and GT are instance label images (.npy, .npz, .mat with inst_map, .tif, .png; 0 =
    background) or pathosam-wsi outputs (OUT/<slide_id> or its labels.ome.zarr). Prints mean
    segmentation accuracy over IoU 0.50:0.95 (mSA), F1 at IoU 0.5, panoptic quality, and the
    class-frequency weighted Dice when both inputs carry class maps.
    """
    try:
        result = evaluate_outputs(pred, gt)
    except (OSError, ValueError, EOFError) as err:
        if isinstance(err, PathoSamError):
            raise
        raise ConfigError(
            f"cannot read labels from {str(pred)!r} or {str(gt)!r} ({type(err).__name__}: "
            f"{' '.join(str(err).split())}); expected instance label images or output folders"
        ) from err
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(result.table())
