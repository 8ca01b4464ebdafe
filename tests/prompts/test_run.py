"""``prompt_slide`` end to end with a tiny random model: outputs like segment's, tiling
independence, resume, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import zarr
from click.testing import CliRunner
from scipy import ndimage as ndi

from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.prompt_models import PromptModel, build_prompt_model
from pathosam_wsi.prompts.run import prompt_slide
from tests.conftest import SyntheticSlide

TINY = {
    "embed_dim": 32,
    "depth": 1,
    "num_heads": 2,
    "global_attn_indexes": (0,),
    "img_size": 128,
    "window_size": 4,
}


@pytest.fixture(scope="module")
def tiny_model() -> PromptModel:
    torch.manual_seed(0)
    return build_prompt_model("vit_b_histopathology", **TINY)


@pytest.fixture(scope="module")
def prompts_csv(synthetic_slide: SyntheticSlide, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tight boxes of the ground-truth nuclei in the top-left 400 x 300 px, plus a few points."""
    labels = synthetic_slide.labels
    rows = []
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or sl[1].stop > 400 or sl[0].stop > 300:
            continue
        rows.append(
            {
                "xmin": sl[1].start,
                "ymin": sl[0].start,
                "xmax": sl[1].stop,
                "ymax": sl[0].stop,
                "object_id": lab,
            }
        )
    rows.append({"x": 355.5, "y": 20.5, "object_id": 100_000})
    rows.append({"x": 120.5, "y": 130.5, "object_id": 100_001})
    path = tmp_path_factory.mktemp("prompts") / "boxes.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _labels(out: Path) -> np.ndarray:
    return np.asarray(
        zarr.open_group(str(out / "labels.ome.zarr"), mode="r")["labels/nuclei/s0"][:]
    )


def test_outputs_and_tiling_independence(
    synthetic_slide: SyntheticSlide, prompts_csv: Path, tiny_model: PromptModel, tmp_path: Path
) -> None:
    a = prompt_slide(synthetic_slide.path, prompts_csv, tmp_path / "a", tiny_model, tile=128)
    b = prompt_slide(
        synthetic_slide.path, prompts_csv, tmp_path / "b", tiny_model, tile=256, batch=3
    )
    for res in (a, b):
        assert sorted(p.name for p in res.output_dir.iterdir()) == [
            ".pathosam-wsi",  # the marker: --overwrite replaces only folders made by us
            "labels.ome.zarr",
            "nuclei.parquet",
            "run.json",
        ]
    np.testing.assert_array_equal(_labels(a.output_dir), _labels(b.output_dir))
    ta = (
        pq.read_table(a.output_dir / "nuclei.parquet")
        .to_pandas()
        .sort_values("nucleus_id")
        .reset_index(drop=True)
    )
    tb = (
        pq.read_table(b.output_dir / "nuclei.parquet")
        .to_pandas()
        .sort_values("nucleus_id")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(ta, tb)
    assert {"prompt_id", "score", "prompt_type", "geometry", "area_px"} <= set(ta.columns)
    assert set(ta["prompt_type"]) <= {"box", "points"}
    # every labelled id is a table row, painted exactly where the table says
    lab = _labels(a.output_dir)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    assert dict(zip(ids.tolist(), counts.tolist(), strict=True)) == dict(
        zip(ta["nucleus_id"].tolist(), ta["area_px"].tolist(), strict=True)
    )


def test_resume_reuses_finished_tasks(
    synthetic_slide: SyntheticSlide, prompts_csv: Path, tiny_model: PromptModel, tmp_path: Path
) -> None:
    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        prompt_slide(
            synthetic_slide.path,
            prompts_csv,
            tmp_path,
            tiny_model,
            tile=128,
            on_task=stop_after_first,
        )
    assert (tmp_path / "slide.partial" / "tasks" / "t0.npz").is_file() or any(
        (tmp_path).glob("*.partial")
    )
    res = prompt_slide(synthetic_slide.path, prompts_csv, tmp_path, tiny_model, tile=128)
    import json

    info = json.loads((res.output_dir / "run.json").read_text())
    assert info["counts"]["tasks_reused"] == 1
    assert info["counts"]["prompts"] == res.prompts


def test_prompt_outside_slide_names_row(
    synthetic_slide: SyntheticSlide, tiny_model: PromptModel, tmp_path: Path
) -> None:
    path = tmp_path / "p.csv"
    path.write_text("x,y\n10,10\n5000,10\n")
    with pytest.raises(ConfigError, match=r"p.csv row 2: .* outside the slide"):
        prompt_slide(synthetic_slide.path, path, tmp_path / "o", tiny_model)


def test_cli_registered() -> None:
    from pathosam_wsi.cli import main

    result = CliRunner().invoke(main, ["prompt", "--help"])
    assert result.exit_code == 0
    assert "--prompts" in result.output


def test_refinement_changes_only_corrected_objects(
    synthetic_slide: SyntheticSlide, prompts_csv: Path, tiny_model: PromptModel, tmp_path: Path
) -> None:
    from pathosam_wsi.prompts.refine import refine_output

    first = prompt_slide(synthetic_slide.path, prompts_csv, tmp_path / "a", tiny_model, tile=256)
    table = pq.read_table(first.output_dir / "nuclei.parquet").to_pandas()
    target = table.sort_values("area_px").iloc[len(table) // 2]
    corr = tmp_path / "corr.csv"
    cx, cy = target["centroid_x_l0"], target["centroid_y_l0"]
    corr.write_text(
        f"x,y,label,object_id\n{cx},{cy},1,{target['nucleus_id']}\n"
        f"{cx + 3},{cy},0,{target['nucleus_id']}\n"
    )
    res = refine_output(
        synthetic_slide.path, first.output_dir, corr, tmp_path / "b", tiny_model, tile=256
    )
    before, after = _labels(first.output_dir), _labels(res.output_dir)
    tid = int(target["nucleus_id"])
    untouched = (before != tid) & (after != tid)
    np.testing.assert_array_equal(before[untouched], after[untouched])
    assert ((before == 0) | (before == tid))[after == tid].all()  # never a neighbour's pixels
    new = pq.read_table(res.output_dir / "nuclei.parquet").to_pandas()
    cols = ["nucleus_id", "area_px", "centroid_x_l0", "geometry"]
    keep_old = table[table.nucleus_id != tid].sort_values("nucleus_id")[cols].reset_index(drop=True)
    keep_new = new[new.nucleus_id != tid].sort_values("nucleus_id")[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep_old, keep_new)
    row = new[new.nucleus_id == tid]
    assert row["prompt_type"].tolist() in ([], ["refined"])
