"""Nucleus models, built by name from ``model/registry.py``.

Importing this package registers the built-in models: the modules below register themselves with
``registry.register_model`` when imported. The PathoSAM and learned models need torch, so their
modules are declared with ``registry.register_module`` and imported on the first registry lookup.
"""

from pathosam_wsi.model import classical, replay
from pathosam_wsi.model.registry import register_module

__all__ = ["classical", "replay"]

register_module("pathosam_wsi.model.pathosam")
register_module("pathosam_wsi.model.learned")
