"""Frozen, keyword-only configuration dataclasses, one per pipeline stage.

``RunConfig`` gathers them; it is what ``segment_slide`` takes and what ``run.json`` records. Every
field has a unit or frame in its name where it has one.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathosam_wsi.errors import ConfigError

__all__ = [
    "SECTIONS",
    "ModelConfig",
    "RunConfig",
    "SlideConfig",
    "TilingConfig",
    "TissueConfig",
    "WatershedConfig",
]


MPP_RANGE = (0.02, 50.0)
"""Accepted level-0 pixel sizes, µm/px (an --mpp override outside it is a typo)."""
TARGET_MPP_MAX = 16.0
"""Coarsest working pixel size, µm/px: beyond it a nucleus (5-10 µm) is under a pixel."""
TILE_PX_RANGE = (32, 16384)
HALO_PX_MAX = 1024


def _check_number(
    section: str,
    name: str,
    value: float | None,
    lo: float,
    hi: float,
    *,
    unit: str = "",
    hint: str = "",
) -> None:
    """Raise ConfigError unless ``value`` is None or a finite number in [lo, hi]."""
    if value is None:
        return
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if bad or not math.isfinite(value) or not lo <= value <= hi:
        fix = hint or f"give a value between {lo:g} and {hi:g}{unit}"
        raise ConfigError(
            f"{section}.{name}: got {value!r}; expected a number between {lo:g} and {hi:g}{unit}; "
            f"{fix}"
        )


@dataclass(frozen=True, kw_only=True)
class SlideConfig:
    """How the slide is read: pixel size, working resolution and region of interest."""

    mpp: float | None = None
    """Override of the level-0 pixel size in µm/px (None: read it from the slide metadata)."""
    target_mpp: float | None = None
    """Resolution the model sees, µm/px (None: level 0, as the reference does)."""
    roi_xywh_l0: tuple[int, int, int, int] | None = None
    """Region of interest (x, y, width, height) in level-0 px; None: the whole slide."""

    def __post_init__(self) -> None:
        _check_number(
            "slide",
            "mpp",
            self.mpp,
            *MPP_RANGE,
            unit=" µm/px",
            hint="pass the level-0 pixel size, e.g. --mpp 0.25 for 40x, 0.5 for 20x",
        )
        _check_number(
            "slide",
            "target_mpp",
            self.target_mpp,
            MPP_RANGE[0],
            TARGET_MPP_MAX,
            unit=" µm/px",
            hint="pass e.g. --target-mpp 0.5",
        )
        if self.roi_xywh_l0 is not None:
            if len(self.roi_xywh_l0) != 4:
                raise ConfigError(
                    f"roi: got {self.roi_xywh_l0!r}; expected X Y W H; pass four integers"
                )
            x, y, w, h = self.roi_xywh_l0
            if w <= 0 or h <= 0 or x < 0 or y < 0:
                raise ConfigError(
                    f"roi: got {self.roi_xywh_l0!r}; expected x, y >= 0 and width, height > 0 "
                    "(level-0 px); fix the --roi values"
                )


@dataclass(frozen=True, kw_only=True)
class TilingConfig:
    """Block grid: square core blocks with a halo of context on every side."""

    tile_px: int = 512
    halo_px: int = 64
    max_window_px: int = 2048
    """Largest window (px on a side) a block reads to hold a foreground region its halo box cuts
    (models with local maps only, e.g. ``classical``); regions that need more are counted."""

    def __post_init__(self) -> None:
        _check_number(
            "tiling",
            "tile_px",
            self.tile_px,
            *TILE_PX_RANGE,
            unit=" px",
            hint="pass e.g. --tile 512",
        )
        _check_number(
            "tiling",
            "halo_px",
            self.halo_px,
            0,
            HALO_PX_MAX,
            unit=" px",
            hint="pass e.g. --halo 64",
        )
        _check_number(
            "tiling",
            "max_window_px",
            self.max_window_px,
            *TILE_PX_RANGE,
            unit=" px",
            hint="pass e.g. --max-window 2048",
        )


@dataclass(frozen=True, kw_only=True)
class TissueConfig:
    """Tissue detection on a low-resolution thumbnail; blocks without tissue are skipped."""

    enabled: bool = True
    thumbnail_mpp: float = 8.0
    """Resolution of the thumbnail the mask is computed on, µm/px."""
    min_saturation_frac: float = 0.07
    """Lower bound on the HSV saturation threshold (Otsu is used above it)."""
    min_region_um2: float = 2000.0
    """Tissue islands smaller than this are dropped."""

    def __post_init__(self) -> None:
        _check_number("tissue", "thumbnail_mpp", self.thumbnail_mpp, 0.5, 256.0, unit=" µm/px")
        _check_number("tissue", "min_saturation_frac", self.min_saturation_frac, 0.0, 1.0)
        _check_number("tissue", "min_region_um2", self.min_region_um2, 0.0, 1e9, unit=" µm²")


@dataclass(frozen=True, kw_only=True)
class WatershedConfig:
    """Seeded watershed on the AIS maps; defaults are PathoSAM's (micro-sam ``generate``)."""

    center_distance_thresh: float = 0.5
    boundary_distance_thresh: float = 0.5
    foreground_thresh: float = 0.5
    foreground_smoothing_px: float = 1.0
    distance_smoothing_px: float = 1.6
    min_size_px: int = 0

    def __post_init__(self) -> None:
        for name in ("center_distance_thresh", "boundary_distance_thresh", "foreground_thresh"):
            _check_number(
                "watershed",
                name,
                getattr(self, name),
                0.0,
                1.0,
                hint=f"pass --{name.replace('_', '-')} between 0 and 1",
            )
        for name in ("foreground_smoothing_px", "distance_smoothing_px"):
            _check_number("watershed", name, getattr(self, name), 0.0, 64.0, unit=" px")
        _check_number(
            "watershed",
            "min_size_px",
            self.min_size_px,
            0,
            10**8,
            unit=" px",
            hint="pass --min-size 0 or more (0 keeps every nucleus)",
        )


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which model produces the AIS maps, and how it runs."""

    name: str = "learned"
    checkpoint: str | None = None
    decoder: str | None = None
    semantic_decoder: str | None = None
    classes: bool = False
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    """Blocks per model call; None chooses from free device memory (1..8 on CPU)."""
    compile: bool = False
    intensity: str = "none"
    """Input intensity: ``none`` (uint8 as trained) or ``per_tile_minmax`` (micro-sam >= 1.7)."""
    batchnorm: str = "per_tile"
    """Decoder BatchNorm statistics: ``per_tile`` (= reference at batch 1) or ``running``."""

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "tf32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, tf32, bf16 or fp16, got {self.precision!r}")
        if self.intensity not in ("none", "per_tile_minmax"):
            raise ConfigError(f"intensity must be none or per_tile_minmax, got {self.intensity!r}")
        if self.batchnorm not in ("per_tile", "running"):
            raise ConfigError(f"batchnorm must be per_tile or running, got {self.batchnorm!r}")
        _check_number(
            "model", "batch_size", self.batch_size, 1, 4096, hint="pass --batch-size 1 or more"
        )


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one slide's segmentation depends on."""

    slide: SlideConfig = field(default_factory=SlideConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    tissue: TissueConfig = field(default_factory=TissueConfig)
    watershed: WatershedConfig = field(default_factory=WatershedConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    blocks_per_task: int = 8
    """Blocks per scheduled task (a task reads, predicts and post-processes them together)."""
    threads: int | None = None
    """Worker threads for the local scheduler (None: all CPUs)."""

    def __post_init__(self) -> None:
        _check_number(
            "run",
            "blocks_per_task",
            self.blocks_per_task,
            1,
            4096,
            hint="pass --blocks-per-task 1 or more",
        )
        _check_number("run", "threads", self.threads, 1, 4096, hint="pass --threads 1 or more")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-ready)."""
        return dataclasses.asdict(self)

    def output_params(self) -> dict[str, Any]:
        """Parameters that change the outputs (everything except scheduling knobs)."""
        params = self.to_dict()
        for key in ("blocks_per_task", "threads"):
            params.pop(key)
        params["model"].pop("batch_size")
        return params

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> RunConfig:
        """Build from a nested dict such as ``to_dict()`` returns or a TOML file holds.

        Unknown sections and keys are refused with the valid ones named (``source`` names the
        file in the message).
        """
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in _TOP_KEYS:
                raise ConfigError(
                    f"{source}: unknown key {key!r} at the top level; valid keys: "
                    f"{', '.join(_TOP_KEYS_SHOWN)}"
                )
            if key in SECTIONS:
                kwargs[key] = _section(source, key, value)
            else:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from err

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a TOML file whose tables are the stage sections (``[tiling]``, ``[model]``, ...)."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(
                f"{path}: cannot read the config file ({err}); fix the TOML syntax or the path"
            ) from err
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with ``{"section.key": value}`` (or ``{"key": value}`` for top-level keys)
        replaced; every value is checked as in the constructor.
        """
        sections: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for dotted, value in overrides.items():
            section, _, key = dotted.rpartition(".")
            if section:
                sections.setdefault(section, {})[key] = value
            else:
                top[key] = value
        for name, values in sections.items():
            top[name] = dataclasses.replace(getattr(self, name), **values)
        return dataclasses.replace(self, **top)


SECTIONS: dict[str, type[Any]] = {
    "slide": SlideConfig,
    "tiling": TilingConfig,
    "tissue": TissueConfig,
    "watershed": WatershedConfig,
    "model": ModelConfig,
}
"""The TOML tables of a configuration file and the dataclass each one fills."""
_TOP_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))
_TOP_KEYS_SHOWN = tuple(f"[{k}]" if k in SECTIONS else k for k in _TOP_KEYS)


def _section(source: str, name: str, value: Any) -> Any:
    """One ``[name]`` table -> its dataclass; unknown keys are refused with the valid ones."""
    cls = SECTIONS[name]
    valid = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(value, dict):
        raise ConfigError(
            f"{source}: {name} = {value!r} is not a table; write it as [{name}] with the keys "
            f"{', '.join(valid)}"
        )
    unknown = [k for k in value if k not in valid]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} in [{name}]; valid keys: {', '.join(valid)}"
        )
    for f in dataclasses.fields(cls):
        kind = type(f.default)
        if f.name in value and kind in (bool, str) and not isinstance(value[f.name], kind):
            raise ConfigError(
                f"{source}: [{name}] {f.name} = {value[f.name]!r}; expected a {kind.__name__} "
                f"(default {f.default!r}); fix the value"
            )
    if name == "slide" and value.get("roi_xywh_l0") is not None:
        value = {**value, "roi_xywh_l0": tuple(value["roi_xywh_l0"])}
    try:
        return cls(**value)
    except ConfigError as err:
        raise ConfigError(f"{source}: [{name}] {err}") from err
