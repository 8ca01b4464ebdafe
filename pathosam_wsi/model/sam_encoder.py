"""segment-anything's ViT image encoder, built without torchvision, plus an optional SDPA attention.

The SAM package imports torchvision in its ``__init__`` (docs/stack.md P4), which this project does
not install. We register an empty package object for ``segment_anything`` so that its
``__init__`` is never executed, then import the model sub-modules, which only need torch.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from pathosam_wsi.errors import ConfigError

if TYPE_CHECKING:
    from segment_anything.modeling import ImageEncoderViT

__all__ = [
    "ENCODER_SPECS",
    "build_image_encoder",
    "disable_sdpa_attention",
    "enable_sdpa_attention",
    "import_sam_without_torchvision",
    "rel_pos_bias",
]

ENCODER_SPECS: dict[str, dict[str, Any]] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "global_attn_indexes": (5, 11, 17, 23),
    },
    "vit_h": {
        "embed_dim": 1280,
        "depth": 32,
        "num_heads": 16,
        "global_attn_indexes": (7, 15, 23, 31),
    },
}
"""Per-size hyper-parameters of segment-anything's ``build_sam.py``.

See docs/pathosam-reference.md §2.2.
"""

_COMMON = {"img_size": 1024, "patch_size": 16, "window_size": 14, "out_chans": 256}
_OVERRIDABLE = frozenset(
    {
        "embed_dim",
        "depth",
        "num_heads",
        "global_attn_indexes",
        "img_size",
        "window_size",
        "out_chans",
        "patch_size",
    }
)


def import_sam_without_torchvision() -> None:
    """Make ``segment_anything.modeling`` importable when torchvision is missing.

    If ``segment_anything`` is already imported (normally or by an earlier call) nothing happens.
    Otherwise a bare module object pointing at the installed package folder is placed into
    ``sys.modules``; Python then resolves sub-modules from that folder without running the package
    ``__init__`` (which would import the predictor and, through it, torchvision).

    Raises
    ------
    ConfigError
        If segment-anything is not installed.
    """
    if "segment_anything" in sys.modules:
        return
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or spec.submodule_search_locations is None:
        raise ConfigError(
            "segment-anything is not installed; expected the package segment-anything==1.0; "
            "fix: pip install segment-anything==1.0"
        )
    skeleton = types.ModuleType("segment_anything")
    skeleton.__path__ = list(spec.submodule_search_locations)
    skeleton.__spec__ = spec
    skeleton.__file__ = spec.origin
    sys.modules["segment_anything"] = skeleton


def _encoder_kwargs(model_type: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of ``ImageEncoderViT`` for a size plus test overrides."""
    if model_type not in ENCODER_SPECS:
        raise ConfigError(
            f"unknown SAM encoder {model_type!r}; expected one of {sorted(ENCODER_SPECS)}"
        )
    unknown = set(overrides) - _OVERRIDABLE
    if unknown:
        raise ConfigError(
            f"unknown encoder overrides {sorted(unknown)}; "
            f"expected a subset of {sorted(_OVERRIDABLE)}"
        )
    kwargs = {**_COMMON, **ENCODER_SPECS[model_type], **overrides}
    kwargs["global_attn_indexes"] = tuple(kwargs["global_attn_indexes"])
    return kwargs


def build_image_encoder(
    model_type: str = "vit_b", *, sdpa: bool = False, **overrides: Any
) -> ImageEncoderViT:
    """Build SAM's image encoder with PyTorch's default random initialisation.

    Parameters
    ----------
    model_type : {"vit_b", "vit_l", "vit_h"}
        Encoder size (docs/pathosam-reference.md §2.2).
    sdpa : bool
        Use :func:`enable_sdpa_attention` (same weights, faster attention).
    **overrides
        Replace hyper-parameters for small test configurations: ``embed_dim``, ``depth``,
        ``num_heads``, ``global_attn_indexes``, ``img_size``, ``window_size``, ``out_chans``,
        ``patch_size``.

    Returns
    -------
    segment_anything.modeling.ImageEncoderViT
        In eval mode. Input (B, 3, img_size, img_size) float32 normalised pixels; output
        (B, out_chans, img_size / 16, img_size / 16).

    Raises
    ------
    ConfigError
        Unknown size or override.
    """
    kwargs = _encoder_kwargs(model_type, overrides)
    import_sam_without_torchvision()
    from segment_anything.modeling import ImageEncoderViT

    encoder = ImageEncoderViT(
        mlp_ratio=4,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        qkv_bias=True,
        use_rel_pos=True,
        **kwargs,
    )
    encoder.eval()
    if sdpa:
        enable_sdpa_attention(encoder)
    return encoder


_MASK_ALIGN_ELEMENTS = 16
"""CUDA fused (memory-efficient) SDPA wants the mask's row stride aligned; else it pads a copy."""


def rel_pos_bias(
    q: torch.Tensor,
    rel_h_table: torch.Tensor,
    rel_w_table: torch.Tensor,
    hw: tuple[int, int],
    *,
    align: int = 1,
) -> torch.Tensor:
    """SAM's decomposed relative-position term as an additive attention mask, in ``q.dtype``.

    Parameters
    ----------
    q : (B, heads, h*w, head_dim) tensor
        Unscaled queries (SAM adds the bias computed from them to the scaled logits).
    rel_h_table, rel_w_table : (h, h, head_dim), (w, w, head_dim) tensors
        ``get_rel_pos`` tables.
    hw : (h, w)
        Token grid.
    align : int
        Row stride of the result rounded up to a multiple of ``align`` elements (the values are a
        view of the first h*w columns), so fused CUDA kernels take it without copying.

    Returns
    -------
    (B, heads, h*w, h*w) tensor, ``q.dtype``
    """
    batch, heads, _, head_dim = q.shape
    h, w = hw
    dtype = q.dtype
    r_q = q.reshape(batch, heads, h, w, head_dim)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_h_table.to(dtype))  # (B, heads, h, w, h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_w_table.to(dtype))  # (B, heads, h, w, w)
    tokens = h * w
    row = -(-tokens // align) * align
    buffer = torch.empty((batch, heads, tokens, row), dtype=rel_h.dtype, device=q.device)
    bias = buffer[..., :tokens]  # (B, heads, h*w, h*w), row stride ``row``
    torch.add(rel_h[..., :, None], rel_w[..., None, :], out=bias.view(batch, heads, h, w, h, w))
    return bias.to(dtype)


def _sdpa_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """SAM attention with ``scaled_dot_product_attention``; rel-pos enters as an additive mask."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    batch, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(batch, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, heads, h*w, head_dim)
    # SAM adds rel_h/rel_w computed from the *unscaled* query to the scaled logits; the sum over
    # the key axis factorises into a (B, heads, h*w, h*w) additive bias, built in the compute
    # dtype (bf16/fp16 under autocast) so the fused CUDA kernels accept it.
    rel_h_table = get_rel_pos(h, h, self.rel_pos_h)  # (h, h, head_dim)
    rel_w_table = get_rel_pos(w, w, self.rel_pos_w)  # (w, w, head_dim)
    align = _MASK_ALIGN_ELEMENTS if q.is_cuda else 1
    bias = rel_pos_bias(q, rel_h_table, rel_w_table, (h, w), align=align)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
    out = out.permute(0, 2, 1, 3).reshape(batch, h, w, -1)  # (B, h, w, dim)
    return self.proj(out)  # type: ignore[no-any-return]


def _attention_modules(encoder: nn.Module) -> list[nn.Module]:
    """The ``Attention`` modules of an ``ImageEncoderViT``."""
    return [block.attn for block in encoder.blocks]  # type: ignore[union-attr]


def enable_sdpa_attention(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Route every attention block of ``encoder`` through ``scaled_dot_product_attention``.

    Parameters and state-dict keys are unchanged; results equal the reference attention up to
    floating-point rounding (checked to 1e-4 in the tests). Returns ``encoder`` for chaining.
    """
    for attn in _attention_modules(encoder):
        if not attn.use_rel_pos:
            raise ConfigError("SDPA attention expects SAM blocks with use_rel_pos=True")
        attn.forward = types.MethodType(_sdpa_forward, attn)  # type: ignore[method-assign]
    return encoder


def disable_sdpa_attention(encoder: ImageEncoderViT) -> ImageEncoderViT:
    """Undo :func:`enable_sdpa_attention` (back to segment-anything's own forward)."""
    for attn in _attention_modules(encoder):
        attn.__dict__.pop("forward", None)
    return encoder
