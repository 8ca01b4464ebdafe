"""PathoSAM nucleus models: SAM ViT encoder + AIS decoder (+ PanNuke semantic decoder).

Registers ``vit_b_histopathology``, ``vit_l_histopathology``, ``vit_h_histopathology`` (published
weights, from local files given in ``ModelConfig`` or the download cache) and ``sam_tiny_random``
(a tiny encoder/decoder with deterministic random weights, for tests and demos without files).

With ``ModelConfig.classes`` the PanNuke semantic decoder runs on the same embeddings. Its output
is passed through a sigmoid, as in the reference (patho-sam applies ``Sigmoid`` and takes the
argmax), so ``ModelOutput.semantic`` holds 6 independent per-class scores in [0, 1] that do not sum
to one; the argmax is the reference class.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.checkpoints import load_decoder, load_image_encoder
from pathosam_wsi.model.registry import register_model
from pathosam_wsi.model.runner import InferenceRunner
from pathosam_wsi.model.sam_encoder import build_image_encoder, enable_sdpa_attention
from pathosam_wsi.model.synthetic_weights import deterministic_state_dict
from pathosam_wsi.model.unetr_decoder import AISDecoder
from pathosam_wsi.model.weights import MODEL_FILES, fetch_weights

__all__ = [
    "PANNUKE_CLASSES",
    "TINY_ENCODER",
    "PathoSamModel",
    "build_pathosam",
    "build_tiny_random",
]

logger = logging.getLogger(__name__)

PANNUKE_CLASSES = ("background", "neoplastic", "inflammatory", "connective", "dead", "epithelial")
"""PanNuke class names, index = class id (docs/pathosam-reference.md §2.4)."""

TINY_ENCODER = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "global_attn_indexes": (1,),
    "img_size": 256,
    "window_size": 8,
    "out_chans": 32,
}
"""Encoder overrides of ``sam_tiny_random`` (256-px input, 16x16 embeddings of 32 channels)."""
_TINY_DECODER = {"in_channels": 32, "width": 8}


class PathoSamModel:
    """A ``NucleusModel`` over an :class:`InferenceRunner` ("ais" and optional "semantic")."""

    batched = True
    """Served by the process's inference loop (``model/loop.py``): one device, batches formed
    across tasks and slides."""

    def __init__(self, name: str, runner: InferenceRunner, class_names: tuple[str, ...] | None):
        self.name = name
        self.runner = runner
        self.class_names = class_names

    def max_batch_size(self) -> int:
        """Tiles per call that fit the device (from free memory, or the configured size)."""
        return self.runner.batch_size()

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Maps per tile, see ``NucleusModel.predict``; independent of the batch composition."""
        return [
            ModelOutput(ais=maps["ais"], semantic=maps.get("semantic"))
            for maps in self.runner.predict(tiles)
        ]


def _weight_path(local: str | None, model_name: str, role: str) -> Path:
    """A local file given in the config, else the cached (downloaded on first use) registry file."""
    if local is not None:
        return Path(local)
    try:
        registry_name = MODEL_FILES[model_name][role]
    except KeyError:
        raise ConfigError(
            f"{model_name} has no published {role.replace('_', ' ')}; classes (PanNuke) are "
            "available for vit_b_histopathology only, or pass the file with --semantic-decoder"
        ) from None
    return fetch_weights(registry_name)


def _runner(
    config: ModelConfig, encoder: object, decoders: dict[str, AISDecoder], target_px: int
) -> InferenceRunner:
    return InferenceRunner(
        encoder,  # type: ignore[arg-type]
        decoders,
        device=config.device,
        precision=config.precision,
        batch_size=config.batch_size,
        compile=config.compile,
        intensity=config.intensity,
        batchnorm=config.batchnorm,
        model_key=config.name,
        target_px=target_px,
    )


def build_pathosam(config: ModelConfig, mpp: float) -> PathoSamModel:
    """Builder of the published PathoSAM models (``vit_{b,l,h}_histopathology``).

    Weights come from ``config.checkpoint`` / ``config.decoder`` / ``config.semantic_decoder``
    when given, otherwise from the download cache (``weights.fetch_weights``). All files load
    with ``weights_only=True`` and strict key matching.
    """
    model_type = config.name.removesuffix("_histopathology")
    logger.info("building %s for %.3f um/px", config.name, mpp)
    encoder = load_image_encoder(
        _weight_path(config.checkpoint, config.name, "encoder"), model_type
    )
    enable_sdpa_attention(encoder)
    decoders = {"ais": load_decoder(_weight_path(config.decoder, config.name, "decoder"), 3)}
    if config.classes:
        path = _weight_path(config.semantic_decoder, config.name, "semantic_decoder")
        decoders["semantic"] = load_decoder(path, len(PANNUKE_CLASSES))
    class_names = PANNUKE_CLASSES if config.classes else None
    return PathoSamModel(config.name, _runner(config, encoder, decoders, 1024), class_names)


for _name in MODEL_FILES:
    register_model(_name, PANNUKE_CLASSES)(build_pathosam)


@register_model("sam_tiny_random", PANNUKE_CLASSES)
def build_tiny_random(config: ModelConfig, mpp: float) -> PathoSamModel:
    """A tiny SAM-style model with deterministic random weights (tests, demos; no files needed).

    Same code path as the real models (preprocessing, encoder, UNETR decoder, resizing back) at a
    256-px encoder input; the maps carry no meaning. ``config.decoder`` replaces the AIS decoder
    with a file of the tiny decoder's shapes (e.g. from ``finetune --model sam_tiny_random``).
    """
    encoder = build_image_encoder("vit_b", **TINY_ENCODER)  # type: ignore[arg-type]
    encoder.load_state_dict(deterministic_state_dict(encoder.state_dict(), 3000))
    enable_sdpa_attention(encoder)
    if config.decoder is None:
        decoders = {"ais": _tiny_decoder(3, 4000)}
    else:
        decoders = {"ais": load_decoder(config.decoder, 3, **_TINY_DECODER)}
    if config.classes:
        decoders["semantic"] = _tiny_decoder(len(PANNUKE_CLASSES), 5000)
    class_names = PANNUKE_CLASSES if config.classes else None
    return PathoSamModel(config.name, _runner(config, encoder, decoders, 256), class_names)


def _tiny_decoder(out_channels: int, seed: int) -> AISDecoder:
    decoder = AISDecoder(
        out_channels, True, in_channels=_TINY_DECODER["in_channels"], width=_TINY_DECODER["width"]
    )
    decoder.load_state_dict(deterministic_state_dict(decoder.state_dict(), seed, std=0.2))
    return decoder
