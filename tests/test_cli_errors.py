"""Bad input: a clear one-line error, a non-zero exit, nothing that looks complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pathosam_wsi.cli import main
from pathosam_wsi.errors import PathoSamWarning

ARGS = ["--tile", "128", "--halo", "32", "-q"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def assert_clean_failure(code: int, output: str, out: Path, needle: str) -> None:
    assert code == 2, output
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], output
    assert (
        not any(p.is_dir() and not p.name.endswith(".partial") for p in out.glob("*"))
        if out.exists()
        else True
    )


def test_missing_file(tmp_path) -> None:
    code, out = run("segment", str(tmp_path / "nope.svs"), "-o", str(tmp_path / "out"), *ARGS)
    assert_clean_failure(code, out, tmp_path / "out", "no such file")


def test_not_an_image(tmp_path) -> None:
    bad = tmp_path / "notes.svs"
    bad.write_text("this is not a slide\n" * 100)
    code, out = run("segment", str(bad), "-o", str(tmp_path / "out"), *ARGS)
    assert_clean_failure(code, out, tmp_path / "out", "cannot open as a slide")


def test_truncated_tiff(synthetic_slide, tmp_path) -> None:
    data = synthetic_slide.path.read_bytes()
    bad = tmp_path / "truncated.tiff"
    bad.write_bytes(data[: len(data) * 2 // 3])
    code, out = run("segment", str(bad), "-o", str(tmp_path / "out"), *ARGS)
    assert code == 2 and ("truncated" in out or "cannot" in out), out
    assert not (tmp_path / "out" / "truncated").exists()


def test_no_mpp_needs_mpp(no_mpp_slide, tmp_path) -> None:
    code, out = run("segment", str(no_mpp_slide), "-o", str(tmp_path / "out"), *ARGS)
    assert_clean_failure(code, out, tmp_path / "out", "pass --mpp")
    code, out = run(
        "segment", str(no_mpp_slide), "-o", str(tmp_path / "out"), "--mpp", "0.5", *ARGS
    )
    assert code == 0, out
    assert (tmp_path / "out" / "nompp" / "run.json").exists()


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grey_and_rgba_png_are_converted(synthetic_slide, tmp_path, mode) -> None:
    rgb = synthetic_slide.rgb[:256, :256]
    img = Image.fromarray(rgb).convert(mode)
    path = tmp_path / f"crop_{mode}.png"
    img.save(path)
    code, out = run("segment", str(path), "-o", str(tmp_path / "out"), "--mpp", "0.5", *ARGS)
    assert code == 0, out
    assert (tmp_path / "out" / f"crop_{mode}" / "nuclei.parquet").exists()


def test_no_tissue_gives_valid_empty_outputs(blank_slide, tmp_path) -> None:
    import pandas as pd
    import zarr

    code, out = run("segment", str(blank_slide), "-o", str(tmp_path / "out"), *ARGS)
    assert code == 0, out
    folder = tmp_path / "out" / "blank"
    assert len(pd.read_parquet(folder / "nuclei.parquet")) == 0
    labels = zarr.open_group(str(folder / "labels.ome.zarr"), mode="r")["labels/nuclei/s0"][:]
    assert labels.shape == (512, 512) and labels.max() == 0


def test_roi_outside_slide(synthetic_slide, tmp_path) -> None:
    code, out = run(
        "segment",
        str(synthetic_slide.path),
        "-o",
        str(tmp_path / "out"),
        "--roi",
        "5000",
        "5000",
        "100",
        "100",
        *ARGS,
    )
    assert_clean_failure(code, out, tmp_path / "out", "outside the slide")


def test_existing_output_needs_overwrite(synthetic_slide, tmp_path) -> None:
    out_dir = tmp_path / "out"
    roi = ["--roi", "0", "0", "200", "200"]
    assert run("segment", str(synthetic_slide.path), "-o", str(out_dir), *roi, *ARGS)[0] == 0
    before = (out_dir / "synthetic" / "run.json").read_bytes()
    code, out = run("segment", str(synthetic_slide.path), "-o", str(out_dir), *roi, *ARGS)
    assert code == 2 and "--overwrite" in out
    assert (out_dir / "synthetic" / "run.json").read_bytes() == before
    assert (
        run("segment", str(synthetic_slide.path), "-o", str(out_dir), *roi, "--overwrite", *ARGS)[0]
        == 0
    )


def test_killed_run_leaves_nothing_complete_and_resumes(
    synthetic_slide, tmp_path, monkeypatch
) -> None:
    import pathosam_wsi.pipeline.blocks as blocks
    from pathosam_wsi import RunConfig, segment_slide
    from pathosam_wsi.config import TilingConfig

    config = RunConfig(tiling=TilingConfig(tile_px=256, halo_px=48), blocks_per_task=1, threads=1)
    real = blocks.block_arrays
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(blocks, "block_arrays", dying)
    with pytest.raises(KeyboardInterrupt):
        segment_slide(synthetic_slide.path, tmp_path, config)
    assert not (tmp_path / "synthetic").exists()
    done = sorted((tmp_path / "synthetic.partial" / "blocks").glob("*.npz"))
    assert len(done) == 4
    monkeypatch.setattr(blocks, "block_arrays", real)
    result = segment_slide(synthetic_slide.path, tmp_path, config)
    assert (result.output_dir / "run.json").exists() and not (
        tmp_path / "synthetic.partial"
    ).exists()
    fresh = segment_slide(synthetic_slide.path, tmp_path / "fresh", config)
    from tests.helpers import read_outputs

    np.testing.assert_array_equal(
        read_outputs(result.output_dir)[0], read_outputs(fresh.output_dir)[0]
    )


def test_info(synthetic_slide) -> None:
    code, out = run("info", str(synthetic_slide.path))
    assert code == 0 and "level 2" in out and "0.5" in out and "blocks    4" in out


def test_halo_edge_warning(tmp_path) -> None:
    from pathosam_wsi import RunConfig, segment_slide
    from pathosam_wsi.config import ModelConfig, TilingConfig
    from tests.synthetic import draw_nuclei, write_pyramid

    chain = [(124.0, 84.0 + 10 * i) for i in range(9)]  # touching nuclei, 90 px long
    rgb, _ = draw_nuclei(256, 256, chain, radius_px=7)
    path = write_pyramid(tmp_path / "big.tiff", rgb, 0.5, levels=1)
    # the window rule re-reads cut regions; one wider than the largest window is still reported
    config = RunConfig(
        model=ModelConfig(name="classical"),
        tiling=TilingConfig(tile_px=64, halo_px=2, max_window_px=32),
    )
    with pytest.warns(PathoSamWarning, match="increase max_window_px"):
        segment_slide(path, tmp_path / "out", config)


@pytest.mark.parametrize("keep_bytes", [300, 2000, 20000])
def test_tiff_cut_inside_its_header_is_refused(synthetic_slide, tmp_path, keep_bytes) -> None:
    bad = tmp_path / "cut.tiff"
    bad.write_bytes(synthetic_slide.path.read_bytes()[:keep_bytes])
    code, out = run("segment", str(bad), "-o", str(tmp_path / "out"), *ARGS)
    assert code == 2, out
    assert "copy the slide again" in out or "cannot open as a slide" in out
    assert not (tmp_path / "out" / "cut").exists()
