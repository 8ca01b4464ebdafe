"""Block result files round-trip every array exactly (label images compressed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathosam_wsi.pipeline.plan import atomic_save_npz
from pathosam_wsi.stitch.packing import PACKED_SUFFIX, unpack_array, unpack_arrays


def test_block_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.integers(0, 30, (640, 640)) * (rng.random((640, 640)) < 0.4)).astype(np.uint32)
    arrays = {
        "labels": labels,
        "key": rng.integers(0, 10**9, 30),
        "ring_xy_l0": rng.random((100, 2)),
        "at_halo_edge": rng.random(30) < 0.5,
        "empty": np.zeros(0, np.float32),
    }
    path = tmp_path / "b.npz"
    atomic_save_npz(path, arrays)
    with np.load(path) as data:
        assert "labels" + PACKED_SUFFIX in data.files
        assert "labels" not in data.files
        back = unpack_arrays(data)
        np.testing.assert_array_equal(unpack_array(data, "labels"), labels)
        assert set(unpack_arrays(data, exclude=("labels",))) == set(arrays) - {"labels"}
    assert back.keys() == arrays.keys()
    for name, a in arrays.items():
        assert back[name].dtype == a.dtype
        np.testing.assert_array_equal(back[name], a)
    assert path.stat().st_size < labels.nbytes // 4
