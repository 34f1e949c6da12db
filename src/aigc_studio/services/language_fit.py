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
from dataclasses import dataclass

from ..models.catalog import CATALOG
from ..models.registry import ModelInfo

__all__ = ["LANGUAGE_NAMES", "LanguageFit", "detect_language", "fit", "language_fit", "model_languages"]

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


@dataclass(frozen=True)
class LanguageFit:
    """Whether a text model writes a language. ``fits`` is None when the studio does not know the
    model's languages (a model the user added, a test engine), and then nothing is said."""

    model: str
    language: str
    fits: bool | None
    languages: tuple[str, ...] = ()  # what the model writes, when known
    writers: tuple[str, ...] = ()  # catalog models that write the language, when this one does not

    @property
    def suggestion(self) -> str | None:
        """The catalog model to pull for the language: the largest one that writes it."""
        return self.writers[-1] if self.writers else None

    @property
    def message(self) -> str | None:
        """What the CLI, the API and the web UI say when the model does not fit (None when it does, or
        when that is not known); the web UI shows it in Chinese too (ui/messages.py)."""
        if self.fits is not False:
            return None
        writes = " and ".join(LANGUAGE_NAMES.get(code, code) for code in self.languages)
        advice = (
            "; for it, pull a model that writes it: " + " or ".join(f"aigc models pull {m}" for m in self.writers)
            if self.writers
            else ""
        )
        return (
            f"the model '{self.model}' writes {writes} only, and this text is in "
            f"{LANGUAGE_NAMES.get(self.language, self.language)}: expect a poor answer{advice}"
        )

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "language": self.language,
            "fits": self.fits,
            "languages": list(self.languages),
            "suggestion": self.suggestion,
            "message": self.message,
        }


def fit(info: ModelInfo, language: str) -> LanguageFit:
    """Whether ``info`` writes ``language``; where it does not, the catalog models that do, smallest first."""
    known = model_languages(info)
    if known is None:
        return LanguageFit(info.id, language, None)
    if language in known:
        return LanguageFit(info.id, language, True, tuple(known))
    writers = sorted((e for e in CATALOG if e.kind == "text" and language in e.languages), key=lambda e: e.size_bytes)
    return LanguageFit(info.id, language, False, tuple(known), tuple(e.id for e in writers))


def language_fit(info: ModelInfo, language: str) -> str | None:
    """None when ``info`` is known to write ``language`` (or its languages are not known); otherwise
    what to tell the user, with the catalog models that write it."""
    return fit(info, language).message
