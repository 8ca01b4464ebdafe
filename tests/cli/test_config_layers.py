"""Configuration layers: RunConfig defaults < --config TOML < options given on the command line.

Every section of a TOML with non-default values must reach run.json (the record of what ran),
for ``segment`` and for the cohort ``run``; unknown sections and keys are one-line errors.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from pathosam_wsi.cli import main
from pathosam_wsi.config import SECTIONS, RunConfig
from pathosam_wsi.errors import ConfigError
from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

# Every field of every section differs from its RunConfig default (checked below), and the run is
# cheap: the tiny random SAM model on a 240 x 200 px region.
TOML_VALUES: dict[str, Any] = {
    "slide": {"mpp": 0.45, "target_mpp": 0.5, "roi_xywh_l0": [8, 16, 240, 200]},
    "tiling": {"tile_px": 96, "halo_px": 24, "max_window_px": 1024},
    "tissue": {
        "enabled": False,
        "thumbnail_mpp": 4.0,
        "min_saturation_frac": 0.1,
        "min_region_um2": 500.0,
    },
    "watershed": {
        "center_distance_thresh": 0.4,
        "boundary_distance_thresh": 0.45,
        "foreground_thresh": 0.55,
        "foreground_smoothing_px": 1.5,
        "distance_smoothing_px": 2.0,
        "min_size_px": 7,
    },
    "model": {
        "name": "sam_tiny_random",
        "checkpoint": None,
        "decoder": None,
        "semantic_decoder": None,
        "classes": True,
        "device": "cpu",
        "precision": "bf16",
        "batch_size": 3,
        "compile": False,
        "intensity": "per_tile_minmax",
        "batchnorm": "running",
    },
    "blocks_per_task": 3,
    "threads": 1,
}
# Defaults kept on purpose: no local checkpoint files exist, torch.compile is slow to test.
KEPT_DEFAULT = {("model", "checkpoint"), ("model", "decoder"), ("model", "semantic_decoder"),
                ("model", "compile")}  # fmt: skip


def _toml_text(values: dict[str, Any]) -> str:
    """A TOML document of ``values`` (top-level keys first; None values are left out)."""

    def fmt(v: Any) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {fmt(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for section, table in values.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {fmt(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h, w = 256, 288
    rgb, _ = draw_nuclei(h, w, grid_centres(h, w, 32, 16, 4.0, seed=3), radius_px=6.0, seed=3)
    return write_pyramid(tmp_path_factory.mktemp("slide") / "s.tif", rgb, 0.5, levels=1, tile=128)


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(_toml_text(TOML_VALUES))
    return path


def _params(out: Path, slide_id: str = "s") -> dict[str, Any]:
    parameters: dict[str, Any] = json.loads((out / slide_id / "run.json").read_text())["parameters"]
    return parameters


def _expected(**changes: Any) -> dict[str, Any]:
    """TOML_VALUES as run.json records them, with ``{"section.key": value}`` changes."""
    expected = json.loads(json.dumps(TOML_VALUES))
    for dotted, value in changes.items():
        section, _, key = dotted.rpartition(".")
        (expected[section] if section else expected)[key] = value
    return expected


def test_toml_values_differ_from_every_default() -> None:
    defaults = RunConfig().to_dict()
    for section in SECTIONS:
        assert set(TOML_VALUES[section]) == set(defaults[section]), section
        for key, value in TOML_VALUES[section].items():
            if (section, key) not in KEPT_DEFAULT:
                assert value != defaults[section][key], (section, key)
    for key in ("blocks_per_task", "threads"):
        assert TOML_VALUES[key] != defaults[key]


def test_segment_records_every_toml_section(slide: Path, toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", str(slide), "-o", str(out), "--config", str(toml)])
    assert res.exit_code == 0, res.output
    assert _params(out) == _expected()


def test_given_options_beat_the_toml(slide: Path, toml: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    flags = [
        "--tile", "128", "--min-size", "3", "--precision", "fp32", "--tissue-mask",
        "--no-classes", "--roi", "0", "0", "200", "180", "--blocks-per-task", "2",
        "--model", "classical", "--target-mpp", "0.45",
    ]  # fmt: skip
    args = ["segment", str(slide), "-o", str(out), "--config", str(toml), *flags]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert _params(out) == _expected(
        **{
            "tiling.tile_px": 128,
            "watershed.min_size_px": 3,
            "model.precision": "fp32",
            "tissue.enabled": True,
            "model.classes": False,
            "slide.roi_xywh_l0": [0, 0, 200, 180],
            "blocks_per_task": 2,
            "model.name": "classical",
            "slide.target_mpp": 0.45,
        }
    )


def test_options_not_given_keep_the_defaults(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", str(slide), "-o", str(out), "--tile", "160", "-q"])
    assert res.exit_code == 0, res.output
    expected = RunConfig().to_dict()
    expected["tiling"]["tile_px"] = 160
    assert _params(out) == json.loads(json.dumps(expected))


def test_cohort_run_records_toml_and_options(slide: Path, toml: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,slide_id\n{slide},a\n{slide},b\n")
    out = tmp_path / "out"
    args = ["run", str(manifest), "-o", str(out), "--cluster", "none", "--config", str(toml)]
    res = CliRunner().invoke(main, [*args, "--halo", "16", "--model", "classical", "-q"])
    assert res.exit_code == 0, res.output
    for sid in ("a", "b"):
        assert _params(out, sid) == _expected(**{"tiling.halo_px": 16, "model.name": "classical"})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[tilin]\ntile_px = 3\n", "unknown key 'tilin' at the top level; valid keys: [slide]"),
        (
            "[tiling]\ntile = 256\n",
            "unknown key 'tile' in [tiling]; valid keys: tile_px, halo_px, max_window_px",
        ),
        ("[model]\nbatchnorm = 'batch'\n", "batchnorm must be per_tile or running"),
        ("[tissue]\nenabled = 'no'\n", "[tissue] enabled = 'no'; expected a bool"),
        ("tiling = 3\n", "tiling = 3 is not a table"),
        ("[tiling]\ntile_px = 5\n", "tiling.tile_px: got 5"),
        ("[tiling\n", "cannot read the config file"),
    ],
)
def test_bad_toml_is_one_error_line(slide: Path, tmp_path: Path, text: str, needle: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    out = tmp_path / "out"
    args = ["segment", str(slide), "-o", str(out), "--config", str(toml)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert errors[0].startswith(f"error: {toml}: ") and needle in errors[0], res.output
    assert not out.exists()


def test_unknown_model_is_refused_before_any_folder(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", str(slide), "-o", str(out), "--model", "vit_q"])
    assert res.exit_code == 2 and "unknown model 'vit_q'" in res.output, res.output
    assert "sam_tiny_random" in res.output
    assert not out.exists()


def test_with_overrides_checks_values() -> None:
    config = RunConfig().with_overrides({"tiling.halo_px": 10, "threads": 2})
    assert config.tiling.halo_px == 10 and config.threads == 2
    assert config.tiling.tile_px == RunConfig().tiling.tile_px
    with pytest.raises(ConfigError, match="halo_px"):
        RunConfig().with_overrides({"tiling.halo_px": -1})


def test_from_dict_round_trips_to_dict() -> None:
    config = RunConfig.from_dict(_expected())
    assert config.to_dict() == json.loads(json.dumps(_expected()), object_hook=dict) | {
        "slide": {**TOML_VALUES["slide"], "roi_xywh_l0": (8, 16, 240, 200)}
    }
    assert dataclasses.replace(config) == config
    assert np.isclose(config.slide.mpp or 0, 0.45)


def test_readme_toml_example_loads_and_names_every_key(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(example)
    config = RunConfig.from_toml(path)
    assert config.tiling.tile_px == 1024 and config.model.precision == "bf16"
    assert config.tissue.enabled is False and config.watershed.min_size_px == 30
    keys_text = readme.split("Keys: top level", 1)[1].split("\n\n", 1)[0]
    for section, cls in SECTIONS.items():
        assert f"`[{section}]`" in keys_text
        for f in dataclasses.fields(cls):
            assert f"`{f.name}" in keys_text, f"README misses {section}.{f.name}"
