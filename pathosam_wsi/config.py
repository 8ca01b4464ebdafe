"""Frozen, keyword-only configuration dataclasses, one per pipeline stage.

``RunConfig`` gathers them; it is what ``segment_slide`` takes and what ``run.json`` records. Every
field has a unit or frame in its name where it has one.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathosam_wsi.errors import ConfigError

__all__ = [
    "ModelConfig",
    "RunConfig",
    "SlideConfig",
    "TilingConfig",
    "TissueConfig",
    "WatershedConfig",
]


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
        for name in ("mpp", "target_mpp"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be a positive number of µm/px, got {value!r}")
        if self.roi_xywh_l0 is not None:
            if len(self.roi_xywh_l0) != 4:
                raise ConfigError(f"roi must be X Y W H, got {self.roi_xywh_l0!r}")
            _, _, w, h = self.roi_xywh_l0
            if w <= 0 or h <= 0:
                raise ConfigError(f"roi width and height must be > 0, got {self.roi_xywh_l0!r}")


@dataclass(frozen=True, kw_only=True)
class TilingConfig:
    """Block grid: square core blocks with a halo of context on every side."""

    tile_px: int = 512
    halo_px: int = 64

    def __post_init__(self) -> None:
        if self.tile_px < 32:
            raise ConfigError(f"tile must be at least 32 px, got {self.tile_px!r}")
        if self.halo_px < 0:
            raise ConfigError(f"halo must be >= 0 px, got {self.halo_px!r}")


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


@dataclass(frozen=True, kw_only=True)
class WatershedConfig:
    """Seeded watershed on the AIS maps; defaults are PathoSAM's (micro-sam ``generate``)."""

    center_distance_thresh: float = 0.5
    boundary_distance_thresh: float = 0.5
    foreground_thresh: float = 0.5
    foreground_smoothing_px: float = 1.0
    distance_smoothing_px: float = 1.6
    min_size_px: int = 0


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which model produces the AIS maps, and how it runs."""

    name: str = "classical"
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
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size!r}")


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
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a nested dict such as ``to_dict()`` returns or a TOML file holds."""
        sections = {
            "slide": SlideConfig,
            "tiling": TilingConfig,
            "tissue": TissueConfig,
            "watershed": WatershedConfig,
            "model": ModelConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            try:
                if key in sections:
                    if key == "slide" and value.get("roi_xywh_l0") is not None:
                        value = {**value, "roi_xywh_l0": tuple(value["roi_xywh_l0"])}
                    kwargs[key] = sections[key](**value)
                else:
                    kwargs[key] = value
            except TypeError as err:
                raise ConfigError(f"invalid [{key}] section: {err}") from err
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise ConfigError(f"invalid configuration: {err}") from err

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a TOML file whose tables are the stage sections (``[tiling]``, ``[model]``, ...)."""
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {str(path)!r}: {err}") from err
        return cls.from_dict(data)
