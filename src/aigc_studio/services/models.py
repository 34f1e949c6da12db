"""Models: the product logic of choosing, naming and adding models, shared by the CLI, the APIs and the UI.

The registry knows what exists and what is loaded; this service holds what a user does with it: make a
model the default (for this process and in ``config.toml``, so every tab and command agrees), resolve an
AUTOMATIC1111 checkpoint title, import an A1111 install, pull a catalog model, and say whether a model
writes a language (``language_fit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, save_setting
from ..errors import ModelNotFound, StudioError
from ..models.registry import ModelInfo, Registry
from .language_fit import LanguageFit, detect_language, fit

__all__ = ["A1111Import", "ModelService"]


@dataclass
class A1111Import:
    """What importing an A1111 install did, checkpoint by checkpoint."""

    added: list[tuple[str, str]] = field(default_factory=list)  # (model id, A1111 title)
    already: list[str] = field(default_factory=list)  # titles of checkpoints added before
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative name, why)


class ModelService:
    def __init__(self, registry: Registry, config: Config):
        self.registry = registry
        self.config = config

    def set_default(self, name: str, kind: str | None = None) -> ModelInfo:
        """Make ``name`` the default model of its kind, now and in ``config.toml``; returns the model."""
        info = self.registry.resolve(name, kind=kind)
        if info.kind == "text":
            self.registry.set_default_model(info.id)
            key = "model"
        else:
            self.registry.set_default_image_model(info.id)
            key = "image_model"
        save_setting(key, info.id)
        self.config.values[key] = info.id
        return info

    def pull(self, name: str, progress: Callable[[int, int, str], None] | None = None) -> tuple[ModelInfo, bool]:
        """Pull the catalog model ``name`` (id or alias) into ``AIGC_HOME/models`` and add it with its
        catalog defaults; returns (the model, whether it was newly added). ``progress(done, total, file)``."""
        from ..models.catalog import find
        from ..models.pull import pull_and_register

        return pull_and_register(find(name), self.registry, self.config.models_dir, progress=progress)

    def resolve_checkpoint(self, name: str) -> ModelInfo:
        """An A1111 checkpoint title ("name.safetensors [hash]"), file name or model id -> the image model."""
        plain = name.split(" [")[0].strip()
        try:
            return self.registry.resolve(plain, kind="image")
        except ModelNotFound:
            # A1111 titles carry the file's extension ("v1-5-pruned-emaonly.safetensors [6ce0161689]").
            return self.registry.resolve(plain.rsplit(".", 1)[0], kind="image")

    def import_a1111(self, folder: Path, *, hashes: bool = True) -> A1111Import:
        """Add the checkpoints of an A1111 install (or its models folder); the files stay where they are."""
        from ..models.a1111 import scan_a1111

        found = scan_a1111(folder, hash_cache=self.config.home / "cache" / "model-hashes.json", hashes=hashes)
        known = {m.path for m in self.registry.all()}
        outcome = A1111Import()
        for m in found:
            if m.kind != "image":
                continue
            if str(m.path) in known:
                outcome.already.append(m.title)
                continue
            try:
                self.registry.add(m.path, model_id=m.model_name.lower(), source=f"A1111 {m.title}")
            except StudioError as exc:
                outcome.skipped.append((m.relative_name, exc.message))
                continue
            outcome.added.append((m.model_name.lower(), m.title))
        return outcome

    def language_fit(self, model: str | None, language: str | None = None, text: str | None = None) -> LanguageFit:
        """Whether the text model ``model`` (the default when None) writes ``language`` (or, without it,
        the language ``text`` is in), and if not, which catalog models to pull instead."""
        info = self.registry.resolve(model or self.registry.default_model, kind="text")
        return fit(info, language or detect_language(text or ""))
