"""OME-Zarr labels: NGFF-valid, readable by ome-zarr, aligned with slide level 0 (napari)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr
from ome_zarr.format import FormatV04
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from pathosam_wsi.export.omezarr import LABEL_NAME


def _multiscales(result_dir: Path) -> dict:
    grp = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")
    return grp.attrs["multiscales"][0]


def test_level0_pixel_centres_map_to_slide_pixel_centres(result_dir: Path) -> None:
    ms = _multiscales(result_dir)
    mpp = json.loads((result_dir / "run.json").read_text())["input"]["mpp_l0"]
    t0 = {t["type"]: t for t in ms["datasets"][0]["coordinateTransformations"]}
    scale, trans = np.array(t0["scale"]["scale"]), np.array(t0["translation"]["translation"])
    np.testing.assert_allclose(scale, [mpp, mpp])
    np.testing.assert_allclose(trans, [0.0, 0.0])
    # napari draws pixel (i, j) of a layer at world = index * scale + translation, the same
    # rule for the slide layer with scale mpp, so label pixel (i, j) sits on slide pixel (i, j).
    ij = np.array([[0, 0], [5, 7], [767, 1023]])
    slide_world = ij * mpp
    np.testing.assert_allclose(ij * scale + trans, slide_world)


def test_coarser_levels_sit_on_their_level0_samples(result_dir: Path) -> None:
    ms = _multiscales(result_dir)
    mpp = ms["datasets"][0]["coordinateTransformations"][0]["scale"][0]
    grp = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")
    l0 = grp["s0"][:]
    for k, ds in enumerate(ms["datasets"][1:], start=1):
        f = 2**k
        lk = grp[ds["path"]][:]
        # level-k pixel i holds level-0 pixel i*f + f//2 ...
        np.testing.assert_array_equal(
            lk, l0[f // 2 :: f, f // 2 :: f][: lk.shape[0], : lk.shape[1]]
        )
        # ... so its centre must land on that pixel's centre in world (µm) coordinates.
        t = {x["type"]: x for x in ds["coordinateTransformations"]}
        idx = np.array([0, 3, 10])
        world = idx * t["scale"]["scale"][0] + t["translation"]["translation"][0]
        np.testing.assert_allclose(world, (idx * f + f // 2) * mpp)


def test_labels_overlay_the_drawn_nuclei(result_dir: Path, synthetic_slide) -> None:
    s0 = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")[
        "s0"
    ][:]
    assert s0.shape == synthetic_slide.labels.shape
    inter = np.logical_and(s0 > 0, synthetic_slide.labels > 0).sum()
    union = np.logical_or(s0 > 0, synthetic_slide.labels > 0).sum()
    assert inter / union > 0.8  # a one-pixel shift of 6-px nuclei would fall well below this


def test_ome_zarr_reader_reads_labels(result_dir: Path) -> None:
    # Without fmt, ome-zarr 0.18 assumes NGFF 0.5 and finds no data in a 0.4 store.
    loc = parse_url(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), fmt=FormatV04())
    assert loc is not None
    # The reader also yields the (hidden, empty) parent named by image-label "source".
    nodes = [
        n for n in Reader(loc)() if {"Label", "Multiscales"} <= {type(s).__name__ for s in n.specs}
    ]
    assert len(nodes) == 1
    data = nodes[0].data
    first = nodes[0].metadata["coordinateTransformations"][0]
    assert (
        first[0]["scale"]
        == _multiscales(result_dir)["datasets"][0]["coordinateTransformations"][0]["scale"]
    )
    s0 = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")[
        "s0"
    ][:]
    np.testing.assert_array_equal(np.asarray(data[0]), s0)
    assert len(data) == len(_multiscales(result_dir)["datasets"])


def test_validates_with_ome_zarr_models(result_dir: Path) -> None:
    from ome_zarr_models.v04.image_label import ImageLabel
    from ome_zarr_models.v04.labels import Labels

    root = zarr.open_group(str(result_dir / "labels.ome.zarr"), mode="r")
    Labels.from_zarr(root["labels"])
    model = ImageLabel.from_zarr(root["labels"][LABEL_NAME])
    assert model.attributes.multiscales[0].datasets[0].path == "s0"
