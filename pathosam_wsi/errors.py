"""Exception and warning hierarchy.

Every error subclasses the fitting builtin so that ``except ValueError`` keeps working. Messages say
what went wrong, what was got, what was expected and how to fix it, on one line.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataFetchError",
    "MissingResolutionError",
    "OutputExistsError",
    "PathoSamError",
    "PathoSamWarning",
    "SlideReadError",
    "TilingError",
]


class PathoSamError(Exception):
    """Base class of every error raised by pathosam-wsi."""


class SlideReadError(PathoSamError, OSError):
    """A slide cannot be opened or read (missing, not an image, truncated, unsupported)."""


class MissingResolutionError(PathoSamError, ValueError):
    """The slide has no usable pixel size and none was given with ``--mpp``."""


class ConfigError(PathoSamError, ValueError):
    """An option or parameter is invalid."""


class TilingError(PathoSamError, ValueError):
    """The block grid cannot be built (ROI outside the slide, tile or halo sizes invalid)."""


class CheckpointError(PathoSamError, RuntimeError):
    """A model checkpoint is missing, corrupt, unsafe or does not match the architecture."""


class DataFetchError(PathoSamError, OSError):
    """Registry sample or test data cannot be downloaded, extracted or verified."""


class OutputExistsError(PathoSamError, FileExistsError):
    """The output folder exists and ``overwrite`` was not requested."""


class PathoSamWarning(UserWarning):
    """Something worth a user's attention that does not stop the run."""
