"""QC pictures: written, right sizes, heatmap and outlines where the nuclei are."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from pathosam_wsi.cli import main
from pathosam_wsi.export.qc import colour_map, densest_boxes, density_grid


def test_density_grid_and_boxes() -> None:
    xy = np.array([[5.0, 5.0], [15.0, 5.0], [15.5, 6.0], [95.0, 95.0], [-1.0, 3.0]])
    counts = density_grid(xy, (10, 10), 10.0)
    assert counts.sum() == 4 and counts[0, 1] == 2 and counts[9, 9] == 1
    boxes = densest_boxes(counts, 10.0, 20, (100, 100), 5)
    assert boxes[0][0] <= 15 < boxes[0][2] and boxes[0][1] <= 5 < boxes[0][3]
    assert all(x1 - x0 == 20 and x0 >= 0 and x1 <= 100 for x0, _, x1, _ in boxes)
    assert len(boxes) == 2


def test_colour_map_is_monotone_in_brightness() -> None:
    rgb = colour_map(np.linspace(0, 1, 50)).astype(float)
    assert rgb.shape == (50, 3)
    assert np.all(np.diff(rgb.sum(axis=1)) >= -1)


def test_qc_cli_writes_pictures(result_dir: Path, synthetic_slide) -> None:
    res = CliRunner().invoke(main, ["qc", str(result_dir), "--crops", "2", "--crop-px", "128"])
    assert res.exit_code == 0, res.output
    qc = result_dir / "qc"
    density = np.asarray(Image.open(qc / "density.png"))
    assert density.shape[1] >= synthetic_slide.rgb.shape[1] // 2
    for k in (1, 2):
        (path,) = qc.glob(f"crop_{k}_x*.png")
        x, y, w, h = (int(v) for v in re.findall(r"_[xywh](\d+)", path.name))
        crop = np.asarray(Image.open(path))
        assert crop.shape == (h, w, 3) == (128, 128, 3)
        outline = np.all(crop == (0, 255, 0), axis=-1)
        assert outline.mean() > 0.01  # nuclei are outlined
        # the name's level-0 box is where the crop's pixels come from
        source = synthetic_slide.rgb[y : y + h, x : x + w]
        assert np.array_equal(crop[~outline], source[~outline])
    # the white band (x >= 900) has no nuclei, so no heat there
    h, w = synthetic_slide.rgb.shape[:2]
    scale = density.shape[1] / w if density.shape[1] <= w else 1.0
    band = density[: int(h * scale) - 2, int(920 * scale) :]
    assert np.abs(band.astype(int) - 255).max() < 40
