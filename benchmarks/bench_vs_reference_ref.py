"""Reference side of ``bench_vs_reference.py``: micro-sam 1.8.14 tiled AIS in the reference env.

Runs with the reference environment's python (``refenv/bin/python`` or
``$PATHOSAM_WSI_REF_PYTHON``; recipe in ``tests/model/golden/README.md``), never with the project's.
It regenerates the deterministic
golden weights (SAM vit_b seed 1000, decoder seed 2000; ``make_golden.write_weights`` refuses
weights whose sha256 differs from docs/pathosam-reference.md §12), then
runs the calls that micro-sam's
``automatic_instance_segmentation`` makes for a tiled 2D image (as the patho-sam CLI, batch size 1):
``precompute_image_embeddings`` (encoder), ``TiledInstanceSegmentationWithDecoder.initialize``
(decoder and map stitching) and ``generate`` (tiled watershed). Each step is timed on its own;
imports and model loading are timed separately.

    refenv/bin/python benchmarks/bench_vs_reference_ref.py IMAGE.npy OUT.npz \
        [--thresholds JSON]

Without ``--thresholds`` the 0.3-quantiles of the smoothed stitched maps are used (random weights
give near-constant maps and no objects at the default 0.5 thresholds); they are written to OUT.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "model" / "golden"
sys.path.insert(0, str(GOLDEN_DIR))

import make_golden  # noqa: E402
from micro_sam import util  # noqa: E402

T_IMPORTS = time.perf_counter() - T_START


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="(H, W, 3) uint8 .npy")
    parser.add_argument("out", type=Path, help=".npz with labels, thresholds JSON and timings")
    parser.add_argument("--tile", type=int, default=384)
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--thresholds", default=None, help="JSON dict of the three thresholds")
    args = parser.parse_args()
    image = np.load(args.image)
    tiling = {"tile_shape": (args.tile, args.tile), "halo": (args.halo, args.halo)}
    timings = {"imports_s": T_IMPORTS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        info: dict = {"weights": {}}
        sam_path, dec_path = make_golden.write_weights(Path(tmp), info)
        predictor, segmenter = make_golden.load_reference(sam_path, dec_path, tiled=True)
    timings["weights_and_load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = util.precompute_image_embeddings(
        predictor, image, ndim=2, verbose=False, batch_size=1, **tiling
    )
    timings["encoder_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    segmenter.initialize(image, image_embeddings=emb, verbose=False, batch_size=1, **tiling)
    timings["decoder_s"] = time.perf_counter() - t0
    maps = np.stack([np.array(v, np.float32, copy=True) for v in segmenter.get_state().values()])
    if args.thresholds:
        thresholds = json.loads(args.thresholds)
    else:
        thresholds = make_golden.quantile_thresholds(maps)
    t0 = time.perf_counter()
    labels = segmenter.generate(**tiling, **thresholds)
    timings["watershed_s"] = time.perf_counter() - t0
    untiled = make_golden.postprocess(maps, **thresholds)  # non-tiled, on the stitched maps
    timings["inference_s"] = timings["encoder_s"] + timings["decoder_s"] + timings["watershed_s"]
    labels = np.asarray(labels)
    if labels.max() >= 2**32:
        raise SystemExit("reference labels exceed uint32")
    meta = {
        "timings": timings,
        "thresholds": thresholds,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    np.savez_compressed(
        args.out,
        labels=labels.astype(np.uint32),
        labels_untiled=np.asarray(untiled).astype(np.uint32),
        maps=maps,
        meta=json.dumps(meta),
    )


if __name__ == "__main__":
    main()
