"""One worker thread per loaded engine: requests queue up and run one at a time.

llama.cpp contexts are not thread-safe, so concurrent requests must never interleave on one model.
A job hands chunks back either to a plain iterator (CLI) or to an asyncio loop (server) without a
thread hop per token.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator

from .base import TextChunk, TextEngine, TextRequest

_END = object()


class Job:
    """A submitted request. Iterate it (sync or async) for chunks; ``cancel()`` stops it early."""

    def __init__(self, request: TextRequest, loop: asyncio.AbstractEventLoop | None = None):
        self.request = request
        self.cancel_event = threading.Event()
        self._loop = loop
        if loop is None:
            self._sync_queue: queue.SimpleQueue = queue.SimpleQueue()
        else:
            self._async_queue: asyncio.Queue = asyncio.Queue()

    def cancel(self) -> None:
        self.cancel_event.set()

    def _put(self, item: object) -> None:
        if self._loop is None:
            self._sync_queue.put(item)
        else:
            try:
                self._loop.call_soon_threadsafe(self._async_queue.put_nowait, item)
            except RuntimeError:
                # The loop is closed: the consumer is gone, so stop generating for it.
                self.cancel_event.set()

    def __iter__(self) -> Iterator[TextChunk]:
        try:
            while (item := self._sync_queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # A consumer that stops early (Ctrl-C, break) must not leave the model generating.
            self.cancel_event.set()

    async def __aiter__(self) -> AsyncIterator[TextChunk]:
        try:
            while (item := await self._async_queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel_event.set()


class EngineWorker:
    """Runs jobs for one engine, first come first served, on a daemon thread."""

    def __init__(self, engine: TextEngine):
        self.engine = engine
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"engine-{engine.model_id}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    def submit(self, request: TextRequest, loop: asyncio.AbstractEventLoop | None = None) -> Job:
        job = Job(request, loop)
        with self._lock:
            self._pending += 1
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if not job.cancel_event.is_set():
                    for chunk in self.engine.stream(job.request, job.cancel_event):
                        job._put(chunk)
            except Exception as exc:  # handed to the consumer, which decides what the user sees
                job._put(exc)
            finally:
                job._put(_END)
                with self._lock:
                    self._pending -= 1

    def close(self) -> None:
        """Finish queued jobs, then free the engine."""
        self._jobs.put(None)
        self._thread.join(timeout=60)
        self.engine.close()
