"""What the fine-tuning loop trains: a small typed seam over a maps model.

The loop (``finetune/train.py``) needs only: the parameters to optimise, a training-mode forward
from a batch of uint8 RGB crops to the three AIS maps, a predict function for the held-out
evaluation (the same code path as ``segment``), the checkpoint dict, and a way to resume.
:class:`UNetTrainable` wraps the ``learned`` model's U-Net; ``finetune/sam_decoder.py`` wraps a
PathoSAM UNETR decoder over a frozen SAM encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model.unet_maps import (
    FORMAT,
    MapsUNet,
    load_unet_checkpoint,
    predict_maps,
    rgb_to_input,
    unet_checkpoint,
)

__all__ = ["Predictor", "Trainable", "UNetTrainable"]

Predictor = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]
"""(H, W, 3) uint8 image, YXC -> (3, H, W) float32 AIS maps, CYX (the image's own size)."""


class Trainable(Protocol):
    """A maps model the loop can train; see the module docstring."""

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The parameters the optimiser updates (nothing else may change)."""
        ...

    def train_mode(self) -> None:
        """Switch to training mode before an epoch's steps."""
        ...

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 crops, BYXC, on the CPU -> (B, 3, H, W) maps in (0, 1), with grad."""
        ...

    def predictor(self) -> Predictor:
        """Eval-mode prediction of one image, the path ``segment`` runs with the checkpoint."""
        ...

    def checkpoint(self, train_mpp: float) -> dict[str, Any]:
        """The ``decoder.pt`` dict (tensors on the CPU)."""
        ...

    def load_resume(self, state: Mapping[str, Any], path: Path) -> None:
        """Load the weights of a ``last.pt`` dict; CheckpointError if it is another model's."""
        ...


class UNetTrainable:
    """The ``learned`` model's :class:`MapsUNet` as a :class:`Trainable`."""

    def __init__(self, net: MapsUNet, device: torch.device) -> None:
        self.net = net
        self.device = device

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """Every U-Net parameter."""
        return self.net.parameters()

    def train_mode(self) -> None:
        """BatchNorm in training mode."""
        self.net.train()

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """See :meth:`Trainable.forward`."""
        return self.net(rgb_to_input(rgb).to(self.device))  # type: ignore[no-any-return]

    def predictor(self) -> Predictor:
        """``unet_maps.predict_maps`` in eval mode at scale 1."""
        self.net.eval()
        return partial(predict_maps, self.net, device=self.device)

    def checkpoint(self, train_mpp: float) -> dict[str, Any]:
        """``unet_maps.unet_checkpoint``."""
        return unet_checkpoint(self.net, train_mpp)

    def load_resume(self, state: Mapping[str, Any], path: Path) -> None:
        """Refuse a U-Net of other widths (or not a U-Net), else load its weights."""
        if state.get("format") != FORMAT and "model" in state:
            raise CheckpointError(
                f"{str(path)!r} holds a run of the {state['model']!r} decoder, this run trains "
                f"the learned model's U-Net; pass --model {state['model']} to resume, or another -o"
            )
        loaded, _ = load_unet_checkpoint(state)
        if loaded.widths != self.net.widths:
            raise CheckpointError(
                f"{str(path)!r} holds a U-Net of widths {loaded.widths}, the run asks for "
                f"{self.net.widths}; pass the same --widths or another --out"
            )
        self.net.load_state_dict(loaded.state_dict())
