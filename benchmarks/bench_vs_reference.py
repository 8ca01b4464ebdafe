"""pathosam-wsi vs the reference micro-sam tiled AIS: speed and agreement on one image, one run.

Both sides get the same deterministic input (a 1024x1024 crop of a slide, default the centre of
the sample slide) and the same deterministic vit_b weights (SAM seed 1000, AIS decoder seed 2000,
docs/pathosam-reference.md §12), tile 384 + halo 64 (9 blocks of <= 512 px), batch size 1, CPU.
Every
variant runs in its own fresh subprocess that reports its own timings, so imports and model
loading are measured apart from inference on both sides; the variants alternate
(reference, ours fp32, ours bf16, reference, ...) and the medians are reported.

- reference: ``bench_vs_reference_ref.py`` with the reference environment's python (micro-sam
  1.8.14: encoder, decoder + map stitching, tiled watershed).
- ours: ``segment_slide`` on a PNG of the crop (``--mpp``), vit_b_histopathology with generated
  checkpoint files, tissue detection off, same tiling, same thresholds: the whole engine
  (reading, model, watershed, stitching, OME-Zarr and Parquet writing).

Ours runs with ``intensity="per_tile_minmax"``, the input stretch that micro-sam 1.8.14 applies
(the engine's default, ``none``, follows training). The reference's tiled watershed labels seeds
4-connected, ours (like the reference's non-tiled path) 8-connected
(docs/pathosam-reference.md §7.2);
on the noise-like maps of random weights this changes many objects, so the table also gives the
mSA against the reference's NON-tiled post-processing of its own stitched maps.
Random weights give near-constant maps (no object at the default 0.5 thresholds), so both sides
use the 0.3-quantile thresholds of the reference's smoothed stitched maps (as the golden tests).
The labels are compared with mSA (pathosam_wsi.evaluate). Prints a markdown table, writes JSON.

    python benchmarks/bench_vs_reference.py --repeats 1 --out /tmp/bench_vs_ref.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("bench_vs_reference")
REPO = Path(__file__).resolve().parents[1]
# The reference environment (tests/model/golden/README.md has the recipe).
REF_PYTHON = os.environ.get("PATHOSAM_WSI_REF_PYTHON", "refenv/bin/python")
TILE_PX, HALO_PX, SIDE_PX, MPP = 384, 64, 1024, 0.5


def crop(slide: str, side_px: int) -> np.ndarray:
    """(side, side, 3) uint8 crop at the centre of level 0 of ``slide``."""
    from pathosam_wsi.slide.open import open_slide

    handle = open_slide(slide)
    try:
        width, height = handle.level_dimensions[0]
        x0, y0 = (width - side_px) // 2, (height - side_px) // 2
        box = (x0, y0, x0 + side_px, y0 + side_px)
        return np.ascontiguousarray(handle.read_level(0, box)[..., :3])
    finally:
        handle.close()


def run_reference(image_npy: Path, out: Path, thresholds: dict[str, float] | None) -> dict:
    cmd = [REF_PYTHON, str(REPO / "benchmarks" / "bench_vs_reference_ref.py"), str(image_npy)]
    cmd += [str(out), "--tile", str(TILE_PX), "--halo", str(HALO_PX)]
    if thresholds:
        cmd += ["--thresholds", json.dumps(thresholds)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    with np.load(out) as npz:
        meta = json.loads(str(npz["meta"]))
        meta["labels"] = npz["labels"]
        meta["labels_untiled"] = npz["labels_untiled"]
    meta["timings"]["process_wall_s"] = wall
    return meta


def run_ours(
    png: Path, work: Path, precision: str, thresholds: dict[str, float], ckpt: Path
) -> dict:
    out = work / f"ours_{precision}.json"
    cmd = [sys.executable, __file__, "--child", str(png), str(work), precision, str(ckpt)]
    cmd += [json.dumps(thresholds), str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    meta = json.loads(out.read_text())
    meta["timings"]["process_wall_s"] = time.perf_counter() - t0
    from pathosam_wsi.evaluate.io import load_labels

    meta["labels"] = np.asarray(load_labels(meta.pop("output_dir")).instances)
    return meta


def child(png: str, work: str, precision: str, ckpt: str, thr_json: str, out: str) -> None:
    """Our engine in a fresh process: model build (cached) timed apart from segment_slide."""
    t0 = time.perf_counter()
    import torch

    from pathosam_wsi import RunConfig, segment_slide
    from pathosam_wsi.config import (
        ModelConfig,
        SlideConfig,
        TilingConfig,
        TissueConfig,
        WatershedConfig,
    )
    from pathosam_wsi.model.registry import get_model

    imports_s = time.perf_counter() - t0
    thr = json.loads(thr_json)
    model = ModelConfig(
        name="vit_b_histopathology",
        checkpoint=f"{ckpt}/enc.pt",
        decoder=f"{ckpt}/dec.pt",
        device="cpu",
        precision=precision,
        batch_size=1,
        intensity="per_tile_minmax",  # micro-sam 1.8.14 stretches every tile (_to_image)
    )
    config = RunConfig(
        slide=SlideConfig(mpp=MPP),
        tiling=TilingConfig(tile_px=TILE_PX, halo_px=HALO_PX),
        tissue=TissueConfig(enabled=False),
        watershed=WatershedConfig(
            foreground_thresh=thr["foreground_threshold"],
            center_distance_thresh=thr["center_distance_threshold"],
            boundary_distance_thresh=thr["boundary_distance_threshold"],
        ),
        model=model,
        threads=1,
    )
    t0 = time.perf_counter()
    get_model(model, MPP)  # cached per process: segment_slide reuses it
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = segment_slide(png, Path(work) / precision, config, overwrite=True)
    inference_s = time.perf_counter() - t0
    meta = {
        "timings": {"imports_s": imports_s, "load_s": load_s, "inference_s": inference_s},
        "blocks": result.blocks,
        "nuclei": result.nuclei,
        "torch_threads": torch.get_num_threads(),
        "output_dir": str(result.output_dir),
    }
    Path(out).write_text(json.dumps(meta))


def msa(pred: np.ndarray, ref: np.ndarray) -> float:
    from pathosam_wsi.evaluate.compare import evaluate_labels

    return float(evaluate_labels(pred, ref).msa)


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r["timings"][key] for r in runs)


def table(runs: dict[str, list[dict]], agreement: dict[str, float], n_blocks: int) -> str:
    ref_s = _median(runs["reference"], "inference_s")
    lines = [
        "| variant | imports s | load s | inference s (median) | blocks/s | speed vs reference "
        "| nuclei | mSA vs reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        inf = _median(rs, "inference_s")
        load = _median(rs, "weights_and_load_s" if name == "reference" else "load_s")
        nuclei = int(np.unique(rs[-1]["labels"]).size - 1)
        each = ", ".join(f"{r['timings']['inference_s']:.1f}" for r in rs)
        lines.append(
            f"| {name} | {_median(rs, 'imports_s'):.1f} | {load:.1f} | {inf:.1f} "
            f"({each}) "
            f"| {n_blocks / inf:.4f} | {ref_s / inf:.2f}x | {nuclei} "
            f"| {agreement.get(name, 1.0):.4f} |"
        )
    split = runs["reference"][-1]["timings"]
    lines.append(
        f"\nreference split (last run): encoder {split['encoder_s']:.1f} s, decoder + stitching "
        f"{split['decoder_s']:.1f} s, tiled watershed {split['watershed_s']:.1f} s"
    )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:8])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", help="default: the sample slide (pathosam-wsi sample-data)")
    parser.add_argument("--side", type=int, default=SIDE_PX, help="crop side, px")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = _run_all(args, work)
    print(report["table"])
    if args.out:
        args.out.write_text(json.dumps({k: v for k, v in report.items()}, indent=2) + "\n")


def _run_all(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from PIL import Image

    from pathosam_wsi.cli.models import write_test_checkpoint

    if args.slide is None:
        from pathosam_wsi.datasets import fetch

        args.slide = str(fetch("cmu_small_region"))
    image = crop(args.slide, args.side)
    np.save(work / "image.npy", image)
    Image.fromarray(image).save(work / "image.png")
    write_test_checkpoint(work / "enc.pt", work / "dec.pt")
    runs: dict[str, list[dict]] = {"reference": [], **{f"ours {p}": [] for p in args.precisions}}
    thresholds: dict[str, float] | None = None
    for rep in range(args.repeats):
        for name in runs:
            logger.info("repeat %d: %s", rep, name)
            if name == "reference":
                meta = run_reference(work / "image.npy", work / "ref.npz", thresholds)
                thresholds = meta["thresholds"]
            else:
                meta = run_ours(work / "image.png", work, name.split()[1], thresholds, work)
            logger.info("%s: %s", name, meta["timings"])
            runs[name].append(meta)
    ref_labels = runs["reference"][-1]["labels"]
    agreement = {n: msa(rs[-1]["labels"], ref_labels) for n, rs in runs.items() if n != "reference"}
    untiled = runs["reference"][-1]["labels_untiled"]
    for n, rs in runs.items():
        agreement[f"{n} vs reference non-tiled post-processing"] = msa(rs[-1]["labels"], untiled)
    if "ours fp32" in runs:
        for n, rs in runs.items():
            if n.startswith("ours") and n != "ours fp32":
                fp32 = runs["ours fp32"][-1]["labels"]
                agreement[f"{n} vs ours fp32"] = msa(rs[-1]["labels"], fp32)
    n_blocks = int(runs[next(n for n in runs if n != "reference")][-1]["blocks"])
    text = table(runs, agreement, n_blocks)
    text += f"\nthresholds (0.3-quantiles of the reference's smoothed maps): {thresholds}"
    text += f"\nagreement: {agreement}"
    return {
        "table": text,
        "thresholds": thresholds,
        "agreement": agreement,
        "blocks": n_blocks,
        "image": {"slide": args.slide, "side_px": args.side, "mpp": MPP},
        "tiling": {"tile_px": TILE_PX, "halo_px": HALO_PX},
        "timings": {n: [r["timings"] for r in rs] for n, rs in runs.items()},
        "nuclei": {n: [int(np.unique(r["labels"]).size - 1) for r in rs] for n, rs in runs.items()},
    }


if __name__ == "__main__":
    main()
