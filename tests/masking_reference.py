"""An independent reference for A1111's mask blur, for tests: OpenCV's ``GaussianBlur`` with the kernel
size A1111 asks for (2·int(2.5σ + 0.5) + 1 taps, reflected borders), along rows, then along columns."""

from __future__ import annotations

import numpy as np


def reference_blur(mask: np.ndarray, sigma: float) -> np.ndarray:
    """``mask`` (2-D) blurred once with σ ``sigma`` in both directions, rounded after each, as floats."""
    radius = int(2.5 * sigma + 0.5)
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    out = np.asarray(mask, dtype=np.float64)
    for axis in (1, 0):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        out = np.rint(np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), axis, padded))
    return out
