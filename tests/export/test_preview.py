"""The root preview: pooled as the alignment rule says, bounded in size, on the labels in µm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import zarr

from pathosam_wsi.export import preview as preview_module
from pathosam_wsi.export.omezarr import LABEL_NAME
from pathosam_wsi.export.preview import (
    PREVIEW_MAX_SIDE_PX,
    PREVIEW_MIN_MPP,
    pool_centred,
    read_preview,
)
from pathosam_wsi.slide.open import open_slide
from tests.synthetic import write_pyramid


def reference_preview(level_px: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """REFERENCE: pixel j is the mean of level pixels j*f - f//2 .. j*f + f//2, clamped to the
    level (edge replication), one pixel at a time."""
    h, w, _ = level_px.shape
    half = factor // 2
    out = np.zeros((-(-h // factor), -(-w // factor), 3), np.uint8)
    for j in range(out.shape[0]):
        for i in range(out.shape[1]):
            ys = np.clip(np.arange(j * factor - half, j * factor + half + 1), 0, h - 1)
            xs = np.clip(np.arange(i * factor - half, i * factor + half + 1), 0, w - 1)
            out[j, i] = np.round(level_px[np.ix_(ys, xs)].astype(np.float64).mean(axis=(0, 1)))
    return out


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5])
def test_pool_centred_equals_reference(factor: int) -> None:
    rng = np.random.default_rng(factor)
    level = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    half = factor // 2
    padded = np.pad(level, ((half, half), (half, half), (0, 0)), mode="edge")
    np.testing.assert_array_equal(pool_centred(padded, factor), reference_preview(level, factor))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_preview_pixel_sits_on_level_pixel_j_times_f(factor: int) -> None:
    # A lone bright pixel at level pixel (j*f, i*f) peaks in preview pixel (j, i) and only there
    # (its window is centred on that pixel); one level pixel further it would move or spread.
    level = np.zeros((8 * factor, 8 * factor, 3), np.uint8)
    level[3 * factor, 5 * factor] = 255
    half = factor // 2
    out = pool_centred(np.pad(level, ((half, half), (half, half), (0, 0))), factor)[..., 0]
    assert np.unravel_index(np.argmax(out), out.shape) == (3, 5)
    assert np.count_nonzero(out) == 1


@pytest.mark.parametrize(
    ("mpp", "levels", "level", "factor"),
    [(0.5, 1, 0, 4), (2 / 3, 1, 0, 3), (0.5, 2, 1, 2), (0.5, 3, 2, 1), (4.0, 1, 0, 1)],
)
def test_read_preview_equals_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mpp: float,
    levels: int,
    level: int,
    factor: int,
) -> None:
    # 2 µm/px wanted: from the coarsest level not coarser than that, pooled by the rest; read in
    # small windows so that window margins are exercised.
    monkeypatch.setattr(preview_module, "_SOURCE_WINDOW_PX", 16)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (100, 136, 3), dtype=np.uint8)  # levels exact halves
    path = write_pyramid(tmp_path / "s.tiff", rgb, mpp, levels=levels, tile=64)
    slide = open_slide(path)
    preview = read_preview(slide)
    ds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    expected = reference_preview(slide.read_level(level, (0, 0, lw, lh)), factor)
    np.testing.assert_array_equal(preview.rgb.transpose(1, 2, 0), expected)
    assert preview.downsample_l0 == pytest.approx(ds * factor)
    assert preview.mpp == pytest.approx(ds * factor * mpp)
    assert preview.mpp >= PREVIEW_MIN_MPP - 1e-9


def test_long_side_is_bounded(tmp_path: Path) -> None:
    # 9000 px at 0.1 µm/px: 2 µm/px gives 450 px; at 1 µm/px 2 µm/px would give 4500 px, so the
    # side bound rules (9000 / 4096 = 2.2, rounded up to 3 px per preview px).
    rgb = np.full((40, 9000, 3), 200, np.uint8)
    for mpp, side in ((0.1, 450), (1.0, 3000)):
        preview = read_preview(open_slide(write_pyramid(tmp_path / "w.tiff", rgb, mpp, levels=1)))
        assert preview.rgb.shape[2] == side <= PREVIEW_MAX_SIDE_PX


def test_stored_preview_lies_on_the_labels_in_um(result_dir: Path) -> None:
    root = zarr.open_group(str(result_dir / "labels.ome.zarr"), mode="r")
    image_ms = root.attrs["multiscales"][0]
    label_ms = root["labels"][LABEL_NAME].attrs["multiscales"][0]
    (t_img,) = image_ms["datasets"][0]["coordinateTransformations"]
    (t_lab,) = label_ms["datasets"][0]["coordinateTransformations"]
    scale_img, scale_lab = t_img["scale"][1], t_lab["scale"][0]
    assert t_img["scale"][0] == 1.0  # channel axis
    step = round(scale_img / scale_lab)  # label px per preview px (4 on the synthetic slide)
    assert step > 1 and step * scale_lab == pytest.approx(scale_img)
    grey = root[image_ms["datasets"][0]["path"]][:].astype(np.float64).mean(axis=0)  # (h, w)
    labels = root["labels"][LABEL_NAME]["s0"][:] > 0
    # Preview pixel (j, i) and label pixel (j*step, i*step) have the same world position.
    nuclei = labels[::step, ::step][: grey.shape[0], : grey.shape[1]]
    h, w = nuclei.shape

    def contrast(dy: int, dx: int) -> float:
        g = np.roll(grey, (dy, dx), axis=(0, 1))[:h, :w]
        return float(g[~nuclei].mean() - g[nuclei].mean())  # nuclei are dark

    best = contrast(0, 0)
    assert best > 20
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        assert contrast(dy, dx) < best  # shifted by one preview pixel fits worse
