"""AIGC Studio: a local AI content-creation studio."""

__version__ = "0.1.0"  # first, so modules imported below can read it

from .config import Config, load_config
from .contracts import Message, TextChunk, TextOptions, TextRequest
from .engines.base import TextEngine
from .errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, StudioError
from .studio import Studio

__all__ = [
    "Config",
    "ContextLengthExceeded",
    "InvalidRequest",
    "Message",
    "ModelNotFound",
    "Studio",
    "StudioError",
    "TextChunk",
    "TextEngine",
    "TextOptions",
    "TextRequest",
    "load_config",
]
