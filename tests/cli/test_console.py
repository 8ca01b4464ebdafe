"""The console: block progress with rate and ETA, plain lines in logs, compact status, structure."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from pathosam_wsi.cli.progress import ConsoleProgress, cpu_seconds_per_block, format_duration
from pathosam_wsi.cli.status import status_table
from pathosam_wsi.config import ModelConfig, RunConfig
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.pipeline.progress import BlockDone, block_done
from tests.synthetic import draw_nuclei, grid_centres, write_pyramid

CLI_DIR = Path(__file__).parents[2] / "pathosam_wsi" / "cli"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # everything but \t and \n


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_blocks_count_as_they_finish_with_rate_and_eta() -> None:
    stream = io.StringIO()
    with ConsoleProgress(stream=stream, line_every_s=0.0) as progress:
        progress("planned", 10)
        assert "blocks 0/10 0%" in progress.line() and "ETA ?" in progress.line()
        for b in range(4):
            block_done(BlockDone("s", b, nuclei=5, model_s=0.1))
        time.sleep(0.05)
        line = progress.line()
    assert "blocks 4/10 40%" in line and "nuclei 20" in line, line
    rate = float(re.search(r"([\d.]+) blocks/s", line).group(1))  # type: ignore[union-attr]
    assert rate > 0
    eta = re.search(r"ETA (\d+):(\d\d):(\d\d)", line)
    assert eta is not None, line
    # a block reported per block and again in its shard's summaries counts once
    assert len(progress.done) == 4
    text = stream.getvalue()
    assert text.endswith("\n") and not CONTROL.search(text), text


def test_listener_is_removed_after_the_run() -> None:
    progress = ConsoleProgress(stream=io.StringIO())
    with progress:
        progress("planned", 2)
    block_done(BlockDone("s", 0, nuclei=1, model_s=0.0))
    assert not progress.done


def test_terminal_redraws_one_line() -> None:
    stream = FakeTty()
    with ConsoleProgress(stream=stream) as progress:
        progress("planned", 3)
        time.sleep(1.2)  # the line is redrawn every second even when no block finished
    text = stream.getvalue()
    assert text.count("\r") >= 2 and text.endswith("\n"), text
    assert "elapsed 0:00:01" in text


def test_terminal_warning_starts_on_its_own_line() -> None:
    stream = FakeTty()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda *a, **k: stream.write("warning: x\n")
        with ConsoleProgress(stream=stream) as progress:
            progress("planned", 3)
            time.sleep(1.1)  # a line is drawn
            warnings.warn("x", PathoSamWarning, stacklevel=1)
        assert warnings.showwarning != progress._show_warning_below  # restored
    text = stream.getvalue()
    assert "| nuclei 0\nwarning: x\n" in text.replace(" \n", "\n"), repr(text)


def test_cohort_counts_blocks_per_slide() -> None:
    stream = io.StringIO()
    with ConsoleProgress(stream=stream, slides=2) as progress:
        progress("slide_started", "a")
        progress("planned", ("a", 2))
        progress("planned", ("b", 2))
        block_done(BlockDone("a", 0, nuclei=1, model_s=0.0))
        block_done(BlockDone("b", 0, nuclei=1, model_s=0.0))  # same block id, another slide
        line = progress.line()
    assert "blocks 2/4" in line and "slides 0/2" in line and "in flight: a" in line, line


def test_cpu_sam_warns_once_with_an_estimate() -> None:
    progress = ConsoleProgress(stream=io.StringIO(), cpu_s_per_block=36.0)
    with pytest.warns(PathoSamWarning, match=r"36 s per block: 100 blocks need about 1:00:00"):
        progress("planned", 100)
    assert re.search(r"ETA ~(1:00:00|0:59:5\d) \(estimated\)", progress.line()), progress.line()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        progress("planned", 0)  # a second slide of a cohort: no second warning


def test_cpu_estimate_only_for_sam_encoders_on_cpu() -> None:
    cpu = RunConfig(model=ModelConfig(name="vit_b_histopathology", device="cpu"))
    assert cpu_seconds_per_block(cpu) == 36.0
    assert cpu_seconds_per_block(RunConfig()) is None  # classical
    tiny = RunConfig(model=ModelConfig(name="sam_tiny_random", device="cpu"))
    assert cpu_seconds_per_block(tiny) is None


def test_format_duration() -> None:
    assert format_duration(0) == "0:00:00"
    assert format_duration(3723.4) == "1:02:03"
    assert format_duration(2 * 86400 + 5) == "2d 0:00:05"


def test_status_table_cuts_long_errors() -> None:
    rows = pd.DataFrame(
        {
            "slide_id": ["a", "bb"],
            "path": ["/x/a.svs", "/x/b.svs"],
            "state": ["done", "failed"],
            "nuclei": pd.array([10, None], dtype="Int64"),
            "blocks": pd.array([4, None], dtype="Int64"),
            "seconds": [1.25, None],
            "error": [None, "b.svs: cannot read " + "x" * 300],
        }
    )
    text = status_table(rows, width=80)
    lines = text.splitlines()
    assert lines[0].split() == ["slide_id", "state", "nuclei", "blocks", "seconds", "error"]
    assert all(len(ln) <= 80 for ln in lines), text
    assert lines[2].endswith("...") and "b.svs: cannot read" in lines[2]
    assert "/x/a.svs" not in text  # the path stays in status.parquet
    assert status_table(rows.iloc[:0], 80) == "(no slides)"


def test_segment_logs_plain_lines_when_stderr_is_a_file(tmp_path: Path) -> None:
    h, w = 256, 320
    rgb, _ = draw_nuclei(h, w, grid_centres(h, w, 32, 16, 4.0, seed=5), radius_px=6.0, seed=5)
    slide = write_pyramid(tmp_path / "s.tif", rgb, 0.5, levels=1, tile=128)
    log = tmp_path / "log"
    with log.open("w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "pathosam_wsi.cli", "segment", str(slide), "-o",
             str(tmp_path / "out"), "--tile", "128", "--halo", "16", "--no-tissue-mask"],
            stderr=err, stdout=subprocess.PIPE, text=True, timeout=300, check=False,
        )  # fmt: skip
    text = log.read_text()
    assert proc.returncode == 0, text
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert lines and all(ln.startswith("blocks ") for ln in lines), text
    assert re.match(r"blocks 6/6 100% \| [\d.]+ blocks/s \| elapsed .* \| ETA 0:00:00", lines[-1])
    assert "nuclei in 6 blocks" in proc.stdout


def _cli_modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(CLI_DIR.glob("*.py"))}


def test_cli_imports_no_private_names_and_no_importlib() -> None:
    for name, tree in _cli_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pathosam_wsi"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"cli/{name}.py imports {private} from {node.module}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert "importlib" not in mods, f"cli/{name}.py imports importlib"


def test_every_command_module_is_added_to_the_group() -> None:
    from pathosam_wsi.cli import main

    helpers = {"__init__", "__main__", "app", "errors", "options", "progress"}
    added = {cmd.callback.__module__.rsplit(".", 1)[-1] for cmd in main.commands.values()}  # type: ignore[union-attr]
    assert added == set(_cli_modules()) - helpers


def test_models_list_prints_every_url_and_help_lists_every_model() -> None:
    from click.testing import CliRunner

    from pathosam_wsi.cli import main
    from pathosam_wsi.model.registry import available_models
    from pathosam_wsi.model.weights import REGISTRY

    listing = CliRunner().invoke(main, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    for spec in REGISTRY.values():
        if spec.url:
            assert spec.url in listing.output
    help_text = " ".join(CliRunner().invoke(main, ["segment", "--help"]).output.split())
    for name in available_models():
        assert name in help_text


def test_auto_cluster_is_threads_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathosam_wsi.distributed import cluster

    monkeypatch.setattr(cluster, "_gpu_count", lambda: 0)
    assert cluster.auto_kind() == "threads"
    monkeypatch.setattr(cluster, "_gpu_count", lambda: 2)
    assert cluster.auto_kind() == "local"


def test_local_cluster_shutdown_drops_only_the_nanny_kill_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from pathosam_wsi.distributed.cluster import _quiet_shutdown

    nanny = logging.getLogger("distributed.nanny")
    with caplog.at_level(logging.WARNING, logger="distributed.nanny"), _quiet_shutdown():
        nanny.warning("Worker process still alive after 4.0 seconds, killing")
        nanny.warning("something else")
    nanny.warning("Worker process still alive after 4.0 seconds, killing")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["something else", "Worker process still alive after 4.0 seconds, killing"]
