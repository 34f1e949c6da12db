"""Language fit: which language a text is in, and whether a text model writes it.

The embedded SmolLM2 writes English only; asked to polish Chinese it answers in broken English or
repeats the text. A model's languages are known from the catalog (``CatalogEntry.languages``) or the
built-in list (``ModelInfo.languages``); for a model whose languages are known and lack the text's,
``language_fit`` gives the sentence the CLI, the API and the web UI show, naming the catalog models to
pull instead. For a model whose languages are not known (a GGUF added by hand) it says nothing, rather
than guess.
"""

from __future__ import annotations

import re

from ..models.catalog import CATALOG
from ..models.registry import ModelInfo

__all__ = ["LANGUAGE_NAMES", "detect_language", "language_fit", "model_languages"]

LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
# CJK ideographs (basic, extension A, compatibility) and the CJK punctuation block.
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """ "zh" when the text is mostly Chinese, else "en".

    One Chinese character carries about as much as a short English word, so characters are weighed
    against letters at 3 to 1: a Chinese sentence with "Python" in it is Chinese, an English sentence
    quoting 人工智能 is English.
    """
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk * 3 >= len(_LATIN.findall(text)) else "en"


def model_languages(info: ModelInfo) -> list[str] | None:
    """The languages ``info`` writes well, or None when the studio does not know them."""
    if info.languages:
        return list(info.languages)
    # A model pulled before the catalog listed languages: its catalog entry still knows.
    entry = next((e for e in CATALOG if e.id == info.id and e.kind == "text"), None)
    return list(entry.languages) if entry is not None and entry.languages else None


def language_fit(info: ModelInfo, language: str) -> str | None:
    """None when ``info`` is known to write ``language`` (or its languages are not known); otherwise
    what to tell the user, with the catalog models that write it."""
    known = model_languages(info)
    if known is None or language in known:
        return None
    writes = " and ".join(LANGUAGE_NAMES.get(code, code) for code in known)
    fits = [e for e in CATALOG if e.kind == "text" and language in e.languages]
    advice = (
        "; for it, pull a model that writes it: " + " or ".join(f"aigc models pull {e.id}" for e in fits)
        if fits
        else ""
    )
    return (
        f"the model '{info.id}' writes {writes} only, and this text is in "
        f"{LANGUAGE_NAMES.get(language, language)}: expect a poor answer{advice}"
    )
