"""What the writing service takes and gives: the article's spec (validated, with the ranges in every
message) and the events of a run, which the CLI, the API and the web UI each render."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..contracts import MAX_STOP, TextOptions, json_int
from ..errors import InvalidRequest

__all__ = ["ArticleOptions", "ArticleSpec", "EventType", "WriteEvent", "check_headings"]

MIN_LENGTH, MAX_LENGTH = 100, 20_000
MAX_SECTIONS = 20
MAX_NOTES = 20_000
MAX_HEADING = 200
MAX_CONTENT = 500_000
# Tokens per word (English) or per character (Chinese), generously: a section's budget of new tokens.
TOKENS_PER_UNIT = {"en": 1.5, "zh": 1.3}
MIN_SECTION_TOKENS = 48


class ArticleOptions(TextOptions):
    """Sampling options as the writing API takes them: ``stop`` is a list of non-empty strings, exactly
    as its schema says (no lone string turned into a list), and every value of the JSON type declared
    (strict: ``true`` is no seed, ``"3"`` no top_k)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    top_k: json_int(ge=0, le=1000) | None = Field(None, description="Keep the k most likely tokens (0: all).")
    seed: json_int(ge=-1, le=2**32 - 1) | None = Field(None, description="Random seed (-1 or unset: random).")
    max_tokens: json_int(ge=1, le=1_000_000) | None = Field(
        None, description="Most tokens to generate (unset: until the context is full)."
    )
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, max_length=MAX_STOP, description=f"Stop at any of these strings (at most {MAX_STOP})."
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        return value  # in place of TextOptions' own, which takes a lone string too


class ArticleSpec(BaseModel):
    """What to write. Lengths count words in English and characters in Chinese."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: str = Field(
        min_length=1, max_length=300, pattern=r"\S", description="The title, or keywords, of the article."
    )
    language: Literal["en", "zh"] = Field("en", description="The language to write in: en or zh.")
    audience: str = Field("", max_length=200, description="Who the article is for (empty: general readers).")
    tone: str = Field("", max_length=100, description="The tone to write in (empty: clear and friendly).")
    length: json_int() = Field(
        800,
        ge=MIN_LENGTH,
        le=MAX_LENGTH,
        description=f"Target length, {MIN_LENGTH}-{MAX_LENGTH}: words (en) or characters (zh).",
    )
    sections: json_int() = Field(5, ge=1, le=MAX_SECTIONS, description=f"Number of sections, 1-{MAX_SECTIONS}.")
    notes: str = Field("", max_length=MAX_NOTES, description=f"Reference notes, at most {MAX_NOTES} characters.")
    model: str | None = Field(None, max_length=200, description="Text model (unset: the default).")
    options: ArticleOptions = Field(
        default_factory=TextOptions,
        description="Sampling options; max_tokens caps each section, the abstract and the tags.",
    )

    @field_validator("title", mode="before")
    @classmethod
    def _title_not_blank(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty: give a title or keywords")
        return value.strip() if isinstance(value, str) else value

    @field_validator("length", mode="before")
    @classmethod
    def _length_in_range(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and not MIN_LENGTH <= value <= MAX_LENGTH:
            raise ValueError(
                f"must be {MIN_LENGTH}-{MAX_LENGTH} (words in English, characters in Chinese), got {value}"
            )
        return value

    @field_validator("sections", mode="before")
    @classmethod
    def _sections_in_range(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_SECTIONS:
            raise ValueError(f"must be 1-{MAX_SECTIONS}, got {value}")
        return value

    @field_validator("notes", mode="before")
    @classmethod
    def _notes_in_limit(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > MAX_NOTES:
            raise ValueError(f"must be at most {MAX_NOTES} characters, got {len(value)}")
        return value


EventType = Literal[
    "language",
    "outline",
    "section_start",
    "reading",
    "delta",
    "section_done",
    "trimmed",
    "abstract",
    "tags",
    "done",
    "cancelled",
    "error",
]


@dataclass
class WriteEvent:
    """One step of a run, as the shells render it. ``section`` counts from 1, of ``total``."""

    type: EventType
    document_id: str | None = None
    section: int | None = None
    total: int | None = None
    heading: str | None = None
    text: str | None = None  # a delta's text, a finished section's, the abstract
    headings: list[str] | None = None
    tags: list[str] | None = None
    state: str | None = None  # section_done: "done" or "partial"
    message: str | None = None  # language, trimmed, error, cancelled: what to tell the user
    version: int | None = None  # done, cancelled, error: the version stored
    fit: dict | None = None  # language: LanguageFit.as_dict()
    read: int | None = None  # reading: how many of the prompt's tokens the model has read
    prompt_tokens: int | None = None  # reading: of how many

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_headings(headings: list[str]) -> list[str]:
    """Headings cleaned of surrounding space; InvalidRequest unless there are 1-20, none empty or long."""
    cleaned = [" ".join(str(h).split()) for h in headings]
    if not 1 <= len(cleaned) <= MAX_SECTIONS:
        raise InvalidRequest(f"an outline must have 1-{MAX_SECTIONS} headings, got {len(cleaned)}", param="headings")
    for i, heading in enumerate(cleaned, 1):
        if not heading:
            raise InvalidRequest(f"heading {i} is empty; every heading needs text", param="headings")
        if len(heading) > MAX_HEADING:
            raise InvalidRequest(
                f"heading {i} is {len(heading)} characters; at most {MAX_HEADING} allowed", param="headings"
            )
    return cleaned
