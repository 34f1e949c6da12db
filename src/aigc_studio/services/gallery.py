"""The gallery: every text and image generation in one list, newest first, shared by the UI (and any
CLI command or API that lists "everything made"). Images come from the image service's records,
conversations from history, articles from the writing service's documents; an entry says which it is, so
opening or deleting it goes to the right one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import InvalidRequest
from ..storage.history import History
from .images import ImageService
from .writing import WritingService

__all__ = ["KINDS", "GalleryEntry", "GalleryService"]

KINDS = ("all", "image", "text", "document")


@dataclass
class GalleryEntry:
    """One generation: an image (``path``, its request ``params`` and ``infotext``), a conversation or an
    article (a document of the writing pipeline)."""

    kind: Literal["image", "text", "document"]
    id: str
    created: float  # an image's time, a conversation's or a document's last update
    model: str
    prompt: str  # an image's prompt, a conversation's or a document's title
    path: str | None = None
    mode: str | None = None
    infotext: str | None = None
    params: dict = field(default_factory=dict)
    # images: what labeling applied (None: made before labels existed), the NSFW score and the action taken
    labels: dict | None = None
    nsfw_score: float | None = None
    nsfw_action: str | None = None


class GalleryService:
    def __init__(self, images: ImageService, history: History, writing: WritingService):
        self.images = images
        self.history = history
        self.writing = writing

    def entries(self, query: str = "", kind: str = "all", model: str = "", limit: int = 200) -> list[GalleryEntry]:
        """Text and image generations and articles, newest first. ``query`` matches an image's prompt, a
        conversation's messages or any version of an article; ``kind`` is one of all, image, text,
        document; ``model`` a model id."""
        if kind not in KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", param="kind")
        query = query.strip()
        found: list[GalleryEntry] = []
        if kind in ("all", "image"):
            for row in self.images.list(limit=limit, query=query or None, model=model or None):
                found.append(
                    GalleryEntry(
                        kind="image",
                        id=row["id"],
                        created=row["created"],
                        model=row["model"],
                        prompt=row["prompt"],
                        path=row["path"],
                        mode=row["mode"],
                        infotext=row["infotext"],
                        params=row["params"],
                        labels=row["labels"],
                        nsfw_score=row["nsfw_score"],
                        nsfw_action=row["nsfw_action"],
                    )
                )
        if kind in ("all", "text"):
            rows = self.history.search(query, limit=limit) if query else self.history.list(limit=limit)
            seen: set[str] = set()
            for row in rows:
                # A search answers one row per matching message; the gallery shows each conversation once.
                if row["id"] in seen or (model and row["model"] != model):
                    continue
                seen.add(row["id"])
                found.append(
                    GalleryEntry(
                        kind="text", id=row["id"], created=row["updated"], model=row["model"], prompt=row["title"]
                    )
                )
        if kind in ("all", "document"):
            for row in self.writing.list(limit=limit, query=query or None):
                if model and row["model"] != model:
                    continue
                found.append(
                    GalleryEntry(
                        kind="document",
                        id=row["id"],
                        created=row["updated"],
                        model=row["model"] or "",
                        prompt=row["title"],
                        params={"versions": row["versions"], "language": row["language"]},
                    )
                )
        found.sort(key=lambda e: e.created, reverse=True)
        return found[:limit]

    def reuse_fields(self, entry: GalleryEntry) -> dict:
        """The request fields that make this one image again: its own seed and variation seed, as one
        batch of one (the record of an image from a batch holds that image's seeds)."""
        if entry.kind != "image":
            what = "a conversation" if entry.kind == "text" else "an article"
            raise InvalidRequest(f"'{entry.id}' is {what}; only an image's parameters make it again")
        fields = {k: v for k, v in entry.params.items() if k != "mode"}
        return {**fields, "n_iter": 1, "batch_size": 1}

    def delete(self, entry: GalleryEntry) -> None:
        """Delete an image (record and file), a whole conversation or an article with its versions."""
        if entry.kind == "text":
            self.history.delete(entry.id)
        elif entry.kind == "document":
            self.writing.delete(entry.id)
        else:
            self.images.delete(entry.id)
