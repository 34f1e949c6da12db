"""The gallery: every text and image generation in one list, newest first, shared by the UI (and any
CLI command or API that lists "everything made"). Images come from the image service's records,
conversations from history; an entry says which it is, so opening or deleting it goes to the right one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import InvalidRequest
from ..storage.history import History
from .images import ImageService

__all__ = ["KINDS", "GalleryEntry", "GalleryService"]

KINDS = ("all", "image", "text")


@dataclass
class GalleryEntry:
    """One generation: an image (``path``, its request ``params`` and ``infotext``) or a conversation."""

    kind: Literal["image", "text"]
    id: str
    created: float  # an image's time, a conversation's last update
    model: str
    prompt: str  # an image's prompt, a conversation's title
    path: str | None = None
    mode: str | None = None
    infotext: str | None = None
    params: dict = field(default_factory=dict)


class GalleryService:
    def __init__(self, images: ImageService, history: History):
        self.images = images
        self.history = history

    def entries(self, query: str = "", kind: str = "all", model: str = "", limit: int = 200) -> list[GalleryEntry]:
        """Text and image generations, newest first. ``query`` matches an image's prompt or a
        conversation's messages; ``kind`` is one of all, image, text; ``model`` a model id."""
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
        found.sort(key=lambda e: e.created, reverse=True)
        return found[:limit]

    def reuse_fields(self, entry: GalleryEntry) -> dict:
        """The request fields that make this one image again: its own seed and variation seed, as one
        batch of one (the record of an image from a batch holds that image's seeds)."""
        if entry.kind != "image":
            raise InvalidRequest(f"'{entry.id}' is a conversation; only an image's parameters make it again")
        fields = {k: v for k, v in entry.params.items() if k != "mode"}
        return {**fields, "n_iter": 1, "batch_size": 1}

    def delete(self, entry: GalleryEntry) -> None:
        """Delete an image (record and file) or a whole conversation."""
        if entry.kind == "text":
            self.history.delete(entry.id)
        else:
            self.images.delete(entry.id)
