"""The ``replay`` model: stored AIS maps after a fixed device time (benchmark-only).

It stands in for a GPU model when measuring how well the engine feeds a device
(``benchmarks/bench_feed.py``). Each ``predict`` call holds a process-wide "device" lock and
sleeps ``n / rate`` seconds (``time.sleep`` releases the GIL, as a CUDA forward pass does), then
returns, per tile, one map set of a bank of realistic AIS maps (computed once by the ``classical``
model on tissue blocks of a real slide, see :func:`build_bank`), chosen deterministically from
the tile's content and cropped (or wrapped) to the tile's size.

Configuration comes from environment variables, **for benchmarks only** (they reach dask worker
processes started by ``LocalCluster``; nothing in ``ModelConfig`` is reinterpreted):

``PATHOSAM_WSI_REPLAY_BANK``
    Path of a ``.npy`` file holding a (K, 3, H, W) float32 array of AIS map sets. Required.
``PATHOSAM_WSI_REPLAY_RATE``
    Simulated device speed in blocks/s (float); unset, empty, ``0`` or ``inf``: no sleep.
``PATHOSAM_WSI_REPLAY_LOG``
    Optional file; each ``predict`` call appends one JSON line
    ``{"pid", "t_start", "t_end", "n"}`` (``time.time()`` stamps of its device time).

Rate and log are read at every call, so one process can run at several rates; the bank is
loaded (memory-mapped) once per process and path. Accounting is process-wide:
:func:`replay_stats` and :func:`reset_replay_stats`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError
from pathosam_wsi.model.base import ModelOutput
from pathosam_wsi.model.registry import register_model

__all__ = [
    "BANK_ENV",
    "LOG_ENV",
    "RATE_ENV",
    "ReplayModel",
    "ReplayStats",
    "build_bank",
    "replay_stats",
    "reset_replay_stats",
]

BANK_ENV = "PATHOSAM_WSI_REPLAY_BANK"
RATE_ENV = "PATHOSAM_WSI_REPLAY_RATE"
LOG_ENV = "PATHOSAM_WSI_REPLAY_LOG"


@dataclass
class ReplayStats:
    """Process-wide accounting of the replay model's simulated device."""

    busy_s: float = 0.0
    """Sum of the device (sleep) time of all calls."""
    first_start_s: float | None = None
    """``time.time()`` when the first call's device time began."""
    last_end_s: float | None = None
    """``time.time()`` when the last call's device time ended."""
    calls: int = 0
    blocks: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)

    @property
    def span_s(self) -> float:
        """First device start to last device end (0 before any call)."""
        if self.first_start_s is None or self.last_end_s is None:
            return 0.0
        return self.last_end_s - self.first_start_s

    @property
    def busy_frac(self) -> float:
        """Device busy time over the span (0 before any call)."""
        return self.busy_s / self.span_s if self.span_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "busy_s": self.busy_s,
            "first_start_s": self.first_start_s,
            "last_end_s": self.last_end_s,
            "span_s": self.span_s,
            "busy_frac": self.busy_frac,
            "calls": self.calls,
            "blocks": self.blocks,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
        }


_STATS = ReplayStats()
_STATS_LOCK = threading.Lock()
_DEVICE_LOCK = threading.Lock()
_BANKS: dict[str, npt.NDArray[np.float32]] = {}


def replay_stats() -> ReplayStats:
    """A snapshot of this process's accounting."""
    with _STATS_LOCK:
        return ReplayStats(
            _STATS.busy_s,
            _STATS.first_start_s,
            _STATS.last_end_s,
            _STATS.calls,
            _STATS.blocks,
            Counter(_STATS.batch_sizes),
        )


def reset_replay_stats() -> None:
    """Zero this process's accounting."""
    global _STATS
    with _STATS_LOCK:
        _STATS = ReplayStats()


def _rate_blocks_per_s() -> float:
    """The simulated device speed from the environment (inf: no sleep)."""
    raw = os.environ.get(RATE_ENV, "").strip()
    try:
        rate = float(raw) if raw else math.inf
    except ValueError as err:
        raise ConfigError(
            f"{RATE_ENV} must be a number of blocks/s, got {raw!r}; unset it for no device time"
        ) from err
    if rate < 0 or math.isnan(rate):
        raise ConfigError(f"{RATE_ENV} must be >= 0 blocks/s, got {raw!r}")
    return math.inf if rate == 0 else rate


def _load_bank(path: str) -> npt.NDArray[np.float32]:
    """The (K, 3, H, W) float32 bank at ``path``, memory-mapped once per process."""
    bank = _BANKS.get(path)
    if bank is None:
        try:
            bank = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"cannot read the replay bank {path!r} ({err}); expected a .npy written by "
                f"pathosam_wsi.model.replay.build_bank, named by {BANK_ENV}"
            ) from err
        if bank.ndim != 4 or bank.shape[1] != 3 or bank.dtype != np.float32 or not len(bank):
            raise ConfigError(
                f"replay bank {path!r} has shape {bank.shape} {bank.dtype}; "
                "expected (K, 3, H, W) float32 with K >= 1"
            )
        _BANKS[path] = bank
    return bank


def _fit(maps: npt.NDArray[np.float32], h: int, w: int) -> npt.NDArray[np.float32]:
    """(3, h, w) copy of (3, H, W) ``maps``: cropped, or wrapped around where it is too small."""
    ph, pw = max(0, h - maps.shape[1]), max(0, w - maps.shape[2])
    if ph or pw:
        maps = np.pad(maps, ((0, 0), (0, ph), (0, pw)), mode="wrap")
    return np.array(maps[:, :h, :w], dtype=np.float32, copy=True)


class ReplayModel:
    """Replays bank maps after ``n / rate`` s of simulated device time; see the module docstring."""

    name = "replay"
    class_names: tuple[str, ...] | None = None
    batched = True
    """A device stand-in: served by the process's inference loop, as PathoSAM is."""

    def __init__(self, bank_path: str) -> None:
        self.bank_path = bank_path
        self.bank = _load_bank(bank_path)

    def index_of(self, tile: npt.NDArray[np.uint8]) -> int:
        """Bank index of a tile: a hash of a sparse sample of its pixels, mod K."""
        sample = np.ascontiguousarray(tile[::61, ::61])
        return zlib.crc32(sample.tobytes()) % len(self.bank)

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Bank maps of each (H, W, 3) uint8 tile, after the batch's simulated device time."""
        n = len(tiles)
        rate = _rate_blocks_per_s()
        with _DEVICE_LOCK:  # one device per process: batches run one after another
            t_start = time.time()
            if math.isfinite(rate) and n:
                time.sleep(n / rate)
            t_end = time.time()
        _account(t_start, t_end, n)
        return [
            ModelOutput(ais=_fit(self.bank[self.index_of(t)], t.shape[0], t.shape[1]))
            for t in tiles
        ]


def _account(t_start: float, t_end: float, n: int) -> None:
    """Add one call to the process-wide accounting and to the optional log file."""
    with _STATS_LOCK:
        _STATS.busy_s += t_end - t_start
        if _STATS.first_start_s is None or t_start < _STATS.first_start_s:
            _STATS.first_start_s = t_start
        if _STATS.last_end_s is None or t_end > _STATS.last_end_s:
            _STATS.last_end_s = t_end
        _STATS.calls += 1
        _STATS.blocks += n
        _STATS.batch_sizes[n] += 1
    log_path = os.environ.get(LOG_ENV)
    if log_path:
        line = json.dumps({"pid": os.getpid(), "t_start": t_start, "t_end": t_end, "n": n})
        # One short write in append mode: lines of concurrent processes do not interleave.
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def build_bank(
    tiles: Sequence[npt.NDArray[np.uint8]], mpp: float, path: str | Path
) -> npt.NDArray[np.float32]:
    """Compute a replay bank with the ``classical`` model and save it as ``.npy``.

    Parameters
    ----------
    tiles : sequence of (H, W, 3) uint8, YXC, working-resolution pixels
        Tissue blocks (halo included) of one size; one map set each.
    mpp : float
        Their pixel size, µm/px.
    path : path-like
        Where the (K, 3, H, W) float32 bank is written (atomically).

    Returns
    -------
    (K, 3, H, W) float32
        The bank.
    """
    from pathosam_wsi.model.classical import ClassicalModel

    if not tiles or len({t.shape for t in tiles}) != 1:
        raise ConfigError(
            f"build_bank needs >= 1 tiles of one shape, got {[t.shape for t in tiles]!r}"
        )
    model = ClassicalModel(mpp)
    bank = np.stack([model.maps(t) for t in tiles]).astype(np.float32)  # (K, 3, H, W)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, bank)
    tmp.replace(out)
    return bank


@register_model("replay")
def _build_replay(config: ModelConfig, mpp: float) -> ReplayModel:
    path = os.environ.get(BANK_ENV)
    if not path:
        raise ConfigError(
            f"the replay model needs {BANK_ENV} (a .npy bank from build_bank); "
            "it is a benchmark stand-in, see benchmarks/bench_feed.py"
        )
    return ReplayModel(path)
