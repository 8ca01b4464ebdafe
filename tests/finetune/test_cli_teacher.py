"""``finetune --teacher``: the trainer gets refine_labels' labels at the training mpp; bad input
exits 2 with one line and writes nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pathosam_wsi.cli import main
from pathosam_wsi.finetune import train as train_module
from pathosam_wsi.finetune.data import Sample, load_pairs, rescale_sample
from pathosam_wsi.finetune.teacher import refine_labels
from pathosam_wsi.model import prompt_models
from pathosam_wsi.model.checkpoints import load_state_dict_file
from pathosam_wsi.model.unet_maps import MapsUNet, unet_checkpoint
from tests.finetune.conftest import synthetic_pair
from tests.finetune.test_teacher import BoxTeacher

TRAIN_MPP = 0.25
IMAGE_MPP = 0.5  # the pairs are upsampled 2x before the teacher sees them


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """Two image/label pairs (one with a 1x2-px nucleus the stand-in returns empty) and a tiny
    U-Net checkpoint trained at ``TRAIN_MPP``."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for i in range(2):
        image, lab = synthetic_pair(i)
        if i == 0:
            assert (lab[:1, :2] == 0).all()
            lab[:1, :2] = lab.max() + 1
        Image.fromarray(image).save(images / f"p{i}.png")
        np.save(labels / f"p{i}.npy", lab)
    init = tmp_path / "init.pt"
    torch.save(unet_checkpoint(MapsUNet((4, 8)), TRAIN_MPP), init)
    weights = tmp_path / "teacher.pt"
    weights.write_bytes(b"stand-in weights: the loader is replaced")
    return {"images": images, "labels": labels, "init": init, "weights": weights,
            "out": tmp_path / "run"}  # fmt: skip


def _argv(data: dict[str, Path], *extra: str) -> list[str]:
    return ["finetune", "--images", str(data["images"]), "--labels", str(data["labels"]),
            "--image-mpp", str(IMAGE_MPP), "--init", str(data["init"]), "--epochs", "1",
            "--steps", "1", "--crop", "32", "-q", "-o", str(data["out"]), *extra]  # fmt: skip


class _Spy:
    """Stands in for the loader and the trainer; records what they were given."""

    def __init__(self) -> None:
        self.loads: list[tuple[str, Any]] = []
        self.samples: list[Sample] = []
        self.cfg: Any = None

    def load(self, name: str, checkpoint: Any = None, *, device: str = "cpu") -> BoxTeacher:
        self.loads.append((name, checkpoint))
        return BoxTeacher()

    def train(self, samples: list[Sample], out_dir: Path, cfg: Any, **_: Any) -> list[Any]:
        self.samples, self.cfg = list(samples), cfg
        return []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    spy = _Spy()
    monkeypatch.setattr(prompt_models, "load_prompt_model", spy.load)
    monkeypatch.setattr(train_module, "train", spy.train)
    return spy


def _given(data: dict[str, Path]) -> list[Sample]:
    """The samples as finetune resizes them to the training mpp, before any teacher."""
    pairs = load_pairs(data["images"], data["labels"])
    return [rescale_sample(s, IMAGE_MPP / TRAIN_MPP) for s in pairs]


def test_teacher_replaces_the_labels_the_trainer_gets_by_refine_labels(
    data: dict[str, Path], spy: _Spy
) -> None:
    result = CliRunner().invoke(main, _argv(data, "--teacher", "litemedsam"))
    assert result.exit_code == 0, result.output
    assert spy.loads == [("litemedsam", None)]
    given = _given(data)
    assert [s.name for s in spy.samples] == [s.name for s in given]
    dropped = 0
    for got, src in zip(spy.samples, given, strict=True):
        assert got.labels.shape == (192, 192)  # taught at the training mpp, not the file's
        np.testing.assert_array_equal(got.image, src.image)
        expected = refine_labels(src.image, src.labels, BoxTeacher())  # type: ignore[arg-type]
        np.testing.assert_array_equal(got.labels, expected)
        assert not np.array_equal(got.labels, src.labels)
        n_before, n_after = np.unique(src.labels).size - 1, np.unique(expected).size - 1
        dropped += n_before - n_after
        assert f"{src.name}: {n_before} nuclei" in result.output
        assert f"-> {n_after} (median" in result.output
    assert dropped >= 1  # the 1x2-px nucleus
    assert f"{dropped} dropped" in result.output
    assert spy.cfg.teacher == "litemedsam"
    assert spy.cfg.teacher_sha256 is None  # registry weights


def test_teacher_none_leaves_the_labels_untouched(data: dict[str, Path], spy: _Spy) -> None:
    result = CliRunner().invoke(main, _argv(data))  # --teacher none is the default
    assert result.exit_code == 0, result.output
    assert spy.loads == []
    given = _given(data)
    assert len(spy.samples) == len(given)
    for got, src in zip(spy.samples, given, strict=True):
        np.testing.assert_array_equal(got.labels, src.labels)
    assert spy.cfg.teacher is None
    assert "teacher" not in result.output


def test_teacher_checkpoint_goes_to_the_loader_and_its_sha256_into_both_checkpoints(
    data: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy()
    monkeypatch.setattr(prompt_models, "load_prompt_model", spy.load)
    weights = data["weights"]
    argv = _argv(data, "--teacher", "litemedsam", "--teacher-checkpoint", str(weights))
    result = CliRunner().invoke(main, argv)  # real training: one step of a 4/8-channel U-Net
    assert result.exit_code == 0, result.output
    assert spy.loads == [("litemedsam", weights)]
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    for name in ("decoder.pt", "last.pt"):
        ckpt = load_state_dict_file(data["out"] / name)
        assert ckpt["teacher"] == {"name": "litemedsam", "checkpoint_sha256": sha}
    # resuming with other labels (no teacher) would mix two label sources in one run
    last = (data["out"] / "last.pt").read_bytes()
    result = CliRunner().invoke(main, [*_argv(data), "--resume"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert "pass the same --teacher" in result.output
    assert (data["out"] / "last.pt").read_bytes() == last


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--teacher", "bogus"], "--teacher bogus: unknown prompt model 'bogus'"),
        (["--teacher", "litemedsam", "--teacher-checkpoint", "{bad}"], "cannot read checkpoint"),
        (["--teacher-checkpoint", "{bad}"], "--teacher-checkpoint without --teacher"),
        (["--teacher", "litemedsam", "--teacher-checkpoint", "{missing}"], "does not exist"),
    ],
)
def test_bad_teacher_gives_one_error_line_exit_2_and_writes_nothing(
    data: dict[str, Path], extra: list[str], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*_: Any, **__: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(train_module, "train", no_training)
    bad = data["weights"]  # not a torch file; the real loader reads it
    fmt = {"bad": bad, "missing": bad.with_name("nope.pt")}
    result = CliRunner().invoke(main, _argv(data, *(a.format(**fmt) for a in extra)))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert match in lines[0]
    assert not data["out"].exists()
