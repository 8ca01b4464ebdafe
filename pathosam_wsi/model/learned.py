"""The built-in ``learned`` nucleus model: a small U-Net (``model/unet_maps.py``), weights shipped.

It predicts PathoSAM's three AIS maps directly from RGB, so the PathoSAM watershed and everything
after it run unchanged. The weights (``model/data/learned_unet.pt``, < 10 MB) are trained by
``scripts/train_default_model.py`` with ``pathosam-wsi finetune``'s machinery on histolytics 0.3.0's
two H&E crops only (BSD-3, docs/test-data.md §1.2; never on PanNuke, the test data). The file's
sha256 is checked before it is loaded.

The network works at ``train_mpp`` (0.25 µm/px); a tile at another working pixel size inside the
supported range is resized to it and the maps resized back. ``ModelConfig.decoder`` replaces the
shipped weights with a checkpoint from ``pathosam-wsi finetune``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.files import sha256_file
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.registry import register_model
from pathosam_wsi.model.unet_maps import MapsUNet, load_unet_checkpoint, predict_maps

__all__ = ["LEARNED_SHA256", "LEARNED_WEIGHTS", "LearnedModel", "load_shipped_weights"]

logger = logging.getLogger(__name__)

LEARNED_WEIGHTS = Path(__file__).parent / "data" / "learned_unet.pt"
"""The shipped checkpoint (package data)."""
LEARNED_SHA256 = "71341e2be102c538634ede251ae802a67fd7320734bce9755b44a0b14d1a340f"
"""sha256 of ``LEARNED_WEIGHTS``; written by scripts/train_default_model.py."""
SUPPORTED_MPP = (0.2, 0.55)
"""Working pixel sizes (µm/px) the model supports: it is resized to its 0.25 µm/px within this."""


def load_shipped_weights(
    path: Path = LEARNED_WEIGHTS, sha256: str = LEARNED_SHA256
) -> tuple[MapsUNet, float]:
    """(U-Net, training µm/px) after checking the file's sha256; CheckpointError on a mismatch."""
    if not path.is_file():
        raise CheckpointError(
            f"the learned model's weights {str(path)!r} are missing; reinstall pathosam-wsi "
            "or use --model classical"
        )
    digest = sha256_file(path)
    if digest != sha256:
        raise CheckpointError(
            f"the learned model's weights {str(path)!r} have sha256 {digest}, expected {sha256}; "
            "the file is damaged; reinstall pathosam-wsi or use --model classical"
        )
    return load_unet_checkpoint(path)


class LearnedModel:
    """A ``NucleusModel`` over a :class:`MapsUNet`; see the module docstring."""

    name = "learned"
    class_names: tuple[str, ...] | None = None

    def __init__(self, net: MapsUNet, mpp: float, train_mpp: float, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.mpp = float(mpp)
        self.scale = self.mpp / float(train_mpp)

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Maps per (H, W, 3) uint8 tile; each tile runs alone, so batches do not matter."""
        return [
            ModelOutput(ais=predict_maps(self.net, tile, scale=self.scale, device=self.device))
            for tile in tiles
        ]


def _device(config: ModelConfig) -> str:
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


@register_model("learned", mpp_range=SUPPORTED_MPP)
def _build_learned(config: ModelConfig, mpp: float) -> LearnedModel:
    if config.decoder is not None:
        net, train_mpp = load_unet_checkpoint(config.decoder)
        logger.info("learned model: weights from %s", config.decoder)
    else:
        net, train_mpp = load_shipped_weights()
    return LearnedModel(net, mpp, train_mpp, _device(config))
