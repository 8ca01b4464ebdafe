"""The CLI's one error path: every failure becomes one ``error: <what>: <why>; <fix>`` line.

Expected failures (bad input, file system, pyarrow, numpy, zarr, configuration) exit with 2,
interrupts with 130, anything else (a bug) with 1; ``--debug`` shows the traceback instead.
Warnings print as one ``warning: ...`` line.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import click

from pathosam_wsi.errors import ConfigError, PathoSamError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "CliGroup",
    "check_out_dir",
    "check_result_dir",
    "error_line",
    "fail",
    "set_debug",
]

EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


class _State:
    debug = False


def set_debug(debug: bool) -> None:
    """Show tracebacks (``--debug``) instead of one error line."""
    _State.debug = debug


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _expected(err: BaseException) -> bool:
    """Whether ``err`` is a failure of the input or environment rather than a bug."""
    if isinstance(err, PathoSamError | OSError | ValueError | MemoryError):
        return True
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return False
    return isinstance(err, pa.ArrowException)


def error_line(err: BaseException) -> str:
    """``err`` as the one ``<what>: <why>; <fix>`` text printed after ``error:``."""
    if isinstance(err, PathoSamError):
        return _one_line(str(err))
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller --tile, --batch-size or --blocks-per-task"
    if isinstance(err, OSError) and not isinstance(err, PathoSamError):
        what = err.filename if err.filename is not None else "file system"
        why = err.strerror or _one_line(str(err)) or type(err).__name__
        return f"{what}: {why}; check the path, its permissions and the free space"
    if _expected(err):
        why = _one_line(str(err)) or type(err).__name__
        return f"{type(err).__name__}: {why}; check the inputs (--debug shows the traceback)"
    why = _one_line(str(err))
    return (
        f"internal error: {type(err).__name__}: {why}; rerun with --debug and report the traceback"
    )


def _quiet_event_loop_noise() -> None:
    """Drop asyncio's 'Task was destroyed but it is pending!' lines printed at exit.

    zarr's event-loop thread may still hold reads or writes of a slide that failed; they are
    abandoned when the process exits, and the error line must stay the last line.
    """
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` as one line to stderr and exit with ``code``."""
    click.echo(f"error: {_one_line(message)}", err=True)
    _quiet_event_loop_noise()
    sys.exit(code)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output root that is a file or cannot be written, before anything runs."""
    probe = out_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            f"output {str(out_dir)!r}: {str(probe)!r} is a file, not a folder; choose another -o"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"output {str(out_dir)!r}: {str(probe)!r} is not writable (permissions or a "
            "read-only file system); choose another -o"
        )


def check_result_dir(path: Path) -> Path:
    """Check that ``path`` is an ``OUT/<slide_id>`` folder with a nucleus table; exit 2 if not."""
    from pathosam_wsi.pipeline.layout import ResultFolder

    table = ResultFolder(path).table
    if not table.is_file():
        fail(f"{path}: has no {table.name}; give OUT/<slide_id> of a finished run")
    return path


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    click.echo(f"warning: {_one_line(str(message))}", err=True)


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        yield


class CliGroup(click.Group):
    """A click group whose every failure ends in one ``error:`` line (see the module docstring)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; exit 2 with one line on expected failures."""
        set_debug(False)
        with _warnings_as_lines():
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except click.exceptions.Abort:
                fail("interrupted; rerun the same command to resume", EXIT_INTERRUPTED)
            except click.UsageError as err:
                where = err.ctx.command_path if err.ctx is not None else "pathosam-wsi"
                fail(f"{err.format_message()}; see '{where} --help'", EXIT_BAD_INPUT)
            except click.ClickException as err:
                fail(err.format_message(), EXIT_BAD_INPUT)
            except Exception as err:
                if _State.debug:
                    raise
                fail(error_line(err), EXIT_BAD_INPUT if _expected(err) else EXIT_BUG)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)
