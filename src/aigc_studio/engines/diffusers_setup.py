"""Imported before diffusers' pipelines by every module that loads them (engines/sd_pipelines.py,
tests/tiny_models.py).

invisible-watermark is installed without OpenCV, for the files the label libraries read. diffusers
sees the package and takes it as usable, so importing any SDXL pipeline imports it for SDXL's own
watermark, and with it OpenCV, which fails: no SDXL model would load. The studio labels SDXL's images
itself (services/labeling.py), so diffusers' watermark is turned off here.
"""

from __future__ import annotations

import diffusers.utils.import_utils as diffusers_imports

diffusers_imports._invisible_watermark_available = False
