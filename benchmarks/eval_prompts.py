"""Prompted segmentation on the three annotated PanNuke patches: the interactive protocol.

Every ground-truth nucleus starts from a prompt derived from its mask, either its tight box or one
positive point at its centre (the interior pixel farthest from the background), then gets up to
``--iterations`` corrective points, one per iteration, at the centre of the largest error region of
its current mask: positive where the nucleus was missed, negative where the mask spills over. The
previous mask's low-resolution logits go back in as SAM's ``mask_input`` (PathoSAM / micro-sam's
protocol). After each iteration the masks are painted with the overlap rule of ``pathosam-wsi
prompt`` (higher predicted IoU wins, ties to the lower id) and scored against the manual labels:
mSA (IoU 0.50:0.95), F1 at IoU 0.5, and the mean per-nucleus IoU of the unpainted masks.

The patches (CC BY-NC-SA 4.0) are fetched into the data cache, never committed. Models that cannot
run here (PathoSAM without its weights) get a row saying why.

    python benchmarks/eval_prompts.py [--models litemedsam vit_b_histopathology] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.io
import torch
from PIL import Image
from scipy import ndimage as ndi

from pathosam_wsi.datasets import fetch_many
from pathosam_wsi.errors import PathoSamError
from pathosam_wsi.evaluate import f1_score, label_overlap, mean_segmentation_accuracy
from pathosam_wsi.model.prompt_models import PromptModel, load_prompt_model
from pathosam_wsi.prompts.decode import PromptMask
from pathosam_wsi.prompts.paint import paint_region

log = logging.getLogger("eval_prompts")


def centre_point(mask: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """(x, y) continuous px of the pixel farthest from the mask's outside (its centre)."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return c + 0.5, r + 0.5


def corrective_point(
    pred: npt.NDArray[np.bool_], gt: npt.NDArray[np.bool_]
) -> tuple[float, float, int] | None:
    """(x, y, label) at the centre of the largest error region; None when the mask is exact."""
    best: tuple[int, npt.NDArray[np.bool_], int] | None = None
    for error, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        comps, n = ndi.label(error)
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), comps == k + 1, label)
    if best is None:
        return None
    x, y = centre_point(best[1])
    return x, y, best[2]


def _score(
    masks: npt.NDArray[np.bool_],
    scores: npt.NDArray[np.float32],
    gts: list[npt.NDArray[np.bool_]],
    inst: npt.NDArray[Any],
) -> dict[str, float]:
    """mSA and F1 of the painted masks, mean IoU of the raw masks."""
    h, w = inst.shape
    pm = [PromptMask(k, (0, 0), masks[k], float(scores[k]), 0, False) for k in range(len(gts))]
    ids = np.arange(len(gts), dtype=np.int64)
    labels = paint_region((0, 0, w, h), pm, (ids + 1).astype(np.uint32), ids)
    msa, _ = mean_segmentation_accuracy(labels, inst)
    _, _, f1 = f1_score(label_overlap(labels, inst), 0.5)
    ious = [float((m & g).sum() / max((m | g).sum(), 1)) for m, g in zip(masks, gts, strict=True)]
    return {"msa": msa, "f1": f1, "mean_iou": float(np.mean(ious))}


def run_patch(
    model: PromptModel,
    image: npt.NDArray[np.uint8],
    inst: npt.NDArray[Any],
    start: str,
    iterations: int,
) -> list[dict[str, float]]:
    """Metrics per iteration (0 = the initial prompt alone) for one patch."""
    gt_ids = [int(i) for i in np.unique(inst) if i != 0]
    gts = [inst == i for i in gt_ids]
    emb = model.embed(image[None])
    n = len(gts)
    boxes = None
    points = np.zeros((n, 0, 2))
    labels = np.zeros((n, 0), np.int64)
    if start == "box":
        boxes = np.zeros((n, 4))
        for k, g in enumerate(gts):
            rows, cols = np.flatnonzero(g.any(axis=1)), np.flatnonzero(g.any(axis=0))
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    else:
        points = np.asarray([[centre_point(g)] for g in gts])
        labels = np.ones((n, 1), np.int64)
    res = model.decode(
        emb,
        boxes_xyxy=boxes,
        points_xy=points if points.shape[1] else None,
        point_labels=labels if points.shape[1] else None,
        multimask=start == "point",
    )
    out = []
    for it in range(iterations + 1):
        masks = (res.logits > 0).cpu().numpy()[:, : inst.shape[0], : inst.shape[1]]
        out.append({"iteration": it, **_score(masks, res.score, gts, inst)})
        if it == iterations:
            break
        new_pts, new_lab = [], []
        for k in range(n):
            corr = corrective_point(masks[k], gts[k])
            # An exact mask repeats its last point (a no-op for SAM, keeps one batch shape)
            if corr is None:
                corr = (*(points[k, -1] if points.shape[1] else centre_point(gts[k])), 1)
            new_pts.append(corr[:2])
            new_lab.append(corr[2])
        points = np.concatenate([points, np.asarray(new_pts)[:, None]], axis=1)
        labels = np.concatenate([labels, np.asarray(new_lab, np.int64)[:, None]], axis=1)
        res = model.decode(
            emb, boxes_xyxy=boxes, points_xy=points, point_labels=labels, mask_input=res.low_res
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["litemedsam", "vit_b_histopathology"])
    parser.add_argument("--iterations", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = fetch_many(["pannuke"])
    patches = [
        (
            np.asarray(Image.open(files[f"pannuke_patch{i}"]).convert("RGB")),
            scipy.io.loadmat(files[f"pannuke_patch{i}_mask"])["inst_map"],
        )
        for i in (1, 2, 3)
    ]
    results: dict[str, Any] = {
        "hardware": {"machine": platform.machine(), "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__},
        "models": {},
    }
    for name in args.models:
        try:
            model = load_prompt_model(name)
        except (PathoSamError, OSError) as err:
            results["models"][name] = {"skipped": str(err)}
            log.info("| %s | not run: %s |", name, err)
            continue
        t0 = time.perf_counter()
        per = {
            start: [run_patch(model, img, inst, start, args.iterations) for img, inst in patches]
            for start in ("box", "point")
        }
        results["models"][name] = {"per_patch": per, "seconds": time.perf_counter() - t0}
        _print_table(name, per)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _print_table(name: str, per: dict[str, list[list[dict[str, float]]]]) -> None:
    """Markdown: per start and iteration, mSA per patch and mean, F1@0.5 and mean IoU (means)."""
    log.info("\n%s\n", name)
    log.info("| start | iter | mSA p1 | mSA p2 | mSA p3 | mSA mean | F1@0.5 mean | mean IoU |")
    log.info("|---|---|---|---|---|---|---|---|")
    for start, patches in per.items():
        for it in range(len(patches[0])):
            rows = [p[it] for p in patches]
            msa = [r["msa"] for r in rows]
            log.info(
                "| %s | %d | %s | %.3f | %.3f | %.3f |",
                start,
                it,
                " | ".join(f"{m:.3f}" for m in msa),
                float(np.mean(msa)),
                float(np.mean([r["f1"] for r in rows])),
                float(np.mean([r["mean_iou"] for r in rows])),
            )


if __name__ == "__main__":
    main()
