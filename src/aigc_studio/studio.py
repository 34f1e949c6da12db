"""The studio: one object that holds the configuration, storage, models and services.

The CLI, the server and the web UI each build one and call its services, so they cannot disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .config import Config, load_config
from .contracts import RunLimits
from .images.decode import set_pillow_limit
from .models.keys import KeyStore
from .models.registry import EngineHost, Registry
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
from .services.ownership import OwnershipService
from .services.prompt_craft import PromptCraft
from .services.template_library import TemplateLibrary
from .services.text_labels import TextLabeler
from .services.users import UserService
from .services.writing import WritingService
from .storage.arena import ArenaStore
from .storage.code import CodeStore
from .storage.comparisons import ComparisonStore
from .storage.db import Database
from .storage.documents import DocumentStore
from .storage.files import clean_stale
from .storage.history import History
from .storage.users import UserStore


class Studio:
    def __init__(self, config: Config | None = None, engine_host: EngineHost | None = None):
        """``engine_host``: where local models run when not in this process (``aigc serve --ray``)."""
        self.config = config or load_config()
        self.engine_host = engine_host
        # Pillow's own guard, for what decodes images outside images/decode.py (the web UI's image
        # boxes): the same limit; put back on close.
        self._pillow_limit = set_pillow_limit(int(self.config.max_image_megapixels) * 1_000_000)
        self.db = Database(self.config.database)
        # Per-user limits (rate, generations at once, upload, tokens, pixels); 0 in a setting: none.
        self.limits = Limits(self.config)
        self.history = History(self.db)
        # Users, roles, API keys and web sessions: who a caller of a team server is (api/auth.py asks).
        self.users = UserService(UserStore(self.db))
        self.registry = Registry(
            self.db,
            default_model=str(self.config.model),
            context=int(self.config.context),
            parallel=int(self.config.parallel),
            prompt_batch=int(self.config.prompt_batch),
            threads=int(self.config.threads),
            device=str(self.config.device),
            max_loaded=int(self.config.max_loaded),
            default_image_model=str(self.config.image_model),
            cache_dir=self.config.home / "cache",
            test_models=bool(self.config.test_models),
            keys=KeyStore(self.config.home / "keys.json"),
            model_memory=str(self.config.model_memory),
            image_compile=bool(self.config.image_compile),
            image_openvino=bool(self.config.image_openvino),
            engine_host=engine_host,
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
        # The local studio's items (no owner) given to a user when it becomes a team server.
        self.ownership = OwnershipService(self.db, self.config.home)

    def recover(self) -> dict:
        """At a server's start, after a stop of any kind (SIGKILL, a crash, a power cut): finish or
        remove what a killed process left half-written, mark answers cut off mid-stream as interrupted,
        fail the jobs found running and resume the queued ones in their order. Returns what was done."""
        at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        done: dict = self.images.recover_files()
        # Everything else half-written under AIGC_HOME (settings, styles, templates, exports) was
        # never in place: removed (the images' temporary files were dealt with just above).
        removed, _ = clean_stale(self.config.home)
        done["temporary files removed"] += len(removed)
        done["answers interrupted"] = self.history.interrupt_streaming(
            f"the server stopped while this answer was streamed (restart at {at})"
        )
        jobs = self.jobs.recover()
        done["jobs resumed"], done["jobs failed"] = jobs["resumed"], jobs["failed"]
        return done

    def stop(self, grace: float | None = None) -> bool:
        """The first step of a shutdown (SIGTERM, Ctrl-C), bounded by ``grace`` seconds (default:
        the ``shutdown_grace`` setting): queued image jobs stay queued for the next start, the running
        one stops at its next step and records what it finished (interrupted), text answers end with
        what they have (their streams get their final event). Returns whether the running job ended
        in time."""
        grace = float(self.config.shutdown_grace if grace is None else grace)
        running = self.jobs.current
        self.jobs.stop()
        self.registry.cancel_all()
        if running is None or running.done.wait(grace):
            return True
        # Its waiters are answered now (503), not cut off with the connection; the job is left to run
        # until the process ends, and the next start records it as failed.
        self.jobs.give_up(
            running,
            f"the studio is stopping and image job {running.id} did not stop within shutdown_grace "
            f"({grace:g} s); the next start records it as failed",
        )
        return False

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
        if self.engine_host is not None:
            self.engine_host.close()
        set_pillow_limit(self._pillow_limit)
