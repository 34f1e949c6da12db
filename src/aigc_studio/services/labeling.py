"""Labeling: every image the studio makes leaves it labeled, by one pipeline, in one place.

``Labeler.label_image`` runs, on the raw pixels an engine made:

1. the NSFW score (``labels.nsfw``), always, so the gallery can show it whatever the action;
2. the ``nsfw_action`` (allow, blur, block) when the score reaches ``nsfw_threshold``;
3. the visible mark ("AI生成" / "AI-generated") when ``label_visible`` is on;
4. the invisible watermark carrying ``payload_for(produce_id)`` when ``watermark`` is on;
5. the encoding: the infotext as A1111 writes it, unchanged, plus, when ``label_metadata`` is on, the
   TC260 ``AIGC`` label (ReservedCode1 = ``image_digest`` of the final pixels) and the IPTC digital
   source type (created for txt2img, composite for img2img, inpainting and edits of a user's image);
6. the C2PA manifest (``c2pa.created``, or ``c2pa.edited`` with the source image as ingredient) when
   ``c2pa`` is on, signed last so the signature covers the XMP.

With every label off and ``nsfw_action`` allow, the pixels are the engine's and the PNG is byte for
byte what the studio wrote before labels existed. ``check_prompt`` is the prompt block-list, run before
anything is queued.

Settings are read from the studio's config at each call: a value changed in ``config.values`` (as the
A1111 options route does) applies to the next image; the Settings tab writes config.toml, which the
studio reads when it starts, so a change made there applies after a restart.

The label libraries (onnxruntime, c2pa) are imported on first use: a CLI command that makes no image
does not pay for loading them.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .. import __version__
from ..config import Config
from ..errors import InvalidRequest
from ..labels.aigc import SOURCE_CREATED, SOURCE_EDITED, AigcLabel

__all__ = ["LABEL_KINDS", "LabeledImage", "Labeler", "applied_labels", "source_type_for"]

# What an image can carry, in the order the pipeline applies them: the names the gallery, the CLI and
# the web UI show (translated there).
LABEL_KINDS = ("visible", "watermark", "metadata", "c2pa")


def source_type_for(mode: str) -> str:
    """The IPTC digital source type of an image made in ``mode``: trainedAlgorithmicMedia for txt2img,
    compositeWithTrainedAlgorithmicMedia when a user's image went in (img2img, inpaint, edit)."""
    return SOURCE_CREATED if mode == "txt2img" else SOURCE_EDITED


def applied_labels(record: dict | None) -> list[str] | None:
    """The labels an image carries, from its stored record (``LABEL_KINDS`` names, in order); None for
    an image made before labels existed (no record)."""
    if record is None:
        return None
    present = {
        "visible": record.get("visible") is not None,
        "watermark": record.get("watermark") is not None,
        "metadata": bool(record.get("metadata")),
        "c2pa": bool(record.get("c2pa")),
    }
    return [kind for kind in LABEL_KINDS if present[kind]]


@dataclass
class LabeledImage:
    data: bytes  # the file to write or send
    image: Image.Image  # its final pixels
    record: dict  # stored with the item (images.labels); see Labeler.label_image
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage, for the cost bench


class Labeler:
    """The labeling pipeline with the studio's settings; one per studio (``studio.labeler``). The ONNX
    models and the C2PA signer are made on first use and kept."""

    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()
        self._nsfw = None  # labels.nsfw.NsfwClassifier
        self._credentials: tuple[tuple, object] | None = None  # (settings it was made from, Credentials)

    # -- settings ---------------------------------------------------------------------------------

    def _setting(self, key: str) -> object:
        return self.config.values[key]

    def credentials(self):
        """The C2PA signer for the current ``c2pa_cert``/``c2pa_key`` settings (the studio's own CA and
        key under AIGC_HOME/c2pa when they are empty, made on first use)."""
        from ..labels.credentials import Credentials

        cert, key = str(self._setting("c2pa_cert") or ""), str(self._setting("c2pa_key") or "")
        wanted = (str(self.config.home), cert, key)
        with self._lock:
            if self._credentials is None or self._credentials[0] != wanted:
                credentials = Credentials(
                    self.config.home / "c2pa",
                    Path(cert).expanduser() if cert else None,
                    Path(key).expanduser() if key else None,
                )
                credentials.ensure()
                self._credentials = (wanted, credentials)
            return self._credentials[1]

    def nsfw_classifier(self):
        """The NSFW classifier (open_nsfw.onnx), loaded once."""
        with self._lock:
            if self._nsfw is None:
                from ..labels.nsfw import NsfwClassifier

                self._nsfw = NsfwClassifier()
            return self._nsfw

    def marked_preview(self, preview: Callable[[], object | None]) -> Callable[[], object | None]:
        """A step's preview as the progress readers show it: with the visible mark when
        ``label_visible`` is on (a preview is a picture the studio shows too; it is never a file, so it
        gets no other label)."""

        def marked() -> object | None:
            image = preview()
            if image is None or not self._setting("label_visible") or not isinstance(image, Image.Image):
                return image
            from ..labels.visible import mark_image

            try:
                marked_image, _ = mark_image(
                    image,
                    language=str(self._setting("label_language")),
                    position=str(self._setting("label_position")),
                    opacity=int(self._setting("label_opacity")),
                )
            except ValueError:  # a preview too small to hold the mark (it is shown small anyway)
                return image
            return marked_image

        return marked

    # -- the block-list -----------------------------------------------------------------------------

    def check_prompt(self, *prompts: str | None) -> None:
        """InvalidRequest (param "prompt") naming the first ``prompt_blocklist`` entry that one of
        ``prompts`` contains; nothing when the list is empty or no prompt matches."""
        blocklist = str(self._setting("prompt_blocklist") or "")
        if not blocklist.strip():
            return
        from ..labels.nsfw import blocked_term

        for prompt in prompts:
            term = blocked_term(prompt or "", blocklist)
            if term is not None:
                raise InvalidRequest(
                    f"the prompt contains '{term}', which the prompt_blocklist setting blocks; "
                    "remove it from the prompt (or the term from the setting)",
                    param="prompt",
                )

    # -- the pipeline -------------------------------------------------------------------------------

    def label_image(
        self,
        image: Image.Image,
        *,
        produce_id: str,
        infotext: str | None,
        mode: str,
        source: Image.Image | None = None,
        fmt: str = "png",
        title: str = "",
    ) -> LabeledImage:
        """Label one generated image (see the module's docstring for the order) and encode it as
        ``fmt`` (png, jpeg, webp). ``produce_id`` is the item's id (ProduceID, the watermark payload's
        source, the C2PA title's default); ``source`` the user's image an img2img, inpaint or edit
        started from (the C2PA ingredient). The record says what was applied::

            {"visible": {"text", "language", "position", "box", "opacity", "text_height"} | None,
             "metadata": bool, "c2pa": bool, "watermark": payload | None,
             "watermark_skipped": why none was embedded with the setting on (too small) | None, "nsfw_score": 0..1,
             "nsfw_action": "none" | "blurred" | "blocked", "nsfw": {"setting", "threshold"},
             "source_type": IPTC URI, "producer": str | None, "digest": "sha256:…" | None}
        """
        from ..labels.nsfw import apply_action

        timings: dict[str, float] = {}

        def lap(stage: str, started: float) -> float:
            now = time.perf_counter()
            timings[stage] = (now - started) * 1000
            return now

        clock = time.perf_counter()
        # 1-2. Scored on the raw pixels: the mark and watermark must not sway the classifier.
        score = float(self.nsfw_classifier().score(image))
        action, threshold = str(self._setting("nsfw_action")), int(self._setting("nsfw_threshold"))
        image, taken = apply_action(image, score, action, threshold)
        clock = lap("nsfw", clock)
        # 3. The visible mark.
        visible = None
        if self._setting("label_visible"):
            from ..labels.visible import mark_image

            opacity = int(self._setting("label_opacity"))
            image, mark = mark_image(
                image,
                language=str(self._setting("label_language")),
                position=str(self._setting("label_position")),
                opacity=opacity,
            )
            visible = {
                "text": mark.text,
                "language": mark.language,
                "position": mark.position,
                "box": list(mark.box),
                "opacity": opacity,
                "text_height": mark.text_height,
            }
        clock = lap("mark", clock)
        # 4. The watermark, after the mark so the mark's pixels carry it too.
        payload, skipped = None, None
        if self._setting("watermark"):
            from ..labels import watermark

            # Too small an image would come back unchanged: it carries none, and the record says why.
            skipped = watermark.too_small(image) or None
            if skipped is None:
                payload = watermark.payload_for(produce_id)
                image = watermark.embed(image, payload)
        clock = lap("watermark", clock)
        record = {
            "visible": visible,
            "metadata": bool(self._setting("label_metadata")),
            "c2pa": bool(self._setting("c2pa")),
            "watermark": payload,
            "watermark_skipped": skipped,
            "nsfw_score": score,
            "nsfw_action": taken,
            "nsfw": {"setting": action, "threshold": threshold},
            "source_type": source_type_for(mode),
            "producer": None,
            "digest": None,
        }
        data = self.encode(
            image,
            record,
            produce_id=produce_id,
            infotext=infotext,
            fmt=fmt,
            source=source,
            title=title,
            timings=timings,
        )
        return LabeledImage(data=data, image=image, record=record, timings=timings)

    def encode(
        self,
        image: Image.Image,
        record: dict,
        *,
        produce_id: str,
        infotext: str | None,
        fmt: str = "png",
        source: Image.Image | None = None,
        title: str = "",
        timings: dict[str, float] | None = None,
    ) -> bytes:
        """The file of an image whose pixels are labeled already (steps 5 and 6): the infotext, the
        AIGC label and IPTC source type when ``record["metadata"]``, the C2PA manifest when
        ``record["c2pa"]``. Fills ``record``'s producer and digest. Also how a labeled image is saved
        again in another format (``aigc image --output x.jpg``)."""
        from ..labels.embed import encode_image, encoded_digest

        timings = {} if timings is None else timings
        clock = time.perf_counter()
        source_type = record["source_type"]
        aigc = None
        if record["metadata"]:
            producer = str(self._setting("aigc_producer"))
            # Over the pixels a reader decodes: JPEG and WebP change them, so their digest is taken after.
            digest = encoded_digest(image, fmt)
            aigc = AigcLabel(content_producer=producer, produce_id=produce_id, reserved_code1=digest)
            record["producer"], record["digest"] = producer, aigc.reserved_code1
        data = encode_image(
            image, fmt, infotext=infotext, aigc=aigc, source_type=source_type if aigc is not None else None
        )
        now = time.perf_counter()
        timings["metadata"], clock = (now - clock) * 1000, now
        # C2PA last: its hash covers everything written before it (the XMP included).
        if record["c2pa"]:
            ingredient = None
            if source is not None and source_type == SOURCE_EDITED:
                buffer = io.BytesIO()
                source.save(buffer, format="PNG")
                ingredient = buffer.getvalue()
            data = self.credentials().sign(
                data,
                fmt,
                title=title or f"{produce_id}.{fmt}",
                source_type=source_type,
                produce_id=produce_id,
                ingredient=ingredient,
                ingredient_fmt="png" if ingredient is not None else None,
                software=f"AIGC Studio {__version__}",
            )
        timings["c2pa"] = (time.perf_counter() - clock) * 1000
        return data
