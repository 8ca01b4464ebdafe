"""``finetune --model sam_tiny_random``: the UNETR AIS decoder learns over the frozen SAM encoder.

The synthetic images are 96 px wide and 192 px tall with half held out: every held-out square and
training part is one 96-px evaluation window (= the crop, which the tiny model resizes to its
256-px encoder input), so the trainer's evaluation predicts each as ``segment`` predicts a slide
that fits in one block. (Held-out strips much flatter than the crops score 0 here: the decoder
never saw the zero padding that fills most of their encoder input.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.config import ModelConfig, WatershedConfig
from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.finetune.augment import Augment
from pathosam_wsi.finetune.data import Sample
from pathosam_wsi.finetune.sam_decoder import FORMAT, SamDecoderTrainable, window_starts
from pathosam_wsi.finetune.train import EpochLog, TrainConfig, evaluate_predictor, split_rows, train
from pathosam_wsi.model.checkpoints import load_state_dict_file
from pathosam_wsi.model.registry import build_model
from pathosam_wsi.model.unet_maps import MapsUNet, unet_checkpoint
from pathosam_wsi.postprocess.watershed import ais_watershed
from tests.finetune.conftest import Interrupted, pair_folders, stop_after, synthetic_pair
from tests.helpers import read_outputs, same_partition
from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

SAM_TINY = TrainConfig(
    epochs=3,
    steps_per_epoch=6,
    batch_size=2,
    crop_px=96,
    lr=2e-2,
    val_frac=0.5,
    eval_train=True,
    augment=Augment(enabled=False),
    seed=3,
)
"""About 1 s per epoch on one core: the tiny decoder runs at 256 px whatever the crop."""


def _samples() -> list[Sample]:
    """Two 192x96 (h, w) images with about 18 nuclei each; the lower halves are held out."""
    out = []
    for i in range(2):
        centres = grid_centres(192, 96, spacing_px=20, offset_px=12, jitter=2, seed=i)
        out.append(Sample(f"s{i}", *draw_nuclei(192, 96, centres, radius_px=6.0, seed=i)))
    return out


def _model() -> SamDecoderTrainable:
    return SamDecoderTrainable.build("sam_tiny_random", window_px=SAM_TINY.crop_px)


@dataclass
class _Run:
    out: Path
    history: list[EpochLog]
    model: SamDecoderTrainable
    encoder_before: dict[str, torch.Tensor]
    own_maps: list[npt.NDArray[np.float32]]
    """The trainer's own predictor's maps of ``PROBE`` after every epoch."""


PROBE = synthetic_pair(7)[0]
"""A 96x96 image the training never sees."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> _Run:
    model = _model()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    own_maps: list[npt.NDArray[np.float32]] = []

    def on_epoch(log: EpochLog) -> None:
        own_maps.append(model.predictor()(PROBE).copy())

    out = tmp_path_factory.mktemp("samft")
    history = train(_samples(), out, SAM_TINY, model=model, on_epoch=on_epoch)
    return _Run(out, history, model, before, own_maps)


def _best(history: list[EpochLog]) -> int:
    """Index of the epoch ``decoder.pt`` holds: the first with the highest held-out mSA."""
    return int(np.argmax([h.val_msa for h in history]))


def test_loss_falls_and_msa_rises_over_three_epochs(trained: _Run) -> None:
    h = trained.history
    assert [e.epoch for e in h] == [1, 2, 3]
    assert h[-1].loss < 0.5 * h[0].loss
    # Not the U-Net test's 0.9: 18 steps of two crops over a random frozen 32-channel encoder
    # reach about 0.73 train / 0.59 held-out mSA here (from 0.04 / 0.13 after the first epoch,
    # whose one-cycle warm-up keeps the rate low); the bar is a clear rise to a useful level.
    assert h[-1].train_msa >= max(0.5, h[0].train_msa + 0.3)
    assert max(e.val_msa for e in h) >= max(0.4, h[0].val_msa + 0.3)


def test_encoder_weights_are_unchanged_and_frozen(trained: _Run) -> None:
    after = trained.model.encoder.state_dict()
    assert after.keys() == trained.encoder_before.keys()
    for key, value in trained.encoder_before.items():
        assert torch.equal(after[key], value), key
    assert not any(p.requires_grad for p in trained.model.encoder.parameters())
    fresh = _model().encoder.state_dict()  # sam_tiny_random's own encoder, never trained
    assert all(torch.equal(fresh[k], v) for k, v in after.items())
    decoder = load_state_dict_file(trained.out / "decoder.pt")
    start = _model().decoder.state_dict()
    assert not all(torch.equal(start[k], v) for k, v in decoder["decoder_state"].items())


def test_decoder_pt_in_segment_gives_the_trainers_own_maps_and_msa(
    trained: _Run, tmp_path: Path
) -> None:
    decoder = trained.out / "decoder.pt"
    ckpt = load_state_dict_file(decoder)
    assert (ckpt["format"], ckpt["model"]) == (FORMAT, "sam_tiny_random")
    best = _best(trained.history)
    model = build_model(ModelConfig(name="sam_tiny_random", decoder=str(decoder)), mpp=0.25)
    np.testing.assert_array_equal(model.predict([PROBE])[0].ais, trained.own_maps[best])

    def predict(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        return model.predict([image])[0].ais

    held_out = [v for _, v in (split_rows(s, SAM_TINY.val_frac) for s in _samples())]
    assert evaluate_predictor(predict, [v for v in held_out if v is not None]) == (
        trained.history[best].val_msa
    )

    slide = write_pyramid(tmp_path / "s.tiff", PROBE, 0.25, levels=1)
    result = CliRunner().invoke(main, ["segment", str(slide), "-o", str(tmp_path / "out"),
                                       "--model", "sam_tiny_random", "--decoder", str(decoder),
                                       "--no-tissue-mask", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    labels, _ = read_outputs(tmp_path / "out" / "s")
    # One block covers the slide: segment's labels are the watershed of those same maps.
    expected = ais_watershed(trained.own_maps[best], WatershedConfig())
    assert expected.max() > 0
    assert same_partition(labels, expected)


def test_one_seed_gives_the_same_decoder_bytes(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SAM_TINY, epochs=2, steps_per_epoch=3, eval_train=False)
    for name, seed in (("a", cfg.seed), ("b", cfg.seed), ("c", cfg.seed + 1)):
        train(_samples(), tmp_path / name, dataclasses.replace(cfg, seed=seed), model=_model())
    a = (tmp_path / "a" / "decoder.pt").read_bytes()
    assert a == (tmp_path / "b" / "decoder.pt").read_bytes()
    assert a != (tmp_path / "c" / "decoder.pt").read_bytes()
    assert (tmp_path / "a" / "last.pt").read_bytes() == (tmp_path / "b" / "last.pt").read_bytes()


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SAM_TINY, epochs=2, steps_per_epoch=3, eval_train=False)
    train(_samples(), tmp_path / "full", cfg, model=_model())
    with pytest.raises(Interrupted):
        train(_samples(), tmp_path / "part", cfg, model=_model(), on_epoch=stop_after(1))
    train(_samples(), tmp_path / "part", cfg, model=_model(), resume=True)
    assert (tmp_path / "part" / "last.pt").read_bytes() == (
        tmp_path / "full" / "last.pt"
    ).read_bytes()


def test_resume_refuses_a_run_over_another_encoder_file(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SAM_TINY, epochs=1, steps_per_epoch=1, eval_train=False)
    train(_samples(), tmp_path, cfg, model=_model())
    assert load_state_dict_file(tmp_path / "last.pt")["encoder_checkpoint_sha256"] is None
    cfg = dataclasses.replace(cfg, epochs=2)
    other = _model()
    other.encoder_sha256 = "0" * 64  # as if built with --checkpoint FILE
    with pytest.raises(CheckpointError, match="pass the same --checkpoint"):
        train(_samples(), tmp_path, cfg, model=other, resume=True)


def test_evaluation_windows_are_full_size_and_cover_the_image() -> None:
    assert window_starts(50, 96) == [0]
    assert window_starts(96, 96) == [0]
    assert window_starts(200, 96) == [0, 96, 104]
    for n in (97, 191, 192, 500):
        starts = window_starts(n, 96)
        covered = np.zeros(n, bool)
        for s in starts:
            assert 0 <= s <= n - 96
            covered[s : s + 96] = True
        assert covered.all()


def _cli(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, [ln for ln in result.output.splitlines() if ln.strip()]


def test_cli_trains_the_decoder_and_refuses_to_resume_it_as_another_model(tmp_path: Path) -> None:
    images, labels = pair_folders(tmp_path)
    data = ["--images", str(images), "--labels", str(labels), "-o", str(tmp_path / "run")]
    tiny = ["--epochs", "1", "--steps", "2", "--batch-size", "2", "--crop", "96", "-q"]
    code, lines = _cli(["finetune", "--model", "sam_tiny_random", *data, *tiny])
    assert code == 0, lines
    assert load_state_dict_file(tmp_path / "run" / "decoder.pt")["model"] == "sam_tiny_random"
    code, lines = _cli(["finetune", "--init", "none", "--resume", *data, *tiny])
    assert code == 2, lines
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "pass --model sam_tiny_random to resume" in lines[0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--model", "sam_tiny_random", "--widths", "8,16"], "--widths is for the learned"),
        (["--model", "sam_tiny_random", "--init", "none"], "--init is for the learned"),
        (["--model", "sam_tiny_random", "--decoder", "{unet}"], "not a UNETR decoder"),
        (["--model", "sam_tiny_random", "--checkpoint", "{unet}"], "built-in random encoder"),
        (["--decoder", "{unet}"], "--decoder is for the SAM models"),
        (["--model", "vit_x"], "unknown --model"),
    ],
)
def test_bad_combinations_give_one_error_line_and_exit_2(
    tmp_path: Path, args: list[str], match: str
) -> None:
    images, labels = pair_folders(tmp_path)
    unet = tmp_path / "unet.pt"
    torch.save(unet_checkpoint(MapsUNet((8, 16)), 0.25), unet)
    argv = ["finetune", "--images", str(images), "--labels", str(labels),
            "-o", str(tmp_path / "run"), "-q", *(a.format(unet=unet) for a in args)]  # fmt: skip
    code, lines = _cli(argv)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert match in lines[0]
