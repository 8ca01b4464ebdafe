"""Chunks written directly by ``write_core`` are byte for byte the ones zarr itself writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import zarr

from pathosam_wsi.export.omezarr import create_label_image, open_levels, write_core


def reference_write_core(
    levels: list[zarr.Array], core_px: tuple[int, int, int, int], labels: npt.NDArray[np.uint32]
) -> None:
    """REFERENCE: level k keeps the core's pixels whose global row and column are multiples of
    2^k (level k = s0[::2^k, ::2^k]), written through zarr's own array assignment."""
    x0, y0 = core_px[0], core_px[1]
    ys, xs = np.arange(y0, y0 + labels.shape[0]), np.arange(x0, x0 + labels.shape[1])
    for k, arr in enumerate(levels):
        f = 2**k
        keep_y, keep_x = ys % f == 0, xs % f == 0
        sub = labels[keep_y][:, keep_x]
        if sub.size == 0 or not sub.any():
            continue
        ly, lx = int(ys[keep_y][0]) // f, int(xs[keep_x][0]) // f
        arr[ly : ly + sub.shape[0], lx : lx + sub.shape[1]] = sub


def _chunk_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_direct_chunks_equal_zarr_chunks(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wh, chunk = (1000, 700), 128  # partial edge chunks on both axes
    stores = {name: tmp_path / f"{name}.ome.zarr" for name in ("direct", "zarr")}
    for path in stores.values():
        create_label_image(path, wh, chunk, 0.5, "s")
    cores = []
    for cy in range(0, wh[1], chunk):
        for cx in range(0, wh[0], chunk):
            box = (cx, cy, min(cx + chunk, wh[0]), min(cy + chunk, wh[1]))
            h, w = box[3] - box[1], box[2] - box[0]
            labels = rng.integers(0, 50, (h, w), dtype=np.uint32) * (rng.random((h, w)) < 0.3)
            if rng.random() < 0.2:
                labels[:] = 0  # empty cores write nothing
            cores.append((box, labels.astype(np.uint32)))
    # A core that does not start on a chunk (ROI-clipped) goes through zarr in both.
    cores.append(((10, 5, 60, 40), np.full((35, 50), 7, np.uint32)))
    direct, ref = open_levels(stores["direct"]), open_levels(stores["zarr"])
    for box, labels in cores[:-1]:
        write_core(direct, box, labels)
        reference_write_core(ref, box, labels)
    files = {name: _chunk_files(path) for name, path in stores.items()}
    assert files["direct"].keys() == files["zarr"].keys()
    assert files["direct"] == files["zarr"]
    for a, b in zip(open_levels(stores["direct"]), open_levels(stores["zarr"]), strict=True):
        np.testing.assert_array_equal(a[:], b[:])


def test_levels_equal_strided_level0(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    wh, chunk = (517, 389), 64  # odd sizes: the last sample of each level is the edge pixel
    path = tmp_path / "l.ome.zarr"
    create_label_image(path, wh, chunk, 0.25, "s")
    full = rng.integers(1, 9, (wh[1], wh[0]), dtype=np.uint32)
    levels = open_levels(path)
    for cy in range(0, wh[1], chunk):
        for cx in range(0, wh[0], chunk):
            box = (cx, cy, min(cx + chunk, wh[0]), min(cy + chunk, wh[1]))
            write_core(levels, box, full[box[1] : box[3], box[0] : box[2]])
    assert len(levels) >= 2
    for k, arr in enumerate(levels):
        np.testing.assert_array_equal(arr[:], full[:: 2**k, :: 2**k])


def test_unaligned_core_falls_back_to_zarr(tmp_path: Path) -> None:
    stores = [tmp_path / "a.ome.zarr", tmp_path / "b.ome.zarr"]
    for path in stores:
        create_label_image(path, (300, 300), 128, 0.5, "s")
    labels = np.arange(35 * 50, dtype=np.uint32).reshape(35, 50)
    write_core(open_levels(stores[0]), (10, 5, 60, 40), labels)
    reference_write_core(open_levels(stores[1]), (10, 5, 60, 40), labels)
    assert _chunk_files(stores[0]) == _chunk_files(stores[1])
