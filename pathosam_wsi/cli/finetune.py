"""``pathosam-wsi finetune``: train the ``learned`` model's U-Net, or a PathoSAM model's UNETR AIS
decoder over its frozen SAM encoder (``--model vit_b_histopathology|...|sam_tiny_random``), on
annotated nuclei.

Added to the main group in ``cli/app.py``. With ``--teacher NAME`` every sample's nuclei are
re-drawn from their boxes by a prompt model (``finetune.teacher.refine_labels``) after the sample
is resized to the training mpp; nuclei the teacher returns empty are dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pathosam_wsi.cli.options import out_dir_option
from pathosam_wsi.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from pathosam_wsi.finetune.data import Sample
    from pathosam_wsi.finetune.trainable import Trainable
    from pathosam_wsi.model.prompt_models import PromptModel

__all__ = ["finetune"]

logger = logging.getLogger(__name__)

LEARNED = "learned"
_UNET_DEFAULTS = {"init": "learned", "widths": "16,32,64,128", "lr": 1e-3, "crop": 256}
_SAM_LR = 1e-4
"""Peak learning rate for a pretrained decoder: ten times below the U-Net's."""


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) < 2 or min(widths) < 1:
        raise ConfigError(
            f"--widths must be two or more positive ints separated by commas, got {text!r}; "
            "pass e.g. --widths 16,32,64,128"
        )
    return widths


def _samples(kw: dict[str, Any], train_mpp: float) -> list[Any]:
    """Every training sample (pairs and slide regions), resized to ``train_mpp``."""
    from pathosam_wsi.finetune.data import load_pairs, rescale_sample
    from pathosam_wsi.finetune.regions import load_slide_regions
    from pathosam_wsi.slide.open import open_slide

    if (kw["images"] is None) != (kw["labels"] is None):
        raise ConfigError("--images and --labels go together; pass both folders or neither")
    if len(kw["slide"]) != len(kw["annotations"]):
        raise ConfigError(
            f"got {len(kw['slide'])} --slide and {len(kw['annotations'])} --annotations; "
            "pass one --annotations file per --slide"
        )
    samples = []
    if kw["images"] is not None:
        pairs = load_pairs(kw["images"], kw["labels"])
        samples += [rescale_sample(s, kw["image_mpp"] / train_mpp) for s in pairs]
    for slide_path, ann in zip(kw["slide"], kw["annotations"], strict=True):
        slide = open_slide(slide_path, kw["mpp"])
        slide_mpp = slide.mpp
        slide.close()
        if slide_mpp is None:
            raise ConfigError(f"slide {str(slide_path)!r} has no pixel size; pass --mpp")
        regions = load_slide_regions(slide_path, ann, kw["mpp"])
        samples += [rescale_sample(s, slide_mpp / train_mpp) for s in regions]
    if not samples:
        raise ConfigError(
            "no training data; pass --images DIR --labels DIR, or --slide FILE --annotations FILE"
        )
    return samples


def _teacher(kw: dict[str, Any]) -> tuple[PromptModel | None, str | None]:
    """The ``--teacher`` prompt model (None for ``none``) and the sha256 of its local weight file.

    Errors of ``load_prompt_model`` become one ``error:`` line, as in ``pathosam-wsi prompt``.
    """
    from pathosam_wsi.errors import PathoSamError
    from pathosam_wsi.files import sha256_file
    from pathosam_wsi.model.prompt_models import PROMPT_MODELS, load_prompt_model

    name, checkpoint = kw["teacher"], kw["teacher_checkpoint"]
    if name == "none":
        if checkpoint is not None:
            raise ConfigError(
                "--teacher-checkpoint without --teacher; pass --teacher NAME for the model the "
                "file holds (e.g. litemedsam) or drop --teacher-checkpoint"
            )
        return None, None
    try:
        model = load_prompt_model(name, checkpoint, device=kw["device"])
    except PathoSamError as err:
        hint = "" if name in PROMPT_MODELS else " (or none: labels as given)"
        raise click.ClickException(f"--teacher {name}: {err}{hint}") from err
    return model, None if checkpoint is None else sha256_file(checkpoint)


def _check_resumed_teacher(last: Path, name: str | None, sha256: str | None) -> None:
    """Refuse to resume a run whose labels came from another teacher (or none)."""
    from pathosam_wsi.model.checkpoints import load_state_dict_file

    if not last.is_file():
        return
    was = load_state_dict_file(last).get("teacher")
    now = None if name is None else {"name": name, "checkpoint_sha256": sha256}
    if was != now:
        raise ConfigError(
            f"{str(last)!r} was trained on labels from teacher {was!r}, this run asks for "
            f"{now!r}; pass the same --teacher and --teacher-checkpoint to resume, or another -o"
        )


def _areas(labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    """Pixel areas of the nuclei of an (H, W) label image (ids without pixels left out)."""
    import numpy as np

    counts = np.bincount(labels.ravel())[1:]
    return counts[counts > 0]


def _median(areas: npt.NDArray[np.int64]) -> str:
    """The median area as text ("-" for no nuclei)."""
    import numpy as np

    return f"{float(np.median(areas)):.0f} px" if areas.size else "-"


def _taught(samples: list[Sample], model: PromptModel, name: str) -> list[Sample]:
    """Every sample with its labels re-drawn by ``model``; one line per sample, one in total."""
    from dataclasses import replace

    from pathosam_wsi.finetune.teacher import refine_labels

    out, before_n, after_n = [], 0, 0
    for sample in samples:
        labels = refine_labels(sample.image, sample.labels, model)
        before, after = _areas(sample.labels), _areas(labels)
        click.echo(
            f"teacher {name}: {sample.name}: {before.size} nuclei (median {_median(before)}) -> "
            f"{after.size} (median {_median(after)}); {before.size - after.size} dropped "
            "(empty teacher mask)"
        )
        out.append(replace(sample, labels=labels))
        before_n, after_n = before_n + before.size, after_n + after.size
    click.echo(
        f"teacher {name}: {before_n} nuclei -> {after_n} in {len(samples)} "
        f"sample{'s' * (len(samples) != 1)}; "
        f"{before_n - after_n} dropped"
    )
    return out


def _model_defaults(kw: dict[str, Any]) -> dict[str, Any]:
    """``kw`` with the per-model defaults filled in; options of the other kind of model refused."""
    from pathosam_wsi.finetune.sam_decoder import DEFAULT_CROP_PX, SAM_MODELS

    name = kw["model"]
    if name == LEARNED:
        for option in ("checkpoint", "decoder"):
            if kw[option] is not None:
                raise ConfigError(
                    f"--{option} is for the SAM models, got it with --model learned; pass "
                    f"--model {SAM_MODELS[0]} (or another SAM model), or --init FILE for a U-Net"
                )
        return {**kw, **{k: v for k, v in _UNET_DEFAULTS.items() if kw[k] is None}}
    if name not in SAM_MODELS:
        raise ConfigError(f"unknown --model {name!r}; expected one of {(LEARNED, *SAM_MODELS)}")
    for option in ("init", "widths"):
        if kw[option] is not None:
            raise ConfigError(
                f"--{option} is for the learned model's U-Net, got it with --model {name}; "
                "drop it (--decoder FILE starts from another decoder)"
            )
    lr = _SAM_LR if kw["lr"] is None else kw["lr"]
    crop = DEFAULT_CROP_PX[name] if kw["crop"] is None else kw["crop"]
    return {**kw, "init": "none", "widths": _UNET_DEFAULTS["widths"], "lr": lr, "crop": crop}


def _sam_model(kw: dict[str, Any], crop_px: int) -> Trainable | None:
    """The SAM decoder to train (None for the learned model's U-Net)."""
    if kw["model"] == LEARNED:
        return None
    from pathosam_wsi.finetune.sam_decoder import SamDecoderTrainable

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    return SamDecoderTrainable.build(
        kw["model"],
        checkpoint=text(kw["checkpoint"]),
        decoder=text(kw["decoder"]),
        device=kw["device"],
        window_px=crop_px,
    )


def _config(kw: dict[str, Any]) -> Any:
    from pathosam_wsi.finetune.augment import Augment
    from pathosam_wsi.finetune.train import TrainConfig
    from pathosam_wsi.model.learned import LEARNED_WEIGHTS
    from pathosam_wsi.model.unet_maps import load_unet_checkpoint

    init = kw["init"]
    widths = _widths(kw["widths"])
    train_mpp = kw["image_mpp"]
    if init != "none":
        path = str(LEARNED_WEIGHTS) if init == "learned" else init
        net, train_mpp = load_unet_checkpoint(path)
        widths, init = net.widths, path
    return TrainConfig(
        widths=widths,
        epochs=kw["epochs"],
        steps_per_epoch=kw["steps"],
        batch_size=kw["batch_size"],
        crop_px=kw["crop"],
        lr=kw["lr"],
        val_frac=kw["val_frac"],
        eval_train=kw["eval_train"],
        seed=kw["seed"],
        device=kw["device"],
        train_mpp=train_mpp,
        augment=Augment(enabled=not kw["no_augment"], colour_jitter=kw["colour_jitter"]),
        init=None if init == "none" else init,
        teacher=None if kw["teacher"] == "none" else kw["teacher"],
    )


@click.command(name="finetune")
@out_dir_option("Folder for last.pt (resume) and decoder.pt (best held-out epoch).")
@click.option("--images", type=click.Path(path_type=Path), help="Folder of images.")
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Folder of instance labels (.png/.tif/.npy/.npz/.mat), matched by name.",
)
@click.option(
    "--image-mpp",
    type=float,
    default=0.25,
    show_default=True,
    help="Pixel size of --images, µm/px.",
)
@click.option(
    "--slide",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Slide with annotated regions (repeatable).",
)
@click.option(
    "--annotations",
    multiple=True,
    type=click.Path(path_type=Path),
    help="QuPath GeoJSON or GeoParquet of regions + nuclei, one per --slide.",
)
@click.option("--mpp", type=float, help="Level-0 pixel size of the slides (overrides metadata).")
@click.option(
    "--model",
    default=LEARNED,
    show_default=True,
    metavar="[learned|vit_b_histopathology|vit_l_histopathology|vit_h_histopathology|"
    "sam_tiny_random]",
    help="What to train: the learned model's U-Net, or a PathoSAM model's AIS decoder over its "
    "frozen SAM encoder.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SAM models: local encoder checkpoint (default: the cached download).",
)
@click.option(
    "--decoder",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SAM models: AIS decoder to start from (default: the cached download; "
    "sam_tiny_random: its own).",
)
@click.option(
    "--init",
    help="learned model: start from learned (shipped weights, default) | none (random) | a "
    "checkpoint file.",
)
@click.option(
    "--widths",
    help="learned model: U-Net channels per level with --init none [default: 16,32,64,128].",
)
@click.option(
    "--teacher",
    default="none",
    show_default=True,
    metavar="[none|litemedsam|vit_b_histopathology|...]",
    help="Re-draw every labelled nucleus from its box with this prompt model before training "
    "(rough or foreign-convention outlines); nuclei it returns empty are dropped.",
)
@click.option(
    "--teacher-checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Local weights for --teacher (default: the registry's, fetched once and hash-checked).",
)
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--steps", type=int, default=50, show_default=True, help="Steps per epoch.")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option(
    "--crop",
    type=int,
    help="Training crop side, px [default: 256; vit_* models 512, the reference's patches].",
)
@click.option("--lr", type=float, help="Peak learning rate [default: 1e-3; SAM decoders 1e-4].")
@click.option(
    "--val-frac",
    type=float,
    default=0.2,
    show_default=True,
    help="Held-out fraction: the last rows of every image.",
)
@click.option("--eval-train", is_flag=True, help="Also log mSA on the training parts.")
@click.option("--no-augment", is_flag=True, help="Crops only: no flips, rotations, stain, scale.")
@click.option(
    "--colour-jitter",
    type=float,
    default=0.0,
    show_default=True,
    help="CIELAB colour jitter strength, 0-0.5 (0 = off): helps a model meet other labs' stains; "
    "the shipped learned model was trained with 0.2.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu | cuda | cuda:N.")
@click.option("--threads", type=int, help="CPU threads for torch (default: torch's choice).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def finetune(out_dir: Path, resume: bool, quiet: bool, threads: int | None, **kw: Any) -> None:
    """Train the learned model's U-Net (or a SAM model's AIS decoder, --model) on nuclei
    annotated as label images or on slides.

    Writes OUT/decoder.pt, which `segment --model MODEL --decoder OUT/decoder.pt` loads.
    """
    from dataclasses import replace

    import torch
    from tqdm import tqdm

    from pathosam_wsi.cli.errors import check_out_dir
    from pathosam_wsi.finetune.train import EpochLog, train

    check_out_dir(out_dir)
    if out_dir.is_dir() and (out_dir / "last.pt").exists() and not resume:
        raise ConfigError(
            f"{str(out_dir)!r} already holds a run (last.pt); pass --resume to continue it "
            "or choose another -o"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    kw = _model_defaults(kw)
    cfg = _config(kw)
    model = _sam_model(kw, cfg.crop_px)
    teacher, teacher_sha256 = _teacher(kw)  # before the samples: a bad name fails at once
    cfg = replace(cfg, teacher_sha256=teacher_sha256)
    if resume:
        _check_resumed_teacher(out_dir / "last.pt", cfg.teacher, cfg.teacher_sha256)
    samples = _samples(kw, cfg.train_mpp)
    if teacher is not None:
        samples = _taught(samples, teacher, kw["teacher"])
    total = cfg.epochs * cfg.steps_per_epoch
    with tqdm(total=total, unit="step", disable=quiet, dynamic_ncols=True) as bar:

        def on_step(epoch: int, step: int, loss: float) -> None:
            bar.n = (epoch - 1) * cfg.steps_per_epoch + step
            bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", refresh=False)
            bar.refresh()

        def on_epoch(log: EpochLog) -> None:
            bar.write(
                f"epoch {log.epoch}/{cfg.epochs}: loss {log.loss:.4f}  held-out mSA "
                f"{log.val_msa:.3f}  train mSA {log.train_msa:.3f}"
            )

        history = train(
            samples, out_dir, cfg, resume=resume, model=model, on_step=on_step, on_epoch=on_epoch
        )
    if not quiet and history:
        best = out_dir / "decoder.pt"
        click.echo(f"{len(history)} epochs; best held-out weights -> {best}")
