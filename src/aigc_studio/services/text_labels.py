"""Labels on generated text as the settings ask (``label_text``, ``label_language``,
``label_text_position``, ``label_metadata``, ``aigc_producer``), and the record of what each export
carried (table ``text_exports``).

Document exports (``WritingService.export``: the CLI, ``/api/documents/{id}/export`` and the Write
tab) take their ``TextLabeling`` from here; the chat history export gets an ``AIGC`` object on every
assistant message; the web UI asks here for the line its copy handler adds.
"""

from __future__ import annotations

from ..config import Config
from ..labels.aigc import AigcLabel, text_digest
from ..labels.text import TEXT_LABEL, TextLabeling
from ..storage.db import Database
from ..storage.text_exports import TextExportLog

__all__ = ["TextLabeler"]


class TextLabeler:
    """One per studio (``studio.text_labels``)."""

    def __init__(self, config: Config, db: Database):
        self.config = config
        self.log = TextExportLog(db)

    def labeling(self, produce_id: str) -> TextLabeling:
        """The labels an export of the item ``produce_id`` carries under the current settings."""
        aigc = None
        if self.config.label_metadata:
            aigc = AigcLabel(content_producer=str(self.config.aigc_producer), produce_id=produce_id)
        language = str(self.config.label_language) if self.config.label_text else None
        return TextLabeling(language, str(self.config.label_text_position), aigc)

    def copy_line(self) -> dict:
        """What the web UI adds to text copied from a generated item: ``{"line": str, "position": str}``
        (``line`` empty when ``label_text`` is off)."""
        line = TEXT_LABEL[str(self.config.label_language)] if self.config.label_text else ""
        return {"line": line, "position": str(self.config.label_text_position)}

    def record(self, kind: str, item_id: str, fmt: str, labels: dict, version: int | None = None) -> None:
        """Keep in the item's history which labels one export carried (``ExportFile.labels``)."""
        self.log.add(
            kind,
            item_id,
            fmt,
            line=labels["line"],
            position=labels["position"],
            metadata=labels["metadata"],
            digest=labels["digest"],
            version=version,
        )

    def exports(self, kind: str, item_id: str) -> list[dict]:
        """The recorded exports of a document ("document") or conversation ("history"), oldest first:
        version, format, label_line, label_position, label_metadata, digest, created."""
        return self.log.of(kind, item_id)

    def label_history(self, export: dict) -> dict:
        """A chat history export (``History.export``) with the labels: every assistant answer gets
        ``aigc`` (the standard's object, ProduceID its response id, ReservedCode1 the digest of its
        content) when ``label_metadata`` is on, and the file a top-level ``label`` line when
        ``label_text`` is on. The content itself stays as stored, so importing the file gives back the
        same conversation. Each conversation's export is recorded."""
        producer = str(self.config.aigc_producer)
        digests = 0
        for conversation in export["conversations"]:
            for message in conversation["messages"]:
                if message["role"] != "assistant" or not message.get("content"):
                    continue
                if self.config.label_metadata:
                    produce_id = message.get("response_id") or conversation["id"]
                    label = AigcLabel(producer, produce_id, reserved_code1=text_digest(message["content"]))
                    message["aigc"] = label.to_dict()
                    digests += 1
        line = self.copy_line()["line"]
        if line:
            export = {"label": line, **export}
        for conversation in export["conversations"]:
            self.log.add(
                "history",
                conversation["id"],
                "json",
                line=bool(line),
                position=None,
                metadata=bool(self.config.label_metadata),
                digest=None,
            )
        return export
