"""The model interface every nucleus model implements, and the per-process model registry.

A model maps a batch of RGB blocks to PathoSAM's three AIS maps per block (and, optionally, class
probabilities). Everything downstream (watershed, ownership, stitching, export) is shared.
Models are built by name from a registry and cached once per process (one per dask worker).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError, PathoSamWarning

__all__ = [
    "ModelOutput",
    "NucleusModel",
    "available_models",
    "build_model",
    "check_model_mpp",
    "get_model",
    "model_class_names",
    "model_mpp_range",
    "register_model",
]


@dataclass(frozen=True)
class ModelOutput:
    """What a model returns for one block.

    Attributes
    ----------
    ais : (3, H, W) float32, CYX, block pixels
        Channel 0 foreground probability, 1 normalised distance to the nucleus centre, 2 normalised
        inverted distance to the boundary; both distances are ~0 at a centre and ~1 at a boundary
        and in background (docs/pathosam-reference.md §4.3).
    semantic : (C, H, W) float32, CYX, or None
        Per-class probabilities (PanNuke: C = 6, class 0 = background), when the model has classes.
    """

    ais: npt.NDArray[np.float32]
    semantic: npt.NDArray[np.float32] | None = None


class NucleusModel(Protocol):
    """A nucleus model: a batch of blocks in, one ``ModelOutput`` per block out."""

    name: str
    class_names: tuple[str, ...] | None
    """Names of the semantic classes (index = class id), or None without classes."""

    def predict(self, tiles: Sequence[npt.NDArray[np.uint8]]) -> list[ModelOutput]:
        """Predict the maps for each tile.

        Parameters
        ----------
        tiles : sequence of (H_i, W_i, 3) uint8, YXC, working-resolution pixels
            Blocks including their halo; sizes may differ (blocks at the slide edge are clipped).

        Returns
        -------
        list of ModelOutput
            One per tile, maps of the tile's own (H_i, W_i) size. The result for a tile must not
            depend on the other tiles of the batch.
        """
        ...


ModelBuilder = Callable[[ModelConfig, float], NucleusModel]
"""Builds a model from its configuration and the working pixel size (µm/px)."""

_BUILDERS: dict[str, ModelBuilder] = {}
_CLASS_NAMES: dict[str, tuple[str, ...]] = {}
_MPP_RANGES: dict[str, tuple[float, float]] = {}
_CACHE: dict[tuple[ModelConfig, float], NucleusModel] = {}
_CACHE_LOCK = threading.Lock()


def register_model(
    name: str,
    class_names: tuple[str, ...] | None = None,
    mpp_range: tuple[float, float] | None = None,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a model builder under ``name``.

    ``class_names`` (index = class id) are the classes the model predicts when built with
    ``ModelConfig.classes``; declared here so that callers need not build the model to know them.
    ``mpp_range`` is the (finest, coarsest) working pixel size in µm/px the model is known to
    work at; runs outside it warn.
    """

    def wrap(builder: ModelBuilder) -> ModelBuilder:
        _BUILDERS[name] = builder
        if class_names is not None:
            _CLASS_NAMES[name] = class_names
        if mpp_range is not None:
            _MPP_RANGES[name] = mpp_range
        return builder

    return wrap


def _load_builtin_models() -> None:
    """Import the modules that register the built-in models."""
    import pathosam_wsi.model.classical
    import pathosam_wsi.model.learned
    import pathosam_wsi.model.replay

    try:
        import pathosam_wsi.model.pathosam  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != "pathosam_wsi.model.pathosam":
            raise


def available_models() -> list[str]:
    """Names of the registered models."""
    _load_builtin_models()
    return sorted(_BUILDERS)


def model_class_names(config: ModelConfig) -> tuple[str, ...] | None:
    """Class names of the model ``config`` builds (None without classes), without building it."""
    _load_builtin_models()
    return _CLASS_NAMES.get(config.name) if config.classes else None


def model_mpp_range(config: ModelConfig) -> tuple[float, float] | None:
    """(finest, coarsest) working µm/px the model supports, None when it declares none."""
    _load_builtin_models()
    return _MPP_RANGES.get(config.name)


def check_model_mpp(config: ModelConfig, mpp: float) -> None:
    """Warn when the working pixel size ``mpp`` (µm/px) lies outside the model's declared range."""
    supported = model_mpp_range(config)
    if supported is None:
        return
    lo, hi = supported
    tolerance = 1e-3
    if lo * (1 - tolerance) <= mpp <= hi * (1 + tolerance):
        return
    warnings.warn(
        f"model {config.name!r}: working pixel size {mpp:.4g} µm/px is outside its supported "
        f"{lo:g}-{hi:g} µm/px, so nuclei may be missed; "
        f"pass --target-mpp between {lo:g} and {hi:g}",
        PathoSamWarning,
        stacklevel=3,
    )


def build_model(config: ModelConfig, mpp: float) -> NucleusModel:
    """Build a fresh model instance (no caching)."""
    _load_builtin_models()
    try:
        builder = _BUILDERS[config.name]
    except KeyError:
        raise ConfigError(
            f"unknown model {config.name!r}; expected one of {sorted(_BUILDERS)}"
        ) from None
    return builder(config, mpp)


def get_model(config: ModelConfig, mpp: float) -> NucleusModel:
    """The process-wide instance for this configuration: built (and weights loaded) once."""
    key = (config, float(mpp))
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = build_model(config, mpp)
            _CACHE[key] = model
        return model
