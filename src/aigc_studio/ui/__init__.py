"""The studio's web UI (Gradio), mounted at ``/`` beside the APIs: ``mount_ui(app, studio)``."""

from .app import mount_ui

__all__ = ["mount_ui"]
