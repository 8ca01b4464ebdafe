"""``pathosam-wsi finetune``: trains from folders, segment runs its decoder, bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.config import ModelConfig, WatershedConfig
from pathosam_wsi.model.registry import build_model
from pathosam_wsi.model.unet_maps import load_unet_checkpoint, predict_maps
from pathosam_wsi.postprocess.watershed import ais_watershed
from tests.finetune.conftest import pair_folders, synthetic_pair
from tests.helpers import read_outputs, same_partition
from tests.synthetic import write_pyramid

TINY_ARGS = ["--init", "none", "--widths", "8,16", "--epochs", "2", "--steps", "3",
             "--crop", "64", "--lr", "0.01", "--val-frac", "0.25", "-q"]  # fmt: skip


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    images, labels = pair_folders(root)
    out = root / "run"
    code, output = _run(["finetune", "--images", str(images), "--labels", str(labels),
                         "-o", str(out), *TINY_ARGS])  # fmt: skip
    assert code == 0, output
    return out


def test_finetune_writes_checkpoints_and_resumes(trained: Path, tmp_path: Path) -> None:
    assert (trained / "decoder.pt").is_file()
    assert (trained / "last.pt").is_file()
    root = trained.parent
    argv = ["finetune", "--images", str(root / "images"), "--labels", str(root / "labels")]
    code, output = _run([*argv, "-o", str(trained), *TINY_ARGS])
    assert code == 2
    assert output.strip().startswith("error:")
    assert "--resume" in output


def test_trained_decoder_in_segment_gives_the_maps_of_its_own_evaluation(
    trained: Path, tmp_path: Path
) -> None:
    decoder = trained / "decoder.pt"
    image, _ = synthetic_pair(7, side=200)
    net, train_mpp = load_unet_checkpoint(decoder)
    own_maps = predict_maps(net, image)  # what finetune's held-out evaluation computes
    model = build_model(ModelConfig(name="learned", decoder=str(decoder)), mpp=train_mpp)
    np.testing.assert_array_equal(model.predict([image])[0].ais, own_maps)

    slide = write_pyramid(tmp_path / "s.tiff", image, train_mpp, levels=1)
    code, output = _run(["segment", str(slide), "-o", str(tmp_path / "out"), "--model", "learned",
                         "--decoder", str(decoder), "--no-tissue-mask", "-q"])  # fmt: skip
    assert code == 0, output
    labels, _ = read_outputs(tmp_path / "out" / "s")
    # One block covers the slide, so segment's labels are the watershed of those same maps.
    assert same_partition(labels, ais_watershed(own_maps, WatershedConfig()))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([], "no training data"),
        (["--images", "{images}"], "--images and --labels go together"),
        (["--images", "{root}/nope", "--labels", "{labels}"], "does not exist"),
        (["--images", "{images}", "--labels", "{labels}", "--widths", "8"], "--widths"),
        (["--images", "{images}", "--labels", "{labels}", "--crop", "50"], "crop_px"),
        (["--images", "{images}", "--labels", "{labels}", "--init", "{bogus}"], "checkpoint"),
        (["--slide", "{root}/s.tiff"], "--annotations"),
        (["--images", "{images}", "--labels", "{labels}", "--colour-jitter", "2"], "colour_jitter"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_2(
    tmp_path: Path, args: list[str], match: str
) -> None:
    images, labels = pair_folders(tmp_path)
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    fmt = {"images": images, "labels": labels, "root": tmp_path, "bogus": bogus}
    argv = ["finetune", "-o", str(tmp_path / "run"), "-q", *(a.format(**fmt) for a in args)]
    if "--init" not in args:
        argv += ["--init", "none"]
    code, output = _run(argv)
    assert code == 2, output
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert match in lines[0]
