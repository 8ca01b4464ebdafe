"""Deterministic weights: the reference rule and checksums.

See docs/pathosam-reference.md §12, step 1.
"""

from __future__ import annotations

import torch

from pathosam_wsi.model.synthetic_weights import (
    decoder_state_dict_template,
    deterministic_state_dict,
    state_dict_sha256,
    synthetic_decoder_state_dict,
    synthetic_sam_state_dict,
)

DECODER_SHA256 = "ed968ab898b7811ac6e2821683185c092090f93fd6f978e508e4fb5ed4503256"
SAM_VIT_B_SHA256 = "97d36787eab4ba77b59fd451b788b753707e31dc18ed62844633194ac09b44b1"


def test_decoder_checksum_matches_reference() -> None:
    sd = synthetic_decoder_state_dict()
    assert len(sd) == 66
    assert state_dict_sha256(sd) == DECODER_SHA256


def test_sam_vit_b_checksum_matches_reference() -> None:
    sd = synthetic_sam_state_dict("vit_b")
    assert len(sd) == 314
    assert state_dict_sha256(sd) == SAM_VIT_B_SHA256


def test_rule_details() -> None:
    template = {
        "b.running_var": ((4,), torch.float32),
        "a.weight": ((2, 3), torch.float32),
        "c.num_batches_tracked": ((), torch.int64),
    }
    sd = deterministic_state_dict(template, 10, std=0.5)
    assert list(sd) == list(template)  # template order kept
    # seeds follow the sorted order: a.weight -> 10, b.running_var -> 11
    g = torch.Generator().manual_seed(10)
    assert torch.equal(sd["a.weight"], torch.randn((2, 3), generator=g) * 0.5)
    g = torch.Generator().manual_seed(11)
    assert torch.equal(sd["b.running_var"], 1.0 + (torch.randn(4, generator=g) * 0.5).abs())
    assert sd["c.num_batches_tracked"].dtype == torch.int64
    assert sd["c.num_batches_tracked"] == 0


def test_overrides_and_tensor_templates() -> None:
    template = decoder_state_dict_template()
    tensors = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in template.items()}
    a = deterministic_state_dict(template, 2000, std_overrides={"out_conv.bias": 1.0})
    b = deterministic_state_dict(tensors, 2000)
    assert state_dict_sha256(b) == DECODER_SHA256
    assert torch.allclose(a["out_conv.bias"], b["out_conv.bias"] * 50.0)
    assert not torch.equal(a["out_conv.bias"], b["out_conv.bias"])


def test_checksum_sensitive_to_values_and_names() -> None:
    sd = synthetic_decoder_state_dict()
    sd["out_conv.bias"] = sd["out_conv.bias"].clone()
    sd["out_conv.bias"][0] += 1e-6
    assert state_dict_sha256(sd) != DECODER_SHA256
    renamed = {
        ("x" + k if k == "out_conv.bias" else k): v
        for k, v in synthetic_decoder_state_dict().items()
    }
    assert state_dict_sha256(renamed) != DECODER_SHA256
