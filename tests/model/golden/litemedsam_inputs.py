"""Inputs of the LiteMedSAM golden fixture, shared by the generator and the test.

The deterministic weights follow ``pathosam_wsi.model.synthetic_weights`` (one seeded generator
per key in sorted order), with norm scales moved to 1 + noise so that activations stay alive.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch

from pathosam_wsi.model.synthetic_weights import deterministic_state_dict

__all__ = ["BASE_SEED", "PROMPTS", "synthetic_litemedsam_state"]

BASE_SEED = 20_260_612

PROMPTS: dict[str, np.ndarray] = {
    # SAM's own convention (pixel indices; the prompt encoder adds 0.5); ours = these + 0.5
    "boxes": np.array([[40, 52, 71, 80], [120, 90, 160, 141], [200, 180, 236, 215]], np.float64),
    "points": np.array([[[60.0, 70.0]], [[140.0, 118.0]]], np.float64),
    "point_labels": np.array([[1], [1]], np.int64),
    "refine_box": np.array([[40, 52, 71, 80]], np.float64),
    "refine_points": np.array([[[55.0, 66.0], [45.0, 78.0]]], np.float64),
    "refine_labels": np.array([[1, 0]], np.int64),
}


def _is_scale(key: str) -> bool:
    norm = (
        ".norm." in key
        or key.startswith("norm")
        or ".bn." in key
        or "neck.1" in key
        or "neck.3" in key
    )
    return key.endswith("weight") and (norm or "norm" in key.rsplit(".", 2)[-2])


def synthetic_litemedsam_state(
    template: Mapping[str, torch.Tensor],
) -> OrderedDict[str, torch.Tensor]:
    """Deterministic random weights for every key of a LiteMedSAM state dict."""
    state = deterministic_state_dict(template, BASE_SEED)
    for key, value in state.items():
        if value.is_floating_point() and _is_scale(key):
            state[key] = 1.0 + value
    return state
