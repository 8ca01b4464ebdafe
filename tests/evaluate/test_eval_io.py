"""Loaders and the ``evaluate`` command: every input format, our output folders, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import scipy.io
import tifffile
import zarr
from click.testing import CliRunner
from PIL import Image

from pathosam_wsi.cli.evaluate import evaluate
from pathosam_wsi.errors import ConfigError
from pathosam_wsi.evaluate import evaluate_outputs, load_labels


@pytest.fixture
def labels() -> npt.NDArray[np.int32]:
    """A 32x40 instance map with three objects and large ids."""
    lab = np.zeros((32, 40), np.int32)
    lab[2:10, 3:12] = 1001
    lab[15:25, 20:30] = 7
    lab[26:31, 1:6] = 65000
    return lab


def _classes(lab: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    return np.where(lab == 7, 2, np.where(lab > 0, 1, 0)).astype(np.int32)


def _write_ngff(root: Path, name: str, arr: npt.NDArray[np.integer]) -> None:
    """A minimal NGFF 0.5 labels image ``labels/<name>`` with level 0 at dataset path s0."""
    group = zarr.open_group(str(root), mode="a")
    img = group.require_group(f"labels/{name}")
    img.attrs["ome"] = {"version": "0.5", "multiscales": [{"datasets": [{"path": "s0"}]}]}
    img.create_array("s0", data=arr.astype(np.uint32), chunks=(16, 16))


def test_all_file_formats_load(tmp_path: Path, labels: npt.NDArray[np.int32]) -> None:
    small = labels.astype(np.uint16)  # PNG/TIFF hold 16-bit labels
    np.save(tmp_path / "a.npy", labels)
    np.savez(tmp_path / "b.npz", nuc_raster=labels)
    scipy.io.savemat(tmp_path / "c.mat", {"inst_map": labels, "type_map": _classes(labels)})
    tifffile.imwrite(tmp_path / "d.tif", small)
    Image.fromarray(small).save(tmp_path / "e.png")
    for name in ("a.npy", "b.npz", "c.mat", "d.tif", "e.png"):
        data = load_labels(tmp_path / name)
        np.testing.assert_array_equal(data.instances, labels, err_msg=name)
    assert load_labels(tmp_path / "c.mat").classes is not None
    assert load_labels(tmp_path / "a.npy").classes is None


def test_output_folder_and_zarr(tmp_path: Path, labels: npt.NDArray[np.int32]) -> None:
    slide_dir = tmp_path / "out" / "slide-1"
    _write_ngff(slide_dir / "labels.ome.zarr", "nuclei", labels)
    _write_ngff(slide_dir / "labels.ome.zarr", "classes", _classes(labels))
    for path in (slide_dir, tmp_path / "out", slide_dir / "labels.ome.zarr"):
        data = load_labels(path)
        np.testing.assert_array_equal(data.instances, labels)
        np.testing.assert_array_equal(data.classes, _classes(labels))
    gt = tmp_path / "gt.mat"
    scipy.io.savemat(gt, {"inst_map": labels, "type_map": _classes(labels)})
    res = evaluate_outputs(slide_dir, gt)
    assert (res.msa, res.pq, res.weighted_dice) == (1.0, 1.0, 1.0)


def test_load_errors(tmp_path: Path, labels: npt.NDArray[np.int32]) -> None:
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
    with pytest.raises(ConfigError, match="2-D"):
        load_labels(rgb)
    np.save(tmp_path / "f.npy", labels + 0.5)
    with pytest.raises(ConfigError, match="non-integer"):
        load_labels(tmp_path / "f.npy")
    np.savez(tmp_path / "two.npz", x=labels, y=labels)
    with pytest.raises(ConfigError, match="no instance map"):
        load_labels(tmp_path / "two.npz")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ConfigError, match="unsupported"):
        load_labels(tmp_path / "x.csv")
    (tmp_path / "empty_out").mkdir()
    with pytest.raises(ConfigError, match=r"labels\.ome\.zarr"):
        load_labels(tmp_path / "empty_out")
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "missing.npy")


def test_cli_table_and_json(tmp_path: Path, labels: npt.NDArray[np.int32]) -> None:
    pred = labels.copy()
    pred[pred == 65000] = 0  # one missed nucleus: TP 2, FN 1 at every threshold
    np.save(tmp_path / "pred.npy", pred)
    np.save(tmp_path / "gt.npy", labels)
    runner = CliRunner()
    table = runner.invoke(evaluate, [str(tmp_path / "pred.npy"), str(tmp_path / "gt.npy")])
    assert table.exit_code == 0, table.output
    assert "mSA" in table.output
    assert "0.6667" in table.output  # SA = 2 / (2 + 0 + 1)
    out = runner.invoke(evaluate, [str(tmp_path / "pred.npy"), str(tmp_path / "gt.npy"), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["msa"] == pytest.approx(2 / 3)
    assert data["f1_at_50"] == pytest.approx(0.8)  # 2*2 / (2*2 + 0 + 1)
    assert (data["n_pred"], data["n_gt"]) == (2, 3)
    assert data["weighted_dice"] is None


def test_cli_shape_mismatch_is_one_line_error(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((4, 4), np.int32))
    np.save(tmp_path / "b.npy", np.zeros((4, 5), np.int32))
    from pathosam_wsi.cli import main

    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: label images differ in shape")
