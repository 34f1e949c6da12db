"""The key-value header of a GGUF file: its scalar fields, read without loading the model.

A GGUF file starts with its metadata (architecture, trained context length, chat template, special
token ids ...), then its tensor index and the weights. This reads only the first part and skips every
array (the vocabulary alone is ~50,000 strings), in milliseconds where a full reader parses the arrays.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# GGUF value types: id -> struct format for the fixed-size ones.
_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# A header larger than this is not one a real model has; refusing it bounds what a bad file costs.
_MAX_FIELDS = 100_000
_MAX_STRING = 64 * 1024 * 1024


def _read(f: BinaryIO, fmt: str) -> int | float | bool:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise EOFError("the file ends inside its metadata")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = int(_read(f, "<Q"))
    if n > _MAX_STRING:
        raise ValueError(f"a metadata string of {n} bytes")
    data = f.read(n)
    if len(data) != n:
        raise EOFError("the file ends inside its metadata")
    return data.decode("utf-8", errors="replace")


def _skip_array(f: BinaryIO) -> None:
    kind, count = int(_read(f, "<I")), int(_read(f, "<Q"))
    if kind in _FIXED:
        f.seek(struct.calcsize(_FIXED[kind]) * count, 1)
    elif kind == _STRING:
        for _ in range(count):
            f.seek(int(_read(f, "<Q")), 1)
    elif kind == _ARRAY:
        for _ in range(count):
            _skip_array(f)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def gguf_metadata(path: str | Path) -> dict[str, str | int | float | bool]:
    """The scalar metadata fields of a GGUF file (arrays left out); ValueError saying what is wrong with a
    bad file (OSError when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ValueError("it does not start with 'GGUF'")
            version = int(_read(f, "<I"))
            if version < 2:
                raise ValueError(f"GGUF version {version} is too old (2 and later are read)")
            _read(f, "<Q")  # tensor count
            fields = int(_read(f, "<Q"))
            if fields > _MAX_FIELDS:
                raise ValueError(f"{fields} metadata fields")
            out: dict[str, str | int | float | bool] = {}
            for _ in range(fields):
                key, kind = _string(f), int(_read(f, "<I"))
                if kind in _FIXED:
                    out[key] = _read(f, _FIXED[kind])
                elif kind == _STRING:
                    out[key] = _string(f)
                elif kind == _ARRAY:
                    _skip_array(f)
                else:
                    raise ValueError(f"unknown GGUF value type {kind}")
            return out
    except (EOFError, struct.error) as exc:
        raise ValueError(f"its metadata is cut short: {exc}") from exc


def trained_context(metadata: dict) -> int | None:
    """The context length the model was trained with (``<architecture>.context_length``)."""
    value = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    return int(value) if isinstance(value, int) and value > 0 else None
