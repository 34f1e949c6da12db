"""One worker thread per loaded engine: requests queue up and run one at a time.

llama.cpp contexts are not thread-safe, so concurrent requests must never interleave on one model.
A job hands chunks back either to a plain iterator (CLI) or to an asyncio loop (server) without a
thread hop per token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

from ..contracts import TextChunk, TextRequest
from .base import TextEngine

_END = object()
log = logging.getLogger("aigc_studio.worker")


class Job:
    """A submitted request. Iterate it (sync or async) for chunks; ``cancel()`` stops it early.

    The job also keeps everything the engine produced — text, the final chunk, timings — whether or
    not a consumer is still reading, and calls ``on_done`` on the worker thread when the engine is
    finished with it, before the consumer sees the end.
    """

    def __init__(
        self,
        request: TextRequest,
        loop: asyncio.AbstractEventLoop | None = None,
        on_done: Callable[[Job, BaseException | None], None] | None = None,
    ):
        self.request = request
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.on_done = on_done
        self.text: list[str] = []
        self.final: TextChunk | None = None
        self.submitted_at = time.perf_counter()
        self.first_text_at: float | None = None
        self.ended_at: float | None = None
        self._loop = loop
        if loop is None:
            self._sync_queue: queue.SimpleQueue = queue.SimpleQueue()
        else:
            self._async_queue: asyncio.Queue = asyncio.Queue()

    def cancel(self) -> None:
        self.cancel_event.set()

    def _put(self, item: object) -> None:
        if isinstance(item, TextChunk):
            if item.text or item.tool_call:  # a tool call's first piece is the answer's first output
                self.first_text_at = self.first_text_at or time.perf_counter()
                self.text.append(item.text)
            if item.finish_reason is not None:
                self.final = item
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

    def submit(
        self,
        request: TextRequest,
        loop: asyncio.AbstractEventLoop | None = None,
        on_done: Callable[[Job, BaseException | None], None] | None = None,
    ) -> Job:
        job = Job(request, loop, on_done)
        with self._lock:
            self._pending += 1
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            error: Exception | None = None
            try:
                if not job.cancel_event.is_set():
                    for chunk in self.engine.stream(job.request, job.cancel_event):
                        job._put(chunk)
            except Exception as exc:  # handed to the consumer, which decides what the user sees
                error = exc
            job.ended_at = time.perf_counter()
            if job.on_done is not None:
                try:
                    job.on_done(job, error)
                except Exception:
                    log.exception("recording a finished job failed")
            job.done.set()
            if error is not None:
                job._put(error)
            job._put(_END)
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        """Finish queued jobs, then free the engine."""
        self._jobs.put(None)
        self._thread.join(timeout=60)
        self.engine.close()
