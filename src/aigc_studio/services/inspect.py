"""Inspect any file: every AI label and piece of provenance it carries, read back and checked.

One report (a plain dict, JSON-ready) for an image or a text file, the same for ``aigc inspect``,
``POST /api/inspect`` and the web UI's Inspect tab:

- ``file``: name, format, size in bytes, pixels;
- ``verdict``: one line, the conclusion first ("AI-generated (TC260 label 1, C2PA trusted, ...)");
- ``a1111``: the infotext (PNG ``parameters``, JPEG/WebP EXIF UserComment) and its parsed parameters;
- ``aigc``: the GB 45438-2025 label's fields, where it was found, whether ReservedCode1 still matches
  the content, what its Label means;
- ``iptc``: the IPTC digital source type, in words;
- ``c2pa``: the C2PA manifest's state (absent, valid, trusted, invalid) with the reason and its claims;
- ``watermark``: the invisible watermark's payload and confidence, and the gallery item it identifies;
- ``nsfw``: the NSFW score computed now and, for a gallery item, the stored score and action;
- ``item``: the studio's record that the ProduceID or the watermark points to;
- ``text``: for a text file, the label line and the format the label was read from.

What a file does not carry is reported as absent, never as an error. A file that is neither a readable
image nor a supported text file is an InvalidRequest naming the accepted formats; an image over the
``max_image_megapixels`` setting is refused from its header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..config import Config
from ..errors import InvalidRequest
from ..images.infotext import parse_infotext, read_infotext, to_request_fields
from ..labels.aigc import LABELS, SOURCE_CREATED, SOURCE_EDITED, AigcLabel
from ..labels.credentials import Credentials, CredentialsError, read_credentials
from ..labels.embed import image_labels
from ..labels.text import read_text_labels
from ..labels.watermark import detect, payload_for
from ..storage.db import Database
from ..storage.owners import mine
from .images import ImageService, open_image
from .labeling import Labeler

TEXT_SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
    ".docx": "docx",
}
ACCEPTED = (
    "an image (PNG, JPEG or WebP; other formats Pillow reads give format and pixels only)"
    " or a text file (.md, .html, .txt, .docx)"
)
C2PA_FORMATS = ("png", "jpeg", "webp")

_IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The IPTC digital source types a generated or captured picture may name, in words.
SOURCE_TYPES = {
    SOURCE_CREATED: "created by a trained AI model from a prompt (trainedAlgorithmicMedia)",
    SOURCE_EDITED: "a picture changed by a trained AI model (compositeWithTrainedAlgorithmicMedia)",
    _IPTC + "algorithmicMedia": "made by an algorithm without a trained model (algorithmicMedia)",
    _IPTC + "compositeSynthetic": "a composite with synthetic elements (compositeSynthetic)",
    _IPTC + "digitalCapture": "captured by a camera (digitalCapture)",
    _IPTC + "digitalArt": "made by a person with digital tools (digitalArt)",
    _IPTC + "minorHumanEdits": "captured, with minor human edits (minorHumanEdits)",
    _IPTC + "compositeCapture": "a composite of captured elements (compositeCapture)",
    _IPTC + "algorithmicallyEnhanced": "captured, enhanced by an algorithm (algorithmicallyEnhanced)",
}
# Only these two say a trained model made it; algorithmicMedia and compositeSynthetic need no AI.
_AI_SOURCE_TYPES = {SOURCE_CREATED, SOURCE_EDITED}
_INTEGRITY = {
    "match": "ReservedCode1 matches the content: unchanged since it was labeled",
    "mismatch": "ReservedCode1 does not match the content: changed since it was labeled",
    "unchecked": "ReservedCode1 is not a sha256 digest this studio can check",
}
# The tables an item id (the ProduceID, or the watermark's match) can point to, by its prefix, and the
# alias of the table whose owner it is: a file made by another user is reported as not this studio's.
_ITEM_QUERIES = {
    "img": ("SELECT i.id, i.prompt, i.model, i.created FROM images i WHERE i.id = ?", "i"),
    "doc": (
        "SELECT d.id, d.title AS prompt, (SELECT model FROM document_versions v WHERE v.document_id = d.id"
        " ORDER BY number DESC LIMIT 1) AS model, d.created FROM documents d WHERE d.id = ?",
        "d",
    ),
    "resp": (
        "SELECT r.id, c.title AS prompt, r.model, r.created FROM responses r"
        " JOIN conversations c ON c.id = r.conversation_id WHERE r.id = ?",
        "c",
    ),
    "conv": ("SELECT c.id, c.title AS prompt, c.model, c.created FROM conversations c WHERE c.id = ?", "c"),
}


def _absent(reason: str, **fields: Any) -> dict:
    return {"found": False, "reason": reason, **fields}


def _aigc_section(label: AigcLabel | None, where: list[str], error: str | None, integrity: str | None) -> dict:
    if label is None:
        reason = f"an AIGC field is present but unreadable: {error}" if error else "no TC260 AIGC label"
        return _absent(reason, error=error, where=where)
    return {
        "found": True,
        "fields": label.to_dict(),
        "where": where,
        "label": label.label,
        "meaning": LABELS[label.label],
        "integrity": integrity or "unchecked",
        "integrity_meaning": _INTEGRITY[integrity or "unchecked"],
        "error": error,
    }


def _iptc_section(source_type: str | None) -> dict:
    if not source_type:
        return _absent("no IPTC digital source type")
    words = SOURCE_TYPES.get(source_type, f"a source type this studio does not know ({source_type.rsplit('/', 1)[-1]})")
    return {"found": True, "source_type": source_type, "meaning": words, "ai": source_type in _AI_SOURCE_TYPES}


def _a1111_section(infotext: str | None) -> dict:
    if not infotext:
        return _absent("no PNG 'parameters' chunk or EXIF UserComment")
    parsed = parse_infotext(infotext)
    try:
        fields, fields_error = to_request_fields(parsed), None
    except ValueError as exc:  # another tool's value of the wrong type: the raw parameters still show
        fields, fields_error = None, str(exc)
    if fields is not None:
        # JSON has no NaN or infinity; an infotext may say "CFG scale: nan"
        fields = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}
    return {
        "found": True,
        "infotext": infotext,
        "prompt": parsed.prompt,
        "negative_prompt": parsed.negative_prompt,
        "parameters": parsed.params,
        "request_fields": fields,
        "request_fields_error": fields_error,
    }


class Inspector:
    """Reads every label of a file and checks it against the studio's own records (the gallery's
    watermark payloads and NSFW results, the CA its C2PA credentials chain to)."""

    def __init__(self, db: Database, config: Config, images: ImageService, labeler: Labeler):
        self.db, self.config = db, config
        self.images, self.labeler = images, labeler  # the gallery's payloads; the one NSFW classifier

    # -- the report ------------------------------------------------------------------------------

    def inspect(self, data: bytes, filename: str | None = None) -> dict:
        """The report on one file's bytes (``filename`` tells a text file's format; optional for
        images). InvalidRequest for an empty file or one that is neither a readable image nor a
        supported text file; TooLarge for an image over ``max_image_megapixels``."""
        name = Path(filename).name if filename else None
        self.images.limits.check_upload(len(data), "file")
        if not data:
            raise InvalidRequest(f"the file{f' {name}' if name else ''} is empty; send {ACCEPTED}", param="file")
        kind = self._kind(data, name)
        report = self._image(data, name) if kind == "image" else self._text(data, name, kind)
        report["verdict"] = verdict(report)
        return {"verdict": report.pop("verdict"), **report}

    def parameters(self, data: bytes, filename: str | None = None) -> dict:
        """Only the A1111 section of the report (the infotext, its parameters and request fields),
        without the label checks: what ``aigc inspect --infotext`` and ``--fields`` print."""
        name = Path(filename).name if filename else None
        if not data or self._kind(data, name) != "image":
            raise InvalidRequest(
                f"{name or 'the file'} is not an image; A1111 parameters are read from images", param="file"
            )
        return _a1111_section(
            read_infotext(open_image(data, "file", int(self.config.max_image_megapixels), any_format=True))
        )

    def _kind(self, data: bytes, name: str | None) -> str:
        # The bytes decide first: a PNG named .txt is still a PNG. The name tells the text formats apart.
        try:
            Image.open(io.BytesIO(data))  # the header only
            return "image"
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return "image"  # open_image refuses it with the size it claims
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            pass
        suffix = Path(name).suffix.lower() if name else ""
        if suffix in TEXT_SUFFIXES:
            return TEXT_SUFFIXES[suffix]
        if data[:4] == b"PK\x03\x04" and not suffix:
            return "docx"
        if not suffix:
            try:
                data.decode("utf-8")
                return "text"
            except UnicodeDecodeError:
                pass
        what = f"{name} is not" if name else "the file is not"
        raise InvalidRequest(f"{what} a file inspect can read; send {ACCEPTED}", param="file")

    def _image(self, data: bytes, name: str | None) -> dict:
        image = open_image(data, "file", int(self.config.max_image_megapixels), any_format=True)  # decoded once, here
        labels = image_labels(image)
        c2pa = self._c2pa(data, labels.format)
        # The ids the file names (TC260 ProduceID, the C2PA manifest's), then the watermark's.
        named = [i for i in (labels.aigc.produce_id if labels.aigc else None, c2pa.get("produce_id")) if i]
        watermark = self._watermark(image, named)
        item = next((self.item(i) for i in [*named, watermark["item"]] if i and self._record(i)), None)
        return {
            "file": {
                "name": name,
                "kind": "image",
                "format": labels.format,
                "size": len(data),
                "width": image.width,
                "height": image.height,
            },
            "a1111": _a1111_section(labels.infotext),
            "aigc": _aigc_section(labels.aigc, labels.aigc_where, labels.aigc_error, labels.integrity),
            "iptc": _iptc_section(labels.source_type),
            "c2pa": c2pa,
            "watermark": watermark,
            "nsfw": self._nsfw_section(image, item),
            "item": item,
            "text": None,
        }

    def _text(self, data: bytes, name: str | None, kind: str) -> dict:
        try:
            labels = read_text_labels(data, name)
        except ValueError as exc:
            raise InvalidRequest(f"{name or 'the file'} is not a readable {kind} file: {exc}", param="file") from None
        produce_id = labels.aigc.produce_id if labels.aigc else None
        item = self.item(produce_id) if produce_id else None
        not_image = "read from images only"
        return {
            "file": {
                "name": name,
                "kind": "text",
                "format": labels.format,
                "size": len(data),
                "width": None,
                "height": None,
            },
            "a1111": _absent(f"A1111 parameters are {not_image}"),
            "aigc": _aigc_section(
                labels.aigc, [labels.aigc_where] if labels.aigc_where else [], labels.aigc_error, labels.integrity
            ),
            "iptc": _absent(f"the IPTC source type is {not_image}"),
            "c2pa": {"state": "absent", "reason": f"C2PA credentials are {not_image}", "found": False},
            "watermark": _absent(f"the watermark is {not_image}", payload=None, confidence=None, item=None),
            "nsfw": _absent(f"the NSFW score is {not_image}", score=None),
            "item": item,
            "text": {
                "found": labels.label_line is not None,
                "label_line": labels.label_line,
                "position": labels.label_position,
                "title": labels.title,
            },
        }

    # -- each kind -------------------------------------------------------------------------------

    def _c2pa(self, data: bytes, fmt: str) -> dict:
        if fmt not in C2PA_FORMATS:
            return {"state": "absent", "reason": f"C2PA is read from PNG, JPEG and WebP; this is {fmt}", "found": False}
        anchors, trust_error = None, None
        folder = self.config.home / "c2pa"
        cert, key = str(self.config.c2pa_cert), str(self.config.c2pa_key)
        # Trusted means: chains to the studio's own CA (or the user's chain). Never made here: a studio
        # that has signed nothing has no CA to trust yet.
        if cert or folder.is_dir():
            try:
                credentials = Credentials(folder, Path(cert) if cert else None, Path(key) if key else None)
                anchors = credentials.trust_anchors()
            except CredentialsError as exc:
                trust_error = f"the studio's own credentials could not be read, so nothing is trusted: {exc}"
        state = read_credentials(data, fmt, anchors)
        return {"found": state.state != "absent", **state.to_dict(), "trust_error": trust_error}

    def _watermark(self, image: Image.Image, named: list[str]) -> dict:
        # The gallery's payloads, and those of the ids the file's labels name: a watermark that agrees
        # with the label confirms it, even for an item of another studio.
        known = self.images.known_watermarks()
        for produce_id in named:
            known.setdefault(payload_for(produce_id), produce_id)
        reading = detect(image, known)
        payload = f"{reading.payload:08x}" if reading.payload is not None else None
        in_gallery = bool(reading.item and reading.item.startswith("img-") and self._record(reading.item))
        return {
            "found": reading.found,
            "payload": payload if reading.found else None,
            "confidence": round(reading.confidence, 4),
            "method": reading.method,
            "bit_errors": reading.bit_errors,
            "item": reading.item,
            "in_gallery": in_gallery,
            "link": f"/api/images/{reading.item}.png" if in_gallery else None,
            "reason": reading.reason,
        }

    def _nsfw_section(self, image: Image.Image, item: dict | None) -> dict:
        stored = item or {}
        return {
            "found": True,
            "score": round(self.labeler.nsfw_classifier().score(image), 4),
            "threshold": int(self.config.nsfw_threshold),
            "stored_score": stored.get("nsfw_score"),
            "stored_action": stored.get("nsfw_action"),
        }

    # -- the studio's records --------------------------------------------------------------------

    def _record(self, item_id: str):
        # A document's export names its version: "doc-…/v3".
        base = item_id.partition("/v")[0]
        found = _ITEM_QUERIES.get(base.split("-", 1)[0])
        if found is None:
            return None
        query, alias = found
        owned, owner = mine(alias)
        return self.db.conn.execute(query + owned, (base, *owner)).fetchone()

    def item(self, item_id: str) -> dict | None:
        """The studio's record of an item by its id (img-, doc-, resp-, conv-; a document's version as
        doc-…/vN), or None when this studio has none: id, kind, prompt (a document's or conversation's
        title), model, created and, for an image, its link, stored labels and NSFW result."""
        row = self._record(item_id)
        if row is None:
            return None
        kind = row["id"].split("-", 1)[0]
        found = {
            "id": row["id"],
            "kind": kind,
            "prompt": row["prompt"],
            "model": row["model"],
            "created": row["created"],
        }
        version = item_id.partition("/v")[2]
        if kind == "doc" and version.isdigit():
            found["version"] = int(version)
            model = self.db.conn.execute(
                "SELECT model FROM document_versions WHERE document_id = ? AND number = ?", (row["id"], int(version))
            ).fetchone()
            found["model"] = model["model"] if model else found["model"]
        if kind == "img":
            found["link"] = f"/api/images/{row['id']}.png"
            stored = self.db.conn.execute(
                "SELECT nsfw_score, nsfw_action, labels FROM images WHERE id = ?", (row["id"],)
            ).fetchone()
            found["nsfw_score"], found["nsfw_action"] = stored["nsfw_score"], stored["nsfw_action"]
            found["labels"] = json.loads(stored["labels"]) if stored["labels"] else None
        return found


def verdict(report: dict) -> str:
    """The conclusion, first, with what it rests on: "AI-generated (TC260 label 1, C2PA trusted,
    watermark → img-…)", "Possibly AI-generated (...)", or "No AI label found"."""
    reasons, warnings = [], []
    aigc, iptc, c2pa, mark = report["aigc"], report["iptc"], report["c2pa"], report["watermark"]
    level = None
    if aigc["found"]:
        level = aigc["label"]
        reasons.append(f"TC260 label {aigc['label']}")
        if aigc["integrity"] == "mismatch":
            warnings.append("content changed since labeling")
    elif aigc.get("error"):
        warnings.append("a TC260 label is there but malformed")
    if iptc["found"] and iptc["ai"]:
        reasons.append("IPTC " + iptc["source_type"].rsplit("/", 1)[-1])
    if c2pa["state"] != "absent":
        reasons.append(f"C2PA {c2pa['state']}")
        if c2pa["state"] == "invalid":
            warnings.append("C2PA credentials invalid")
    if mark["found"]:
        reasons.append(f"watermark → {mark['item']}" if mark["item"] else f"watermark {mark['payload']}")
    if report["a1111"]["found"]:
        reasons.append("A1111 parameters")
    if report.get("text") and report["text"]["found"]:
        reasons.append("label line")
    tail = f"; warning: {', '.join(warnings)}" if warnings else ""
    if not reasons:
        return "No AI label found (no TC260 label, AI source type, C2PA credentials or watermark)" + tail
    generated = (
        level == "1"
        or (iptc["found"] and iptc["ai"])
        or (c2pa.get("source_type") or "") in _AI_SOURCE_TYPES
        or mark["found"]
        or report["a1111"]["found"]
        or bool(report.get("text") and report["text"]["found"])
    )
    if generated:
        head = "AI-generated"
    elif level in ("2", "3"):
        head = {"2": "Possibly AI-generated", "3": "Suspected AI-generated"}[level]
    else:
        head = "Provenance found, no AI claim"  # e.g. C2PA credentials of a camera or an editor
    return f"{head} ({', '.join(reasons)})" + tail


def _shown_parameters(params: dict[str, str]) -> dict[str, str]:
    # parse_infotext splits "Size: 512x768" into Size-1 and Size-2; a reader wants it whole again.
    shown = {}
    for key, value in params.items():
        base = key[:-2]
        if key.endswith("-1") and f"{base}-2" in params:
            shown[base] = f"{value}x{params[base + '-2']}"
        elif not (key.endswith("-2") and f"{base}-1" in params):
            shown[key] = value
    return shown


def summary(report: dict) -> str:
    """The report as readable text: the verdict, then one section per kind ("absent" where nothing was
    found). What ``aigc inspect`` prints and the web UI shows."""
    file = report["file"]
    pixels = f", {file['width']}x{file['height']} px" if file["width"] else ""
    lines = [
        report["verdict"],
        "",
        f"File: {file['name'] or '(unnamed)'} — {file['format']}, {file['size']} bytes{pixels}",
    ]

    def section(title: str, body: list[str] | None, reason: str = "") -> None:
        lines.append("")
        lines.append(f"{title}:" + ("" if body else f" absent{f' ({reason})' if reason else ''}"))
        lines.extend(f"  {line}" for line in body or [])

    a1111 = report["a1111"]
    section(
        "A1111 parameters",
        [f"prompt: {a1111['prompt']}"]
        + ([f"negative prompt: {a1111['negative_prompt']}"] if a1111["negative_prompt"] else [])
        + [f"{key}: {value}" for key, value in _shown_parameters(a1111["parameters"]).items()]
        if a1111["found"]
        else None,
        a1111.get("reason", ""),
    )
    aigc = report["aigc"]
    section(
        "TC260 AIGC label",
        [f"Label {aigc['label']}: {aigc['meaning']}", f"found in: {', '.join(aigc['where'])}"]
        + [f"{key}: {value}" for key, value in aigc["fields"].items() if value and key != "Label"]
        + [f"integrity: {aigc['integrity']} — {aigc['integrity_meaning']}"]
        if aigc["found"]
        else None,
        aigc.get("reason", ""),
    )
    iptc = report["iptc"]
    section("IPTC digital source type", [iptc["meaning"]] if iptc["found"] else None, iptc.get("reason", ""))
    c2pa = report["c2pa"]
    body = None
    if c2pa["state"] != "absent":
        body = [f"state: {c2pa['state']} — {c2pa['reason']}"]
        body += [
            f"{label}: {c2pa[key]}" for label, key in (("signer", "signer"), ("claim generator", "claim_generator"))
        ]
        body += [f"actions: {', '.join(c2pa['actions']) or 'none'}"]
        body += [f"ingredients: {', '.join(c2pa['ingredients'])}"] if c2pa["ingredients"] else []
    section("C2PA", body, c2pa.get("reason", ""))
    mark = report["watermark"]
    body = None
    if mark["found"]:
        body = [f"payload: {mark['payload']} (confidence {mark['confidence']:.2f}, {mark['method']})"]
        if mark["item"]:
            where = "a gallery image of this studio" if mark["in_gallery"] else "the id the labels name"
            body += [f"identifies: {mark['item']} ({where})"]
        else:
            because = f": {mark['reason']}" if mark["reason"] else ""
            body += [f"identifies no item of this studio{because}"]
    reason = mark.get("reason") or (
        f"confidence {mark['confidence']:.2f}" if mark.get("confidence") is not None else ""
    )
    section("Watermark", body, reason)
    nsfw = report["nsfw"]
    body = None
    if nsfw["found"]:
        body = [f"score now: {nsfw['score']:.2f} (threshold {nsfw['threshold']}%)"]
        if nsfw["stored_score"] is not None:
            body += [f"stored: {nsfw['stored_score']:.2f}, action {nsfw['stored_action']}"]
    section("NSFW", body, nsfw.get("reason", ""))
    if report.get("text") is not None:
        text = report["text"]
        section("Label line", [text["label_line"]] if text["found"] else None, "no label line in the text")
    item = report["item"]
    body = None
    if item:
        version = f" (version {item['version']})" if item.get("version") else ""
        created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(item["created"]))
        body = [f"{item['id']}{version}: {item['prompt']}", f"model: {item['model']}", f"created: {created}"]
        body += [f"link: {item['link']}"] if item.get("link") else []
        applied = item.get("labels")
        if applied is not None:
            kinds = [k for k in ("visible", "watermark") if applied.get(k) is not None]
            kinds += [k for k in ("metadata", "c2pa") if applied.get(k)]
            body += [f"labels when made: {', '.join(kinds) or 'none (labels were off)'}"]
    section("Studio item", body, "neither the ProduceID nor the watermark names an item of this studio")
    return "\n".join(lines)
