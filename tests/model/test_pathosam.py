"""The registered PathoSAM models (NucleusModel protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import CheckpointError, ConfigError
from pathosam_wsi.model.pathosam import PANNUKE_CLASSES, build_pathosam, build_tiny_random
from pathosam_wsi.model.registry import available_models


def test_models_registered() -> None:
    import pathosam_wsi.model.pathosam  # noqa: F401

    for name in (
        "vit_b_histopathology",
        "vit_l_histopathology",
        "vit_h_histopathology",
        "sam_tiny_random",
    ):
        assert name in available_models()


def test_tiny_model_predict(he_tile) -> None:
    model = build_tiny_random(ModelConfig(name="sam_tiny_random", device="cpu"), 0.25)
    assert model.name == "sam_tiny_random"
    assert model.class_names is None
    tiles = [he_tile(512, 512, 0), he_tile(200, 384, 1)]
    out = model.predict(tiles)
    assert [o.ais.shape for o in out] == [(3, 512, 512), (3, 200, 384)]
    assert all(o.semantic is None and o.ais.dtype == np.float32 for o in out)
    assert all(o.ais.min() >= 0.0 and o.ais.max() <= 1.0 for o in out)


def test_tiny_model_with_classes(he_tile) -> None:
    config = ModelConfig(name="sam_tiny_random", classes=True, device="cpu", batch_size=2)
    model = build_tiny_random(config, 0.25)
    assert model.class_names == PANNUKE_CLASSES
    assert PANNUKE_CLASSES[1:] == ("neoplastic", "inflammatory", "connective", "dead", "epithelial")
    (out,) = model.predict([he_tile(256, 320, 2)])
    assert out.semantic is not None
    assert out.semantic.shape == (6, 256, 320)
    assert out.semantic.dtype == np.float32


def test_missing_local_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    config = ModelConfig(
        name="vit_b_histopathology",
        checkpoint=str(tmp_path / "none.pt"),
        decoder=str(tmp_path / "none_dec.pt"),
    )
    with pytest.raises(CheckpointError, match="does not exist"):
        build_pathosam(config, 0.25)


def test_classes_need_a_semantic_decoder(monkeypatch, tmp_path: Path) -> None:
    from pathosam_wsi.model import pathosam

    monkeypatch.setattr(pathosam, "fetch_weights", lambda name: tmp_path / name)
    with pytest.raises(ConfigError, match="vit_b_histopathology only"):
        pathosam._weight_path(None, "vit_l_histopathology", "semantic_decoder")
    assert pathosam._weight_path(None, "vit_b_histopathology", "semantic_decoder") == (
        tmp_path / "vit_b_histopathology_semantic_segmentation_decoder"
    )


@pytest.mark.slow
def test_vit_b_end_to_end_with_generated_checkpoint(tmp_path: Path, he_tile) -> None:
    from pathosam_wsi.cli.models import write_test_checkpoint

    sam, dec, sem = tmp_path / "sam.pt", tmp_path / "dec.pt", tmp_path / "sem.pt"
    write_test_checkpoint(sam, dec, sem)
    config = ModelConfig(
        name="vit_b_histopathology",
        checkpoint=str(sam),
        decoder=str(dec),
        semantic_decoder=str(sem),
        classes=True,
        device="cpu",
        batch_size=1,
    )
    model = build_pathosam(config, 0.25)
    (out,) = model.predict([he_tile(512, 512, 0)])
    assert out.ais.shape == (3, 512, 512)
    assert out.semantic is not None
    assert out.semantic.shape == (6, 512, 512)
    assert np.isfinite(out.ais).all()


def test_class_names_known_without_building_the_model() -> None:
    from pathosam_wsi.config import ModelConfig
    from pathosam_wsi.model.pathosam import PANNUKE_CLASSES
    from pathosam_wsi.model.registry import model_class_names

    assert (
        model_class_names(ModelConfig(name="vit_b_histopathology", classes=True)) == PANNUKE_CLASSES
    )
    assert model_class_names(ModelConfig(name="vit_b_histopathology")) is None
    assert model_class_names(ModelConfig(name="classical", classes=True)) is None
