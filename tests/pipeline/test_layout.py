"""SlideLayout / CohortLayout: the paths under OUT and the resume, finished and publish rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathosam_wsi.errors import ConfigError, OutputExistsError
from pathosam_wsi.pipeline.layout import CohortLayout, ResultFolder, SlideLayout
from pathosam_wsi.pipeline.slide_ids import MARKER, check_slide_id


def _finish(layout: SlideLayout, phash: str, body: str = "new") -> None:
    """Stage a result with ``phash`` and publish it."""
    layout.prepare_staging(phash, subdirs=("blocks",))
    layout.staging.table.write_text(body)
    layout.staging.write_run_info({"params_hash": phash, "counts": {"nuclei": 1}})
    layout.clean_staging()
    layout.publish()


def test_paths(tmp_path: Path) -> None:
    layout = SlideLayout(tmp_path, "case_1")
    assert layout.final.path == tmp_path / "case_1"
    assert layout.staging.path == tmp_path / "case_1.partial"
    assert layout.old == tmp_path / "case_1.old"
    assert layout.final.labels_s0 == tmp_path / "case_1" / "labels.ome.zarr" / "labels/nuclei/s0"
    assert layout.staging.block_file(3).name == "b0000003.npz"
    assert layout.staging.task_file(2) == tmp_path / "case_1.partial" / "tasks" / "t2.npz"
    cohort = CohortLayout(tmp_path)
    assert cohort.status_parquet == tmp_path / "status.parquet"
    assert cohort.cohort_table("case_1") == tmp_path / "nuclei" / "case_1.parquet"
    # Every file name a layout hands out is one a slide id may not take.
    for name in ("case_1.partial", "case_1.old", "status.parquet", "nuclei"):
        with pytest.raises(ConfigError):
            check_slide_id(name)


def test_unsafe_slide_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="slide id"):
        SlideLayout(tmp_path, "../escape")


def test_staging_resumes_only_with_the_same_parameters(tmp_path: Path) -> None:
    layout = SlideLayout(tmp_path, "s")
    assert layout.prepare_staging("aaa", subdirs=("blocks",)) is False
    assert (layout.staging.path / MARKER).is_file() and layout.staging.blocks_dir.is_dir()
    layout.staging.block_file(0).write_bytes(b"done")
    assert layout.prepare_staging("aaa", subdirs=("blocks",)) is True
    assert layout.staging.block_file(0).read_bytes() == b"done"  # kept for the resume
    assert layout.prepare_staging("bbb", subdirs=("blocks",)) is False
    assert not layout.staging.block_file(0).exists()  # other parameters: started afresh
    assert json.loads(layout.staging.params_json.read_text()) == {"params_hash": "bbb"}


def test_foreign_staging_folder_is_not_removed(tmp_path: Path) -> None:
    layout = SlideLayout(tmp_path, "s")
    layout.staging.path.mkdir()
    (layout.staging.path / "precious.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not made by pathosam-wsi"):
        layout.prepare_staging("aaa")
    assert (layout.staging.path / "precious.txt").read_text() == "x"


def test_finished_with_these_parameters(tmp_path: Path) -> None:
    layout = SlideLayout(tmp_path, "s")
    assert layout.finished_info("aaa") is None
    _finish(layout, "aaa")
    assert layout.finished_info("aaa") == {"params_hash": "aaa", "counts": {"nuclei": 1}}
    assert layout.finished_info("bbb") is None
    layout.final.run_json.write_text("{not json")
    assert layout.finished_info("aaa") is None  # a damaged run.json is not "finished"


def test_publish_replaces_only_our_result(tmp_path: Path) -> None:
    layout = SlideLayout(tmp_path, "s")
    _finish(layout, "aaa", "first")
    assert sorted(p.name for p in layout.final.path.iterdir()) == [
        MARKER,
        "nuclei.parquet",
        "run.json",
    ]
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        layout.check_writable(overwrite=False)
    layout.check_writable(overwrite=True)
    _finish(layout, "bbb", "second")
    assert layout.final.table.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .partial, no .old left

    other = SlideLayout(tmp_path, "t")
    other.final.path.mkdir()
    (other.final.path / "mine.txt").write_text("not yours")
    with pytest.raises(OutputExistsError, match="not made by pathosam-wsi"):
        other.check_writable(overwrite=True)
    assert (other.final.path / "mine.txt").is_file()


def test_cohort_table_is_linked_and_replaced(tmp_path: Path) -> None:
    cohort = CohortLayout(tmp_path)
    layout = cohort.slide("s")
    _finish(layout, "aaa", "first")
    cohort.publish_table("s")
    assert cohort.cohort_table("s").read_text() == "first"
    cohort.publish_table("s")  # already linked: nothing to do
    layout.check_writable(overwrite=True)
    _finish(layout, "bbb", "second")
    cohort.publish_table("s")
    assert cohort.cohort_table("s").read_text() == "second"
    assert [p.name for p in cohort.nuclei_dir.iterdir()] == ["s.parquet"]


def test_result_folder_run_info(tmp_path: Path) -> None:
    folder = ResultFolder(tmp_path)
    assert folder.read_run_info() is None and not folder.has_outputs()
    folder.write_run_info({"a": 1})
    folder.table.write_text("x")
    assert folder.read_run_info() == {"a": 1} and folder.has_outputs()
