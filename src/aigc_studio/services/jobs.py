"""The job queue for long work (image generation): one worker per device, progress, interrupt, skip.

Jobs are recorded in SQLite when their state changes (queued, running, done, failed, interrupted);
progress lives in memory and is read by the progress endpoint, the CLI bar and the UI. A job that
fails is marked failed and the worker goes on with the next one.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..contracts import Control
from ..storage.db import Database
from ..storage.history import new_id

log = logging.getLogger("aigc_studio.jobs")


@dataclass
class Job:
    kind: str
    model: str | None
    request: dict  # JSON-able, for the record
    source: str
    work: Callable[[Job], Any]
    id: str = field(default_factory=lambda: new_id("job"))
    state: str = "queued"
    control: Control = field(default_factory=Control)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    # progress, updated by the work as it goes
    step: int = 0
    steps: int = 0
    batch: int = 0
    batches: int = 1
    preview: Callable[[], object | None] | None = None
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> float:
        """0..1 over all batches."""
        if self.state in ("done", "interrupted"):
            return 1.0
        if not self.steps:
            return 0.0
        return min(1.0, (self.batch * self.steps + self.step) / (self.steps * self.batches))

    @property
    def eta(self) -> float | None:
        """Seconds left, from the pace so far; None before the first step."""
        if self.started is None or self.progress <= 0:
            return None
        elapsed = time.time() - self.started
        return max(0.0, elapsed / self.progress - elapsed)

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result (raising its error if it failed)."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state} after {timeout} s")
        if self.exception is not None:
            raise self.exception
        return self.result


class JobQueue:
    def __init__(self, db: Database, name: str = "cpu"):
        self.db = db
        self.name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._jobs: dict[str, Job] = {}
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._run, name=f"jobs-{name}", daemon=True)
        self._thread.start()

    def submit(
        self,
        kind: str,
        work: Callable[[Job], Any],
        *,
        model: str | None,
        request: dict,
        source: str,
        batches: int = 1,
        steps: int = 0,
    ) -> Job:
        job = Job(kind=kind, model=model, request=request, source=source, work=work, batches=batches, steps=steps)
        with self.db.tx() as conn:
            conn.execute(
                "INSERT INTO jobs (id, kind, state, model, request, source, created) VALUES (?,?,?,?,?,?,?)",
                (job.id, kind, job.state, model, json.dumps(request, ensure_ascii=False), source, job.created),
            )
        self._jobs[job.id] = job
        self._queue.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def pending(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    def interrupt(self, job_id: str | None = None) -> bool:
        """Stop a job (default: the running one). A queued job is dropped before it starts."""
        job = self._jobs.get(job_id) if job_id else self.current
        if job is None or job.state not in ("queued", "running"):
            return False
        job.control.interrupt.set()
        return True

    def skip(self) -> bool:
        """End the current batch of the running job early and go on with its next batch."""
        job = self.current
        if job is None:
            return False
        job.control.skip.set()
        return True

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if job.control.interrupt.is_set():
                self._finish(job, "interrupted")
                continue
            self.current = job
            job.state, job.started = "running", time.time()
            self._record(job)
            try:
                job.result = job.work(job)
                state = "interrupted" if job.control.interrupt.is_set() else "done"
            except Exception as exc:  # the job fails; the queue goes on
                log.warning("job %s failed: %s", job.id, exc)
                job.error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                job.exception = exc
                state = "failed"
            self.current = None
            self._finish(job, state)

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished = state, time.time()
        self._record(job)
        job.done.set()
        # Keep finished jobs for a while so progress and results can still be read, not forever.
        finished = [j for j in self._jobs.values() if j.done.is_set()]
        for old in finished[:-50]:
            self._jobs.pop(old.id, None)

    def _record(self, job: Job) -> None:
        n_images = len(getattr(job.result, "images", []) or [])
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, error = ?, started = ?, finished = ?, n_images = ? WHERE id = ?",
                (job.state, job.error, job.started, job.finished, n_images, job.id),
            )

    def close(self) -> None:
        if self.current:
            self.current.control.interrupt.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
