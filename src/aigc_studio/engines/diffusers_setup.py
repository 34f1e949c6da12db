"""Imported before diffusers' pipelines by every module that loads them (engines/sd_pipelines.py,
tests/tiny_models.py).

Whenever the invisible-watermark package is importable (another tool installed it into the same
environment), diffusers imports it for SDXL's own watermark: without OpenCV that import fails and no SDXL
model loads; with OpenCV, SDXL's pixels change by a mark nobody asked for and the studio's record would not
say. The studio labels every image itself (services/labeling.py), so diffusers' watermark is turned off.
(setup.sh --dev installs invisible-watermark, for bench/labels.py only, outside site-packages.)
"""

from __future__ import annotations

import diffusers.utils.import_utils as diffusers_imports

diffusers_imports._invisible_watermark_available = False
