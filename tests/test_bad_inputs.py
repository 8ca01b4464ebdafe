"""Bad-input corpus: every command, every bad input -> one ``error:`` line, exit 2, nothing touched.

Each case runs the CLI in-process and asserts the exit code, exactly one ``error:`` line on
stderr, no traceback, and that a neighbouring folder (and, for path escapes, the folder the
input aims at) has the same checksum before and after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from pathosam_wsi.cli import main
from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

FAST = ["--tile", "64", "--halo", "8", "-q"]


def checksum(folder: Path) -> str:
    """sha256 over every path and file content under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny good and bad inputs shared by the cases (read-only)."""
    d = tmp_path_factory.mktemp("inputs")
    rgb, labels = draw_nuclei(96, 96, grid_centres(96, 96, 30, 15, 4, 1), radius_px=5)
    good = write_pyramid(d / "good.tiff", rgb, 0.5, levels=1, tile=32)
    rng = np.random.default_rng(0)
    tifffile.imwrite(
        d / "zstack.tif",
        rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8),
        photometric="rgb",
        tile=(32, 32),
        metadata={"axes": "ZYXS"},
    )
    (d / "notes.svs").write_text("not a slide\n" * 50)
    (d / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")
    (d / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(d / "gt.npy", labels)
    (d / "bad.toml").write_text("[tiling\ntile_px = ")
    (d / "unknown.toml").write_text("[tiling]\ntile_pixels = 5\n")
    (d / "a_file").write_text("x")
    result = d / "result"  # looks like OUT/<slide_id> with corrupt tables
    result.mkdir()
    (result / "nuclei.parquet").write_bytes(b"garbage")
    (result / "run.json").write_text("{not json")
    status = d / "cohort"
    status.mkdir()
    (status / "status.parquet").write_bytes(b"garbage")
    return {"dir": d, "good": good, "rgb_labels": d / "gt.npy"}


def manifest(folder: Path, rows: list[str], header: str = "path,slide_id") -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def run_cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


# Each case: (name, builder(inputs, tmp) -> CLI args, expected stderr fragment).
Case = tuple[str, Callable[[dict[str, Path], Path], list[str]], str]


def _seg(*extra: str) -> Callable[[dict[str, Path], Path], list[str]]:
    return lambda i, t: ["segment", str(i["good"]), "-o", str(t / "out"), *FAST, *extra]


def _file(name: str) -> Callable[[dict[str, Path], Path], str]:
    return lambda i, t: str(i["dir"] / name)


CASES: list[Case] = [
    # segment: slide ids that escape OUT or collide with working folders
    ("id_parent_escape", _seg("--slide-id", "../victim", "--overwrite"), "slide id"),
    ("id_dot", _seg("--slide-id", ".", "--overwrite"), "slide id"),
    ("id_dotdot", _seg("--slide-id", "..", "--overwrite"), "slide id"),
    ("id_partial_suffix", _seg("--slide-id", "x.partial"), "slide id"),
    ("id_old_suffix", _seg("--slide-id", "x.old", "--overwrite"), "slide id"),
    ("id_hidden", _seg("--slide-id", ".hidden"), "slide id"),
    ("id_separator", _seg("--slide-id", "a/b"), "slide id"),
    ("id_backslash", _seg("--slide-id", "a\\b"), "slide id"),
    ("id_absolute", _seg("--slide-id", "/tmp/x", "--overwrite"), "slide id"),
    ("id_too_long", _seg("--slide-id", "a" * 200), "slide id"),
    ("id_reserved", _seg("--slide-id", "nuclei"), "slide id"),
    ("id_control_char", _seg("--slide-id", "a\nb"), "slide id"),
    # segment: numeric ranges
    ("mpp_inf", _seg("--mpp", "inf"), "slide.mpp"),
    ("mpp_nan", _seg("--mpp", "nan"), "slide.mpp"),
    ("mpp_zero", _seg("--mpp", "0"), "slide.mpp"),
    ("target_mpp_1000", _seg("--target-mpp", "1000"), "slide.target_mpp"),
    ("target_mpp_negative", _seg("--target-mpp", "-1"), "slide.target_mpp"),
    ("tile_huge", _seg("--tile", "100000"), "tiling.tile_px"),
    ("tile_tiny", _seg("--tile", "8"), "tiling.tile_px"),
    ("halo_negative", _seg("--halo", "-1"), "tiling.halo_px"),
    ("blocks_per_task_zero", _seg("--blocks-per-task", "0"), "blocks_per_task"),
    ("foreground_thresh_2", _seg("--foreground-thresh", "2"), "foreground_thresh"),
    ("center_thresh_negative", _seg("--center-distance-thresh", "-1"), "center_distance"),
    ("min_size_negative", _seg("--min-size", "-5"), "min_size_px"),
    ("smoothing_inf", _seg("--distance-smoothing", "inf"), "distance_smoothing"),
    ("batch_size_zero", _seg("--batch-size", "0"), "batch_size"),
    ("threads_zero", _seg("--threads", "0"), "threads"),
    ("roi_negative_size", _seg("--roi", "0", "0", "-5", "10"), "roi"),
    ("roi_outside", _seg("--roi", "5000", "5000", "10", "10"), "outside the slide"),
    ("unknown_model", _seg("--model", "nope"), "unknown model"),
    ("unknown_option", _seg("--no-such-option"), "no such option"),
    ("bad_toml", lambda i, t: [*_seg()(i, t), "--config", _file("bad.toml")(i, t)], "config"),
    (
        "unknown_toml_key",
        lambda i, t: [*_seg()(i, t), "--config", _file("unknown.toml")(i, t)],
        "tile_pixels",
    ),
    # segment: bad slides and outputs
    (
        "missing_slide",
        lambda i, t: ["segment", str(t / "nope.svs"), "-o", str(t / "out")],
        "no such file",
    ),
    (
        "not_an_image",
        lambda i, t: ["segment", _file("notes.svs")(i, t), "-o", str(t / "out")],
        "cannot open",
    ),
    (
        "zstack",
        lambda i, t: ["segment", _file("zstack.tif")(i, t), "-o", str(t / "out")],
        "more than one plane",
    ),
    (
        "out_is_a_file",
        lambda i, t: ["segment", str(i["good"]), "-o", _file("a_file")(i, t)],
        "is a file",
    ),
    (
        "out_below_a_file",
        lambda i, t: ["segment", str(i["good"]), "-o", _file("a_file")(i, t) + "/sub"],
        "is a file",
    ),
    # run: manifests
    (
        "manifest_x_partial",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},x", f"{i['good']},x.partial"])),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "row 2",
    ),
    (
        "manifest_dotdot",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},.."])),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "row 1",
    ),
    (
        "manifest_escape",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},../victim"])),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
            "--overwrite",
        ],
        "row 1",
    ),
    (
        "manifest_bad_paths",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a", f"{t}/gone.svs,b", f"{i['dir']}/notes.svs,c"])),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "2 of 3 row(s)",
    ),
    (
        "manifest_tile_zero",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a,0"], "path,slide_id,tile_px")),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "row 1",
    ),
    (
        "manifest_mpp_text",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a,abc"], "path,slide_id,mpp")),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "row 1",
    ),
    (
        "manifest_mpp_inf",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a,inf"], "path,slide_id,mpp")),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "row 1",
    ),
    (
        "manifest_no_path_column",
        lambda i, t: [
            "run",
            str(manifest(t, ["a"], "slide")),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "expected 'path'",
    ),
    (
        "manifest_duplicate_ids",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a", f"{i['good']},A"])),
            "-o",
            str(t / "out"),
            "--cluster",
            "none",
        ],
        "duplicate",
    ),
    (
        "run_workers_zero",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a"])),
            "-o",
            str(t / "out"),
            "--workers",
            "0",
        ],
        "--workers",
    ),
    (
        "run_out_is_a_file",
        lambda i, t: [
            "run",
            str(manifest(t, [f"{i['good']},a"])),
            "-o",
            _file("a_file")(i, t),
            "--cluster",
            "none",
        ],
        "is a file",
    ),
    # status / export / qc
    (
        "status_corrupt",
        lambda i, t: ["status", _file("cohort")(i, t)],
        "cannot read the cohort status",
    ),
    ("status_missing_dir", lambda i, t: ["status", str(t / "nope")], "does not exist"),
    (
        "export_corrupt_table",
        lambda i, t: ["export", "qupath", _file("result")(i, t), "-o", str(t / "x.geojson")],
        "cannot export",
    ),
    ("export_no_table", lambda i, t: ["export", "qupath", str(t)], "no nuclei.parquet"),
    ("qc_corrupt_run_json", lambda i, t: ["qc", _file("result")(i, t)], "cannot make QC pictures"),
    ("qc_crops_negative", lambda i, t: ["qc", _file("result")(i, t), "--crops", "-1"], "--crops"),
    # evaluate / models / info
    (
        "evaluate_corrupt_npy",
        lambda i, t: ["evaluate", _file("corrupt.npy")(i, t), _file("gt.npy")(i, t)],
        "cannot read labels",
    ),
    (
        "evaluate_missing",
        lambda i, t: ["evaluate", str(t / "nope.npy"), _file("gt.npy")(i, t)],
        "does not exist",
    ),
    (
        "evaluate_not_labels",
        lambda i, t: ["evaluate", _file("notes.svs")(i, t), _file("gt.npy")(i, t)],
        "",
    ),
    ("models_download_unknown", lambda i, t: ["models", "download", "vit_z"], "unknown name"),
    ("models_verify_missing", lambda i, t: ["models", "verify"], "not cached"),
    ("info_zstack", lambda i, t: ["info", _file("zstack.tif")(i, t)], "more than one plane"),
    ("info_missing", lambda i, t: ["info", str(t / "nope.svs")], "no such file"),
    ("info_mpp_inf", lambda i, t: ["info", str(i["good"]), "--mpp", "inf"], "slide.mpp"),
    ("info_not_an_image", lambda i, t: ["info", _file("notes.svs")(i, t)], "cannot open"),
]


@pytest.mark.parametrize(("name", "build", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(
    name: str,
    build: Callable[[dict[str, Path], Path], list[str]],
    needle: str,
    inputs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATHOSAM_WSI_CACHE_DIR", str(tmp_path / "empty_cache"))
    neighbour, victim = tmp_path / "neighbour", tmp_path / "victim"
    for folder in (neighbour, victim):
        (folder / "sub").mkdir(parents=True)
        (folder / "keep.txt").write_text(f"precious {folder.name}")
        (folder / "sub" / "data.bin").write_bytes(bytes(range(256)))
    before = checksum(neighbour), checksum(victim), checksum(inputs["dir"])
    code, stdout, stderr = run_cli(build(inputs, tmp_path))
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert code == 2, (code, stdout, stderr)
    assert len(errors) == 1, stderr
    assert needle.lower() in errors[0].lower(), stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0], "the error must be the last line"
    assert "Traceback" not in stdout + stderr
    assert (checksum(neighbour), checksum(victim), checksum(inputs["dir"])) == before
    assert len(CASES) >= 40


def test_overwrite_refuses_a_folder_it_did_not_make(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    foreign = tmp_path / "out" / "good"
    foreign.mkdir(parents=True)
    (foreign / "thesis.docx").write_text("years of work")
    code, _, stderr = run_cli(
        ["segment", str(inputs["good"]), "-o", str(tmp_path / "out"), *FAST, "--overwrite"]
    )
    assert code == 2 and "not made by pathosam-wsi" in stderr, stderr
    assert (foreign / "thesis.docx").read_text() == "years of work"
    assert not (tmp_path / "out" / "good.partial").exists()


def test_skip_bad_runs_the_rest(inputs: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    m = manifest(tmp_path, [f"{inputs['good']},a", f"{tmp_path}/gone.svs,b"])
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        ["run", str(m), "-o", str(out), "--cluster", "none", "--skip-bad", *FAST]
    )
    assert code == 3, stderr
    status = pd.read_parquet(out / "status.parquet").set_index("slide_id")
    assert status.loc["a", "state"] == "done" and status.loc["b", "state"] == "failed"
    assert not list((out / "nuclei").glob(".*.tmp"))
    code, _, _ = run_cli(["run", str(m), "-o", str(out), "--cluster", "none", "--skip-bad", *FAST])
    assert code == 3 and not list((out / "nuclei").glob(".*"))


def test_status_shows_interrupted_for_a_gone_run(tmp_path: Path) -> None:
    from pathosam_wsi.cohort import _STATUS_SCHEMA
    from pathosam_wsi.pipeline.layout import CohortLayout

    layout = CohortLayout(tmp_path)
    row = {"slide_id": "a", "path": "a.svs", "state": "running", "nuclei": None, "blocks": None}
    table = pa.Table.from_pylist([{**row, "seconds": None, "error": None}], schema=_STATUS_SCHEMA)
    pq.write_table(table, layout.status_parquet)
    layout.status_owner_json.write_text(
        json.dumps({"host": __import__("socket").gethostname(), "pid": 2**22 + 7})
    )
    code, stdout, _ = run_cli(["status", str(tmp_path)])
    assert code == 0 and "interrupted" in stdout and "running" not in stdout


def test_one_pixel_image_runs(tmp_path: Path) -> None:
    path = tmp_path / "one.png"
    Image.fromarray(np.full((1, 1, 3), 120, np.uint8)).save(path)
    code, _, stderr = run_cli(
        ["segment", str(path), "-o", str(tmp_path / "out"), "--mpp", "0.5", "-q"]
    )
    assert code == 0, stderr
    assert (tmp_path / "out" / "one" / "nuclei.parquet").exists()


def test_coarse_target_mpp_warns_in_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    code, _, stderr = run_cli(
        [
            "segment",
            str(inputs["good"]),
            "-o",
            str(tmp_path / "out"),
            "--target-mpp",
            "4",
            "--model",
            "classical",
            *FAST,
        ]
    )
    assert code == 0, stderr
    warn = [ln for ln in stderr.splitlines() if "supported" in ln]
    assert len(warn) == 1 and warn[0].startswith("warning: model 'classical'"), stderr


def test_debug_shows_the_traceback(inputs: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--debug", "segment", str(inputs["good"]), "-o", str(tmp_path), "--slide-id", ".."]
    )
    assert result.exit_code != 0 and result.exception is not None


def test_corrupt_tile_error_is_the_last_line(tmp_path: Path) -> None:
    """In a real process: no asyncio 'Task was destroyed' noise after the error (at exit)."""
    import subprocess
    import sys

    rgb, _ = draw_nuclei(256, 256, grid_centres(256, 256, 40, 20, 8, 1))
    path = write_pyramid(tmp_path / "corrupt.tiff", rgb, 0.5, levels=1, tile=64)
    with tifffile.TiffFile(path) as tif:
        offset, size = tif.pages[0].dataoffsets[5], tif.pages[0].databytecounts[5]
    data = bytearray(path.read_bytes())
    data[offset : offset + size] = b"\0" * size
    path.write_bytes(bytes(data))
    code = "from pathosam_wsi.cli import main; main()"
    args = ["segment", str(path), "-o", str(tmp_path / "out"), "--no-tissue-mask", *FAST]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("error:") and "corrupt" in lines[-1], proc.stderr
    assert sum(ln.startswith("error:") for ln in lines) == 1 and "Traceback" not in proc.stderr
