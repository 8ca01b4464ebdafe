"""What ``run.json`` records about the software and the parameters of one run.

The file itself is written with ``files.atomic_write_json`` at ``SlideLayout``'s ``run_json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from typing import Any

__all__ = ["params_hash", "versions"]

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


def params_hash(params: dict[str, Any]) -> str:
    """Stable hash of the output-relevant parameters."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
