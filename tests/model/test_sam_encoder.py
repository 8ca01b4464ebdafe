"""SAM image encoder: import without torchvision, sizes, keys, SDPA equivalence."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.sam_encoder import (
    build_image_encoder,
    disable_sdpa_attention,
    enable_sdpa_attention,
)


def test_import_without_torchvision_in_fresh_process() -> None:
    code = (
        "import sys\n"
        "from pathosam_wsi.model.sam_encoder import build_image_encoder\n"
        "e = build_image_encoder('vit_b', embed_dim=16, depth=1, num_heads=1,"
        " global_attn_indexes=(0,), img_size=64, window_size=4)\n"
        "print('torchvision' in sys.modules, type(e).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "ImageEncoderViT"]


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision present"
)
def test_plain_import_needs_torchvision() -> None:
    # Proves the skeleton trick is needed: the package __init__ imports torchvision.
    code = "import segment_anything"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "torchvision" in out.stderr


def test_tiny_encoder_shapes(tiny_encoder_kwargs: dict) -> None:
    encoder = build_image_encoder("vit_b", **tiny_encoder_kwargs)
    assert not encoder.training
    with torch.inference_mode():
        out = encoder(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 32, 16, 16)


def test_unknown_size_and_override_rejected() -> None:
    with pytest.raises(ConfigError, match="vit_x"):
        build_image_encoder("vit_x")
    with pytest.raises(ConfigError, match="mlp_ratio"):
        build_image_encoder("vit_b", mlp_ratio=2)


@pytest.mark.parametrize(
    ("model_type", "depth", "dim", "head_dim", "globals_"),
    [("vit_b", 12, 768, 64, (2, 5, 8, 11)), ("vit_h", 32, 1280, 80, (7, 15, 23, 31))],
)
def test_key_shapes_on_meta(
    model_type: str, depth: int, dim: int, head_dim: int, globals_: tuple[int, ...]
) -> None:
    with torch.device("meta"):
        sd = build_image_encoder(model_type).state_dict()
    assert len(sd) == 3 + 14 * depth + 6  # pos + patch embedding, 14 tensors per block, neck
    assert sd["pos_embed"].shape == (1, 64, 64, dim)
    assert sd["patch_embed.proj.weight"].shape == (dim, 3, 16, 16)
    assert sd["blocks.0.attn.qkv.weight"].shape == (3 * dim, dim)
    assert sd["neck.0.weight"].shape == (256, dim, 1, 1)
    assert sd["neck.2.weight"].shape == (256, 256, 3, 3)
    for i in range(depth):
        size = 127 if i in globals_ else 27
        assert sd[f"blocks.{i}.attn.rel_pos_h"].shape == (size, head_dim)
        assert sd[f"blocks.{i}.attn.rel_pos_w"].shape == (size, head_dim)


def _randomise_rel_pos(encoder: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    for block in encoder.blocks:
        for p in (block.attn.rel_pos_h, block.attn.rel_pos_w):
            p.data = torch.randn(p.shape, generator=gen) * 0.5


def test_sdpa_matches_reference_attention(tiny_encoder_kwargs: dict) -> None:
    torch.manual_seed(1)
    encoder = build_image_encoder("vit_b", **tiny_encoder_kwargs)
    _randomise_rel_pos(encoder)  # zero-initialised tables would hide a wrong rel-pos path
    x = torch.randn(2, 3, 256, 256)
    keys_before = list(encoder.state_dict())
    with torch.inference_mode():
        reference = encoder(x)
        fast = enable_sdpa_attention(encoder)(x)
        back = disable_sdpa_attention(encoder)(x)
    assert list(encoder.state_dict()) == keys_before
    assert (fast - reference).abs().max().item() < 1e-4
    assert torch.equal(back, reference)


def test_sdpa_flag_in_builder(tiny_encoder_kwargs: dict) -> None:
    torch.manual_seed(2)
    plain = build_image_encoder("vit_b", **tiny_encoder_kwargs)
    _randomise_rel_pos(plain)
    fast = build_image_encoder("vit_b", sdpa=True, **tiny_encoder_kwargs)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        assert (fast(x) - plain(x)).abs().max().item() < 1e-4


@pytest.mark.slow
def test_full_vit_b_sdpa_equivalence() -> None:
    torch.manual_seed(3)
    encoder = build_image_encoder("vit_b")
    _randomise_rel_pos(encoder)
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        reference = encoder(x)
        fast = enable_sdpa_attention(encoder)(x)
    assert reference.shape == (1, 256, 64, 64)
    assert (fast - reference).abs().max().item() < 1e-4


def test_rel_pos_bias_row_alignment_changes_nothing() -> None:
    """The aligned (padded-row) mask used on CUDA holds the same values as the dense one."""
    import torch.nn.functional as F

    from pathosam_wsi.model.sam_encoder import rel_pos_bias

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 5 * 7, 8, generator=gen)
    k, v = torch.randn(q.shape, generator=gen), torch.randn(q.shape, generator=gen)
    rel_h, rel_w = torch.randn(5, 5, 8, generator=gen), torch.randn(7, 7, 8, generator=gen)
    dense = rel_pos_bias(q, rel_h, rel_w, (5, 7))
    aligned = rel_pos_bias(q, rel_h, rel_w, (5, 7), align=16)
    assert dense.is_contiguous()
    assert aligned.stride(-2) == 48
    assert torch.equal(dense, aligned)
    assert torch.equal(
        F.scaled_dot_product_attention(q, k, v, attn_mask=dense),
        F.scaled_dot_product_attention(q, k, v, attn_mask=aligned),
    )
    assert rel_pos_bias(q.to(torch.bfloat16), rel_h, rel_w, (5, 7)).dtype == torch.bfloat16
