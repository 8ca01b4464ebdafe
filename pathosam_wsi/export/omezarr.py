"""Nucleus labels as an OME-NGFF 0.4 label image (zarr v2), written chunk by chunk.

Layout: ``labels.ome.zarr/labels/nuclei/s0..sK`` under a root image (a slide preview,
export/preview.py), so viewers opening the root find both. Level k is ``s0[::2**k, ::2**k]``
(nearest-neighbour, ids are never blended): its pixel i is level-0 pixel ``i * 2**k``, so scale
``2**k * mpp`` with translation 0 is exact, also in viewers that ignore per-level translations
(napari). Each core block maps to exactly one chunk per level, so blocks never write the same
chunk. Scale is in micrometres, so the labels overlay the slide in any NGFF viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import zarr
from numcodecs import Zstd
from numcodecs.abc import Codec
from zarr.core.metadata.v2 import ArrayV2Metadata
from zarr.storage import LocalStore

from pathosam_wsi._types import BoxXYXY
from pathosam_wsi.export.preview import read_preview, write_preview
from pathosam_wsi.files import atomic_write
from pathosam_wsi.slide.open import Slide

__all__ = ["LABEL_NAME", "create_label_image", "level_count", "open_levels", "write_core"]

LABEL_NAME = "nuclei"
_COMPRESSOR = Zstd(level=3)
_MIN_LEVEL_SIDE_PX = 256


def level_count(wh_px: tuple[int, int], chunk_px: int) -> int:
    """Pyramid levels: halve while the chunk stays even and the image stays > 256 px."""
    n, f = 1, 2
    while chunk_px % f == 0 and chunk_px // f >= 16 and max(wh_px) // f >= _MIN_LEVEL_SIDE_PX:
        n += 1
        f *= 2
    return n


def _level_len(length_px: int, factor: int) -> int:
    return -(-length_px // factor)  # pixels 0, f, 2f, ... < length_px


def create_label_image(
    path: Path,
    wh_px: tuple[int, int],
    chunk_px: int,
    mpp: float,
    slide_name: str,
    slide: Slide | None = None,
) -> None:
    """Create the empty store with NGFF metadata (and the root preview image when given a slide).

    Parameters
    ----------
    path : Path
        The ``.ome.zarr`` folder to create.
    wh_px : tuple of int
        (width, height) of the working frame, px.
    chunk_px : int
        Chunk side of level 0 (= block core size).
    mpp : float
        Working pixel size in µm/px.
    slide_name : str
        Name in the metadata (the slide id).
    slide : Slide, optional
        The slide; its preview becomes the root image (without it the root has no image and
        viewers must open ``labels/nuclei`` itself).
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    labels_grp = root.create_group("labels")
    labels_grp.attrs["labels"] = [LABEL_NAME]
    grp = labels_grp.create_group(LABEL_NAME)
    datasets = []
    w, h = wh_px
    for k in range(level_count(wh_px, chunk_px)):
        f = 2**k
        grp.create_array(
            f"s{k}",
            shape=(_level_len(h, f), _level_len(w, f)),
            chunks=(chunk_px // f, chunk_px // f),
            dtype="uint32",
            fill_value=0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
            compressors=_COMPRESSOR,
            config={"write_empty_chunks": False},
        )
        # Level-k pixel i is level-0 pixel i*f: world i*f*mpp, no translation.
        datasets.append(
            {
                "path": f"s{k}",
                "coordinateTransformations": [{"type": "scale", "scale": [mpp * f, mpp * f]}],
            }
        )
    multiscale: dict[str, Any] = {
        "version": "0.4",
        "name": LABEL_NAME,
        "axes": [
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ],
        "datasets": datasets,
        "type": "nearest",
        "metadata": {"description": f"nucleus instances of {slide_name}, 0 = background"},
    }
    grp.attrs.update({"multiscales": [multiscale]})
    grp.attrs["image-label"] = {"version": "0.4", "source": {"image": "../../"}}
    if slide is not None:
        write_preview(path, read_preview(slide), slide_name)


def open_levels(path: Path) -> list[zarr.Array]:
    """The level arrays s0..sK of an existing store, for writing."""
    grp = zarr.open_group(str(path / "labels" / LABEL_NAME), mode="r+", zarr_format=2)
    attrs: dict[str, Any] = grp.attrs.asdict()
    paths = [str(d["path"]) for d in attrs["multiscales"][0]["datasets"]]
    return [cast(zarr.Array, grp[p]) for p in paths]


def _chunk_path(arr: zarr.Array, ly: int, lx: int) -> tuple[Path, Codec] | None:
    """File and codec of the chunk starting at (ly, lx) when it can be written directly.

    Direct writes need what ``create_label_image`` makes: a local zarr v2 array, C order, no
    filters, "/"-separated chunk keys, a numcodecs compressor; and a chunk-aligned start.
    """
    meta = arr.metadata
    store = arr.store_path.store
    if not (
        isinstance(meta, ArrayV2Metadata)
        and isinstance(store, LocalStore)
        and meta.filters is None
        and meta.order == "C"
        and meta.dimension_separator == "/"
        and isinstance(meta.compressor, Codec)
    ):
        return None
    cy, cx = meta.chunks
    if ly % cy or lx % cx:
        return None
    return Path(store.root) / arr.store_path.path / str(ly // cy) / str(lx // cx), meta.compressor


def _write_chunk(
    path: Path, codec: Codec, chunks: tuple[int, ...], sub: npt.NDArray[np.uint32]
) -> None:
    """Encode a chunk as zarr does (padded to the chunk shape with the fill value 0) and save it."""
    chunk = np.zeros(chunks, "<u4")
    chunk[: sub.shape[0], : sub.shape[1]] = sub
    data = codec.encode(chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(data))


def write_core(levels: list[zarr.Array], core_px: BoxXYXY, labels: npt.NDArray[np.uint32]) -> None:
    """Write one core block's labels (h, w) uint32 into every level (one chunk each).

    Chunks are encoded and saved directly (the bytes zarr would write; its machinery cost ~7 ms
    of CPU per core), falling back to zarr for a store or core of any other shape.
    """
    x0, y0 = core_px[0], core_px[1]
    for k, arr in enumerate(levels):
        f = 2**k
        # The core's first row/column that is a multiple of f (0 for cores on the chunk grid).
        oy, ox = -y0 % f, -x0 % f
        sub = labels[oy::f, ox::f]
        if sub.size == 0 or not sub.any():
            continue
        ly, lx = (y0 + oy) // f, (x0 + ox) // f
        direct = _chunk_path(arr, ly, lx)
        if direct is not None and sub.shape[0] <= arr.chunks[0] and sub.shape[1] <= arr.chunks[1]:
            _write_chunk(*direct, arr.chunks, sub)
        else:
            arr[ly : ly + sub.shape[0], lx : lx + sub.shape[1]] = sub
