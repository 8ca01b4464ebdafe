"""The shipped ``learned`` model: hash-checked weights, declared pixel-size range, map contract."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model import learned
from pathosam_wsi.model.registry import available_models, build_model, model_mpp_range
from pathosam_wsi.model.unet_maps import MapsUNet, load_unet_checkpoint, unet_checkpoint
from tests.synthetic import draw_nuclei, grid_centres


def _tile(h: int, w: int) -> np.ndarray:
    rgb, _ = draw_nuclei(h, w, grid_centres(h, w, 24, 12, 3, seed=0), radius_px=7.0, seed=0)
    return rgb


def test_registered_with_a_pixel_size_range() -> None:
    assert "learned" in available_models()
    lo, hi = model_mpp_range(ModelConfig(name="learned"))  # type: ignore[misc]
    assert lo <= 0.25 <= hi


def test_shipped_weights_are_small_and_hash_checked(tmp_path: Path) -> None:
    assert learned.LEARNED_WEIGHTS.stat().st_size <= 10 * 2**20
    _, train_mpp = learned.load_shipped_weights()
    assert train_mpp == pytest.approx(0.25)
    damaged = tmp_path / "w.pt"
    shutil.copyfile(learned.LEARNED_WEIGHTS, damaged)
    with damaged.open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(CheckpointError, match="sha256"):
        learned.load_shipped_weights(damaged)
    with pytest.raises(CheckpointError, match="missing"):
        learned.load_shipped_weights(tmp_path / "none.pt")


def test_maps_have_the_tile_size_and_range_at_every_supported_mpp() -> None:
    tile = _tile(200, 150)  # not a multiple of the U-Net's stride
    for mpp in (*learned.SUPPORTED_MPP, 0.25):
        model = build_model(ModelConfig(name="learned", device="cpu"), mpp)
        [out] = model.predict([tile])
        assert out.ais.shape == (3, 200, 150)
        assert out.ais.dtype == np.float32
        assert out.ais.min() >= 0.0
        assert out.ais.max() <= 1.0


def test_a_tile_does_not_depend_on_its_batch() -> None:
    model = build_model(ModelConfig(name="learned", device="cpu"), 0.25)
    a, b = _tile(96, 96), _tile(128, 64)[::-1].copy()
    alone = model.predict([a])[0].ais
    np.testing.assert_array_equal(model.predict([b, a])[1].ais, alone)


def test_decoder_option_loads_a_finetuned_checkpoint_and_refuses_others(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "ft.pt"
    torch.save(unet_checkpoint(MapsUNet((4, 8)), 0.5), path)
    model = build_model(ModelConfig(name="learned", decoder=str(path)), 0.5)
    assert model.net.widths == (4, 8)  # type: ignore[attr-defined]
    assert model.scale == pytest.approx(1.0)  # type: ignore[attr-defined]
    other = tmp_path / "other.pt"
    torch.save({"out_conv.bias": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="finetune"):
        build_model(ModelConfig(name="learned", decoder=str(other)), 0.5)
    net, mpp = load_unet_checkpoint(path)
    assert mpp == 0.5
    assert not net.training
