"""Regenerate the PathoSAM AIS golden fixture from the REAL reference code (micro-sam 1.8.14).

Runs only inside the reference environment (see README.md in this folder), never in the project's
own environment::

    refenv/bin/python tests/model/golden/make_golden.py --out tests/model/golden

Writes ``golden_ais.npz`` (compressed arrays) and ``golden_ais.json`` (versions, weight checksums,
thresholds, object counts, timings). The deterministic random weights are written to a temporary
folder and deleted; only their sha256 checksums are kept (docs/pathosam-reference.md §12 step 1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import tempfile
import time
from collections import OrderedDict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_inputs import realistic_map_codes, synthetic_he_image

log = logging.getLogger("make_golden")

SAM_SEED, DECODER_SEED, WEIGHT_STD = 1000, 2000, 0.02
EXPECTED_SHA256 = {
    "sam_vit_b": "97d36787eab4ba77b59fd451b788b753707e31dc18ed62844633194ac09b44b1",
    "decoder": "ed968ab898b7811ac6e2821683185c092090f93fd6f978e508e4fb5ed4503256",
}
IMAGE_SHAPE_HW, IMAGE_SEED = (384, 512), 7
REALISTIC_SHAPE_HW, REALISTIC_SEED = (1024, 1024), 11
TILE_PX, HALO_PX, QUANTILE = 384, 64, 0.3
MODEL_MIN_SIZE_PX, REALISTIC_MIN_SIZE_PX = 10, 100
MAP_KEYS = ("foreground", "center_distances", "boundary_distances")
VERSIONED = (
    "micro_sam",
    "torch_em",
    "python-elf",
    "bioimage-cpp",
    "segment-anything-py",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "zarr",
    "scikit-image",
)


def deterministic_weights(
    template: dict[str, torch.Tensor], base_seed: int
) -> OrderedDict[str, torch.Tensor]:
    """§12 step 1: key i in sorted order gets ``randn(shape, Generator(base_seed + i)) * 0.02``."""
    seed_of = {key: base_seed + i for i, key in enumerate(sorted(template))}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, ref in template.items():  # the template's order is kept for saving
        if not ref.dtype.is_floating_point:
            out[key] = torch.zeros(ref.shape, dtype=ref.dtype)
            continue
        gen = torch.Generator().manual_seed(seed_of[key])
        value = torch.randn(tuple(ref.shape), generator=gen, dtype=torch.float32) * WEIGHT_STD
        out[key] = (1.0 + value.abs() if key.endswith("running_var") else value).to(ref.dtype)
    return out


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over key, shape, dtype and raw bytes, in sorted key order (§12)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def write_weights(work_dir: Path, info: dict[str, Any]) -> tuple[Path, Path]:
    """Build both deterministic state dicts from the reference templates, check and save them."""
    from segment_anything import sam_model_registry
    from torch_em.model import UNETR

    sam = sam_model_registry["vit_b"](checkpoint=None)
    sam_sd = deterministic_weights(sam.state_dict(), SAM_SEED)
    unetr = UNETR(
        backbone="sam",
        encoder=sam.image_encoder,
        out_channels=3,
        use_sam_stats=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        resize_input=True,
        use_conv_transpose=True,
    )
    dec_template = {k: v for k, v in unetr.state_dict().items() if not k.startswith("encoder")}
    dec_sd = deterministic_weights(dec_template, DECODER_SEED)
    for name, state in (("sam_vit_b", sam_sd), ("decoder", dec_sd)):
        sha = weights_sha256(state)
        info["weights"][name] = {
            "n_keys": len(state),
            "sha256": sha,
            "matches_spec": sha == EXPECTED_SHA256[name],
        }
        if sha != EXPECTED_SHA256[name]:
            raise RuntimeError(f"{name} weights sha256 {sha} != spec {EXPECTED_SHA256[name]}")
    paths = work_dir / "sam_vit_b_det.pt", work_dir / "decoder_det.pt"
    torch.save(sam_sd, paths[0])
    torch.save(dec_sd, paths[1])
    return paths


def sha256_array(array: NDArray[Any]) -> str:
    """sha256 of an array's C-order bytes."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def load_reference(sam_path: Path, dec_path: Path, tiled: bool) -> tuple[Any, Any]:
    """micro-sam's predictor and AIS segmenter for the given weight files, on CPU."""
    from micro_sam import util
    from micro_sam.automatic_segmentation import get_predictor_and_segmenter

    predictor, state = util.get_sam_model(
        model_type="vit_b",
        checkpoint_path=str(sam_path),
        decoder_path=str(dec_path),
        return_state=True,
        device="cpu",
    )
    _, segmenter = get_predictor_and_segmenter(
        model_type="vit_b", device="cpu", predictor=predictor, state=state, is_tiled=tiled
    )
    return predictor, segmenter


def run_model(sam_path: Path, dec_path: Path, info: dict[str, Any]) -> dict[str, NDArray[Any]]:
    """Non-tiled reference AIS on the synthetic image: preprocessing, features, unsmoothed maps."""
    from micro_sam import util

    timings = info["timings_s"]
    predictor, segmenter = load_reference(sam_path, dec_path, tiled=False)
    info["decoder_training_mode"] = bool(segmenter._decoder.training)
    captured: list[torch.Tensor] = []
    hook = predictor.model.image_encoder.register_forward_pre_hook(
        lambda _m, a: captured.append(a[0].clone())
    )
    image = synthetic_he_image(*IMAGE_SHAPE_HW, seed=IMAGE_SEED)
    to_image = util._to_image(image)
    resized = predictor.transform.apply_image(to_image)  # what SamPredictor.set_image does first
    t0 = time.perf_counter()
    emb = util.precompute_image_embeddings(predictor, image, ndim=2, verbose=False)
    timings["encoder"] = time.perf_counter() - t0
    hook.remove()
    t0 = time.perf_counter()
    segmenter.initialize(image, image_embeddings=emb, verbose=False)
    timings["decoder"] = time.perf_counter() - t0
    maps = {k: np.array(v, dtype=np.float32, copy=True) for k, v in segmenter.get_state().items()}
    labels_default = segmenter.generate()
    encoder_input = captured[0].numpy()  # (1, 3, 1024, 1024) float32
    info["preprocessing"] = {
        "resized_shape": list(resized.shape),
        "resized_uint8_sha256": sha256_array(resized),
        "encoder_input_shape": list(encoder_input.shape),
        "encoder_input_sha256": sha256_array(encoder_input),
        "encoder_input_channel_mean": encoder_input.mean(axis=(0, 2, 3), dtype=np.float64).tolist(),
        "input_size": [int(s) for s in emb["input_size"]],
        "original_size": [int(s) for s in emb["original_size"]],
    }
    info["maps_stats"] = {
        k: {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean())}
        for k, v in maps.items()
    }
    info["n_objects"]["model_default_thresholds"] = n_objects(labels_default)
    return {
        "image": image,
        "to_image": to_image,
        "features": np.asarray(emb["features"], dtype=np.float32),
        "maps": np.stack([maps[k] for k in MAP_KEYS]),
        "_labels_pipeline_default": labels_default,
    }


def postprocess(
    maps: NDArray[np.float32], *, tiled: bool = False, **kwargs: Any
) -> NDArray[np.uint64]:
    """micro-sam's AIS post-processing alone on (3, H, W) maps, n_threads=1.

    The maps are copied: the tiled path smooths them in place.
    """
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder

    seg = InstanceSegmentationWithDecoder(predictor=None, decoder=None)
    seg.set_state(
        {k: np.array(m, dtype=np.float32, copy=True) for k, m in zip(MAP_KEYS, maps, strict=True)}
    )
    tiling = {"tile_shape": (TILE_PX, TILE_PX), "halo": (HALO_PX, HALO_PX)} if tiled else {}
    return seg.generate(n_threads=1, **tiling, **kwargs)


def quantile_thresholds(maps: NDArray[np.float32]) -> dict[str, float]:
    """0.3-quantile of each map after the reference's smoothing (bioimage-cpp, sigma 1.0/1.6)."""
    import bioimage_cpp as bic

    sigmas = (1.0, 1.6, 1.6)
    names = ("foreground_threshold", "center_distance_threshold", "boundary_distance_threshold")
    return {
        name: float(
            np.quantile(bic.filters.gaussian_smoothing(np.ascontiguousarray(m), s), QUANTILE)
        )
        for name, m, s in zip(names, maps, sigmas, strict=True)
    }


def smoothing_gap(maps: NDArray[np.float32]) -> dict[str, float]:
    """Max |bioimage-cpp gaussian - scipy gaussian(mode=mirror, truncate=3)| per map."""
    import bioimage_cpp as bic
    from scipy import ndimage

    out = {}
    for key, m, s in zip(MAP_KEYS, maps, (1.0, 1.6, 1.6), strict=True):
        ref = bic.filters.gaussian_smoothing(np.ascontiguousarray(m), s)
        ours = ndimage.gaussian_filter(m, s, mode="mirror", truncate=3.0)
        out[key] = float(np.abs(ref - ours).max())
    return out


def n_objects(labels: NDArray[Any]) -> int:
    """Number of non-zero ids."""
    return int(np.count_nonzero(np.unique(labels)))


def as_uint32(labels: NDArray[Any]) -> NDArray[np.uint32]:
    """Reference labels are uint64; store them as uint32 (checked lossless)."""
    if int(labels.max()) >= 2**32:
        raise RuntimeError(f"label id {int(labels.max())} does not fit uint32")
    return labels.astype(np.uint32)


def postprocess_goldens(
    model_out: dict[str, NDArray[Any]], info: dict[str, Any]
) -> dict[str, NDArray[Any]]:
    """Reference labels on the decoder maps (quantile thresholds) and on realistic maps."""
    maps = model_out["maps"]
    thresholds = quantile_thresholds(maps)
    info["thresholds"]["model_maps_quantile"] = thresholds
    info["smoothing_gap_bioimagecpp_vs_scipy"] = {"model_maps": smoothing_gap(maps)}
    pipeline = model_out.pop("_labels_pipeline_default")
    info["postprocess_only_equals_pipeline"] = bool(np.array_equal(pipeline, postprocess(maps)))
    out = {
        "labels_model_qthr": postprocess(maps, **thresholds),
        "labels_model_qthr_min10": postprocess(maps, min_size=MODEL_MIN_SIZE_PX, **thresholds),
    }
    codes = realistic_map_codes(*REALISTIC_SHAPE_HW, seed=REALISTIC_SEED)
    real_maps = codes.astype(np.float32) / 255.0
    info["smoothing_gap_bioimagecpp_vs_scipy"]["realistic_maps"] = smoothing_gap(real_maps)
    out["realistic_codes"] = codes
    out["labels_realistic"] = postprocess(real_maps)
    out["labels_realistic_min100"] = postprocess(real_maps, min_size=REALISTIC_MIN_SIZE_PX)
    t0 = time.perf_counter()
    tiled = postprocess(real_maps, tiled=True)
    info["timings_s"]["tiled_postprocess_realistic"] = time.perf_counter() - t0
    info["tiled_label_dtype"] = str(tiled.dtype)
    info["tiled_repeat_identical"] = bool(np.array_equal(tiled, postprocess(real_maps, tiled=True)))
    out["labels_realistic_tiled"] = tiled
    for key in list(out):
        if key.startswith("labels_"):
            out[key] = as_uint32(out[key])
            info["n_objects"][key] = n_objects(out[key])
    return out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--torch-threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.torch_threads)
    info: dict[str, Any] = {
        "generator": "tests/model/golden/make_golden.py",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "versions": {name: version(name) for name in VERSIONED},
        "seeds": {
            "sam": SAM_SEED,
            "decoder": DECODER_SEED,
            "weight_std": WEIGHT_STD,
            "image": IMAGE_SEED,
            "realistic_maps": REALISTIC_SEED,
        },
        "image_shape_hw": list(IMAGE_SHAPE_HW),
        "realistic_shape_hw": list(REALISTIC_SHAPE_HW),
        "tiling": {"tile_px": TILE_PX, "halo_px": HALO_PX, "n_threads": 1},
        "quantile": QUANTILE,
        "min_size_px": {
            "labels_model_qthr": 0,
            "labels_model_qthr_min10": MODEL_MIN_SIZE_PX,
            "labels_realistic": 0,
            "labels_realistic_min100": REALISTIC_MIN_SIZE_PX,
            "labels_realistic_tiled": 0,
        },
        "weights": {},
        "timings_s": {},
        "thresholds": {"realistic": "defaults 0.5/0.5/0.5"},
        "n_objects": {},
    }
    with tempfile.TemporaryDirectory(prefix="pathosam_golden_") as tmp:
        log.info("building deterministic weights")
        sam_path, dec_path = write_weights(Path(tmp), info)
        log.info("running the reference encoder + decoder")
        arrays = run_model(sam_path, dec_path, info)
    log.info("running the reference post-processing")
    arrays.update(postprocess_goldens(arrays, info))
    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / "golden_ais.npz"
    np.savez_compressed(npz_path, **arrays)
    info["npz_bytes"] = npz_path.stat().st_size
    info["arrays"] = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": sha256_array(v)}
        for k, v in arrays.items()
    }
    (args.out / "golden_ais.json").write_text(json.dumps(info, indent=1) + "\n")
    log.info("wrote %s (%d bytes): %s", npz_path, info["npz_bytes"], json.dumps(info["n_objects"]))


if __name__ == "__main__":
    main()
