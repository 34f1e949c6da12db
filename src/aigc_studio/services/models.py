"""Models: the product logic of choosing, naming and adding models, shared by the CLI, the APIs and the UI.

The registry knows what exists and what is loaded; this service holds what a user does with it: make a
model the default (for this process and in ``config.toml``, so every tab and command agrees), resolve an
AUTOMATIC1111 checkpoint title, import an A1111 install, pull a catalog model, and say whether a model
writes a language (``language_fit``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..access import require_admin
from ..config import Config, save_setting
from ..errors import InvalidRequest, ModelNotFound, RemoteError, StudioError
from ..models.registry import ModelInfo, Registry
from .language_fit import LanguageFit, detect_language, fit

__all__ = ["A1111Import", "ModelService", "ModelState", "ModelsOverview"]


@dataclass
class A1111Import:
    """What importing an A1111 install did, checkpoint by checkpoint."""

    added: list[tuple[str, str]] = field(default_factory=list)  # (model id, A1111 title)
    already: list[str] = field(default_factory=list)  # titles of checkpoints added before
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative name, why)


@dataclass
class ModelState:
    """One model as the loaded-models view shows it."""

    id: str
    kind: str
    engine: str
    default: bool
    loaded: bool
    load_seconds: float | None  # how long its last load took in this process; None: never loaded here


@dataclass
class ModelsOverview:
    """What is loaded in this process, and the settings that decide it."""

    model_memory: str
    max_loaded: int
    models: list[ModelState]


class ModelService:
    def __init__(self, registry: Registry, config: Config):
        self.registry = registry
        self.config = config

    def set_default(self, name: str, kind: str | None = None) -> ModelInfo:
        """Make ``name`` the default model of its kind, now and in ``config.toml``; returns the model."""
        require_admin("changing the default model")
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

    def overview(self) -> ModelsOverview:
        """Every known model with whether it is the default and whether this process has it loaded, and
        the settings that decide what stays loaded (``model_memory``, ``max_loaded``)."""
        registry = self.registry
        try:
            default_image = registry.default_image_model
        except StudioError:
            default_image = None  # none installed
        loaded = set(registry.loaded())
        loaded_image = registry.loaded_image_model()
        return ModelsOverview(
            model_memory=registry.model_memory,
            max_loaded=registry.max_loaded,
            models=[
                ModelState(
                    id=m.id,
                    kind=m.kind,
                    engine=m.engine,
                    default=m.id in (registry.default_model, default_image),
                    loaded=m.id in loaded if m.kind == "text" else m.id == loaded_image,
                    load_seconds=registry.load_seconds.get(m.id),
                )
                for m in registry.all()
            ],
        )

    def pull(self, name: str, progress: Callable[[int, int, str], None] | None = None) -> tuple[ModelInfo, bool]:
        """Pull the catalog model ``name`` (id or alias) into ``AIGC_HOME/models`` and add it with its
        catalog defaults; returns (the model, whether it was newly added). ``progress(done, total, file)``."""
        from ..models.catalog import find
        from ..models.pull import pull_and_register

        require_admin("pulling models")
        return pull_and_register(find(name), self.registry, self.config.models_dir, progress=progress)

    def add_remote(
        self,
        name: str,
        base_url: str,
        remote_model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        context_length: int | None = None,
        aliases: list[str] | None = None,
        check: bool = True,
    ) -> tuple[ModelInfo, list[str]]:
        """Add a model served by an OpenAI-compatible server; returns (the model, the models the server
        lists). With ``check`` the server is asked for its models first (``GET {base_url}/models``) and
        nothing is added when it cannot be reached, refuses the key, or does not list ``remote_model``."""
        # Admins only: the server would send requests (and a key) to any address a caller names.
        require_admin("adding a remote model")
        listed: list[str] = []
        if check:
            key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
            if api_key_env and not key:
                raise InvalidRequest(f"the environment variable {api_key_env} is not set", param="api_key_env")
            listed = remote_models(base_url, key)
            if listed and remote_model not in listed:
                raise InvalidRequest(
                    f"the server at {base_url} does not list a model '{remote_model}'; it lists: {', '.join(listed)}",
                    param="remote_model",
                )
        info = self.registry.add_remote(
            name,
            base_url,
            remote_model,
            api_key=api_key,
            api_key_env=api_key_env,
            context_length=context_length,
            aliases=aliases,
        )
        return info, listed

    def add(
        self, path: str | Path, *, model_id: str | None = None, aliases: list[str] | None = None, engine=None
    ) -> ModelInfo:
        """Add a local model file or folder (text or image) by its path on the server; it stays where it is."""
        # Admins only: a path names any file the server's account can read.
        require_admin("adding a model by a server path")
        return self.registry.add(path, model_id=model_id, aliases=aliases or [], engine=engine)

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

        require_admin("importing models from a server folder")
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


def remote_models(base_url: str, api_key: str | None, timeout: float = 10.0) -> list[str]:
    """The model names an OpenAI-compatible server lists (``GET {base_url}/models``); RemoteError when
    it cannot be reached, refuses the key or answers something else."""
    url = base_url.strip().rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise RemoteError(f"the server at {base_url} cannot be reached: {exc}") from None
    if response.status_code in (401, 403):
        raise RemoteError(f"the server at {base_url} refused the API key (HTTP {response.status_code})")
    if response.status_code >= 400:
        raise RemoteError(f"the server at {base_url} answered GET /models with HTTP {response.status_code}")
    try:
        data = response.json()
        return [str(m["id"]) for m in data.get("data", [])]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise RemoteError(
            f"the server at {base_url} answered GET /models with something that is not a model list"
        ) from None
