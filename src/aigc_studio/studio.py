"""The studio: one object that holds the configuration, storage, models and services.

The CLI, the server and the web UI each build one and call its services, so they cannot disagree.
"""

from __future__ import annotations

from .config import Config, load_config
from .contracts import RunLimits
from .models.keys import KeyStore
from .models.registry import Registry
from .sandbox import Sandbox
from .services.a1111 import A1111Service
from .services.arena import ArenaService
from .services.chat import ChatService
from .services.code import CodeService
from .services.compare import CompareService
from .services.editing import EditingService
from .services.gallery import GalleryService
from .services.images import ImageService
from .services.inspect import Inspector
from .services.jobs import JobQueue
from .services.labeling import Labeler
from .services.limits import Limits
from .services.models import ModelService
from .services.prompt_craft import PromptCraft
from .services.template_library import TemplateLibrary
from .services.text_labels import TextLabeler
from .services.writing import WritingService
from .storage.arena import ArenaStore
from .storage.code import CodeStore
from .storage.comparisons import ComparisonStore
from .storage.db import Database
from .storage.documents import DocumentStore
from .storage.history import History


class Studio:
    def __init__(self, config: Config | None = None):
        self.config = config or load_config()
        self.db = Database(self.config.db_path)
        # Per-user limits (rate, generations at once, upload, tokens, pixels); 0 in a setting: none.
        self.limits = Limits(self.config)
        self.history = History(self.db)
        self.registry = Registry(
            self.db,
            default_model=str(self.config.model),
            context=int(self.config.context),
            parallel=int(self.config.parallel),
            threads=int(self.config.threads),
            device=str(self.config.device),
            max_loaded=int(self.config.max_loaded),
            default_image_model=str(self.config.image_model),
            cache_dir=self.config.home / "cache",
            test_models=bool(self.config.test_models),
            keys=KeyStore(self.config.home / "keys.json"),
            model_memory=str(self.config.model_memory),
            image_compile=bool(self.config.image_compile),
        )
        self.models = ModelService(self.registry, self.config)
        self.chat = ChatService(self.registry, self.history, self.limits)
        self.templates = TemplateLibrary(self.config.home / "templates", self.chat)
        # Styles (AIGC_HOME/styles.csv), wildcards (AIGC_HOME/wildcards/) and prompt expansion.
        self.prompts = PromptCraft(self.config.home, self.chat, self.templates)
        self.jobs = JobQueue(self.db, limits=self.limits)
        # Every image the studio makes is labeled (NSFW check, mark, watermark, AIGC metadata, C2PA).
        self.labeler = Labeler(self.config)
        self.images = ImageService(
            self.db,
            self.registry,
            self.jobs,
            self.config.outputs_dir,
            config=self.config,
            max_megapixels=int(self.config.max_image_megapixels),
            prompt_craft=self.prompts,
            labeler=self.labeler,
            limits=self.limits,
        )
        self.a1111 = A1111Service(self.db, self.images, self.models, self.config)
        self.editing = EditingService(self.chat, self.templates)
        # Labels on exported and copied text (label_text, label_metadata, ...), and the record of exports.
        self.text_labels = TextLabeler(self.config, self.db)
        self.writing = WritingService(
            self.chat, self.models, DocumentStore(self.db), self.templates, labeler=self.text_labels
        )
        # The only way code runs: the run_max_* settings bound what one run may ask for.
        self.sandbox = Sandbox(
            RunLimits(**{name: getattr(self.config, f"run_max_{name}") for name in RunLimits.model_fields})
        )
        # Code sessions: generated code, its versions, and its runs in the sandbox.
        self.code = CodeService(self.chat, self.sandbox, CodeStore(self.db), self.templates, self.models)
        # Side by side: text models answering at once, image models or parameter values in a grid.
        self.compare = CompareService(self.chat, self.images, self.registry, ComparisonStore(self.db))
        self.gallery = GalleryService(self.images, self.history, self.writing)
        self.arena = ArenaService(self.registry, self.chat, self.images, ArenaStore(self.db))
        # Reads any file's labels back and checks them against the gallery's records.
        self.inspector = Inspector(self.db, self.config, self.images, self.labeler)

    def cancel(self) -> None:
        """Stop all work in progress (image jobs, text answers) without shutting anything down; each
        waiting caller gets what was done so far, recorded as interrupted or cancelled."""
        self.jobs.interrupt_all()
        self.registry.cancel_all()

    def close(self, timeout: float = 30) -> None:
        """Shut down: cancel queued and running work, wait (bounded) for it to stop, then free the
        models. An engine whose job does not stop in time is left to it, not freed under it."""
        self.jobs.close(timeout)
        self.registry.close(timeout)
