"""Weight registry and cache against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import xxhash

from pathosam_wsi.errors import CheckpointError, PathoSamWarning
from pathosam_wsi.model import weights
from pathosam_wsi.model.checkpoints import load_decoder
from pathosam_wsi.model.synthetic_weights import synthetic_decoder_state_dict
from pathosam_wsi.model.weights import (
    WeightSpec,
    cache_dir,
    fetch_weights,
    verify_weights,
    weight_folders,
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder) of a throw-away HTTP server."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def _publish(
    server: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    algo: str,
    corrupt: bool = False,
) -> bytes:
    """Serve a generated decoder checkpoint under ``name`` and register its hash."""
    url, root = server
    path = root / f"{name}.bin"
    torch.save(synthetic_decoder_state_dict(), path)
    data = path.read_bytes()
    digest = (
        xxhash.xxh128(data).hexdigest() if algo == "xxh128" else hashlib.sha256(data).hexdigest()
    )
    if corrupt:
        path.write_bytes(data[:-10] + b"0123456789")
    spec = WeightSpec(name, f"{url}/{name}.bin", f"{algo}:{digest}", "test file")
    monkeypatch.setitem(weights.REGISTRY, name, spec)
    return data


@pytest.mark.parametrize("algo", ["xxh128", "sha256"])
def test_download_verify_and_cache(server, cache: Path, monkeypatch, algo: str) -> None:
    data = _publish(server, monkeypatch, "vit_b_histopathology_decoder", algo)
    path = fetch_weights("vit_b_histopathology_decoder", progress=False)
    assert path == cache / "vit_b_histopathology_decoder"
    assert path.read_bytes() == data
    sidecar = path.with_name(path.name + ".sha256").read_text().split()
    assert sidecar == [hashlib.sha256(data).hexdigest(), path.name]
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".sha256"]
    assert load_decoder(path, 3).use_conv_transpose
    assert verify_weights("vit_b_histopathology_decoder") == ("ok", path)
    # Second call uses the cache (server gone is fine).
    (server[1] / "vit_b_histopathology_decoder.bin").unlink()
    assert fetch_weights("vit_b_histopathology_decoder", progress=False) == path


def test_corrupted_download_is_refused_and_not_cached(server, cache: Path, monkeypatch) -> None:
    _publish(server, monkeypatch, "vit_b_histopathology", "xxh128", corrupt=True)
    spec = weights.REGISTRY["vit_b_histopathology"]
    with pytest.raises(CheckpointError) as info:
        fetch_weights("vit_b_histopathology", progress=False)
    message = str(info.value)
    assert f"expected {spec.digest}" in message
    assert "nothing was cached" in message
    assert f"download vit_b_histopathology from {spec.url} and put it at" in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_error_names_file_url_and_place(cache: Path, monkeypatch) -> None:
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = WeightSpec(
        "vit_l_histopathology", f"http://127.0.0.1:{port}/x", "xxh128:" + "0" * 32, "t"
    )
    monkeypatch.setitem(weights.REGISTRY, spec.name, spec)
    with pytest.raises(CheckpointError) as info:
        fetch_weights(spec.name, progress=False)
    expected_place = cache / spec.name
    assert f"download vit_l_histopathology from {spec.url} and put it at {expected_place}" in str(
        info.value
    )
    assert not cache.exists() or list(cache.iterdir()) == []


def test_tampered_cached_file_detected(server, cache: Path, monkeypatch) -> None:
    _publish(server, monkeypatch, "vit_b_histopathology_decoder", "sha256")
    path = fetch_weights("vit_b_histopathology_decoder", progress=False)
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    assert verify_weights("vit_b_histopathology_decoder")[0] == "mismatch"
    with pytest.raises(CheckpointError, match="does not match its hash"):
        fetch_weights("vit_b_histopathology_decoder", progress=False)


def test_file_placed_by_hand_is_checked_against_registry(server, cache: Path, monkeypatch) -> None:
    data = _publish(server, monkeypatch, "vit_h_histopathology", "xxh128")
    cache.mkdir(parents=True)
    (cache / "vit_h_histopathology").write_bytes(data)
    assert verify_weights("vit_h_histopathology") == ("ok", cache / "vit_h_histopathology")
    assert (cache / "vit_h_histopathology.sha256").is_file()
    (cache / "vit_h_histopathology.sha256").unlink()
    (cache / "vit_h_histopathology").write_bytes(data + b"!")
    assert verify_weights("vit_h_histopathology")[0] == "mismatch"
    assert verify_weights("vit_l_histopathology")[0] == "missing"


def test_cache_dir_resolution(monkeypatch, tmp_path: Path) -> None:
    for env in ("PATHOSAM_WSI_CACHE_DIR", "PATHOSAM_WSI_CACHE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "ms"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "pathosam-wsi" / "weights"
        assert weight_folders() == [cache_dir(), tmp_path / "ms" / "models"]
    monkeypatch.delenv("MICROSAM_CACHEDIR")
    if sys.platform.startswith("linux"):
        assert weight_folders()[1] == tmp_path / "xdg" / "micro_sam" / "models"
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own" / "weights"
    assert weight_folders() == [cache_dir()]  # an explicit cache is the only place looked at


def test_legacy_cache_variable_still_read_with_a_warning(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PATHOSAM_WSI_CACHE_DIR", raising=False)
    monkeypatch.setenv("PATHOSAM_WSI_CACHE", str(tmp_path / "old"))
    with pytest.warns(
        PathoSamWarning, match="PATHOSAM_WSI_CACHE is deprecated; set PATHOSAM_WSI_CACHE_DIR"
    ):
        assert cache_dir() == tmp_path / "old"


def test_micro_sam_copy_is_used_in_place(server, monkeypatch, tmp_path: Path) -> None:
    for env in ("PATHOSAM_WSI_CACHE_DIR", "PATHOSAM_WSI_CACHE"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "ms"))
    data = _publish(server, monkeypatch, "vit_b_histopathology_decoder", "sha256")
    placed = tmp_path / "ms" / "models" / "vit_b_histopathology_decoder"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data)
    (server[1] / "vit_b_histopathology_decoder.bin").unlink()  # no download possible
    assert fetch_weights("vit_b_histopathology_decoder", progress=False) == placed


def test_registry_contents() -> None:
    reg = weights.REGISTRY
    assert reg["vit_b_histopathology"].hash == "xxh128:ffd1a2cd84570458b257bd95fdd8f974"
    assert reg["vit_h_histopathology_decoder"].url.endswith("/1qAKxy5H0jgwZvM/download")
    semantic = reg["vit_b_histopathology_semantic_segmentation_decoder"]
    assert semantic.algorithm == "sha256"
    assert semantic.digest.startswith("bdd05a55")
    assert set(weights.MODEL_FILES) == {f"vit_{s}_histopathology" for s in "blh"}
    assert all(f in reg for files in weights.MODEL_FILES.values() for f in files.values())
