"""Reading image + label pairs (PNG/TIFF/NPY/NPZ/MAT) and slide regions (GeoJSON/GeoParquet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io
import shapely
import tifffile
from PIL import Image

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.finetune.data import load_pairs, rescale_sample
from pathosam_wsi.finetune.regions import load_slide_regions, rasterise, read_annotations
from tests.finetune.conftest import synthetic_pair
from tests.helpers import same_partition
from tests.synthetic import write_pyramid


def _write_label(path: Path, labels: np.ndarray) -> None:
    ext = path.suffix
    if ext == ".npy":
        np.save(path, labels)
    elif ext == ".npz":
        np.savez(path, inst_map=labels)
    elif ext == ".mat":
        scipy.io.savemat(path, {"inst_map": labels, "type_map": labels > 0})
    elif ext == ".tif":
        tifffile.imwrite(path, labels.astype(np.uint16))
    else:
        Image.fromarray(labels.astype(np.uint16)).save(path)


@pytest.mark.parametrize(
    "label_name", ["a.npy", "a.npz", "a.mat", "a_mask.tif", "a_labels.png", "a_inst_mask.npz"]
)
def test_pairs_in_every_label_format(tmp_path: Path, label_name: str) -> None:
    image, labels = synthetic_pair(0, side=48)
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "a.png")
    _write_label(tmp_path / "lab" / label_name, labels)
    [sample] = load_pairs(tmp_path / "img", tmp_path / "lab")
    assert sample.name == "a"
    np.testing.assert_array_equal(sample.image, image)
    np.testing.assert_array_equal(sample.labels, labels)


def test_tiff_images_and_sorted_names(tmp_path: Path) -> None:
    for name, seed in (("b", 1), ("a", 2)):
        image, labels = synthetic_pair(seed, side=40)
        tifffile.imwrite(tmp_path / f"{name}.tif", image)
        np.save(tmp_path / f"{name}_mask.npy", labels)
    samples = load_pairs(tmp_path, tmp_path)  # images and labels may share a folder
    assert [s.name for s in samples] == ["a", "b"]


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing_label", "no label file for image"),
        ("size", "expected the same"),
        ("float_labels", "non-negative integer"),
        ("no_images", "no images"),
    ],
)
def test_bad_pairs_say_what_to_do(tmp_path: Path, setup: str, match: str) -> None:
    image, labels = synthetic_pair(0, side=40)
    if setup != "no_images":
        Image.fromarray(image).save(tmp_path / "a.png")
    if setup == "size":
        np.save(tmp_path / "a.npy", labels[:30])
    elif setup == "float_labels":
        np.save(tmp_path / "a.npy", labels.astype(np.float32))
    elif setup == "no_images":
        np.save(tmp_path / "a.npy", labels)
    with pytest.raises(ConfigError, match=match):
        load_pairs(tmp_path, tmp_path)


def test_rescale_keeps_instances() -> None:
    from pathosam_wsi.finetune.data import Sample

    sample = Sample("a", *synthetic_pair(0, side=60))
    big = rescale_sample(sample, 2.0)
    assert big.labels.shape == (120, 120)
    assert set(np.unique(big.labels)) == set(np.unique(sample.labels))
    assert rescale_sample(sample, 1.0) is sample


def test_rasterise_paints_pixel_centres_inside_polygons() -> None:
    square = shapely.box(2, 3, 6, 5)  # x 2..6, y 3..5 (level-0 px, pixel centres at +0.5)
    labels = rasterise([square], (8, 8))
    expected = np.zeros((8, 8), np.int32)
    expected[3:5, 2:6] = 1
    np.testing.assert_array_equal(labels, expected)
    shifted = rasterise([square], (8, 8), origin_xy=(2, 3))
    assert np.argwhere(shifted)[0].tolist() == [0, 0]


def _annotations(labels: np.ndarray) -> tuple[list[dict], shapely.Polygon]:
    """Nucleus polygons of the labels (pixel outlines) and one region covering the left part."""
    features = []
    for i in range(1, int(labels.max()) + 1):
        ys, xs = np.nonzero(labels == i)
        cells = [shapely.box(x, y, x + 1, y + 1) for y, x in zip(ys, xs, strict=True)]
        poly = shapely.unary_union(cells)
        features.append({"type": "Feature", "geometry": shapely.geometry.mapping(poly),
                         "properties": {"objectType": "detection"}})  # fmt: skip
    region = shapely.box(0, 0, 60, labels.shape[0])
    features.append({"type": "Feature", "geometry": shapely.geometry.mapping(region),
                     "properties": {"objectType": "annotation"}})  # fmt: skip
    return features, region


@pytest.mark.parametrize("fmt", ["geojson", "parquet"])
def test_slide_regions_become_samples(tmp_path: Path, fmt: str) -> None:
    image, labels = synthetic_pair(4, side=96)
    slide = write_pyramid(tmp_path / "s.tiff", image, 0.25, levels=1)
    features, _ = _annotations(labels)
    if fmt == "geojson":
        ann = tmp_path / "s.geojson"
        ann.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    else:
        ann = tmp_path / "s.parquet"
        geoms = [shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in features]
        kinds = [f["properties"]["objectType"] for f in features]
        pq.write_table(pa.table({"geometry": geoms, "objectType": kinds}), ann)
    regions, nuclei = read_annotations(ann)
    assert (len(regions), len(nuclei)) == (1, int(labels.max()))
    [sample] = load_slide_regions(slide, ann)
    assert sample.image.shape == (96, 60, 3)
    # Nuclei whose centroid is in the region are kept whole up to the region's edge.
    centroid_x = {i: np.nonzero(labels == i)[1].mean() + 0.5 for i in range(1, labels.max() + 1)}
    expected = np.where(np.isin(labels, [i for i, x in centroid_x.items() if x < 60]), labels, 0)
    assert same_partition(sample.labels, expected[:, :60])
    np.testing.assert_array_equal(sample.image, image[:, :60])


def test_annotations_without_regions_are_refused(tmp_path: Path) -> None:
    image, labels = synthetic_pair(4, side=48)
    slide = write_pyramid(tmp_path / "s.tiff", image, 0.25, levels=1)
    features, _ = _annotations(labels)
    ann = tmp_path / "s.geojson"
    ann.write_text(json.dumps({"type": "FeatureCollection", "features": features[:-1]}))
    with pytest.raises(ConfigError, match="no region"):
        load_slide_regions(slide, ann)
