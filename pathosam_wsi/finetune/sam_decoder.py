"""Fine-tuning PathoSAM's UNETR AIS decoder over a frozen SAM image encoder.

Encoder and starting decoder are built exactly as ``segment`` builds them (``build_model`` with the
model's name, ``--checkpoint`` and ``--decoder``): the published weights from the download cache,
local files, or ``sam_tiny_random``'s own. The encoder stays in eval mode without gradients; only
the decoder's parameters are optimised.

Training forward, per batch of equal-size crops: the inference preprocessing
(``preprocess_on_device``: PIL-exact resize of the longest side to the encoder input, SAM
normalisation, zero padding), the encoder under ``no_grad``, the decoder with per-tile BatchNorm
statistics (the inference default, docs/pathosam-reference.md §5) in NCHW layout, and the maps
resized back to the crop (``postprocess_maps``), where the loss compares them with the targets.

Evaluation: an image is predicted in windows of the training crop (full-size windows, the last one
per axis flush with the image edge; an image no larger than a crop is one window) by an
``InferenceRunner`` with ``segment``'s settings holding a copy of the current decoder. An image
that fits one window is therefore predicted exactly as ``segment`` predicts a slide that fits in
one block.

``decoder.pt`` / ``last.pt`` hold ``{"format": FORMAT, "model": name, "train_mpp": float,
"encoder_checkpoint_sha256": str | None, "decoder_state": state_dict}`` (plus the loop's keys;
the sha256 is that of a local ``--checkpoint`` file, None for the cached, hash-checked published
encoder and for ``sam_tiny_random``); ``checkpoints.load_decoder`` takes ``decoder_state``, so
``segment --model NAME --decoder decoder.pt`` runs the trained decoder. Resuming refuses a run of
another model or encoder file.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import CheckpointError, ConfigError
from pathosam_wsi.finetune.trainable import Predictor
from pathosam_wsi.model.checkpoints import load_state_dict_file, load_strict
from pathosam_wsi.model.preprocess import postprocess_maps, preprocess_on_device
from pathosam_wsi.model.runner import InferenceRunner
from pathosam_wsi.model.unetr_decoder import AISDecoder

__all__ = ["DEFAULT_CROP_PX", "FORMAT", "SAM_MODELS", "SamDecoderTrainable", "window_starts"]

logger = logging.getLogger(__name__)

FORMAT = "pathosam-wsi/unetr-decoder/1"
"""Format tag of a fine-tuned UNETR decoder checkpoint."""
SAM_MODELS = (
    "vit_b_histopathology",
    "vit_l_histopathology",
    "vit_h_histopathology",
    "sam_tiny_random",
)
"""Models whose AIS decoder ``finetune --model`` trains."""
DEFAULT_CROP_PX = {name: 512 for name in SAM_MODELS[:3]} | {"sam_tiny_random": 256}
"""Training crop per model: the reference's 512-px training patches (docs/pathosam-reference.md
§2.1), the tiny model's own 256-px encoder input."""


def window_starts(n_px: int, window_px: int) -> list[int]:
    """Window origins along an axis of ``n_px``: full windows, the last flush with the end."""
    if n_px <= window_px:
        return [0]
    return [*range(0, n_px - window_px, window_px), n_px - window_px]


def _check_start_decoder(name: str, decoder: str | None) -> None:
    """Refuse a ``--decoder`` file that is a U-Net or another model's fine-tuned decoder."""
    if decoder is None:
        return
    state = load_state_dict_file(decoder)
    fmt, owner = state.get("format"), state.get("model")
    if fmt is not None and fmt != FORMAT:
        raise CheckpointError(
            f"--decoder {decoder!r} has format {fmt!r}, not a UNETR decoder; a U-Net checkpoint "
            "goes with --model learned (as --init FILE); pass a PathoSAM decoder for " + name
        )
    if fmt == FORMAT and owner != name:
        raise CheckpointError(
            f"--decoder {decoder!r} was fine-tuned for {owner!r}, not {name!r}; "
            f"pass --model {owner} or a decoder of {name}"
        )


class SamDecoderTrainable:
    """A SAM model's AIS decoder over its frozen encoder, as a ``finetune.trainable.Trainable``.

    Parameters
    ----------
    name : str
        Model name (one of :data:`SAM_MODELS`); stored in the checkpoints.
    encoder : nn.Module
        SAM image encoder; frozen here (eval mode, ``requires_grad=False``).
    decoder : AISDecoder
        The decoder to train (switched to NCHW).
    target_px : int
        Encoder input side (1024; 256 for ``sam_tiny_random``).
    device : torch.device
        Where encoder and decoder live.
    window_px : int
        Evaluation window side (the training crop).
    encoder_sha256 : str, optional
        sha256 of the encoder's local weight file (None: published or built-in weights).
    """

    def __init__(
        self,
        name: str,
        encoder: nn.Module,
        decoder: AISDecoder,
        target_px: int,
        device: torch.device,
        window_px: int,
        encoder_sha256: str | None = None,
    ) -> None:
        self.name = name
        self.encoder_sha256 = encoder_sha256
        self.encoder = encoder.requires_grad_(False).eval()
        self.decoder = decoder.set_channels_last(False)
        self.target_px, self.device, self.window_px = target_px, device, window_px

    @classmethod
    def build(
        cls,
        name: str,
        *,
        checkpoint: str | None = None,
        decoder: str | None = None,
        device: str = "cpu",
        window_px: int = 512,
    ) -> SamDecoderTrainable:
        """Encoder + decoder of model ``name`` as ``segment`` loads them (see the module doc).

        Raises
        ------
        ConfigError
            Not a SAM model, or ``checkpoint`` with ``sam_tiny_random``.
        CheckpointError
            Weight files that do not load, or a ``decoder`` that is a U-Net checkpoint or another
            model's fine-tuned decoder.
        """
        from pathosam_wsi.files import sha256_file
        from pathosam_wsi.model.pathosam import PathoSamModel
        from pathosam_wsi.model.registry import build_model

        if name not in SAM_MODELS:
            raise ConfigError(f"no SAM decoder to train for {name!r}; expected one of {SAM_MODELS}")
        if name == "sam_tiny_random" and checkpoint is not None:
            raise ConfigError(
                "sam_tiny_random has a built-in random encoder, got --checkpoint "
                f"{checkpoint!r}; drop --checkpoint or pass a vit_*_histopathology --model"
            )
        _check_start_decoder(name, decoder)
        config = ModelConfig(
            name=name, checkpoint=checkpoint, decoder=decoder, device=device, batch_size=1
        )
        model = build_model(config, 0.25)  # the mpp only reaches a log line of these builders
        if not isinstance(model, PathoSamModel):  # pragma: no cover - registry invariant
            raise ConfigError(f"{name!r} did not build a PathoSAM model")
        runner = model.runner
        sha256 = None if checkpoint is None else sha256_file(Path(checkpoint))
        decoder_module = runner.decoders["ais"]
        return cls(
            name, runner.encoder, decoder_module, runner.target_px, runner.device, window_px, sha256
        )

    def parameters(self) -> Iterator[nn.Parameter]:
        """The decoder's parameters only."""
        return self.decoder.parameters()

    def train_mode(self) -> None:
        """Decoder in training mode (its BatchNorm uses per-tile statistics either way)."""
        self.decoder.train()
        self.encoder.eval()

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 crops of one size, BYXC -> (B, 3, H, W) maps with grad."""
        tiles = list(rgb.to(self.device))  # B x (H, W, 3) uint8
        with torch.no_grad():
            prepared = preprocess_on_device(tiles, "none", self.target_px)
            features = self.encoder(prepared.pixels)  # (B, C, T/16, T/16)
        maps = self.decoder(features, "per_tile")  # (B, 3, T, T)
        return postprocess_maps(maps, prepared.input_sizes[0], prepared.original_sizes[0])

    def predictor(self) -> Predictor:
        """Window-wise prediction through a runner with ``segment``'s settings (module doc)."""
        self.decoder.eval()
        runner = InferenceRunner(
            self.encoder,
            {"ais": copy.deepcopy(self.decoder)},
            device=str(self.device),
            batch_size=1,
            model_key=f"finetune:{self.name}",
            target_px=self.target_px,
        )

        def predict(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
            h, w = image.shape[:2]
            ys, xs = window_starts(h, self.window_px), window_starts(w, self.window_px)
            if len(ys) == len(xs) == 1:
                return runner.predict([image])[0]["ais"]
            side = self.window_px
            maps = np.zeros((3, h, w), np.float32)  # (3, H, W), CYX
            for y in ys:
                for x in xs:
                    win = np.ascontiguousarray(image[y : y + side, x : x + side])
                    win_maps = runner.predict([win])[0]["ais"]  # (3, h_win, w_win)
                    maps[:, y : y + win.shape[0], x : x + win.shape[1]] = win_maps
            return maps

        return predict

    def checkpoint(self, train_mpp: float) -> dict[str, Any]:
        """The ``decoder.pt`` dict of the module docstring; tensors on the CPU."""
        state = {k: v.detach().to("cpu").clone() for k, v in self.decoder.state_dict().items()}
        return {
            "format": FORMAT,
            "model": self.name,
            "train_mpp": float(train_mpp),
            "encoder_checkpoint_sha256": self.encoder_sha256,
            "decoder_state": state,
        }

    def load_resume(self, state: Mapping[str, Any], path: Path) -> None:
        """Load the decoder of a ``last.pt`` written for this model; CheckpointError otherwise."""
        fmt, owner = state.get("format"), state.get("model")
        if fmt != FORMAT or owner != self.name:
            was = owner if fmt == FORMAT else f"format {fmt!r}"
            raise CheckpointError(
                f"{str(path)!r} holds a run of {was}, this run trains the decoder of "
                f"{self.name}; pass the same --model to resume, or another -o"
            )
        was_sha256 = state.get("encoder_checkpoint_sha256")
        if was_sha256 != self.encoder_sha256:
            raise CheckpointError(
                f"{str(path)!r} was trained over the encoder file with sha256 {was_sha256!r}, this "
                f"run's encoder has {self.encoder_sha256!r} (None: the published weights); pass "
                "the same --checkpoint to resume, or another -o"
            )
        load_strict(self.decoder, state["decoder_state"], f"{self.name} UNETR decoder")
