"""Block result files: label images zstd-compressed, everything else stored raw.

``np.savez_compressed`` deflates every array; on a 640 x 640 uint32 label image that costs about
20 ms of CPU per block. Label images are mostly runs of equal values, which zstd (level 1)
compresses to a few tens of kB in under 1 ms; the per-nucleus arrays are small or incompressible
floats and are stored uncompressed. A packed array is the zstd-compressed ``.npy`` serialisation
of the original (dtype and shape included) under the key ``<name>.zst``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from numcodecs import Zstd

__all__ = ["PACKED_SUFFIX", "pack_arrays", "unpack_array", "unpack_arrays"]

PACKED_SUFFIX = ".zst"
_CODEC = Zstd(level=1)


def _packable(array: npt.NDArray[Any]) -> bool:
    """Label images: 2-D integer arrays."""
    return array.ndim == 2 and array.dtype.kind in "iu"


def pack_arrays(arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """The arrays to hand to ``np.savez``: label images compressed, the rest unchanged."""
    out: dict[str, npt.NDArray[Any]] = {}
    for name, array in arrays.items():
        a = np.asarray(array)
        if _packable(a):
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            out[name + PACKED_SUFFIX] = np.frombuffer(_CODEC.encode(buf.getbuffer()), np.uint8)
        else:
            out[name] = a
    return out


def unpack_array(data: Mapping[str, npt.NDArray[Any]], name: str) -> npt.NDArray[Any]:
    """Array ``name`` of a loaded npz, packed or not."""
    if name + PACKED_SUFFIX in data:
        raw = _CODEC.decode(data[name + PACKED_SUFFIX])
        return np.load(io.BytesIO(raw), allow_pickle=False)  # type: ignore[no-any-return]
    return data[name]


def unpack_arrays(data: Any, exclude: Iterable[str] = ()) -> dict[str, npt.NDArray[Any]]:
    """Every array of a loaded npz (``np.load`` result) but ``exclude``, packed ones decoded."""
    skip = set(exclude)
    names = [k.removesuffix(PACKED_SUFFIX) for k in data.files]
    return {k: unpack_array(data, k) for k in names if k not in skip}
