"""CPU throughput of the PathoSAM ViT-B model (encoder / decoder split) and precision deviations.

Deterministic golden weights (SAM vit_b base seed 1000, conv-transpose decoder base seed 2000,
docs/pathosam-reference.md §12), one synthetic 512x512 H&E-like block padded to 1024 as the
reference.
For each precision: the median time of ``--repeats`` encoder and decoder forwards (after one
untimed warm-up) and blocks/s; the maximum absolute difference of the three maps (resized back to
512x512) from fp32, and the mSA between the label outputs (``ais_watershed``) of each precision
and fp32 at the 0.3-quantile thresholds of the fp32 maps (random weights give near-constant maps
and no object at the default 0.5 thresholds). The decoder runs channels-last, as the CPU runner.
Writes a JSON with hardware and versions.

    python benchmarks/bench_model_cpu.py --precisions fp32 bf16 fp16 --repeats 3 --out result.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from contextlib import nullcontext
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathosam_wsi.model.checkpoints import load_decoder, load_image_encoder
from pathosam_wsi.model.preprocess import postprocess_maps, preprocess_tiles
from pathosam_wsi.model.sam_encoder import disable_sdpa_attention
from pathosam_wsi.model.synthetic_weights import (
    synthetic_decoder_state_dict,
    synthetic_sam_state_dict,
)

logger = logging.getLogger("bench_model_cpu")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def synthetic_block(size_px: int = 512, seed: int = 7) -> np.ndarray:
    """(size, size, 3) uint8 H&E-like block: pink background, purple discs, noise."""
    rng = np.random.default_rng(seed)
    img = np.empty((size_px, size_px, 3), np.float32)
    img[:] = (232.0, 196.0, 222.0)
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    for _ in range(size_px * size_px // 1024):
        cy, cx, r = [*rng.uniform(0, size_px, 2).tolist(), rng.uniform(4.0, 11.0)]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = np.array([90.0, 50.0, 145.0]) + rng.normal(
            0, 12, 3
        )
    img += rng.normal(0.0, 6.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _autocast(precision: str) -> Any:
    dtype = DTYPES[precision]
    return nullcontext() if dtype is None else torch.autocast("cpu", dtype=dtype)


def _timed(fn: Any, repeats: int) -> tuple[list[float], Any]:
    fn()  # warm-up (oneDNN primitive creation)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def run(precisions: list[str], repeats: int, sdpa: bool) -> dict[str, Any]:
    encoder = load_image_encoder(synthetic_sam_state_dict("vit_b"), "vit_b", sdpa=sdpa)
    if not sdpa:
        disable_sdpa_attention(encoder)
    decoder = load_decoder(synthetic_decoder_state_dict(), 3).set_channels_last(True)
    block = synthetic_block()
    batch = preprocess_tiles([block])
    results: dict[str, Any] = {}
    maps: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for precision in precisions:
            with _autocast(precision):
                enc_t, features = _timed(lambda: encoder(batch.pixels), repeats)
                dec_t, out = _timed(lambda f=features: decoder(f, "per_tile").float(), repeats)
            maps[precision] = postprocess_maps(out[0], batch.input_sizes[0], (512, 512)).numpy()
            enc_s, dec_s = statistics.median(enc_t), statistics.median(dec_t)
            results[precision] = {
                "encoder_s": enc_t,
                "decoder_s": dec_t,
                "encoder_median_s": enc_s,
                "decoder_median_s": dec_s,
                "blocks_per_s": 1.0 / (enc_s + dec_s),
            }
            logger.info("%s: encoder %.2f s, decoder %.2f s", precision, enc_s, dec_s)
    if "fp32" in maps:
        _deviations(maps, results)
    return results


def _deviations(maps: dict[str, np.ndarray], results: dict[str, Any]) -> None:
    """Max abs map difference and label mSA of every precision against fp32."""
    from scipy import ndimage

    from pathosam_wsi.config import WatershedConfig
    from pathosam_wsi.evaluate.compare import evaluate_labels
    from pathosam_wsi.postprocess.watershed import ais_watershed

    ref = maps["fp32"]
    sigmas = (1.0, 1.6, 1.6)
    q = [
        float(np.quantile(ndimage.gaussian_filter(m, s, mode="mirror", truncate=3.0), 0.3))
        for m, s in zip(ref, sigmas, strict=True)
    ]
    config = WatershedConfig(
        foreground_thresh=q[0], center_distance_thresh=q[1], boundary_distance_thresh=q[2]
    )
    ref_labels = ais_watershed(ref, config)
    for precision, m in maps.items():
        labels = ais_watershed(m, config)
        ev = evaluate_labels(labels, ref_labels)
        results[precision]["max_abs_diff_vs_fp32"] = float(np.abs(m - ref).max())
        results[precision]["msa_vs_fp32_quantile_thresholds"] = ev.msa
        results[precision]["nuclei_quantile_thresholds"] = ev.n_pred
        logger.info("%s vs fp32: max abs %.3g, mSA %.4f", precision, np.abs(m - ref).max(), ev.msa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plain-attention", action="store_true", help="segment-anything attention")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "benchmark": "bench_model_cpu",
        "model": "vit_b (deterministic weights, seeds 1000/2000)",
        "block_px": 512,
        "batch_size": 1,
        "attention": "plain" if args.plain_attention else "sdpa",
        "hardware": {
            "cpu": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "versions": {p: version(p) for p in ("torch", "numpy", "segment-anything")},
        "python": platform.python_version(),
        "results": run(args.precisions, args.repeats, not args.plain_attention),
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    logger.info("%s", text)


if __name__ == "__main__":
    main()
