"""Accuracy of every built-in model on the three annotated PanNuke patches (docs/test-data.md §1.1).

For each patch: model maps -> the reference non-tiled AIS watershed (default WatershedConfig) ->
mSA, F1 at IoU 0.5 and PQ against the manual ``inst_map``. Prints a markdown table (per patch and
mean per model). The patches (CC BY-NC-SA 4.0) are fetched into the data cache, never committed.
PanNuke is 40x, about 0.25 µm/px.

    python benchmarks/eval_pannuke.py [--models classical learned ...] [--decoder F] [--json F]

``--decoder FILE`` evaluates a ``finetune`` checkpoint (``segment --decoder``) instead of the
model's own decoder weights, e.g. ``--models learned --decoder runs/x/decoder.pt``.

A model that cannot be built here (e.g. PathoSAM without its downloaded weights) gets one row that
says why instead of numbers. Test models with random weights (names containing ``random``) are
skipped unless named with ``--models``.
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
from PIL import Image

from pathosam_wsi.config import ModelConfig, WatershedConfig
from pathosam_wsi.datasets import fetch_many
from pathosam_wsi.evaluate import evaluate_labels
from pathosam_wsi.model.registry import available_models, build_model
from pathosam_wsi.postprocess.watershed import ais_watershed

logger = logging.getLogger("eval_pannuke")

PANNUKE_MPP = 0.25
PATCHES = (1, 2, 3)


def load_patches() -> list[tuple[str, npt.NDArray[np.uint8], npt.NDArray[np.int32]]]:
    """(name, RGB image, instance map) for each annotated patch, fetched into the cache."""
    paths = fetch_many(["pannuke"])
    out = []
    for i in PATCHES:
        with Image.open(paths[f"pannuke_patch{i}"]) as img:
            rgb = np.asarray(img.convert("RGB"))
        inst = scipy.io.loadmat(paths[f"pannuke_patch{i}_mask"])["inst_map"].astype(np.int32)
        out.append((f"patch{i}", rgb, inst))
    return out


def evaluate_model(
    name: str, patches: list[Any], decoder: Path | None = None
) -> list[dict[str, Any]]:
    """One row per patch for model ``name`` (or one row with the reason it could not run)."""
    try:
        config = ModelConfig(name=name, device="cpu", decoder=str(decoder) if decoder else None)
        model = build_model(config, mpp=PANNUKE_MPP)
    except Exception as err:  # report any build failure as a row, keep going
        reason = str(err).split(";")[0]
        return [{"model": name, "patch": "-", "error": f"{type(err).__name__}: {reason}"}]
    rows = []
    for patch, rgb, inst in patches:
        start = time.perf_counter()
        maps = model.predict([rgb])[0].ais
        labels = ais_watershed(maps, WatershedConfig())
        seconds = time.perf_counter() - start
        res = evaluate_labels(labels, inst)
        rows.append({
            "model": name, "patch": patch, "msa": res.msa, "f1_at_50": res.f1_at_50,
            "pq": res.pq, "n_pred": res.n_pred, "n_gt": res.n_gt, "seconds": seconds,
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown table with a mean row per model."""
    lines = [
        "| model | patch | mSA | F1@0.5 | PQ | nuclei pred / gt | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        if "error" in mine[0]:
            lines.append(f"| {name} | - | not run: {mine[0]['error']} | | | | |")
            continue
        lines.extend(
            f"| {name} | {r['patch']} | {r['msa']:.3f} | {r['f1_at_50']:.3f} | {r['pq']:.3f} "
            f"| {r['n_pred']} / {r['n_gt']} | {r['seconds']:.2f} |"
            for r in mine
        )
        means = {k: float(np.mean([r[k] for r in mine])) for k in ("msa", "f1_at_50", "pq")}
        lines.append(
            f"| {name} | **mean** | **{means['msa']:.3f}** | **{means['f1_at_50']:.3f}** "
            f"| **{means['pq']:.3f}** | {sum(r['n_pred'] for r in mine)} / "
            f"{sum(r['n_gt'] for r in mine)} | |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run every requested model on every patch and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: all built-in models")
    parser.add_argument("--decoder", type=Path, default=None, help="a finetune checkpoint")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    patches = load_patches()
    rows = []
    names = args.models or [m for m in available_models() if "random" not in m]
    for name in names:
        rows.extend(evaluate_model(name, patches, args.decoder))
    print(markdown(rows))  # script output
    if args.json is not None:
        meta = {"machine": platform.platform(), "processor": platform.processor()}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
