"""The UNETR decoder path that micro-sam's ``DecoderAdapter`` runs on SAM embeddings.

Re-implemented from the description in docs/pathosam-reference.md §4 (torch-em ``unet.py`` /
``unetr.py``, micro-sam ``instance_segmentation.py: DecoderAdapter``): same module names, so the
published decoder state dicts (66 keys, both upsampler variants) load strictly, and the same forward
pass, including the channel centre-crop of the skip connections. The forward is written with
functional calls so the decoder BatchNorm statistics can be chosen per call (§5).

CPU speed: with ``channels_last=True`` the activations stay NHWC, which oneDNN convolves without
reordering every tensor in and out (1.6x per 3x3 convolution here). PyTorch's own instance norm and
var_mean are very slow on NHWC tensors (6-7 s for one 128x1024x1024 map) and its NHWC batch-norm
kernel sums 1M values per channel in plain float32 (5e-4 error), so NHWC tensors are normalised by
an explicit two-pass mean / variance over the (B, H*W, C) view (error 8e-7, like the NCHW kernel).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pathosam_wsi.errors import ConfigError

__all__ = ["BATCHNORM_MODES", "AISDecoder"]

BATCHNORM_MODES = ("per_tile", "batch", "running")
_NORM_EPS = 1e-5


class _Conv(nn.Module):
    """A 3x3 convolution stored under ``.block`` (torch-em ``SingleConv2DBlock`` key layout)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Conv2d(in_channels, out_channels, 3, padding=1)


class _TransposeUpsampler(nn.Module):
    """x2 upsampling by a 2x2 stride-2 transposed convolution (keys ``block.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)  # type: ignore[no-any-return]


class _InterpUpsampler(nn.Module):
    """x2 bilinear upsampling (align_corners=False) then a 1x1 convolution (keys ``conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(x)  # type: ignore[no-any-return]


def _upsampler(in_channels: int, out_channels: int, conv_transpose: bool) -> nn.Module:
    if conv_transpose:
        return _TransposeUpsampler(in_channels, out_channels)
    return _InterpUpsampler(in_channels, out_channels)


class _ConvBlock(nn.Module):
    """InstanceNorm -> conv3x3 -> ReLU -> InstanceNorm -> conv3x3 -> ReLU (convs at block.1/4)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(),
            nn.InstanceNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, conv2 = self.block[1], self.block[4]
        x = F.relu(conv1(_channel_norm(x, None, None, _NORM_EPS, per_sample=True)), inplace=True)
        return F.relu(conv2(_channel_norm(x, None, None, _NORM_EPS, per_sample=True)), inplace=True)


class _DeconvBlock(nn.Module):
    """Upsample x2 -> conv3x3 -> BatchNorm -> ReLU (torch-em ``Deconv2DBlock``)."""

    def __init__(self, in_channels: int, out_channels: int, conv_transpose: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _upsampler(in_channels, out_channels, conv_transpose),
            _Conv(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, batchnorm: str) -> torch.Tensor:
        block: Any = self.block
        x = block[1].block(block[0](x))
        return F.relu(_batchnorm(x, block[2], batchnorm), inplace=True)


class _Decoder(nn.Module):
    """Three (sampler, ConvBlock) levels; keys ``samplers.{i}.*`` and ``blocks.{i}.block.*``."""

    def __init__(self, features: tuple[int, ...], conv_transpose: bool) -> None:
        super().__init__()
        pairs = list(itertools.pairwise(features))
        self.blocks = nn.ModuleList([_ConvBlock(c_in, c_out) for c_in, c_out in pairs])
        self.samplers = nn.ModuleList(
            [_upsampler(c_in, c_out, conv_transpose) for c_in, c_out in pairs]
        )


def _batchnorm(x: torch.Tensor, bn: nn.BatchNorm2d, mode: str) -> torch.Tensor:
    """Apply ``bn``'s affine transform with the statistics that ``mode`` selects."""
    if mode == "running":
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps
        )
    # per_tile: train-mode BN over a batch of one == instance norm with the BN affine (§5).
    return _channel_norm(x, bn.weight, bn.bias, bn.eps, per_sample=mode == "per_tile")


def _channel_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    *,
    per_sample: bool,
) -> torch.Tensor:
    """Normalise each channel by its mean and biased variance, then apply the affine transform.

    Parameters
    ----------
    x : (B, C, H, W) float tensor, NCHW or channels-last
        Activations.
    weight, bias : (C,) float tensor, optional
        Affine parameters (None: identity).
    eps : float
        Added to the variance.
    per_sample : bool
        Statistics per sample (instance norm) or over the whole batch (train-mode batch norm).

    Returns
    -------
    (B, C, H, W) tensor, same dtype and memory format as ``x``
    """
    if not x.is_contiguous(memory_format=torch.channels_last) or x.shape[1] == 1:
        if per_sample:
            return F.instance_norm(x, weight=weight, bias=bias, eps=eps)
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    b, c = x.shape[:2]
    rows = x.permute(0, 2, 3, 1).reshape(b if per_sample else 1, -1, c)  # a view for NHWC
    mean = rows.mean(dim=1, keepdim=True, dtype=torch.float32)  # (B|1, 1, C)
    var = (rows - mean).square_().mean(dim=1)  # (B|1, C); two passes: exact like the NCHW kernel
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.float()
    shift = -mean[:, 0] * scale
    if bias is not None:
        shift = shift + bias.float()
    shape = (scale.shape[0], c, 1, 1)
    return torch.addcmul(
        shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype)
    ).contiguous(memory_format=torch.channels_last)


def _centre_crop_channels(skip: torch.Tensor, n_channels: int) -> torch.Tensor:
    """torch-em's ``Decoder._crop`` also crops the channel axis: keep the middle ``n_channels``."""
    offset = (skip.shape[1] - n_channels) // 2
    return skip[:, offset : offset + n_channels]


class AISDecoder(nn.Module):
    """PathoSAM's UNETR decoder on SAM embeddings (AIS: 3 channels; PanNuke semantic: 6).

    Parameters
    ----------
    out_channels : int
        3 for the AIS maps (foreground, centre distance, boundary distance), 6 for PanNuke classes.
    use_conv_transpose : bool
        Upsampler variant: transposed convolutions (True) or bilinear + 1x1 convolution (False).
    in_channels : int
        Channels of the embeddings (256 = SAM neck output). Only tests change it.
    width : int
        Channels of the finest level (64 in PathoSAM); the others are 2x, 4x and 8x. Only tests
        change it.
    channels_last : bool
        Keep activations and weights NHWC (faster convolutions on CPU); see
        :meth:`set_channels_last`. Outputs are the same up to float rounding.
    """

    def __init__(
        self,
        out_channels: int = 3,
        use_conv_transpose: bool = True,
        *,
        in_channels: int = 256,
        width: int = 64,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        ct = use_conv_transpose
        c1, c2, c4, c8 = width, 2 * width, 4 * width, 8 * width
        self.out_channels = out_channels
        self.use_conv_transpose = use_conv_transpose
        self.base = _ConvBlock(in_channels, c8)
        self.decoder = _Decoder((c8, c4, c2, c1), ct)
        self.deconv1 = _DeconvBlock(in_channels, c8, ct)
        self.deconv2 = _DeconvBlock(c8, c4, ct)
        self.deconv3 = _DeconvBlock(c4, c2, ct)
        self.deconv4 = _DeconvBlock(c2, c1, ct)
        self.deconv_out = _upsampler(c1, c1, ct)
        self.decoder_head = _ConvBlock(c2, c1)
        self.out_conv = nn.Conv2d(c1, out_channels, 1)
        self.channels_last = False
        self.set_channels_last(channels_last)

    def set_channels_last(self, enabled: bool) -> AISDecoder:
        """Switch weights and activations to NHWC (True) or NCHW (False); returns ``self``."""
        self.channels_last = enabled
        fmt = torch.channels_last if enabled else torch.contiguous_format
        self.to(memory_format=fmt)  # type: ignore[call-overload]
        return self

    def forward(
        self, features: torch.Tensor, batchnorm: str = "per_tile", *, activation: bool = True
    ) -> torch.Tensor:
        """Decode embeddings into full-resolution maps.

        Parameters
        ----------
        features : (B, 256, h, w) float
            SAM image-encoder output (h = w = 64 for a 1024 input).
        batchnorm : {"per_tile", "batch", "running"}
            Statistics of the four BatchNorm layers: each sample's own (default; equals the
            reference at batch size 1 and makes every output independent of the batch), the whole
            batch's (train-mode BN, emulates a reference batch grouping), or the stored running
            statistics (eval mode; not reference behaviour). Running statistics are never updated.
        activation : bool
            Apply the final sigmoid (as the reference); False returns logits.

        Returns
        -------
        (B, out_channels, 16 h, 16 w) tensor, same dtype as ``features``
        """
        if batchnorm not in BATCHNORM_MODES:
            raise ConfigError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        z12 = features.contiguous(memory_format=fmt)  # (B, 256, 64, 64)
        z9 = self.deconv1(z12, batchnorm)  # (B, 512, 128, 128)
        z6 = self.deconv2(z9, batchnorm)  # (B, 256, 256, 256)
        z3 = self.deconv3(z6, batchnorm)  # (B, 128, 512, 512)
        z0 = self.deconv4(z3, batchnorm)  # (B, 64, 1024, 1024)
        x = self.base(z12)  # (B, 512, 64, 64)
        for block, sampler, skip in zip(
            self.decoder.blocks, self.decoder.samplers, (z9, z6, z3), strict=True
        ):
            x = sampler(x)
            x = block(torch.cat([x, _centre_crop_channels(skip, x.shape[1])], dim=1))
        del z9, z6, z3
        x = self.deconv_out(x)  # (B, 64, 1024, 1024)
        x = self.decoder_head(torch.cat([x, z0], dim=1))  # (B, 64, 1024, 1024)
        x = self.out_conv(x).contiguous()  # (B, C, 1024, 1024), NCHW
        return torch.sigmoid(x) if activation else x
