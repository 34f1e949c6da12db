"""The studio: one object that holds the configuration, storage, models and services.

The CLI, the server and the web UI each build one and call its services, so they cannot disagree.
"""

from __future__ import annotations

from .config import Config, load_config
from .models.registry import Registry
from .services.chat import ChatService
from .services.gallery import GalleryService
from .services.images import ImageService
from .services.jobs import JobQueue
from .services.models import ModelService
from .storage.db import Database
from .storage.history import History


class Studio:
    def __init__(self, config: Config | None = None):
        self.config = config or load_config()
        self.db = Database(self.config.db_path)
        self.history = History(self.db)
        self.registry = Registry(
            self.db,
            default_model=str(self.config.model),
            context=int(self.config.context),
            threads=int(self.config.threads),
            max_loaded=int(self.config.max_loaded),
            default_image_model=str(self.config.image_model),
            cache_dir=self.config.home / "cache",
        )
        self.models = ModelService(self.registry, self.config)
        self.chat = ChatService(self.registry, self.history)
        self.jobs = JobQueue(self.db)
        self.images = ImageService(self.db, self.registry, self.jobs, self.config.outputs_dir)
        self.gallery = GalleryService(self.images, self.history)

    def close(self) -> None:
        self.jobs.close()
        self.registry.close()
