"""GPU throughput of the PathoSAM models: blocks/s for ViT-B/L/H across batch sizes and precisions.

Two measurements per (model, precision, batch size), on one CUDA device:

* ``model``: encoder and decoder forwards on device-resident random input (B, 3, 1024, 1024),
  timed with CUDA events after warm-up: encoder, decoder and total blocks/s.
* ``runner`` (``--runner``): the full model step as the pipeline runs it, ``InferenceRunner``
  on uint8 640x640 blocks (512 core + 64 halo): uint8 upload from a pinned buffer, resize /
  normalisation / padding on the device, maps resized back on the device and one pinned
  device-to-host copy per batch. ``--nchw-decoder`` times the decoder without channels_last.

Weights are random (speed does not depend on their values); the attention uses SDPA. Out-of-memory
configurations are recorded as such. Writes a JSON with the device, versions and all figures.

    python benchmarks/bench_model_gpu.py --models vit_b vit_l vit_h \
        --precisions fp32 tf32 bf16 fp16 \
        --batch-sizes 1 4 8 16 32 --runner --out gpu.json
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

from pathosam_wsi.model.runner import InferenceRunner, tf32_math
from pathosam_wsi.model.sam_encoder import build_image_encoder
from pathosam_wsi.model.unetr_decoder import AISDecoder

logger = logging.getLogger("bench_model_gpu")
DTYPES = {"fp32": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(precision: str) -> Any:
    dtype = DTYPES[precision]
    if precision == "tf32":
        return tf32_math(True)
    return nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


def _cuda_time_s(fn: Any, repeats: int) -> float:
    """Median seconds of ``fn()`` measured with CUDA events."""
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return statistics.median(times)


def bench_model(
    encoder: Any, decoder: Any, precision: str, batch: int, repeats: int
) -> dict[str, Any]:
    """Encoder / decoder forwards on device-resident input."""
    x = torch.randn(batch, 3, 1024, 1024, device="cuda")
    with torch.inference_mode(), _autocast(precision):
        features = encoder(x)
        decoder(features)  # warm-up of both
        torch.cuda.synchronize()
        enc_s = _cuda_time_s(lambda: encoder(x), repeats)
        dec_s = _cuda_time_s(lambda: decoder(features), repeats)
    return {
        "encoder_s": enc_s,
        "decoder_s": dec_s,
        "encoder_blocks_per_s": batch / enc_s,
        "decoder_blocks_per_s": batch / dec_s,
        "blocks_per_s": batch / (enc_s + dec_s),
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def bench_runner(
    encoder: Any,
    decoder: Any,
    precision: str,
    batch: int,
    repeats: int,
    compile_: bool,
    channels_last: bool = True,
) -> dict[str, Any]:
    """Full model step through ``InferenceRunner`` on uint8 640x640 blocks."""
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (640, 640, 3), dtype=np.uint8) for _ in range(batch * 4)]
    runner = InferenceRunner(
        encoder,
        {"ais": decoder},
        device="cuda",
        precision=precision,
        batch_size=batch,
        compile=compile_,
        channels_last=channels_last,
    )
    runner.predict(tiles[:batch])  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        runner.predict(tiles)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "seconds_per_call": median,
        "blocks": len(tiles),
        "blocks_per_s": len(tiles) / median,
        "channels_last": channels_last,
    }


def _one(
    model: str, encoder: Any, decoder: Any, precision: str, batch: int, args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model, "precision": precision, "batch_size": batch}
    try:
        torch.cuda.reset_peak_memory_stats()
        row["model_step"] = bench_model(encoder, decoder, precision, batch, args.repeats)
        if args.runner:
            row["runner"] = bench_runner(
                encoder,
                decoder,
                precision,
                batch,
                args.repeats,
                args.compile,
                not args.nchw_decoder,
            )
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    finally:
        torch.cuda.empty_cache()
    logger.info("%s", json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_l", "vit_h"])
    parser.add_argument(
        "--precisions", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(DTYPES)
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--runner", action="store_true", help="also time the full InferenceRunner step"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile in the runner step")
    parser.add_argument(
        "--nchw-decoder", action="store_true", help="runner step without channels_last"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        raise SystemExit("bench_model_gpu needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    rows = []
    for model in args.models:
        encoder = build_image_encoder(model, sdpa=True).cuda().eval()
        decoder = AISDecoder().cuda()
        rows += [
            _one(model, encoder, decoder, p, b, args)
            for p in args.precisions
            for b in args.batch_sizes
        ]
        del encoder, decoder
        torch.cuda.empty_cache()
    report = {
        "benchmark": "bench_model_gpu",
        "device": torch.cuda.get_device_name(0),
        "device_total_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
        "versions": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": version("numpy"),
            "segment-anything": version("segment-anything"),
        },
        "python": platform.python_version(),
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        },
        "rows": rows,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    logger.info("%s", text)


if __name__ == "__main__":
    main()
