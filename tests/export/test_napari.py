"""napari-ome-zarr (the reader people use) on the store's root, and README's napari recipe.

No GUI: the plugin's reader function returns layer data, and napari's ``ViewerModel`` (the
viewer without Qt) runs the recipe. napari 0.9.2 comes from the ``test`` extra without a Qt
binding (docs/stack.md).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

with warnings.catch_warnings():
    # napari 0.9.2's models use pydantic's deprecated json_encoders (DeprecationWarning at import).
    warnings.simplefilter("ignore", DeprecationWarning)
    napari_ome_zarr = pytest.importorskip("napari_ome_zarr")
    napari_components = pytest.importorskip("napari.components")

from pathosam_wsi.export.omezarr import LABEL_NAME

README = Path(__file__).resolve().parents[2] / "README.md"


def _layers(store: Path) -> list[tuple[list[Any], dict[str, Any], str]]:
    reader = napari_ome_zarr.napari_get_reader(str(store))
    assert reader is not None
    return reader(str(store))


def test_reader_on_the_root_returns_preview_and_labels_in_um(result_dir: Path) -> None:
    store = result_dir / "labels.ome.zarr"
    layers = _layers(store)
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (image, image_meta, _), (labels, labels_meta, _) = layers
    root = zarr.open_group(str(store), mode="r")
    s0 = root["labels"][LABEL_NAME]["s0"][:]
    label_mpp = root["labels"][LABEL_NAME].attrs["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ][0]["scale"][0]
    preview_mpp = root.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0][
        "scale"
    ][1]
    # The preview: (c, y, x), one layer per channel (red, green, blue), scale in µm.
    assert image_meta["channel_axis"] == 0 and image[0].shape[0] == 3
    assert image_meta["scale"] == pytest.approx([preview_mpp, preview_mpp])
    assert image_meta["units"] == ("micrometer", "micrometer")
    assert [c.colors[-1][:3].tolist() for c in image_meta["colormap"]] == [
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
    ]
    # The labels: every level, level 0 = the stored ids, scale in µm (the plugin adds them hidden).
    np.testing.assert_array_equal(np.asarray(labels[0]), s0)
    assert len(labels) == len(root["labels"][LABEL_NAME].attrs["multiscales"][0]["datasets"])
    assert labels_meta["scale"] == pytest.approx([label_mpp, label_mpp])
    assert labels_meta["units"] == ("micrometer", "micrometer")
    assert labels_meta["visible"] is False


def _readme_recipe() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- napari recipe[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its napari recipe block"
    return m.group(1)


def test_readme_recipe_shows_visible_labels_on_the_preview(result_dir: Path) -> None:
    code = _readme_recipe()
    assert 'plugin="napari-ome-zarr"' in code
    code = code.replace('"OUT/slide1/labels.ome.zarr"', repr(str(result_dir / "labels.ome.zarr")))
    # napari.Viewer is the Qt window around a ViewerModel; it also discovers the plugins first.
    code = code.replace("napari.Viewer()", "napari.components.ViewerModel()")
    scope: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # napari's pydantic models, as above
        from napari.plugins import _initialize_plugins

        _initialize_plugins()
        exec(compile(code, "README.md napari recipe", "exec"), scope)
    viewer = scope["viewer"]
    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image", "Image", "Image", "Labels"]
    labels, red = viewer.layers[-1], viewer.layers[0]
    assert labels.visible and all(layer.visible for layer in viewer.layers)
    assert [str(u) for u in labels.units] == ["micrometer", "micrometer"]
    assert [str(u) for u in red.units] == ["micrometer", "micrometer"]
    # Same world frame: preview pixel j and label pixel j*step sit at the same µm position.
    step = round(red.scale[0] / labels.scale[0])
    j = np.array([7.0, 11.0])
    np.testing.assert_allclose(red.data_to_world(j), labels.data_to_world(j * step))
    np.testing.assert_allclose(labels.data_to_world(j), j * labels.scale)
