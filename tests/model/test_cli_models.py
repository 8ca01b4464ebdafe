"""``pathosam-wsi models`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.cli.models import models, resolve_weight_names


def test_list_shows_models_and_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(models, ["list"])
    assert result.exit_code == 0, result.output
    assert f"cache folder: {tmp_path / 'weights'}" in result.output
    assert "vit_h_histopathology_decoder" in result.output
    assert "not cached" in result.output


def test_verify_reports_missing_and_mismatch(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["models", "verify", "vit_b_histopathology"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: models verify: 3 of 3")
    assert "vit_b_histopathology: missing" in result.output
    assert "vit_b_histopathology_semantic_segmentation_decoder: missing" in result.output
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "vit_l_histopathology_decoder").write_bytes(b"not the real file")
    (tmp_path / "weights" / "vit_l_histopathology_decoder.sha256").write_text("0" * 64 + "  x\n")
    result = CliRunner().invoke(main, ["models", "verify", "vit_l_histopathology_decoder"])
    assert result.exit_code == 2
    assert "mismatch" in result.output


def test_unknown_names_rejected() -> None:
    result = CliRunner().invoke(main, ["models", "download", "vit_z"])
    assert result.exit_code == 2
    assert result.output.startswith("error: unknown name")
    assert "unknown name 'vit_z'" in result.output
    assert resolve_weight_names(("vit_l_histopathology", "vit_l_histopathology_decoder")) == [
        "vit_l_histopathology",
        "vit_l_histopathology_decoder",
    ]


def test_download_failure_is_a_clean_error(tmp_path: Path, monkeypatch) -> None:
    from pathosam_wsi.model import weights

    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path))
    spec = weights.WeightSpec(
        "vit_b_histopathology_decoder", "http://127.0.0.1:9/none", "sha256:00", ""
    )
    monkeypatch.setitem(weights.REGISTRY, spec.name, spec)
    result = CliRunner().invoke(main, ["models", "download", "--quiet", spec.name])
    assert result.exit_code == 2
    assert result.output.count("error:") == 1
    assert "and put it at" in result.output


def test_attaches_to_a_main_group() -> None:
    import click

    @click.group()
    def main() -> None:
        pass

    main.add_command(models)
    result = CliRunner().invoke(main, ["models", "--help"])
    assert result.exit_code == 0
    assert "make-test-checkpoint" in result.output


@pytest.mark.slow
def test_make_test_checkpoint(tmp_path: Path) -> None:
    from pathosam_wsi.model.synthetic_weights import state_dict_sha256

    out, dec = tmp_path / "sam.pt", tmp_path / "dec.pt"
    result = CliRunner().invoke(models, ["make-test-checkpoint", str(out), "--decoder", str(dec)])
    assert result.exit_code == 0, result.output
    assert state_dict_sha256(torch.load(dec, weights_only=True)).startswith("ed968ab8")
    assert state_dict_sha256(torch.load(out, weights_only=True)).startswith("97d36787")
