"""``run.json``: versions, parameters, input identity, timings and counts of one run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
        # mkstemp creates 0600 files; outputs are meant to be read by the whole group/lab.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
