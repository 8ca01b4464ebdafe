"""The training loop: overfits a tiny set, same bytes for one seed on CPU, resume = no break."""

from __future__ import annotations

import dataclasses
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from pathosam_wsi.finetune.data import Sample
from pathosam_wsi.finetune.train import TrainConfig, evaluate_msa, train
from pathosam_wsi.model.unet_maps import load_unet_checkpoint
from tests.finetune.conftest import TINY, Interrupted, stop_after


def test_overfits_a_tiny_synthetic_set(tiny_samples: list[Sample], tmp_path: Path) -> None:
    history = train(tiny_samples, tmp_path, TINY)
    assert [h.epoch for h in history] == list(range(1, TINY.epochs + 1))
    assert history[-1].loss < history[0].loss
    assert history[-1].train_msa >= 0.9
    net, train_mpp = load_unet_checkpoint(tmp_path / "decoder.pt")
    assert train_mpp == TINY.train_mpp
    assert evaluate_msa(net, tiny_samples) >= 0.9  # the saved file, not the in-memory net


def test_one_seed_gives_the_same_checkpoint_bytes(
    tiny_samples: list[Sample], tmp_path: Path
) -> None:
    cfg = dataclasses.replace(TINY, epochs=2, eval_train=False)
    train(tiny_samples, tmp_path / "a", cfg)
    train(tiny_samples, tmp_path / "b", cfg)
    train(tiny_samples, tmp_path / "c", dataclasses.replace(cfg, seed=cfg.seed + 1))
    a = (tmp_path / "a" / "last.pt").read_bytes()
    assert a == (tmp_path / "b" / "last.pt").read_bytes()
    assert a != (tmp_path / "c" / "last.pt").read_bytes()
    assert (tmp_path / "a" / "decoder.pt").read_bytes() == (
        tmp_path / "b" / "decoder.pt"
    ).read_bytes()


def test_resume_equals_an_uninterrupted_run(tiny_samples: list[Sample], tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, epochs=3, eval_train=False, val_frac=0.25)
    full = train(tiny_samples, tmp_path / "full", cfg)
    with pytest.raises(Interrupted):
        train(tiny_samples, tmp_path / "part", cfg, on_epoch=stop_after(2))
    resumed = train(tiny_samples, tmp_path / "part", cfg, resume=True)
    np.testing.assert_equal([astuple(h) for h in resumed], [astuple(h) for h in full])
    assert (tmp_path / "part" / "last.pt").read_bytes() == (
        tmp_path / "full" / "last.pt"
    ).read_bytes()


def test_held_out_msa_is_logged_every_epoch(tiny_samples: list[Sample], tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, epochs=2, eval_train=False, val_frac=0.3)
    history = train(tiny_samples, tmp_path, cfg)
    assert all(0.0 <= h.val_msa <= 1.0 for h in history)


def test_bad_training_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="crop_px"):
        TrainConfig(crop_px=50)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
