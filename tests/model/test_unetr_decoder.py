"""UNETR decoder: exact key set (spec §2.3), forward shapes, BatchNorm modes, channel crop quirk."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.unetr_decoder import AISDecoder

# docs/pathosam-reference.md §2.3, conv-transpose variant: key -> shape.
_COMMON = {
    "decoder.blocks.0.block.1.weight": (256, 512, 3, 3),
    "decoder.blocks.0.block.1.bias": (256,),
    "decoder.blocks.0.block.4.weight": (256, 256, 3, 3),
    "decoder.blocks.0.block.4.bias": (256,),
    "decoder.blocks.1.block.1.weight": (128, 256, 3, 3),
    "decoder.blocks.1.block.1.bias": (128,),
    "decoder.blocks.1.block.4.weight": (128, 128, 3, 3),
    "decoder.blocks.1.block.4.bias": (128,),
    "decoder.blocks.2.block.1.weight": (64, 128, 3, 3),
    "decoder.blocks.2.block.1.bias": (64,),
    "decoder.blocks.2.block.4.weight": (64, 64, 3, 3),
    "decoder.blocks.2.block.4.bias": (64,),
    "base.block.1.weight": (512, 256, 3, 3),
    "base.block.1.bias": (512,),
    "base.block.4.weight": (512, 512, 3, 3),
    "base.block.4.bias": (512,),
    "decoder_head.block.1.weight": (64, 128, 3, 3),
    "decoder_head.block.1.bias": (64,),
    "decoder_head.block.4.weight": (64, 64, 3, 3),
    "decoder_head.block.4.bias": (64,),
    "out_conv.weight": (3, 64, 1, 1),
    "out_conv.bias": (3,),
}
for _i, _c in zip((1, 2, 3, 4), (512, 256, 128, 64), strict=True):
    _COMMON[f"deconv{_i}.block.1.block.weight"] = (_c, _c, 3, 3)
    _COMMON[f"deconv{_i}.block.1.block.bias"] = (_c,)
    for _n in ("weight", "bias", "running_mean", "running_var"):
        _COMMON[f"deconv{_i}.block.2.{_n}"] = (_c,)
    _COMMON[f"deconv{_i}.block.2.num_batches_tracked"] = ()
# (module, in, out) of the five kinds of upsamplers.
_UPSAMPLERS = [
    ("decoder.samplers.0", 512, 256),
    ("decoder.samplers.1", 256, 128),
    ("decoder.samplers.2", 128, 64),
    ("deconv1.block.0", 256, 512),
    ("deconv2.block.0", 512, 256),
    ("deconv3.block.0", 256, 128),
    ("deconv4.block.0", 128, 64),
    ("deconv_out", 64, 64),
]


def _expected(conv_transpose: bool) -> dict[str, tuple[int, ...]]:
    keys = dict(_COMMON)
    for name, c_in, c_out in _UPSAMPLERS:
        if conv_transpose:
            keys[f"{name}.block.weight"] = (c_in, c_out, 2, 2)
            keys[f"{name}.block.bias"] = (c_out,)
        else:
            keys[f"{name}.conv.weight"] = (c_out, c_in, 1, 1)
            keys[f"{name}.conv.bias"] = (c_out,)
    return keys


@pytest.mark.parametrize(("conv_transpose", "n_float"), [(True, 11_030_851), (False, 9_593_155)])
def test_state_dict_keys_exact(conv_transpose: bool, n_float: int) -> None:
    with torch.device("meta"):
        sd = AISDecoder(3, conv_transpose).state_dict()
    assert len(sd) == 66
    assert {k: tuple(v.shape) for k, v in sd.items()} == _expected(conv_transpose)
    assert sum(v.numel() for v in sd.values() if v.is_floating_point()) == n_float


def test_semantic_decoder_has_six_outputs() -> None:
    with torch.device("meta"):
        sd = AISDecoder(6).state_dict()
    assert sd["out_conv.weight"].shape == (6, 64, 1, 1)
    assert len(sd) == 66


def _tiny(conv_transpose: bool = True, seed: int = 0) -> AISDecoder:
    torch.manual_seed(seed)
    decoder = AISDecoder(3, conv_transpose, in_channels=32, width=8)
    for bn in (decoder.deconv1, decoder.deconv2, decoder.deconv3, decoder.deconv4):
        layer = bn.block[2]
        layer.weight.data.uniform_(0.5, 1.5)
        layer.bias.data.uniform_(-0.5, 0.5)
        layer.running_mean.data.uniform_(-1, 1)
        layer.running_var.data.uniform_(0.5, 2)
    return decoder


@pytest.mark.parametrize("conv_transpose", [True, False])
def test_forward_shape_and_range(conv_transpose: bool) -> None:
    decoder = _tiny(conv_transpose)
    with torch.inference_mode():
        y = decoder(torch.randn(2, 32, 4, 4))
        logits = decoder(torch.randn(2, 32, 4, 4), activation=False)
    assert y.shape == (2, 3, 64, 64)
    assert y.min().item() >= 0.0
    assert y.max().item() <= 1.0
    assert logits.min().item() < 0.0 or logits.max().item() > 1.0


def test_per_tile_equals_train_mode_batchnorm_at_batch_one() -> None:
    decoder = _tiny()
    x = torch.randn(1, 32, 4, 4)
    with torch.inference_mode():
        assert torch.allclose(decoder(x, "per_tile"), decoder(x, "batch"), atol=1e-6)


def test_per_tile_is_independent_of_batch_and_batch_mode_is_not() -> None:
    decoder = _tiny()
    x = torch.randn(3, 32, 4, 4) * torch.tensor([1.0, 3.0, 0.3]).view(3, 1, 1, 1)
    with torch.inference_mode():
        together = decoder(x, "per_tile")
        alone = torch.cat([decoder(x[i : i + 1], "per_tile") for i in range(3)])
        grouped = decoder(x, "batch")
    assert (together - alone).abs().max().item() < 1e-5
    assert (grouped - alone).abs().max().item() > 1e-3


def test_running_mode_uses_running_statistics_and_never_updates_them() -> None:
    decoder = _tiny()
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    x = torch.randn(2, 32, 4, 4)
    with torch.inference_mode():
        running = decoder(x, "running")
        decoder.eval()
        # Reference for "running": torch's own eval-mode BatchNorm through the module tree.
        expected = _module_tree_forward(decoder, x)
        decoder(x, "batch")
    assert (running - expected).abs().max().item() < 1e-5
    assert all(torch.equal(before[k], v) for k, v in decoder.state_dict().items())


def _module_tree_forward(decoder: AISDecoder, x: torch.Tensor) -> torch.Tensor:
    """An independent forward from the nn.Sequential children (reference §4.2, with the crop)."""

    def deconv(block: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        up, conv, bn, relu = block.block
        return relu(bn(conv.block(up(z))))

    def conv_block(block: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        return block.block(z)  # InstanceNorm2d, conv, ReLU, InstanceNorm2d, conv, ReLU

    z9 = deconv(decoder.deconv1, x)
    z6 = deconv(decoder.deconv2, z9)
    z3 = deconv(decoder.deconv3, z6)
    z0 = deconv(decoder.deconv4, z3)
    y = conv_block(decoder.base, x)
    for i, skip in enumerate((z9, z6, z3)):
        y = decoder.decoder.samplers[i](y)
        c = y.shape[1]
        lo = (skip.shape[1] - c) // 2
        y = conv_block(decoder.decoder.blocks[i], torch.cat([y, skip[:, lo : lo + c]], dim=1))
    y = decoder.deconv_out(y)
    y = conv_block(decoder.decoder_head, torch.cat([y, z0], dim=1))
    return torch.sigmoid(decoder.out_conv(y))


def test_train_mode_module_tree_matches_batch_mode() -> None:
    decoder = _tiny(seed=3).train()
    x = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        expected = _module_tree_forward(decoder, x)  # train-mode nn.BatchNorm2d
        got = decoder(x, "batch")
    assert (got - expected).abs().max().item() < 1e-5


def _perturb_channels(decoder: AISDecoder, module: torch.nn.Module, channels: slice) -> float:
    """Max output change when ``module``'s output gets spatially varying noise on ``channels``."""
    x = torch.randn(1, 32, 4, 4, generator=torch.Generator().manual_seed(9))

    def hook(_m: torch.nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out = out.clone()
        out[:, channels] += 5.0 * noise[:, channels]  # varying: instance norm removes constants
        return out

    with torch.inference_mode():
        base = decoder(x)
        handle = module.register_forward_hook(hook)
        try:
            changed = decoder(x)
        finally:
            handle.remove()
    return float((changed - base).abs().max())


def test_skip_channel_centre_crop_quirk() -> None:
    decoder = _tiny()
    # z3 (deconv3 output, 16 channels in the tiny decoder) feeds deconv4 and, as a skip, the last
    # decoder block, whose upsampled input has 8 channels. Cut the deconv4 path so only the skip
    # remains: then only the middle half, channels 4:12, may reach the output (reference §4.2).
    decoder.deconv4.block[0].block.weight.data.zero_()
    assert _perturb_channels(decoder, decoder.deconv3, slice(0, 4)) == 0.0
    assert _perturb_channels(decoder, decoder.deconv3, slice(12, 16)) == 0.0
    assert _perturb_channels(decoder, decoder.deconv3, slice(4, 12)) > 1e-4
    # z0 (deconv4 output) enters the head uncropped: every channel matters.
    assert _perturb_channels(decoder, decoder.deconv4, slice(0, 1)) > 1e-4
    assert _perturb_channels(decoder, decoder.deconv4, slice(7, 8)) > 1e-4


def test_invalid_batchnorm_mode() -> None:
    with pytest.raises(ConfigError, match="batchnorm"):
        _tiny()(torch.randn(1, 32, 4, 4), "eval")


def test_interpolation_upsampler_is_bilinear_then_conv() -> None:
    decoder = _tiny(conv_transpose=False)
    x = torch.randn(1, 8, 5, 5)
    sampler = decoder.deconv_out
    expected = sampler.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    with torch.inference_mode():
        assert torch.allclose(sampler(x), expected)


@pytest.mark.parametrize("mode", ["per_tile", "batch", "running"])
@pytest.mark.parametrize("conv_transpose", [True, False])
def test_channels_last_equals_nchw(mode: str, conv_transpose: bool) -> None:
    """The CPU runner's NHWC path (two-pass norm) gives the NCHW outputs; result is NCHW."""
    nchw = _tiny(conv_transpose)
    nhwc = _tiny(conv_transpose).set_channels_last(True)
    x = torch.randn(3, 32, 4, 4) * torch.tensor([1.0, 3.0, 0.3]).view(3, 1, 1, 1) + 2.0
    with torch.inference_mode():
        ref = nchw(x, mode, activation=False)
        out = nhwc(x, mode, activation=False)
    assert nhwc.out_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous()
    assert (out - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())


def test_channels_last_norm_is_accurate_with_a_large_mean() -> None:
    """Mean 100, std 1 over 512x512 px: the two-pass statistics stay at float32 accuracy."""
    from pathosam_wsi.model.unetr_decoder import _channel_norm

    x = torch.randn(2, 4, 512, 512, dtype=torch.float64) + 100.0
    ref = F.instance_norm(x, eps=1e-5)
    out = _channel_norm(
        x.float().contiguous(memory_format=torch.channels_last), None, None, 1e-5, per_sample=True
    )
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out.double() - ref).abs().max().item() < 1e-4
