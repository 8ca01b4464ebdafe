"""pathosam-wsi: whole-slide nucleus instance segmentation with PathoSAM.

Public API: :func:`segment_slide`, :class:`RunConfig`, :func:`open_slide` and the error classes.
"""

from pathosam_wsi.config import RunConfig
from pathosam_wsi.errors import (
    CheckpointError,
    ConfigError,
    MissingResolutionError,
    OutputExistsError,
    PathoSamError,
    PathoSamWarning,
    SlideReadError,
    TilingError,
)
from pathosam_wsi.pipeline.segment import segment_slide
from pathosam_wsi.slide.open import open_slide

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "MissingResolutionError",
    "OutputExistsError",
    "PathoSamError",
    "PathoSamWarning",
    "RunConfig",
    "SlideReadError",
    "TilingError",
    "open_slide",
    "segment_slide",
]
