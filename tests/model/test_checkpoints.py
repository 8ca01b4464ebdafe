"""Safe strict checkpoint loading (docs/pathosam-reference.md §1.4, §2)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model.checkpoints import (
    detect_decoder_variant,
    encoder_state_dict,
    infer_model_type,
    load_decoder,
    load_image_encoder,
    load_state_dict_file,
)
from pathosam_wsi.model.sam_encoder import build_image_encoder
from pathosam_wsi.model.synthetic_weights import (
    deterministic_state_dict,
    state_dict_sha256,
    synthetic_decoder_state_dict,
)
from pathosam_wsi.model.unetr_decoder import AISDecoder


def _tiny_sam_file(tmp_path: Path, kwargs: dict, layout: str) -> tuple[Path, dict]:
    """A SAM-format file around a tiny encoder: plain, or model_state with 'sam.' prefix."""
    encoder_sd = deterministic_state_dict(build_image_encoder("vit_b", **kwargs).state_dict(), 7)
    full = {f"image_encoder.{k}": v for k, v in encoder_sd.items()}
    full["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.zeros(2, 128)
    full["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)
    if layout == "model_state":
        full = {"model_state": {f"sam.{k}": v for k, v in full.items()}, "decoder_state": {}}
    path = tmp_path / f"sam_{layout}.pt"
    torch.save(full, path)
    return path, encoder_sd


@pytest.mark.parametrize("layout", ["plain", "model_state"])
def test_encoder_layouts_load_strictly(
    tmp_path: Path, tiny_encoder_kwargs: dict, layout: str
) -> None:
    path, expected = _tiny_sam_file(tmp_path, tiny_encoder_kwargs, layout)
    encoder = load_image_encoder(path, "vit_b", **tiny_encoder_kwargs)
    assert state_dict_sha256(encoder.state_dict()) == state_dict_sha256(expected)
    assert not encoder.training


def test_encoder_missing_and_unexpected_keys_listed(
    tmp_path: Path, tiny_encoder_kwargs: dict
) -> None:
    path, _ = _tiny_sam_file(tmp_path, tiny_encoder_kwargs, "plain")
    sd = torch.load(path, weights_only=True)
    del sd["image_encoder.neck.3.bias"]
    sd["image_encoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError, match=r"missing \['neck.3.bias'\].*unexpected \['extra.weight'\]"
    ):
        load_image_encoder(sd, "vit_b", **tiny_encoder_kwargs)


def test_encoder_shape_mismatch(tiny_encoder_kwargs: dict) -> None:
    sd = build_image_encoder("vit_b", **tiny_encoder_kwargs).state_dict()
    sd = {f"image_encoder.{k}": v for k, v in sd.items()}
    other = dict(tiny_encoder_kwargs, window_size=4)  # different rel-pos table lengths
    with pytest.raises(CheckpointError, match="shapes"):
        load_image_encoder(sd, "vit_b", **other)


def test_encoder_without_encoder_keys() -> None:
    with pytest.raises(CheckpointError, match="image_encoder"):
        encoder_state_dict({"mask_decoder.x": torch.zeros(1)})


def test_infer_model_type() -> None:
    for width, name in ((768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")):
        assert infer_model_type({"patch_embed.proj.weight": torch.empty(width, 3, 16, 16)}) == name
    with pytest.raises(CheckpointError, match="512"):
        infer_model_type({"patch_embed.proj.weight": torch.empty(512, 3, 16, 16)})


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_with_code_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    payload = {"out_conv.bias": _Exploit(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    for loader in (load_state_dict_file, load_decoder, load_image_encoder):
        with pytest.raises(CheckpointError, match="refusing"):
            loader(path)
    assert not marker.exists()


def test_corrupt_missing_and_non_dict_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 20)
    with pytest.raises(CheckpointError):
        load_state_dict_file(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pt")
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(CheckpointError, match="list"):
        load_state_dict_file(listing)


@pytest.mark.parametrize("conv_transpose", [True, False])
def test_decoder_variant_detected_and_loaded(tmp_path: Path, conv_transpose: bool) -> None:
    sd = synthetic_decoder_state_dict(conv_transpose)
    assert detect_decoder_variant(sd) is conv_transpose
    path = tmp_path / "decoder.pt"
    torch.save(sd, path)
    decoder = load_decoder(path, 3)
    assert decoder.use_conv_transpose is conv_transpose
    assert state_dict_sha256(decoder.state_dict()) == state_dict_sha256(sd)
    wrapped = load_decoder({"decoder_state": sd, "model_state": {}})
    assert state_dict_sha256(wrapped.state_dict()) == state_dict_sha256(sd)


def test_decoder_mixed_variants_refused() -> None:
    sd = dict(synthetic_decoder_state_dict(True))
    interp = synthetic_decoder_state_dict(False)
    for suffix in ("weight", "bias"):
        del sd[f"deconv_out.block.{suffix}"]
        sd[f"deconv_out.conv.{suffix}"] = interp[f"deconv_out.conv.{suffix}"]
    with pytest.raises(CheckpointError, match="mixes"):
        detect_decoder_variant(sd)


def test_decoder_missing_keys_and_channels() -> None:
    sd = dict(synthetic_decoder_state_dict(True))
    del sd["base.block.4.bias"]
    with pytest.raises(CheckpointError, match=r"missing \['base.block.4.bias'\]"):
        load_decoder(sd)
    semantic = synthetic_decoder_state_dict(True, out_channels=6)
    assert load_decoder(semantic).out_channels == 6
    with pytest.raises(CheckpointError, match="6 output channels, expected 3"):
        load_decoder(semantic, 3)
    with pytest.raises(CheckpointError, match="upsampler"):
        detect_decoder_variant({"out_conv.bias": torch.zeros(3)})


def test_tiny_decoder_roundtrip(tiny_decoder_kwargs: dict) -> None:
    decoder = AISDecoder(3, False, **tiny_decoder_kwargs)
    sd = deterministic_state_dict(decoder.state_dict(), 5)
    loaded = load_decoder(sd, 3, **tiny_decoder_kwargs)
    assert state_dict_sha256(loaded.state_dict()) == state_dict_sha256(sd)


@pytest.mark.slow
def test_full_vit_b_generated_checkpoint_loads(tmp_path: Path) -> None:
    from pathosam_wsi.cli.models import write_test_checkpoint
    from pathosam_wsi.model.synthetic_weights import synthetic_sam_state_dict

    sam, dec = tmp_path / "sam.pt", tmp_path / "dec.pt"
    write_test_checkpoint(sam, dec)
    encoder = load_image_encoder(sam)
    expected = encoder_state_dict(synthetic_sam_state_dict("vit_b"))
    assert state_dict_sha256(encoder.state_dict()) == state_dict_sha256(expected)
    decoder = load_decoder(dec, 3)
    assert state_dict_sha256(decoder.state_dict()) == state_dict_sha256(
        synthetic_decoder_state_dict()
    )
    with pytest.raises(CheckpointError, match="vit_b encoder, expected vit_l"):
        load_image_encoder(sam, "vit_l")
