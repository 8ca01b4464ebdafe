"""OME-Zarr labels: NGFF-valid, ome-zarr reads them from the root, exact pyramid, aligned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
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
    (t0,) = ms["datasets"][0]["coordinateTransformations"]  # a scale, no translation
    assert t0["type"] == "scale"
    scale, trans = np.array(t0["scale"]), np.zeros(2)
    np.testing.assert_allclose(scale, [mpp, mpp])
    # napari draws pixel (i, j) of a layer at world = index * scale + translation, the same
    # rule for the slide layer with scale mpp, so label pixel (i, j) sits on slide pixel (i, j).
    ij = np.array([[0, 0], [5, 7], [767, 1023]])
    slide_world = ij * mpp
    np.testing.assert_allclose(ij * scale + trans, slide_world)


def test_every_level_is_s0_strided_with_translation_0(result_dir: Path) -> None:
    ms = _multiscales(result_dir)
    mpp = ms["datasets"][0]["coordinateTransformations"][0]["scale"][0]
    grp = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")
    l0 = grp["s0"][:]
    assert len(ms["datasets"]) >= 3  # the synthetic slide has a real pyramid to check
    for k, ds in enumerate(ms["datasets"]):
        f = 2**k
        # Exact, so also viewers that ignore per-level translations (napari) draw it right.
        np.testing.assert_array_equal(grp[ds["path"]][:], l0[::f, ::f])
        # Level-k pixel i is level-0 pixel i*f: world i*f*mpp with scale f*mpp and nothing else.
        assert ds["coordinateTransformations"] == [{"type": "scale", "scale": [mpp * f, mpp * f]}]


def test_labels_overlay_the_drawn_nuclei(result_dir: Path, synthetic_slide) -> None:
    s0 = zarr.open_group(str(result_dir / "labels.ome.zarr" / "labels" / LABEL_NAME), mode="r")[
        "s0"
    ][:]
    assert s0.shape == synthetic_slide.labels.shape
    inter = np.logical_and(s0 > 0, synthetic_slide.labels > 0).sum()
    union = np.logical_or(s0 > 0, synthetic_slide.labels > 0).sum()
    assert inter / union > 0.8  # a one-pixel shift of 6-px nuclei would fall well below this


def test_ome_zarr_reader_on_the_root_finds_image_and_labels(result_dir: Path) -> None:
    # Without fmt, ome-zarr 0.18 assumes NGFF 0.5 and finds no data in a 0.4 store.
    loc = parse_url(str(result_dir / "labels.ome.zarr"), fmt=FormatV04())
    assert loc is not None
    nodes = list(Reader(loc)())
    kinds = [{type(s).__name__ for s in n.specs} for n in nodes]
    images = [
        n for n, k in zip(nodes, kinds, strict=True) if "Multiscales" in k and "Label" not in k
    ]
    labels = [n for n, k in zip(nodes, kinds, strict=True) if {"Label", "Multiscales"} <= k]
    assert len(images) == 1 and len(labels) == 1, kinds
    assert "OMERO" in {type(s).__name__ for s in images[0].specs}  # channel colours
    assert images[0].data[0].shape[0] == 3  # (c, y, x) RGB preview
    # Level 0 of the label node holds exactly the table's nucleus ids.
    s0 = np.asarray(labels[0].data[0])
    ids = pq.read_table(result_dir / "nuclei.parquet", columns=["nucleus_id"])["nucleus_id"]
    table_ids = np.sort(ids.to_numpy())
    assert table_ids.size > 50
    np.testing.assert_array_equal(np.unique(s0[s0 > 0]), table_ids)
    assert len(labels[0].data) == len(_multiscales(result_dir)["datasets"])
    first = labels[0].metadata["coordinateTransformations"][0]
    assert (
        first[0]["scale"]
        == _multiscales(result_dir)["datasets"][0]["coordinateTransformations"][0]["scale"]
    )


def test_validates_with_ome_zarr_models(result_dir: Path) -> None:
    from ome_zarr_models.v04.image import Image
    from ome_zarr_models.v04.image_label import ImageLabel
    from ome_zarr_models.v04.labels import Labels

    root = zarr.open_group(str(result_dir / "labels.ome.zarr"), mode="r")
    Image.from_zarr(root)  # the root preview is a valid NGFF image
    Labels.from_zarr(root["labels"])
    model = ImageLabel.from_zarr(root["labels"][LABEL_NAME])
    assert model.attributes.multiscales[0].datasets[0].path == "s0"
