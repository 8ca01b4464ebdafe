"""The reference training loss: torch-em ``DiceBasedDistanceLoss(mask_distances_in_bg=True)``.

micro-sam trains the AIS decoder with the sum of three Dice losses (torch-em
``torch_em/loss/distance_based.py``): foreground; centre distance and boundary distance, both
multiplied by the target foreground so background pixels do not count.
"""

from __future__ import annotations

import torch

__all__ = ["dice_loss", "distance_loss"]

_EPS = 1e-7


def dice_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Dice over all pixels of the batch (torch-em ``dice_score`` with its eps)."""
    num = 2.0 * (pred * target).sum()
    den = (pred * pred).sum() + (target * target).sum()
    return 1.0 - num / den.clamp(min=_EPS)


def distance_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Foreground Dice + masked centre-distance Dice + masked boundary-distance Dice.

    Parameters
    ----------
    pred, target : (B, 3, H, W) float, BCYX
        Maps in (0, 1), channel order of ``targets.ais_targets``.
    """
    fg = target[:, 0]
    loss = dice_loss(pred[:, 0], fg)
    for c in (1, 2):
        loss = loss + dice_loss(pred[:, c] * fg, target[:, c] * fg)
    return loss
