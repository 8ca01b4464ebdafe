"""Deterministic random weights from key names and shapes (docs/pathosam-reference.md §12, step 1).

The rule matches the reference golden generator (``tests/model/golden/make_golden.py``): for the
i-th key in sorted key order, a ``torch.Generator`` seeded with ``base_seed + i`` draws
``randn(shape) * std`` in float32; ``*.running_var`` becomes ``1 + |v|``; integer tensors
(``num_batches_tracked``) are zero; the result keeps the template's key order. The same rule gives
bit-identical tensors here and in the reference environment, so no weight file is committed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import torch

from pathosam_wsi.model.sam_encoder import ENCODER_SPECS, import_sam_without_torchvision
from pathosam_wsi.model.unetr_decoder import AISDecoder

__all__ = [
    "DECODER_SEED",
    "SAM_SEED",
    "decoder_state_dict_template",
    "deterministic_state_dict",
    "sam_state_dict_template",
    "state_dict_sha256",
    "synthetic_decoder_state_dict",
    "synthetic_sam_state_dict",
]

SAM_SEED = 1000
"""Base seed of the golden SAM weights."""
DECODER_SEED = 2000
"""Base seed of the golden AIS decoder weights."""

Template = Mapping[str, "torch.Tensor | tuple[tuple[int, ...], torch.dtype]"]


def deterministic_state_dict(
    template: Template,
    base_seed: int,
    std: float = 0.02,
    std_overrides: Mapping[str, float] | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """Deterministic random tensors for every key of ``template``.

    Parameters
    ----------
    template : mapping of key -> tensor or (shape, dtype)
        Only names, shapes and dtypes are used.
    base_seed : int
        Seed of the first key in sorted order; key i gets ``base_seed + i``.
    std : float
        Standard deviation of the normal draws.
    std_overrides : mapping of key -> float, optional
        Per-key standard deviations.

    Returns
    -------
    OrderedDict of str -> tensor
        In the template's key order.
    """
    overrides = dict(std_overrides or {})
    specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for key, value in template.items():
        if isinstance(value, torch.Tensor):
            specs[key] = (tuple(value.shape), value.dtype)
        else:
            specs[key] = (tuple(value[0]), value[1])
    seeds = {key: base_seed + i for i, key in enumerate(sorted(specs))}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, (shape, dtype) in specs.items():
        if not dtype.is_floating_point:
            out[key] = torch.zeros(shape, dtype=dtype)
            continue
        gen = torch.Generator().manual_seed(seeds[key])
        values = torch.randn(shape, generator=gen, dtype=torch.float32) * overrides.get(key, std)
        if key.endswith("running_var"):
            values = 1.0 + values.abs()
        out[key] = values.to(dtype)
    return out


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over key, shape, dtype and raw (little-endian) bytes, in sorted key order.

    The same digest as the reference golden generator, so weights can be compared across
    environments without the files.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def sam_state_dict_template(
    model_type: str = "vit_b",
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of a full SAM model (image encoder, prompt encoder, mask decoder).

    Built on the meta device, so no memory is allocated and nothing is initialised.
    """
    if model_type not in ENCODER_SPECS:
        raise ValueError(
            f"unknown SAM model {model_type!r}; expected one of {sorted(ENCODER_SPECS)}"
        )
    import_sam_without_torchvision()
    from segment_anything.build_sam import sam_model_registry

    with torch.device("meta"):
        sam = sam_model_registry[model_type](checkpoint=None)
    return {key: (tuple(v.shape), v.dtype) for key, v in sam.state_dict().items()}


def decoder_state_dict_template(
    use_conv_transpose: bool = True, out_channels: int = 3
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Key -> (shape, dtype) of the UNETR decoder (66 keys, docs/pathosam-reference.md §2.3)."""
    with torch.device("meta"):
        decoder = AISDecoder(out_channels=out_channels, use_conv_transpose=use_conv_transpose)
    return {key: (tuple(v.shape), v.dtype) for key, v in decoder.state_dict().items()}


def synthetic_sam_state_dict(
    model_type: str = "vit_b", base_seed: int = SAM_SEED
) -> OrderedDict[str, torch.Tensor]:
    """Deterministic full SAM state dict in the published (plain ``OrderedDict``) layout."""
    return deterministic_state_dict(sam_state_dict_template(model_type), base_seed)


def synthetic_decoder_state_dict(
    use_conv_transpose: bool = True, out_channels: int = 3, base_seed: int = DECODER_SEED
) -> OrderedDict[str, torch.Tensor]:
    """Deterministic UNETR decoder state dict (AIS with 3 channels, PanNuke with 6)."""
    template = decoder_state_dict_template(use_conv_transpose, out_channels)
    return deterministic_state_dict(template, base_seed)
