"""The per-process model registry: model names -> builders, and the process-wide model cache.

This module imports no model. Models register themselves with the :func:`register_model`
decorator when their module is imported, and the package ``pathosam_wsi.model`` imports the
built-in ones (``model/__init__.py``). Modules that import torch are declared there with
:func:`register_module` instead and imported on the first lookup, so that importing the package
(e.g. for ``--help``) stays fast.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Callable

from pathosam_wsi.config import ModelConfig
from pathosam_wsi.errors import ConfigError, PathoSamWarning
from pathosam_wsi.model.base import NucleusModel

__all__ = [
    "ModelBuilder",
    "available_models",
    "build_model",
    "cached_models",
    "check_model_mpp",
    "get_model",
    "model_class_names",
    "model_mpp_range",
    "register_model",
    "register_module",
]

ModelBuilder = Callable[[ModelConfig, float], NucleusModel]
"""Builds a model from its configuration and the working pixel size (µm/px)."""

_BUILDERS: dict[str, ModelBuilder] = {}
_CLASS_NAMES: dict[str, tuple[str, ...]] = {}
_MPP_RANGES: dict[str, tuple[float, float]] = {}
_PENDING_MODULES: list[str] = []
_CACHE: dict[tuple[ModelConfig, float], NucleusModel] = {}
_CACHE_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()


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


def register_module(module: str) -> None:
    """Declare a module whose import registers models; it is imported on the first lookup.

    A module that is not installed (``ModuleNotFoundError`` naming the module itself) is skipped,
    any other import error propagates.
    """
    if module not in _PENDING_MODULES:
        _PENDING_MODULES.append(module)


def _import_pending() -> None:
    """Import the declared modules that have not been imported yet."""
    with _IMPORT_LOCK:
        while _PENDING_MODULES:
            module = _PENDING_MODULES[0]
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as err:
                if err.name != module:
                    raise
            _PENDING_MODULES.pop(0)


def available_models() -> list[str]:
    """Names of the registered models."""
    _import_pending()
    return sorted(_BUILDERS)


def model_class_names(config: ModelConfig) -> tuple[str, ...] | None:
    """Class names of the model ``config`` builds (None without classes), without building it."""
    _import_pending()
    return _CLASS_NAMES.get(config.name) if config.classes else None


def model_mpp_range(config: ModelConfig) -> tuple[float, float] | None:
    """(finest, coarsest) working µm/px the model supports, None when it declares none."""
    _import_pending()
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
    _import_pending()
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


def cached_models() -> list[tuple[ModelConfig, float, NucleusModel]]:
    """The models this process has built with :func:`get_model`: (config, mpp, model)."""
    with _CACHE_LOCK:
        return [(config, mpp, model) for (config, mpp), model in _CACHE.items()]
