"""Schemathesis hooks for fuzzing the studio's APIs: used by tests/test_openapi.py, and by ``st run`` from
the repository root (schemathesis.toml names this file), so a run by hand fuzzes the same way.

Two things JSON Schema cannot say, supplied here:

- What an input image is. The schema declares ``init_images``, ``mask`` and PNG info's ``image`` as
  strings of format ``base64-image``; this file makes them real images (PNG, JPEG or WebP; RGB, grey or
  RGBA; sometimes as a data: URL), all 64×64 so that a mask always fits its image.
- Positive generation requests stay small and inside the bounds that span several fields, which each
  operation's 422 documents (batch_size × width × height, the hires fix's size): width and height at
  most 128, batch_size and n_iter at most 2, hires fix by scale (at most 2) or to a size of 64–256 a side.
  The plain test engine then makes every one in milliseconds. Negative requests are left as generated:
  the server must refuse each before anything is queued.
"""

from __future__ import annotations

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

IMAGE_FORMAT = "base64-image"  # aigc_studio.services.a1111_schema.IMAGE_FORMAT
GENERATION_PATHS = {"/sdapi/v1/txt2img", "/sdapi/v1/img2img"}
MAX_SIDE, MAX_BATCH = 128, 2


def _encode(mode: str, colour: int, kind: str, data_url: bool) -> str:
    image = Image.new(mode, (64, 64), colour if mode == "L" else (colour, 255 - colour, colour // 2, 200)[: len(mode)])
    if kind == "JPEG" and mode == "RGBA":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, kind)
    text = base64.b64encode(buf.getvalue()).decode()
    return f"data:image/{kind.lower()};base64,{text}" if data_url else text


images = st.builds(
    _encode,
    st.sampled_from(["RGB", "L", "RGBA"]),
    st.integers(0, 255),
    st.sampled_from(["PNG", "JPEG", "WEBP"]),
    st.booleans(),
)
schemathesis.openapi.format(IMAGE_FORMAT, images)


def _small_a1111(body: dict) -> None:
    for key in ("width", "height"):
        if isinstance(body.get(key), int) and body[key] > MAX_SIDE:
            body[key] = MAX_SIDE
    for key in ("batch_size", "n_iter"):
        if isinstance(body.get(key), int) and body[key] > MAX_BATCH:
            body[key] = MAX_BATCH
    if isinstance(body.get("hr_scale"), int | float) and body["hr_scale"] > 2:
        body["hr_scale"] = 2
    x, y = body.get("hr_resize_x") or 0, body.get("hr_resize_y") or 0
    if x and y:  # both: the picture covers that size
        body["hr_resize_x"], body["hr_resize_y"] = min(max(x, 64), 256), min(max(y, 64), 256)
    elif x or y:  # one: the other follows the aspect ratio, which could leave it under 64
        body["hr_resize_x"] = body["hr_resize_y"] = 0


@schemathesis.hook
def map_case(context, case):
    """Keep positive generation requests small (see the module's docstring)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or case.operation.path not in GENERATION_PATHS:
        return case
    if isinstance(case.body, dict):
        _small_a1111(case.body)
    return case
