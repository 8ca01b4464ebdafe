"""Benchmark `segment`: per-stage time, blocks/s and peak RSS on the sample slide and on
synthetic slides of growing size (time should grow linearly with tissue area, peak RSS stay flat).

    python benchmarks/bench_segment.py --sizes 4096 8192 16384 32768 --json results.json

Each run happens in a fresh subprocess so its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _synthetic(path: Path, side: int) -> Path:
    """Pyramidal TIFF of side x side px: a 1024-px nucleus pattern repeated, written tile-wise."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tifffile

    from tests.synthetic import draw_nuclei, grid_centres

    tile_rgb, _ = draw_nuclei(1024, 1024, grid_centres(1024, 1024, 40, 20, 8, seed=1), 6.0, seed=2)

    def tiles(level_side: int, f: int):
        base = tile_rgb[::f, ::f][:256, :256] if f > 1 else tile_rgb
        for y in range(0, level_side, 256):
            for x in range(0, level_side, 256):
                yield np.ascontiguousarray(
                    base[
                        y % base.shape[0] : y % base.shape[0] + 256,
                        x % base.shape[1] : x % base.shape[1] + 256,
                    ]
                )

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        res = {"resolution": (1e4 / 0.5, 1e4 / 0.5), "resolutionunit": "CENTIMETER"}
        tif.write(
            tiles(side, 1),
            shape=(side, side, 3),
            dtype=np.uint8,
            photometric="rgb",
            tile=(256, 256),
            compression="zlib",
            subifds=1,
            **res,
        )
        res = {"resolution": (1e4 / 8.0, 1e4 / 8.0), "resolutionunit": "CENTIMETER"}
        low = side // 16
        tif.write(
            np.full((low, low, 3), (236, 178, 206), np.uint8),
            photometric="rgb",
            tile=(256, 256),
            compression="zlib",
            subfiletype=1,
            **res,
        )
    return path


def _child(slide: str, out: str) -> None:
    from pathosam_wsi import RunConfig, segment_slide
    from pathosam_wsi.config import ModelConfig

    t0 = time.perf_counter()
    # engine figures (README, benchmarks/README.md) are the classical model's
    config = RunConfig(model=ModelConfig(name="classical"))
    result = segment_slide(slide, out, config, overwrite=True)
    wall = time.perf_counter() - t0
    info = json.loads((result.output_dir / "run.json").read_text())
    blocks = info["counts"]["blocks_processed"]
    print(
        json.dumps(
            {
                "slide": Path(slide).name,
                "blocks": blocks,
                "nuclei": result.nuclei,
                "wall_s": wall,
                "blocks_per_s": blocks / wall,
                "timings_s": info["timings_s"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="*", default=[4096, 8192])
    parser.add_argument("--sample", action="store_true", help="also the sample slide")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) synthetic slides here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = str(args.workdir or tmp_dir)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        slides = []
        if args.sample:
            slides.append(
                subprocess.check_output(["pathosam-wsi", "sample-data"], text=True).strip()
            )
        for side in args.sizes:
            path = Path(tmp) / f"synthetic_{side}.tiff"
            slides.append(str(path if path.exists() else _synthetic(path, side)))
        for slide in slides:
            out = subprocess.check_output(
                [sys.executable, __file__, "--child", slide, f"{tmp}/out"], text=True
            )
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    header = ["slide", "blocks", "nuclei", "wall s", "blocks/s", "read", "model", "watershed"]
    header += ["stitch", "paint", "table", "peak RSS MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        t = r["timings_s"]
        cells = [r["slide"], r["blocks"], r["nuclei"], f"{r['wall_s']:.1f}"]
        cells += [f"{r['blocks_per_s']:.2f}", f"{t['sum_read_s']:.1f}", f"{t['sum_model_s']:.1f}"]
        cells += [f"{t['sum_watershed_s']:.1f}", f"{t['sum_stitch_s']:.1f}", f"{t['paint_s']:.1f}"]
        cells += [f"{t['table_s']:.1f}", f"{r['peak_rss_mb']:.0f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "python": sys.version}, indent=2))


if __name__ == "__main__":
    main()
