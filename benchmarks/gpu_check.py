"""One-command GPU check of the device path: precisions, torch.compile and a dask-cuda cohort.

On a CUDA machine (budget: under 8 minutes on an H100-class GPU):

1. writes generated vit_b weights (``pathosam-wsi models make-test-checkpoint`` format);
2. writes a synthetic tissue-like 16384² pyramidal TIFF (8192² with ``--quick``);
3. runs ``pathosam_wsi.segment_slide`` with vit_b + those weights in fp32, tf32, bf16 and
   bf16 + ``torch.compile`` (in-process threads, one model per configuration);
4. runs a 2-slide cohort through ``pathosam_wsi.cohort.run_cohort`` on a ``LocalCUDACluster``
   client (``distributed.make_client``);

and prints a table: end-to-end blocks/s, device busy fraction (seconds inside the runner's batched
device work / wall), batch size, peak device memory, model FLOP utilisation (per-tile FLOPs:
encoder 0.972 + decoder 0.822 TFLOP), plus the max abs map deviation of each precision from fp32
on sample blocks. It exits non-zero with a message instead of reporting a doubtful figure: the
device must be CUDA, every planned block must have gone through the model, nuclei counts must agree
across precisions within stated tolerances, the cohort must run on GPU workers.

``--dry-run`` runs the same code on the CPU with the tiny ``sam_tiny_random`` model and a 1024²
slide (well under a minute; CI runs it, tests/model/test_gpu_check.py); torch.compile is skipped
there (the CPU inductor build alone takes minutes).

    python benchmarks/gpu_check.py --json gpu_check.json
    python benchmarks/gpu_check.py --quick
    python benchmarks/gpu_check.py --dry-run
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

logger = logging.getLogger("gpu_check")
TFLOP_PER_TILE = 0.972 + 0.822
"""ViT-B encoder + AIS decoder on one 1024² input, TFLOP."""
RUNS = (("fp32", False), ("tf32", False), ("bf16", False), ("bf16", True))
COUNT_TOLERANCE = {"tf32": 0.05, "bf16": 0.25}
"""Max relative nuclei-count difference to fp32 (random weights: the maps span little, so the
quantile thresholds sit where reduced precision moves pixels; CPU golden bf16: 3 % of pixels)."""
MAP_TOLERANCE = {"fp32": 0.0, "tf32": 0.02, "bf16": 0.05}
"""Max abs map difference to fp32 on the sample blocks (CPU golden: bf16 3.1e-3, fp16 3.8e-4)."""


class CheckFailed(RuntimeError):
    """A figure would be wrong or a consistency check failed."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def write_slide(path: Path, side: int, seed: int = 0) -> np.ndarray:
    """Tissue-like RGB slide (nuclei on eosin pink, one white gap) as a 3-level JPEG pyramid."""
    import tifffile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.synthetic import draw_nuclei, grid_centres

    motif_px = min(side, 2048)
    centres = grid_centres(motif_px, motif_px, 26, 14, 6.0, seed)
    motif, _ = draw_nuclei(motif_px, motif_px, centres, radius_px=7.0, seed=seed)
    reps = -(-side // motif_px)
    rgb = np.tile(motif, (reps, reps, 1))[:side, :side]
    res = {"resolution": (1e4 / 0.25, 1e4 / 0.25), "resolutionunit": "CENTIMETER"}
    kwargs = {"photometric": "rgb", "tile": (512, 512), "compression": "jpeg", "maxworkers": 8}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(rgb, subifds=2, **kwargs, **res)  # type: ignore[arg-type]
        level = rgb
        for k in (1, 2):
            h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
            pairs = level[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.uint16)
            level = (pairs.sum(axis=(1, 3)) // 4).astype(np.uint8)
            scale = 1e4 / (0.25 * 2**k)
            lres = {"resolution": (scale, scale), "resolutionunit": "CENTIMETER"}
            tif.write(level, subfiletype=1, **kwargs, **lres)  # type: ignore[arg-type]
    return rgb


def _model_config(args: argparse.Namespace, weights: dict[str, str], precision: str, comp: bool):
    from pathosam_wsi.config import ModelConfig

    return ModelConfig(
        name=weights.get("name", "vit_b_histopathology"),
        checkpoint=weights.get("checkpoint"),
        decoder=weights.get("decoder"),
        device=args.device,
        precision=precision,
        compile=comp,
        batch_size=args.batch_size,
    )


def _counters(model_config: Any, *, required: bool) -> tuple[int, int, float, int]:
    """(tiles, batches, busy_s, last batch size) of the runner built for ``model_config``."""
    from pathosam_wsi.model.registry import cached_models

    found = [m for cfg, _mpp, m in cached_models() if cfg == model_config]
    if not found and not required:
        return 0, 0, 0.0, 0
    _require(len(found) == 1, f"expected one cached model for {model_config}, got {len(found)}")
    s = found[0].runner.stats
    return s.tiles, s.batches, s.busy_s, s.last_batch_size


def sample_map_deviation(
    args: argparse.Namespace, weights: dict[str, str], tiles: list[np.ndarray]
) -> tuple[dict[str, float], Any]:
    """Max abs map difference of each precision to fp32 on ``tiles``; watershed thresholds."""
    from pathosam_wsi.config import WatershedConfig
    from pathosam_wsi.model.registry import build_model

    maps: dict[str, np.ndarray] = {}
    for precision in ("fp32", "tf32", "bf16"):
        model = build_model(_model_config(args, weights, precision, False), 0.25)
        maps[precision] = np.stack([o.ais for o in model.predict(tiles)])  # (N, 3, H, W)
        _require(bool(np.isfinite(maps[precision]).all()), f"{precision}: non-finite maps")
        del model
    deviation = {p: float(np.abs(m - maps["fp32"]).max()) for p, m in maps.items()}
    for p, d in deviation.items():
        # CPU (dry run): tf32 is fp32 exactly; the tiny model's std-0.2 weights amplify bf16
        limit = MAP_TOLERANCE[p] if args.device.startswith("cuda") else 0.25 * (p == "bf16")
        _require(d <= limit, f"{p}: sample maps differ from fp32 by {d:.3g} > {limit}")
    # Random weights: the default 0.5 thresholds may find nothing; use the reference golden
    # procedure (0.3-quantile of each fp32 map) so that the runs have nuclei to count.
    q = np.quantile(maps["fp32"].transpose(1, 0, 2, 3).reshape(3, -1), 0.3, axis=1)
    shed = WatershedConfig(
        foreground_thresh=float(q[0]),
        center_distance_thresh=float(q[1]),
        boundary_distance_thresh=float(q[2]),
    )
    return deviation, shed


def run_precisions(
    args: argparse.Namespace, slide: Path, out: Path, weights: dict[str, str], shed: Any
) -> list[dict[str, Any]]:
    """segment_slide once per (precision, compile); per-run figures from its runner."""
    from pathosam_wsi import RunConfig, segment_slide
    from pathosam_wsi.config import SlideConfig

    rows = []
    for precision, comp in RUNS:
        name = precision + ("+compile" if comp else "")
        use_compile = comp and not args.dry_run  # CPU inductor compile alone takes minutes
        model_config = _model_config(args, weights, precision, use_compile)
        config = RunConfig(
            slide=SlideConfig(roi_xywh_l0=args.roi),
            watershed=shed,
            model=model_config,
            blocks_per_task=args.blocks_per_task,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        before = _counters(model_config, required=False)  # dry run: bf16+compile reuses bf16
        t0 = time.perf_counter()
        result = segment_slide(slide, out / name, config, overwrite=True)
        wall = time.perf_counter() - t0
        after = _counters(model_config, required=True)
        stats = SimpleNamespace(
            tiles=after[0] - before[0],
            batches=after[1] - before[1],
            busy_s=after[2] - before[2],
            last_batch_size=after[3],
        )
        done = result.blocks - result.blocks_skipped
        _require(done > 0, f"{name}: no block had tissue")
        _require(stats.tiles == done, f"{name}: model saw {stats.tiles} tiles, {done} planned")
        rows.append(
            _row(args, name, precision, wall, done, result.nuclei, stats, _peak_gib())
            | {"compiled": use_compile}
        )
        logger.info("%s: %s", name, rows[-1])
    return rows


def _peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def _row(
    args: argparse.Namespace,
    name: str,
    precision: str,
    wall: float,
    blocks: int,
    nuclei: int,
    stats: Any,
    peak: float | None,
    busy_s: float | None = None,
) -> dict[str, Any]:
    busy = stats.busy_s if busy_s is None else busy_s
    peak_tflops = {"fp32": args.peak_tflops_fp32, "tf32": args.peak_tflops_tf32}.get(
        precision, args.peak_tflops
    )
    return {
        "run": name,
        "blocks": blocks,
        "nuclei": nuclei,
        "wall_s": wall,
        "blocks_per_s": blocks / wall,
        "busy_frac": busy / wall,
        "batch_size": stats.last_batch_size,
        "mean_batch": stats.tiles / max(stats.batches, 1),
        "peak_mem_gib": peak,
        # FLOPs are those of vit_b at 1024²: meaningless for the dry run's tiny model
        "mfu_busy": None if args.dry_run else blocks * TFLOP_PER_TILE / busy / peak_tflops,
        "mfu_end_to_end": None if args.dry_run else blocks * TFLOP_PER_TILE / wall / peak_tflops,
    }


def check_counts(rows: list[dict[str, Any]], exact: bool) -> None:
    """Same blocks everywhere; nuclei counts within tolerance of fp32 (exact on CPU for tf32)."""
    ref = rows[0]
    _require(ref["nuclei"] > 0, "fp32 found no nuclei; the check would measure nothing")
    by_name = {r["run"]: r for r in rows}
    for r in rows:
        _require(
            r["blocks"] == ref["blocks"], f"{r['run']}: {r['blocks']} blocks vs {ref['blocks']}"
        )
        _require(r["nuclei"] > 0, f"{r['run']}: no nuclei")
    if exact:
        _require(by_name["tf32"]["nuclei"] == ref["nuclei"], "tf32 != fp32 nuclei on CPU")
    for name, base, tol in (
        ("tf32", "fp32", COUNT_TOLERANCE["tf32"]),
        ("bf16", "fp32", COUNT_TOLERANCE["bf16"]),
        ("bf16+compile", "bf16", COUNT_TOLERANCE["tf32"]),
    ):
        a, b = by_name[name]["nuclei"], by_name[base]["nuclei"]
        rel = abs(a - b) / b
        _require(rel <= tol, f"{name}: {a} nuclei vs {b} ({base}), {rel:.1%} > {tol:.0%}")


def _worker_stats() -> list[dict[str, Any]]:
    """Runner counters and CUDA figures of the models cached in one dask worker."""
    import torch as _torch

    from pathosam_wsi.model.registry import cached_models

    out = []
    for cfg, _mpp, model in cached_models():
        runner = getattr(model, "runner", None)
        if runner is None:
            continue
        s = runner.stats
        out.append(
            {
                "model": cfg.name,
                "device": str(runner.device),
                "tiles": s.tiles,
                "batches": s.batches,
                "busy_s": s.busy_s,
                "last_batch_size": s.last_batch_size,
                "peak_gib": _torch.cuda.max_memory_allocated() / 2**30
                if _torch.cuda.is_available()
                else None,
            }
        )
    return out


def run_cohort_check(
    args: argparse.Namespace, slide: Path, out: Path, weights: dict[str, str], shed: Any
) -> dict[str, Any]:
    """Two slides through run_cohort on a LocalCUDACluster client (LocalCluster in dry-run)."""
    from pathosam_wsi import RunConfig
    from pathosam_wsi.cohort import ManifestEntry, run_cohort
    from pathosam_wsi.config import SlideConfig
    from pathosam_wsi.distributed.cluster import connect, has_gpu_workers

    precision = "fp32" if args.dry_run else "bf16"
    config = RunConfig(
        slide=SlideConfig(roi_xywh_l0=args.cohort_roi),
        watershed=shed,
        model=_model_config(args, weights, precision, False),
        blocks_per_task=args.blocks_per_task,
    )
    entries = [ManifestEntry(str(slide), f"slide{i}", config) for i in range(2)]
    with connect("local", n_workers=1 if args.dry_run else None) as client:
        assert client is not None
        gpu = has_gpu_workers(client)
        _require(gpu or args.dry_run, "the cohort cluster has no GPU workers (dask-cuda?)")
        t0 = time.perf_counter()
        rows = run_cohort(entries, out, client=client, overwrite=True)
        wall = time.perf_counter() - t0
        per_worker = client.run(_worker_stats)
    for r in rows:
        _require(r.state == "done", f"cohort slide {r.slide_id}: {r.state} ({r.error})")
        _require(bool(r.nuclei), f"cohort slide {r.slide_id}: no nuclei")
    stats_list = [s for worker in per_worker.values() for s in worker]
    devices = {s["device"] for s in stats_list}
    _require(args.dry_run or all(d.startswith("cuda") for d in devices), f"devices {devices}")
    tiles = sum(s["tiles"] for s in stats_list)
    blocks = sum(int(r.blocks or 0) for r in rows)
    _require(0 < tiles <= blocks, f"cohort: model saw {tiles} tiles of {blocks} blocks")
    busy = sum(s["busy_s"] for s in stats_list) / max(len(per_worker), 1)
    merged = SimpleNamespace(
        tiles=tiles,
        batches=sum(s["batches"] for s in stats_list),
        last_batch_size=max(s["last_batch_size"] for s in stats_list),
    )
    peaks = [s["peak_gib"] for s in stats_list if s["peak_gib"] is not None]
    row = _row(
        args,
        f"cohort x2 ({precision}, {len(per_worker)} workers)",
        precision,
        wall,
        tiles,
        sum(int(r.nuclei or 0) for r in rows),
        merged,
        max(peaks) if peaks else None,
        busy_s=busy,
    )
    return row | {"gpu_workers": gpu, "devices": sorted(devices)}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def print_table(rows: list[dict[str, Any]], deviation: dict[str, float]) -> None:
    cols = ["run", "blocks", "nuclei", "wall_s", "blocks_per_s", "busy_frac", "batch_size"]
    cols += ["mean_batch", "peak_mem_gib", "mfu_busy", "mfu_end_to_end"]
    lines = ["| " + " | ".join(cols) + " | max abs map diff vs fp32 |"]
    lines.append("|" + "---|" * (len(cols) + 1))
    for r in rows:
        dev = deviation.get(r["run"])  # measured for the uncompiled precisions
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + f" | {_fmt(dev)} |")
    print("\n".join(lines))


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "pathosam_wsi": version("pathosam-wsi"),
        "python": platform.python_version(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, 1024² slide.")
    parser.add_argument("--quick", action="store_true", help="8192² slide, 4096² ROIs.")
    parser.add_argument("--json", type=Path, help="Write all figures here.")
    parser.add_argument("--workdir", type=Path, help="Keep slide/weights/outputs here.")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16/fp16 dense peak.")
    parser.add_argument("--peak-tflops-tf32", type=float, default=495.0)
    parser.add_argument("--peak-tflops-fp32", type=float, default=67.0)
    parser.add_argument("--batch-size", type=int, help="Fixed batch (default: from memory).")
    parser.add_argument("--blocks-per-task", type=int, default=16)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.side, args.roi, args.cohort_roi = "cpu", 1024, None, (0, 0, 1024, 512)
        args.blocks_per_task = 2
    else:
        args.device = "cuda"
        args.side = 8192 if args.quick else 16384
        args.roi = (0, 0, 4096, 4096) if args.quick else None
        args.cohort_roi = (0, 0, 4096, 4096) if args.quick else (0, 0, 8192, 8192)
    return args


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    if not args.dry_run:
        _require(torch.cuda.is_available(), "CUDA is not available; use --dry-run on CPU")
        _require(torch.cuda.get_device_properties(0).total_memory > 0, "no CUDA device memory")
    t0 = time.perf_counter()
    weights: dict[str, str] = {"name": "sam_tiny_random"}
    if not args.dry_run:
        from pathosam_wsi.cli.models import write_test_checkpoint

        ckpt, dec = work / "vit_b_test.pt", work / "vit_b_test_decoder.pt"
        write_test_checkpoint(ckpt, dec, model_type="vit_b")
        weights = {"checkpoint": str(ckpt), "decoder": str(dec)}
    slide = work / f"synthetic_{args.side}.tif"
    rgb = write_slide(slide, args.side)
    logger.info("weights and %d² slide written in %.1f s", args.side, time.perf_counter() - t0)
    mid = args.side // 2 - 320
    tiles = [np.ascontiguousarray(rgb[y : y + 640, x : x + 640]) for y, x in ((0, 0), (mid, mid))]
    del rgb
    deviation, shed = sample_map_deviation(args, weights, tiles)
    rows = run_precisions(args, slide, work / "out", weights, shed)
    check_counts(rows, exact=args.dry_run)
    rows.append(run_cohort_check(args, slide, work / "cohort", weights, shed))
    print_table(rows, deviation)
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s")
    return {
        "environment": _environment(args),
        "rows": rows,
        "map_deviation": deviation,
        "total_s": total,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            report = run(args, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
                report = run(args, Path(tmp))
    except CheckFailed as err:
        print(f"GPU CHECK FAILED: {err}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
