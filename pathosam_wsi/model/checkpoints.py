"""Safe, strict loading of PathoSAM encoder and decoder checkpoints (docs/pathosam-reference.md §2).

Every file goes through ``torch.load(..., weights_only=True)``: a checkpoint can hold tensors and
plain containers only, never code. Keys must match the architecture exactly; a mismatch raises a
:class:`CheckpointError` listing the missing and unexpected keys.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model.sam_encoder import ENCODER_SPECS, build_image_encoder
from pathosam_wsi.model.unetr_decoder import AISDecoder

if TYPE_CHECKING:
    from segment_anything.modeling import ImageEncoderViT

__all__ = [
    "StateDict",
    "detect_decoder_variant",
    "encoder_state_dict",
    "infer_model_type",
    "load_decoder",
    "load_image_encoder",
    "load_state_dict_file",
    "load_strict",
]

logger = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]
_ENCODER_PREFIX = "image_encoder."
_UPSAMPLERS = (
    "decoder.samplers.0",
    "decoder.samplers.1",
    "decoder.samplers.2",
    "deconv1.block.0",
    "deconv2.block.0",
    "deconv3.block.0",
    "deconv4.block.0",
    "deconv_out",
)
_LIST_LIMIT = 12


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file with ``weights_only=True``; the result is never code.

    Raises
    ------
    CheckpointError
        Missing file, a pickle that needs anything beyond tensors and containers (such a file is
        refused before any of its code can run), a corrupt file, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist; give the path of a .pt file"
        )
    try:
        with warnings.catch_warnings():
            # Plain pickle files (protocol 4) trigger a harmless notice from the safe unpickler.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing checkpoint {str(path)!r}: not a plain tensor state dict, or corrupt "
            f"({_unpickling_reason(err)}); nothing in it was executed; expected a state dict "
            "saved with torch.save(model.state_dict())"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, struct.error) as err:
        # Arbitrary bytes reach the unpickler's stack and memo: IndexError, KeyError, struct.error.
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {err}; the file is corrupt or not a torch file"
        ) from err
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, expected a state dict"
        )
    return obj


def _unpickling_reason(err: Exception) -> str:
    """The informative line of torch's weights-only error (e.g. 'Unsupported global: ...')."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line or "Unsupported global" in line:
            return line
    return lines[0] if lines else type(err).__name__


def _as_state_dict(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    return load_state_dict_file(source)


def encoder_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The image-encoder weights of a SAM checkpoint, without the ``image_encoder.`` prefix.

    Accepts a plain SAM state dict (the published files) and a micro-sam training checkpoint
    ``{"model_state": {"sam.image_encoder...": ...}, ...}``. Prompt encoder and mask decoder keys
    are dropped (AIS does not use them).
    """
    state = checkpoint.get("model_state", checkpoint)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"'model_state' is a {type(state).__name__}, expected a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("sam.") :] if key.startswith("sam.") else key
        if name.startswith(_ENCODER_PREFIX):
            out[name[len(_ENCODER_PREFIX) :]] = value
    if not out:
        sample = sorted(state)[:5]
        raise CheckpointError(
            f"no 'image_encoder.*' keys in the SAM checkpoint (first keys: {sample}); "
            "expected a SAM state dict such as vit_b_histopathology"
        )
    return out


def infer_model_type(encoder_sd: Mapping[str, torch.Tensor]) -> str:
    """``vit_b`` / ``vit_l`` / ``vit_h`` from the patch-embedding width of an encoder state dict."""
    weight = encoder_sd.get("patch_embed.proj.weight")
    if weight is None:
        raise CheckpointError("encoder weights lack 'patch_embed.proj.weight'; not a SAM encoder")
    width = int(weight.shape[0])
    for model_type, spec in ENCODER_SPECS.items():
        if spec["embed_dim"] == width:
            return model_type
    raise CheckpointError(
        f"SAM encoder embedding width {width} matches no known size; expected 768, 1024 or 1280"
    )


def _fmt_keys(keys: set[str]) -> str:
    shown = sorted(keys)[:_LIST_LIMIT]
    more = f" (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else ""
    return f"{shown}{more}"


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming key and shape mismatches."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{what} keys do not match: missing {_fmt_keys(missing)}, unexpected "
            f"{_fmt_keys(unexpected)}; expected the published PathoSAM layout"
        )
    wrong = {
        k: (tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape
    }
    if wrong:
        first = dict(sorted(wrong.items())[:_LIST_LIMIT])
        raise CheckpointError(
            f"{what} tensor shapes do not match (key: (got, expected)): {first}; "
            "the file is for a different model size or variant"
        )
    module.load_state_dict(state, strict=True)


def load_image_encoder(
    source: str | os.PathLike[str] | Mapping[str, Any],
    model_type: str | None = None,
    *,
    sdpa: bool = False,
    **overrides: Any,
) -> ImageEncoderViT:
    """Build SAM's image encoder and load a checkpoint into it strictly.

    Parameters
    ----------
    source : path or state dict
        A SAM checkpoint (plain, or ``model_state`` with ``sam.`` prefix).
    model_type : {"vit_b", "vit_l", "vit_h"}, optional
        Expected size; inferred from the weights when None. A mismatch is an error.
    sdpa : bool
        Use the SDPA attention path (same weights).
    **overrides
        Architecture overrides (tiny test encoders), see ``build_image_encoder``.
    """
    encoder_sd = encoder_state_dict(_as_state_dict(source))
    found = infer_model_type(encoder_sd) if not overrides else (model_type or "vit_b")
    if model_type is not None and found != model_type:
        raise CheckpointError(
            f"checkpoint holds a {found} encoder, expected {model_type}; "
            "pass the checkpoint that belongs to the chosen model"
        )
    encoder = build_image_encoder(found, sdpa=sdpa, **overrides)
    load_strict(encoder, encoder_sd, f"SAM {found} image encoder")
    return encoder


def detect_decoder_variant(state: Mapping[str, Any]) -> bool:
    """True for the conv-transpose variant, False for interpolation (reference §2.3 rule).

    micro-sam's rule: conv-transpose if any ``decoder.samplers*`` key contains ``.block.``. We
    also require all eight upsamplers to agree and raise on a mixed state dict.
    """
    votes: dict[str, bool] = {}
    for prefix in _UPSAMPLERS:
        names = [k[len(prefix) :] for k in state if k.startswith(prefix + ".")]
        if any(n.startswith(".block.") for n in names):
            votes[prefix] = True
        elif any(n.startswith(".conv.") for n in names):
            votes[prefix] = False
    if len(votes) != len(_UPSAMPLERS):
        missing = sorted(set(_UPSAMPLERS) - set(votes))
        raise CheckpointError(
            f"decoder state dict lacks upsampler weights for {missing}; "
            "expected a UNETR decoder file such as vit_b_histopathology_decoder"
        )
    if len(set(votes.values())) != 1:
        transposed = sorted(k for k, v in votes.items() if v)
        raise CheckpointError(
            f"decoder mixes upsampler variants (conv-transpose: {transposed}, others "
            "interpolation); expected one variant for all upsamplers"
        )
    return next(iter(votes.values()))


def load_decoder(
    source: str | os.PathLike[str] | Mapping[str, Any],
    out_channels: int | None = None,
    **kwargs: Any,
) -> AISDecoder:
    """Build the UNETR decoder matching a decoder checkpoint and load it strictly.

    Parameters
    ----------
    source : path or state dict
        A decoder state dict (66 keys), or a training checkpoint with ``decoder_state``.
    out_channels : int, optional
        Expected output channels (3 AIS, 6 PanNuke); taken from ``out_conv.bias`` when None.
    **kwargs
        Passed to :class:`AISDecoder` (``in_channels``, ``width`` for test decoders).
    """
    state = _as_state_dict(source)
    if "decoder_state" in state and isinstance(state["decoder_state"], Mapping):
        state = dict(state["decoder_state"])
    use_conv_transpose = detect_decoder_variant(state)
    bias = state.get("out_conv.bias")
    if bias is None:
        raise CheckpointError("decoder state dict lacks 'out_conv.bias'; not a UNETR decoder")
    found = int(bias.shape[0])
    if out_channels is not None and found != out_channels:
        raise CheckpointError(
            f"decoder has {found} output channels, expected {out_channels}; "
            "AIS decoders have 3, the PanNuke semantic decoder 6"
        )
    decoder = AISDecoder(found, use_conv_transpose, **kwargs)
    variant = "conv-transpose" if use_conv_transpose else "interpolation"
    load_strict(decoder, state, f"UNETR decoder ({variant})")
    logger.debug("loaded %s decoder with %d output channels", variant, found)
    return decoder
