"""``run.json``: versions, parameters, input identity, timings and counts of one run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

from pathosam_wsi.export.atomic import atomic_write

__all__ = ["file_sha256", "params_hash", "versions", "write_json_atomic"]

_PACKAGES = (
    "pathosam-wsi",
    "numpy",
    "scipy",
    "scikit-image",
    "torch",
    "dask",
    "distributed",
    "zarr",
    "ome-zarr",
    "tiffslide",
    "tifffile",
    "shapely",
    "pyarrow",
    "segment-anything",
)


def versions() -> dict[str, str | None]:
    """Installed versions of the package and its main dependencies."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_sha256(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """Stable hash of the output-relevant parameters."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and an atomic rename."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))
