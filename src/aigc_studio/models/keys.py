"""API keys of remote models, kept in ``$AIGC_HOME/keys.json`` (mode 0600), never in the database.

A remote model names either an environment variable that holds its key (nothing is stored) or has its
key here. Keys leave this file only for the ``Authorization`` header of the model's own server.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ..storage.files import write_atomic


class KeyStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def get(self, model_id: str) -> str | None:
        return self._read().get(model_id)

    def has(self, model_id: str) -> bool:
        return model_id in self._read()

    def set(self, model_id: str, key: str) -> None:
        with self._lock:
            keys = self._read()
            keys[model_id] = key
            self._write(keys)

    def delete(self, model_id: str) -> None:
        with self._lock:
            keys = self._read()
            if keys.pop(model_id, None) is not None:
                self._write(keys)

    def _write(self, keys: dict[str, str]) -> None:
        # Created 0600 from the start: the key is never readable by others, not even for a moment.
        write_atomic(self.path, json.dumps(keys), mode=0o600)
