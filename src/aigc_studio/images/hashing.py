"""Model hashes as AUTOMATIC1111 shows them, with a cache so a model is read once.

- ``sha256_file``: full SHA-256 of a file (A1111's ``hashes.calculate_sha256``, Civitai's "SHA256").
- ``model_hash``: its first 10 hex digits, A1111's "Model hash" in infotexts since v1.0.
- ``legacy_model_hash``: A1111's pre-1.0 hash, 8 hex of the SHA-256 of 64 KiB at offset 1 MiB.

A diffusers folder is not a single file, so A1111 has no hash for it. This studio's own convention:
take every weight file (``*.safetensors``, ``*.bin``) under the folder, skipping hidden paths such as
``.cache/``; sort them by POSIX relative path; write one line ``"<sha256>  <relative path>\\n"`` per
file (the ``sha256sum`` layout) in UTF-8; the folder's SHA-256 is the SHA-256 of that text. A folder
pulled with one weight variant only (``unet/diffusion_pytorch_model.fp16.safetensors``, ...) hashes
those files, which are the weights it loads.

``is_weight_file`` and ``weight_variant`` read a diffusers weight file's name, for the pull (did it
fetch each component's weights, in the variant asked for) and the loader (which variant a folder needs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from ..storage.files import write_atomic

__all__ = [
    "HashCache",
    "folder_sha256",
    "is_weight_file",
    "legacy_model_hash",
    "model_hash",
    "sha256_file",
    "weight_variant",
]

log = logging.getLogger(__name__)

_BLOCK = 1024 * 1024  # read size; A1111 uses the same
_LEGACY_OFFSET = 0x100000
_LEGACY_LENGTH = 0x10000
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
SHORT_HASH_LENGTH = 10
# "<stem>[.<variant>][-00001-of-00002].<safetensors|bin>": diffusers' names for (sharded) weights
_WEIGHT_NAME = re.compile(r"^[^.]+?(?:\.(?P<variant>[^.]+?))?(?:-\d{5}-of-\d{5})?\.(?:safetensors|bin)$")


def is_weight_file(name: str) -> bool:
    """True for a diffusers/transformers weight file name (``unet/diffusion_pytorch_model.fp16.safetensors``,
    ``pytorch_model.bin``), False for configs, indexes, ONNX or anything else."""
    return _WEIGHT_NAME.match(name.rsplit("/", 1)[-1]) is not None


def weight_variant(name: str) -> str | None:
    """The variant in a weight file's name: ``"fp16"`` for ``model.fp16.safetensors``; None for plain
    weights (``model.safetensors``, ``model-00001-of-00002.safetensors``) and for non-weight files."""
    match = _WEIGHT_NAME.match(name.rsplit("/", 1)[-1])
    return match["variant"] if match else None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the full SHA-256 hex digest of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def legacy_model_hash(path: str | os.PathLike[str]) -> str:
    """Return A1111's old 8-hex model hash: SHA-256 of the 64 KiB at offset 1 MiB.

    A file shorter than 1 MiB hashes the empty string (``e3b0c442``), as in A1111.
    """
    with open(path, "rb") as file:
        file.seek(_LEGACY_OFFSET)
        return hashlib.sha256(file.read(_LEGACY_LENGTH)).hexdigest()[:8]


def _weight_files(folder: Path) -> list[Path]:
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix in _WEIGHT_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    if not files:
        raise FileNotFoundError(f"no *.safetensors or *.bin weight files under {folder}")
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def folder_sha256(folder: str | os.PathLike[str], file_sha256: Callable[[Path], str] | None = None) -> str:
    """Return the studio's SHA-256 of a diffusers folder (see the module docstring for the rule).

    ``file_sha256`` hashes one file; :class:`HashCache` passes its cached lookup here.
    """
    root = Path(folder)
    hash_one = file_sha256 or sha256_file
    listing = "".join(f"{hash_one(p)}  {p.relative_to(root).as_posix()}\n" for p in _weight_files(root))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def model_hash(path: str | os.PathLike[str]) -> str:
    """Return A1111's "Model hash": the first 10 hex of the SHA-256 of a file or diffusers folder."""
    full = folder_sha256(path) if Path(path).is_dir() else sha256_file(path)
    return full[:SHORT_HASH_LENGTH]


class HashCache:
    """SHA-256 of files, remembered in a JSON file until a file's mtime or size changes.

    Entries are ``{absolute path: {"mtime_ns": int, "size": int, "sha256": str}}``. The file is
    rewritten atomically after each new hash, so an interrupted run loses at most that one hash.
    Safe to share between threads; between processes the last writer wins, which only costs a re-hash.
    """

    def __init__(self, cache_file: Path) -> None:
        self.cache_file = Path(cache_file)
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = self._load()

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # A damaged cache only costs re-hashing; refusing to start would cost more.
            log.warning("ignoring unreadable hash cache %s: %s", self.cache_file, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("ignoring hash cache %s: expected a JSON object", self.cache_file)
            return {}
        return data

    def _save(self) -> None:
        write_atomic(self.cache_file, json.dumps(self._entries, indent=1, sort_keys=True))

    def _file_sha256(self, path: Path) -> str:
        key = str(path.resolve())
        stat = path.stat()
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry.get("mtime_ns") == stat.st_mtime_ns and entry.get("size") == stat.st_size:
                return str(entry["sha256"])
        # Hash outside the lock: a multi-GB checkpoint must not stall lookups of other files.
        digest = sha256_file(path)
        with self._lock:
            self._entries[key] = {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size, "sha256": digest}
            self._save()
        return digest

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """Return the full SHA-256 of a file, or of a diffusers folder by the studio's rule."""
        target = Path(path)
        if target.is_dir():
            return folder_sha256(target, self._file_sha256)
        return self._file_sha256(target)

    def model_hash(self, path: str | os.PathLike[str]) -> str:
        """Return A1111's 10-hex "Model hash" of a file or diffusers folder, cached."""
        return self.sha256(path)[:SHORT_HASH_LENGTH]
