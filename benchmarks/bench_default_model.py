"""CPU time per 512² block (+ 64-px halo) of the ``learned`` and ``classical`` models, side by side.

Both models run in the same process on the same blocks of a real H&E image (histolytics 0.3.0's
``hgsc_nest``, fetched into the data cache), alternating model by model in each round so that load
on the machine hits both alike; the median over rounds is reported, with the ratio.

    python benchmarks/bench_default_model.py [--rounds 7] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.datasets import fetch_many
from pathosam_wsi.finetune.data import read_image
from pathosam_wsi.model.registry import build_model

BLOCK_PX = 512 + 2 * 64
MPP = 0.25


def blocks(n: int) -> list[np.ndarray]:
    """``n`` (640, 640, 3) uint8 blocks from the histolytics crop (corners and centre)."""
    rgb = read_image(fetch_many(["hgsc_nest"])["hgsc_nest"])
    h, w = rgb.shape[:2]
    starts = [(0, 0), (h - BLOCK_PX, w - BLOCK_PX), ((h - BLOCK_PX) // 2, (w - BLOCK_PX) // 2)]
    return [rgb[y : y + BLOCK_PX, x : x + BLOCK_PX].copy() for y, x in starts[:n]]


def main() -> None:
    """Time both models and print one line each plus the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiles = blocks(3)
    models = {
        n: build_model(ModelConfig(name=n, device="cpu"), MPP) for n in ("classical", "learned")
    }
    for model in models.values():
        model.predict(tiles[:1])  # warm-up
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            for tile in tiles:
                start = time.perf_counter()
                model.predict([tile])
                times[name].append(time.perf_counter() - start)
    med = {n: float(np.median(t)) for n, t in times.items()}
    for name, s in med.items():
        print(f"{name:10s} median {s:.3f} s per {BLOCK_PX}² block ({len(times[name])} runs)")
    ratio = med["learned"] / med["classical"]
    print(f"learned / classical = {ratio:.2f}x (threads {args.threads})")
    if args.json is not None:
        meta = {"machine": platform.platform(), "threads": args.threads, "torch": torch.__version__}
        args.json.write_text(json.dumps({"meta": meta, "median_s": med, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
