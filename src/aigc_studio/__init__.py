"""AIGC Studio: a local AI content-creation studio."""

from .config import Config, load_config
from .engines.base import Message, TextChunk, TextEngine, TextOptions, TextRequest
from .errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, StudioError
from .studio import Studio

__version__ = "0.1.0"

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
