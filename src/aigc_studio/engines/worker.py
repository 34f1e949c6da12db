"""Worker threads per loaded engine: requests queue up and run ``engine.parallel`` at a time.

An engine that batches (llama.cpp's server loop: one slot per thread here, decoded together) gets as
many threads as it has slots; one that cannot run two requests at once gets one, so requests never
interleave on it. A job hands chunks back either to a plain iterator (CLI) or to an asyncio loop
(server) without a thread hop per token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

from ..contracts import TextChunk, TextRequest
from ..errors import ModelUnavailable
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
        self.on_end: Callable[[], None] | None = None
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
    """Runs jobs for one engine, first come first served, on ``engine.parallel`` daemon threads.

    The worker's last thread to finish frees the engine, after the last job: so an engine is never
    freed under a job that still runs, whoever stops the worker and however long that job takes. The registry
    holds leases (``leases``) on a worker while a request goes from preparing to its end; eviction
    only stops a worker with no lease and no job.
    """

    def __init__(self, engine: TextEngine):
        self.engine = engine
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._active: set[Job] = set()  # queued or running
        self._stopped = False
        self._lock = threading.Lock()
        self.leases = 0  # changed by the registry, under its lock
        self._threads = [
            threading.Thread(target=self._run, name=f"engine-{engine.model_id}-{i}", daemon=True)
            for i in range(max(1, engine.parallel))
        ]
        self._running = len(self._threads)
        for thread in self._threads:
            thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return len(self._active)

    @property
    def idle(self) -> bool:
        """No job queued or running and no request holding the worker: safe to stop."""
        return not self._active and self.leases == 0

    def submit(
        self,
        request: TextRequest,
        loop: asyncio.AbstractEventLoop | None = None,
        on_done: Callable[[Job, BaseException | None], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> Job:
        """Queue a request. ``on_end`` runs on the worker thread once the job is over and no longer
        counted as pending, before the consumer sees the end (the registry releases its lease there).

        A stopped worker refuses the request with ModelUnavailable instead of queueing it where no
        thread will ever run it.
        """
        job = Job(request, loop, on_done)
        job.on_end = on_end
        with self._lock:
            if self._stopped:
                raise ModelUnavailable(
                    f"model '{self.engine.model_id}' was unloaded before this request reached it "
                    "(the studio is shutting down or the model was removed); send the request again"
                )
            self._active.add(job)
            self._jobs.put(job)
        return job

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            error: Exception | None = None
            try:
                if not job.cancel_event.is_set():
                    self.engine.run(job.request, job.cancel_event, job._put)
            except Exception as exc:  # handed to the consumer, which decides what the user sees
                error = exc
            job.ended_at = time.perf_counter()
            if job.on_done is not None:
                try:
                    job.on_done(job, error)
                except Exception:
                    log.exception("recording a finished job failed")
            with self._lock:
                self._active.discard(job)
            if job.on_end is not None:
                try:
                    job.on_end()
                except Exception:
                    log.exception("releasing a finished job's model failed")
            job.done.set()
            if error is not None:
                job._put(error)
            job._put(_END)
        self._jobs.put(None)  # the next thread stops too
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            # Every thread that ran the engine has finished its last job: free it here.
            self.engine.close()

    def cancel_all(self) -> None:
        """Cancel every queued and running job; the worker stays up for new ones."""
        with self._lock:
            for job in self._active:
                job.cancel()

    def stop(self, cancel: bool) -> None:
        """Refuse new jobs and let the thread end after the queued ones (cancelled first when
        ``cancel``); the thread frees the engine as it ends. Does not wait."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if cancel:
                for job in self._active:
                    job.cancel()
            self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the threads (and so the engine) to be done; whether they are."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def close(self, timeout: float = 30) -> bool:
        """Cancel queued and running jobs, stop, and wait (bounded) for the engine to be freed.

        If the running job does not end in time, its engine is left to its thread, which frees it
        when the job ends; one line says so. Returns whether the engine was freed.
        """
        self.stop(cancel=True)
        if self.join(timeout):
            return True
        log.warning(
            "model '%s' is still running a job %.1f s after it was cancelled; "
            "its engine is left to that job's thread, which frees it when the job ends",
            self.engine.model_id,
            timeout,
        )
        return False
