"""Slides: open, pixel size, working resolution, picklable block reader, tissue mask."""

from pathosam_wsi.slide.frame import WorkingFrame, plan_frame
from pathosam_wsi.slide.open import Slide, SlideHandle, open_slide
from pathosam_wsi.slide.tissue import read_thumbnail, tissue_mask

__all__ = [
    "Slide",
    "SlideHandle",
    "WorkingFrame",
    "open_slide",
    "plan_frame",
    "read_thumbnail",
    "tissue_mask",
]
