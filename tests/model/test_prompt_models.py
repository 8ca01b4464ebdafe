"""Prompt models: PathoSAM checkpoints' layout, decode conventions, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathosam_wsi.errors import CheckpointError, ConfigError
from pathosam_wsi.model.prompt_models import (
    build_prompt_model,
    load_prompt_model,
    split_sam_state,
)
from pathosam_wsi.model.synthetic_weights import sam_state_dict_template

TINY = {
    "embed_dim": 32,
    "depth": 1,
    "num_heads": 2,
    "global_attn_indexes": (0,),
    "img_size": 128,
    "window_size": 4,
}


def test_pathosam_layout_equals_segment_anything_sam() -> None:
    """The published PathoSAM files are full SAM state dicts: every key loads strictly."""
    with torch.device("meta"):
        ours = build_prompt_model("vit_b_histopathology").state_dict()
    template = sam_state_dict_template("vit_b")
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: s for k, (s, _) in template.items()}


def test_pathosam_checkpoint_loads_strictly_with_prefix_variants() -> None:
    torch.manual_seed(0)
    model = build_prompt_model("vit_b_histopathology", **TINY)
    state = {f"sam.{k}": v for k, v in model.state_dict().items()}
    parts = split_sam_state({"model_state": state})  # micro-sam's training layout
    assert set(parts) == {"image_encoder", "prompt_encoder", "mask_decoder"}
    assert "pe_layer.positional_encoding_gaussian_matrix" in parts["prompt_encoder"]
    with pytest.raises(CheckpointError, match="no known size"):
        load_prompt_model("vit_b_histopathology", {"model_state": state})  # tiny is no vit_b


def test_decode_is_batch_independent_and_picks_best_of_three() -> None:
    torch.manual_seed(0)
    model = build_prompt_model("vit_b_histopathology", **TINY)
    image = np.random.default_rng(0).integers(0, 255, (1, 128, 128, 3), dtype=np.uint8)
    emb = model.embed(image)
    boxes = np.array([[10.0, 10, 40, 50], [60, 70, 90, 100], [5, 80, 30, 120]])
    both = model.decode(emb, boxes_xyxy=boxes)
    alone = model.decode(emb, boxes_xyxy=boxes[1:2])
    torch.testing.assert_close(both.logits[1:2], alone.logits, atol=1e-5, rtol=1e-5)
    assert both.logits.shape == (3, 128, 128) and both.score.shape == (3,)
    pts = model.decode(
        emb, points_xy=np.array([[[20.5, 30.5]]]), point_labels=np.array([[1]]), multimask=True
    )
    assert pts.low_res.shape[1] == 1


def test_unknown_model_and_bad_windows() -> None:
    with pytest.raises(ConfigError, match="unknown prompt model"):
        build_prompt_model("vit_x")
    model = build_prompt_model("vit_b_histopathology", **TINY)
    with pytest.raises(ConfigError, match="larger than the input"):
        model.prepare(np.zeros((1, 200, 200, 3), np.uint8))
