"""The console's progress display: blocks done of planned, rate, ETA, nuclei, slides.

On a terminal one line is redrawn every second (so the elapsed time moves even while a slow
model works on its first batch); when stderr is not a terminal (a log file, SLURM output) plain
lines are written instead, at most one every ``line_every_s`` seconds, with no ``\\r`` or other
control characters. Blocks are counted as they finish (``pipeline/progress.py``), not per task.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import Any, TextIO

from pathosam_wsi.config import RunConfig
from pathosam_wsi.errors import PathoSamWarning
from pathosam_wsi.pipeline.progress import BlockDone, listening

__all__ = ["CPU_S_PER_BLOCK", "ConsoleProgress", "cpu_seconds_per_block", "format_duration"]

CPU_S_PER_BLOCK = {"vit_b": 36.0, "vit_l": 130.0, "vit_h": 270.0}
"""Seconds per block (640 px outer box, resized to 1024) of a PathoSAM encoder on a CPU.

vit_b: the figure measured on a 2-core machine (issue 10; README "Options" has a run under load);
vit_l and vit_h scaled by encoder parameter count (307M and 632M against 86M: 3.6x and 7.4x),
not measured. The first measured blocks replace this figure in the ETA.
"""


def cpu_seconds_per_block(config: RunConfig) -> float | None:
    """The stated per-block time when ``config`` runs a SAM encoder on the CPU, else None."""
    encoder = next((k for k in CPU_S_PER_BLOCK if config.model.name.startswith(k)), None)
    if encoder is None:
        return None
    device = config.model.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return CPU_S_PER_BLOCK[encoder] if device == "cpu" else None


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``Nd hh:mm:ss`` beyond a day)."""
    s = max(0, round(seconds))
    days, s = divmod(s, 86400)
    text = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


class ConsoleProgress:
    """Progress of one slide (``segment``) or a cohort (``run``), fed by their event callbacks.

    Parameters
    ----------
    disable : bool
        Show nothing (``-q``).
    stream : text stream, optional
        Where to write (default: stderr).
    plain : bool, optional
        Plain lines instead of a redrawn line (default: when ``stream`` is not a terminal).
    slides : int, optional
        Slides of a cohort (the line then shows slides done).
    cpu_s_per_block : float, optional
        Stated seconds per block of a SAM model on a CPU: warned about once when blocks are
        planned, and the ETA until blocks finish.
    line_every_s : float
        Plain mode: seconds between lines (a line also follows each change after half of it).
    """

    def __init__(
        self,
        *,
        disable: bool = False,
        stream: TextIO | None = None,
        plain: bool | None = None,
        slides: int | None = None,
        cpu_s_per_block: float | None = None,
        line_every_s: float = 10.0,
    ) -> None:
        self.disable = disable
        self.stream = stream or sys.stderr
        self.plain = (not self.stream.isatty()) if plain is None else plain
        self.slides_total = slides
        self.cpu_s_per_block = cpu_s_per_block
        self.line_every_s = line_every_s
        self.planned = 0
        self.done: set[tuple[str, int]] = set()
        self.computed = 0
        self.nuclei = 0
        self.slides_done = 0
        self.in_flight: set[str] = set()
        self._segment_sid = ""
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening: Any = None
        self._last_line = ""
        self._last_write = 0.0
        self._warned = False
        self._showwarning = warnings.showwarning

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> ConsoleProgress:
        if self.disable:
            return self
        self._t0 = time.monotonic()
        if not self.plain:  # a warning must not continue the redrawn line
            self._showwarning = warnings.showwarning
            warnings.showwarning = self._show_warning_below
        self._listening = listening(self.on_block)
        self._listening.__enter__()
        self._thread = threading.Thread(target=self._tick, name="pathosam-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.disable:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._listening.__exit__(None, None, None)
        if not self.plain:
            warnings.showwarning = self._showwarning
        if self.planned or self.slides_total:
            self._write(self.line(), force=True)
        if not self.plain and self._last_line:
            self.stream.write("\n")
            self.stream.flush()

    # -- events ----------------------------------------------------------------------------------
    def __call__(self, event: str, payload: Any) -> None:
        """``segment_slide``'s ``on_progress`` and ``run_cohort``'s ``on_event``."""
        with self._lock:
            if event == "planned":
                # segment: the block count; cohort: (slide_id, block count)
                self.planned += payload[1] if isinstance(payload, tuple) else payload
            elif event == "blocks":
                sid, summaries = payload if isinstance(payload, tuple) else ("", payload)
                for s in summaries:
                    self._count(sid, s.block_id, s.nuclei, computed=s.timings.read_s > 0)
            elif event == "slide_started":
                self.in_flight.add(payload)
            elif event == "slide_finished":
                self.in_flight.discard(payload.slide_id)
                self.slides_done += 1
        if event == "planned" and not self.disable:
            self._warn_cpu_once()

    def on_block(self, event: BlockDone) -> None:
        """Count a finished block (from this process or forwarded from a worker)."""
        sid = event.slide_id if self.slides_total is not None else ""
        with self._lock:
            self._count(sid, event.block_id, event.nuclei, computed=True)

    def _count(self, sid: str, block_id: int, nuclei: int, *, computed: bool) -> None:
        key = (sid, block_id)
        if key in self.done:
            return
        self.done.add(key)
        self.nuclei += nuclei
        self.computed += computed

    def _warn_cpu_once(self) -> None:
        if self.cpu_s_per_block is None or self._warned:
            return
        self._warned = True
        total_s = self.cpu_s_per_block * self.planned
        self._clear()
        warnings.warn(
            f"a SAM model on the CPU takes about {self.cpu_s_per_block:.0f} s per block: "
            f"{self.planned} blocks need about {format_duration(total_s)}; use a GPU "
            "(--device cuda), a smaller --roi, or --model classical",
            PathoSamWarning,
            stacklevel=2,
        )

    # -- display ---------------------------------------------------------------------------------
    def line(self) -> str:
        """The current progress text (one line, printable characters only)."""
        with self._lock:
            elapsed = time.monotonic() - self._t0
            done, planned = len(self.done), self.planned
            rate = self.computed / elapsed if self.computed and elapsed > 0 else None
            left = max(planned - done, 0)
            if rate:
                eta = format_duration(left / rate)
            elif self.cpu_s_per_block is not None and planned:
                guess_s = max(left * self.cpu_s_per_block - elapsed, 0.0)
                eta = f"~{format_duration(guess_s)} (estimated)"
            else:
                eta = "?"
            pct = f"{100 * done / planned:.0f}%" if planned else "-"
            parts = [f"blocks {done}/{planned} {pct}"]
            parts.append(f"{rate:.2f} blocks/s" if rate else "- blocks/s")
            parts += [f"elapsed {format_duration(elapsed)}", f"ETA {eta}"]
            parts.append(f"nuclei {self.nuclei}")
            if self.slides_total is not None:
                parts.append(f"slides {self.slides_done}/{self.slides_total}")
                if self.in_flight:
                    names = sorted(self.in_flight)
                    more = f" +{len(names) - 3}" if len(names) > 3 else ""
                    parts.append(f"in flight: {', '.join(names[:3])}{more}")
        return " | ".join(parts)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            if self.planned or self.slides_total:
                self._write(self.line())

    def _write(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.plain:
            changed = text.split(" | elapsed")[0] != self._last_line.split(" | elapsed")[0]
            since = now - self._last_write
            due = since >= self.line_every_s or (changed and since >= self.line_every_s / 2)
            if not (force or due):
                return
            self.stream.write(text + "\n")
        else:
            width = max(len(text), len(self._last_line))
            self.stream.write("\r" + text.ljust(width))
        self.stream.flush()
        self._last_line, self._last_write = text, now

    def _show_warning_below(self, *args: Any, **kwargs: Any) -> None:
        self._clear()
        self._showwarning(*args, **kwargs)

    def _clear(self) -> None:
        """End a redrawn line so that a warning starts on its own line."""
        if not self.plain and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""
