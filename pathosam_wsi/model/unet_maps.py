"""A small U-Net that predicts PathoSAM's three AIS maps straight from RGB.

The network behind the ``learned`` model and what ``pathosam-wsi finetune`` trains. Input is uint8
RGB scaled to [-1, 1] (no stain normalisation); output is three sigmoid maps in the order of
docs/pathosam-reference.md §4.3: foreground, normalised centre distance, normalised inverted
boundary distance. BatchNorm runs in eval mode at inference, so a tile's maps never depend on the
other tiles of a batch.

The checkpoint (the file ``segment --model learned --decoder FILE`` loads) is a plain dict that
``torch.load(weights_only=True)`` reads: ``{"format": FORMAT, "widths": [..], "train_mpp": float,
"decoder_state": state_dict}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model.checkpoints import load_state_dict_file

__all__ = ["FORMAT", "MapsUNet", "load_unet_checkpoint", "unet_checkpoint"]

FORMAT = "pathosam-wsi/maps-unet/1"
"""Format tag of a U-Net checkpoint."""


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MapsUNet(nn.Module):
    """U-Net with ``len(widths)`` levels (``len(widths) - 1`` poolings); see the module docstring.

    Parameters
    ----------
    widths : tuple of int
        Channels per level, finest first, e.g. ``(16, 32, 64, 128)``.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths must hold two or more positive ints, got {widths!r}")
        self.widths = tuple(int(w) for w in widths)
        self.down = nn.ModuleList(
            _block(c_in, c_out) for c_in, c_out in zip((3, *widths[:-1]), widths, strict=True)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in range(len(widths) - 1)
        )
        self.merge = nn.ModuleList(_block(2 * w, w) for w in widths[:-1])
        self.out = nn.Conv2d(widths[0], 3, 1)

    @property
    def multiple_px(self) -> int:
        """Input sides must be a multiple of this (2 ** poolings)."""
        return int(2 ** (len(self.widths) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [-1, 1] -> (B, 3, H, W) maps in (0, 1); H, W multiples of 2**L."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return torch.sigmoid(self.out(x))  # (B, 3, H, W)


def rgb_to_input(rgb: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> (B, 3, H, W) float32 in [-1, 1]."""
    return rgb.permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0


def unet_checkpoint(net: MapsUNet, train_mpp: float) -> dict[str, Any]:
    """The plain-dict checkpoint of ``net`` (see the module docstring); tensors on the CPU."""
    state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    return {
        "format": FORMAT,
        "widths": list(net.widths),
        "train_mpp": float(train_mpp),
        "decoder_state": state,
    }


def load_unet_checkpoint(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[MapsUNet, float]:
    """Build the U-Net a checkpoint describes, load it strictly; returns (net in eval, train mpp).

    Raises
    ------
    CheckpointError
        Not a U-Net checkpoint (e.g. a PathoSAM UNETR decoder), or keys/shapes that do not match.
    """
    ckpt = dict(source) if isinstance(source, Mapping) else load_state_dict_file(Path(source))
    where = "checkpoint" if isinstance(source, Mapping) else f"checkpoint {str(source)!r}"
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{where} has format {ckpt.get('format')!r}, expected {FORMAT!r}; pass a file "
            "written by 'pathosam-wsi finetune' (PathoSAM UNETR decoders go with a vit_* model)"
        )
    try:
        net = MapsUNet(tuple(int(w) for w in ckpt["widths"]))
        net.load_state_dict(ckpt["decoder_state"], strict=True)
        train_mpp = float(ckpt["train_mpp"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise CheckpointError(
            f"{where} does not match the U-Net it describes ({reason}); the file is corrupt "
            "or was edited; retrain or pass the original file"
        ) from err
    return net.eval(), train_mpp


def predict_maps(
    net: MapsUNet, rgb: Any, *, scale: float = 1.0, device: str | torch.device = "cpu"
) -> Any:
    """The three AIS maps of one tile; the one inference path of ``learned`` and ``finetune``.

    Parameters
    ----------
    net : MapsUNet
        In eval mode.
    rgb : (H, W, 3) uint8, YXC
        The tile.
    scale : float
        Resize factor applied before the network (working mpp / training mpp); the maps are
        resized back to (H, W). 1.0 runs at the tile's own size.
    device : str or torch.device
        Where the network lives.

    Returns
    -------
    (3, H, W) float32 numpy array, CYX
    """
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    x = rgb_to_input(torch.tensor(rgb).unsqueeze(0)).to(device)  # (1, 3, H, W); copies read-only
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    m = net.multiple_px
    sh, sw = int(x.shape[2]), int(x.shape[3])
    pad_h, pad_w = (-sh) % m, (-sw) % m
    if pad_h or pad_w:
        mode = "reflect" if pad_h < sh and pad_w < sw else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    with torch.inference_mode():
        maps = net(x)[:, :, :sh, :sw]  # (1, 3, sh, sw)
        if (sh, sw) != (h, w):
            maps = F.interpolate(maps, size=(h, w), mode="bilinear", align_corners=False)
    return maps[0].to("cpu", torch.float32).numpy()
