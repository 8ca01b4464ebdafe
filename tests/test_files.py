"""files.py: atomic writes, hashing, verified streaming and extraction, the one user cache."""

from __future__ import annotations

import hashlib
import io
import stat
import sys
import zipfile
from pathlib import Path
from typing import BinaryIO

import pytest

from pathosam_wsi import files
from pathosam_wsi.errors import ConfigError, DataFetchError, PathoSamWarning


def test_atomic_write_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    files.atomic_write_bytes(path, b"old")

    def broken(fh: BinaryIO) -> None:
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary file left
    files.atomic_write_json(path, {"b": Path("x")})
    assert path.read_text() == '{\n  "b": "x"\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_hashes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    expected = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert files.sha256_file(path) == expected == files.file_digest(path, "sha256")
    with pytest.raises(ConfigError, match="expected xxh128 or sha256"):
        files.file_digest(path, "md5")


def test_stream_verified_refused_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "f"
    seen: list[int] = []

    def refuse(digests: files.Digests) -> None:
        assert digests["sha256"] == hashlib.sha256(b"payload").hexdigest()
        raise DataFetchError("wrong file")

    with pytest.raises(DataFetchError):
        files.stream_verified(io.BytesIO(b"payload"), dest, ("sha256",), refuse, seen.append)
    assert seen == [7] and list(dest.parent.iterdir()) == []
    got = files.stream_verified(io.BytesIO(b"payload"), dest, ("sha256",), lambda d: None)
    assert dest.read_bytes() == b"payload" and got["sha256"] == files.sha256_file(dest)


def test_extract_verified(tmp_path: Path) -> None:
    archive = tmp_path / "a.whl"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/data/x.bin", b"inside")
    dest = tmp_path / "x.bin"
    files.extract_verified(archive, "pkg/data/x.bin", dest, lambda d: None)
    assert dest.read_bytes() == b"inside"
    with pytest.raises(DataFetchError, match="not found"):
        files.extract_verified(archive, "pkg/none", tmp_path / "y", lambda d: None)


def test_one_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for env in ("PATHOSAM_WSI_CACHE_DIR", "PATHOSAM_WSI_CACHE", "PATHOSAM_WSI_DATA"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert files.cache_folder("weights") == tmp_path / "xdg" / "pathosam-wsi" / "weights"
        assert files.cache_folder("data") == tmp_path / "xdg" / "pathosam-wsi" / "data"
    assert files.cache_folder_from_env("data") is None
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path / "c"))
    assert files.cache_folder("weights") == tmp_path / "c" / "weights"
    assert files.cache_folder("data") == tmp_path / "c" / "data"
    monkeypatch.setenv("PATHOSAM_WSI_DATA", str(tmp_path / "old"))
    assert files.cache_folder("data") == tmp_path / "c" / "data"  # the new variable wins
    monkeypatch.delenv("PATHOSAM_WSI_CACHE_DIR")
    with pytest.warns(PathoSamWarning, match="PATHOSAM_WSI_DATA is deprecated"):
        assert files.cache_folder("data") == tmp_path / "old"
