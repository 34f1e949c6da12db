"""The job queue for long work (image generation): one worker per device, progress, interrupt, skip.

Jobs are recorded in SQLite when their state changes (queued, running, done, failed, interrupted);
progress lives in memory and is read by the progress endpoint, the CLI bar and the UI. A job that
fails — or whose record cannot be written — is marked failed with the reason and the worker goes on
with the next one: nothing a job does ends the worker thread. Waiting is possible from a thread
(``Job.wait``) and from asyncio without holding a thread (``Job.wait_async``).

A job belongs to whoever submitted it (``principal.current()`` then): its record names them, its work
runs as them on the worker thread (so the images and records it writes are theirs), and a signed-in
user sees, interrupts and skips only their own jobs; another's is as if it did not exist.

Jobs survive a restart. A job that can run again is recorded with its ``work``: a job kind that a
service registered (``register_kind``) and the arguments that service needs, plus the principal it
runs for; never a callable. At start the server calls ``recover``: the jobs still queued are rebuilt
through their service, in their original order, under their original ids; a job found running (the
server died under it) is marked failed with the reason. At shutdown (``stop``) queued jobs stay queued
for the next start and the running one is interrupted at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import principal as principals
from ..contracts import Control
from ..errors import ModelUnavailable, StudioError
from ..principal import Principal
from ..storage.db import Database
from ..storage.history import new_id
from ..storage.owners import mine
from .limits import Limits

log = logging.getLogger("aigc_studio.jobs")


def _process_token(pid: int) -> str | None:
    """``pid:start time`` of a running process (the start time tells a reused pid apart); None if it
    does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after its last ")".
    return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"


RUNNER = _process_token(os.getpid()) or str(os.getpid())


def _runner_alive(runner: str | None) -> bool:
    if not runner or runner == RUNNER:
        return False  # this process has only just started: nothing it holds is running yet
    pid = runner.split(":", 1)[0]
    return pid.isdigit() and _process_token(int(pid)) == runner


# A job kind's way to run a recorded job again: (job id, its arguments) -> None, submitting it anew.
ResumeJob = Callable[[str, dict], Any]


@dataclass
class Job:
    kind: str
    model: str | None
    request: dict  # JSON-able, for the record
    source: str
    work: Callable[[Job], Any]
    id: str = field(default_factory=lambda: new_id("job"))
    # who submitted it: the work runs as them (None: the local studio)
    principal: Principal | None = field(default_factory=principals.current)
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
    phase: str = ""  # what the work is doing beyond steps: "labeling" once the pictures are made
    preview: Callable[[], object | None] | None = None
    result: Any = None
    error: str | None = None
    exception: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _on_end: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _end_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def owner(self) -> str | None:
        return self.principal.user_id if self.principal is not None else None

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
        """Block until the job ends; return its result (raising its error if it failed). The result
        is None for a job interrupted before it started."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"job {self.id} still {self.state} after {timeout} s")
        return self._outcome()

    async def wait_async(self) -> Any:
        """``wait`` for asyncio: the event loop is woken when the job ends; no thread waits for it."""
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(lambda: ended.done() or ended.set_result(None))

        self._when_ended(wake)
        await ended
        return self._outcome()

    def _outcome(self) -> Any:
        if self.exception is not None:
            raise self.exception
        return self.result

    def _when_ended(self, callback: Callable[[], None]) -> None:
        with self._end_lock:
            if not self.done.is_set():
                self._on_end.append(callback)
                return
        callback()

    def _ended(self) -> None:
        with self._end_lock:
            self.done.set()
            callbacks, self._on_end = self._on_end, []
        for callback in callbacks:
            callback()


class JobQueue:
    """One worker thread running jobs in order. The job table (``get``, ``pending``) is shared by
    the callers' threads, the progress readers and the worker, under one lock."""

    def __init__(self, db: Database, name: str = "cpu", limits: Limits | None = None):
        self.db = db
        self.limits = limits or Limits()
        self.name = name
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.current: Job | None = None
        self._closed = False
        self._stopping = False  # shutdown: queued jobs stay queued (in the record) for the next start
        self._kinds: dict[str, ResumeJob] = {}
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
        resume: dict | None = None,
        job_id: str | None = None,
        resumed: bool = False,
    ) -> Job:
        """Queue ``work``. ``resume`` ({"kind", "args"}) is what ``recover`` needs to run the job again
        after a restart ({"kind": None, "why": ...} or None: it cannot run again, and why); ``job_id``
        fixes the id, and ``resumed`` says the job is one ``recover`` rebuilt: its record (id, creation
        time) is kept, not written anew."""
        if self._closed:
            raise ModelUnavailable("the studio is shutting down and takes no new image jobs; send the request again")
        # Queued or running, a job counts against its user's max_concurrent_jobs until it ends; a refused
        # one leaves no record and nothing queued.
        slot = self.limits.slot("this image job")
        job = Job(kind=kind, model=model, request=request, source=source, work=work, batches=batches, steps=steps)
        job.principal = principals.current()
        if job_id is not None:
            job.id = job_id
        who = asdict(job.principal) if job.principal is not None else None
        recorded = json.dumps({**resume, "principal": who}, ensure_ascii=False) if resume is not None else None
        try:
            with self.db.tx() as conn:
                if resumed:
                    row = conn.execute("SELECT created FROM jobs WHERE id = ?", (job.id,)).fetchone()
                    job.created = row["created"]
                    conn.execute("UPDATE jobs SET runner = ?, work = ? WHERE id = ?", (RUNNER, recorded, job.id))
                else:
                    conn.execute(
                        "INSERT INTO jobs (id, kind, state, model, request, source, created, work, runner, owner)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (
                            job.id,
                            kind,
                            job.state,
                            model,
                            json.dumps(request, ensure_ascii=False),
                            source,
                            job.created,
                            recorded,
                            RUNNER,
                            job.owner,
                        ),
                    )
        except BaseException:
            slot.release()
            raise
        job._when_ended(slot.release)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job)
        return job

    @staticmethod
    def _visible(job: Job | None) -> Job | None:
        """``job`` when the caller may see it (their own, or any in the local studio), else None."""
        caller = principals.owner()
        return job if job is not None and (caller is None or job.owner == caller) else None

    def get(self, job_id: str) -> Job | None:
        """The caller's job ``job_id`` while the queue holds it; None for an unknown id or another's."""
        with self._lock:
            return self._visible(self._jobs.get(job_id))

    def running(self) -> Job | None:
        """The job running now, when it is the caller's (in the local studio: whichever runs)."""
        return self._visible(self.current)

    def describe(self, job_id: str) -> dict[str, Any] | None:
        """A job's state for the API: live progress while the queue still holds it, else its record
        (progress only as its state implies, the step counts unknown); None for an unknown id."""
        job = self.get(job_id)
        if job is not None:
            fields = ("id", "kind", "state", "model", "source", "error", "created", "started", "finished")
            counts = {"step": job.step, "steps": job.steps, "batch": job.batch, "batches": job.batches}
            counts["phase"] = (job.phase or None) if job.state == "running" else None
            return {**{k: getattr(job, k) for k in fields}, "progress": job.progress, "eta": job.eta, **counts}
        owned, owner = mine()
        row = self.db.conn.execute(
            f"SELECT id, kind, state, model, source, error, created, started, finished FROM jobs WHERE id = ?{owned}",
            (job_id, *owner),
        ).fetchone()
        if row is None:
            return None
        progress = 1.0 if row["state"] in ("done", "interrupted") else 0.0
        unknown = dict.fromkeys(("step", "steps", "batch", "batches", "phase"))
        return {**dict(row), "progress": progress, "eta": None, **unknown}

    def pending(self) -> list[Job]:
        """The caller's queued and running jobs (every one in the local studio)."""
        with self._lock:
            return [j for j in self._jobs.values() if j.state in ("queued", "running") and self._visible(j)]

    def interrupt(self, job_id: str | None = None) -> bool:
        """Stop a job (default: the running one), if it is the caller's. A queued job is dropped at
        once: it is recorded as interrupted and never starts."""
        with self._lock:
            job = self._visible(self._jobs.get(job_id) if job_id else self.current)
            if job is None or job.state not in ("queued", "running"):
                return False
            job.control.interrupt.set()
            dropped = job.state == "queued"
            if dropped:
                job.state = "interrupted"  # under the lock, so the worker will not start it
        if dropped:
            self._finish(job, "interrupted")
        return True

    def interrupt_all(self) -> None:
        """Drop every queued job and interrupt the running one (a signed-in user's own)."""
        for job in self.pending():
            self.interrupt(job.id)

    def skip(self) -> bool:
        """End the current batch of the running job early and go on with its next batch, if the job
        is the caller's."""
        job = self.running()
        if job is None:
            return False
        job.control.skip.set()
        return True

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run_one(job)
            except Exception:  # a bug here must not end the queue: every later job would wait forever
                log.exception("job %s: the job queue failed around it", job.id)
                if not job.done.is_set():
                    job._ended()

    def _run_one(self, job: Job) -> None:
        with self._lock:
            if job.state != "queued" or self._stopping:  # dropped while it waited, or left for the next start
                return
            if job.control.interrupt.is_set():
                start = False
            else:
                start = True
                self.current = job
                job.state, job.started = "running", time.time()
        if not start:
            self._finish(job, "interrupted")
            return
        try:
            try:
                self._record(job)
            except Exception as exc:
                raise RuntimeError(f"the job's record could not be written, so it did not run: {exc}") from exc
            with principals.acting_as(job.principal):
                job.result = job.work(job)
            state = "interrupted" if job.control.interrupt.is_set() else "done"
        except Exception as exc:  # the job fails; the queue goes on
            if isinstance(exc, StudioError):
                # The user's request, not a bug: whoever waits (API, CLI, UI) reports it, once.
                log.debug("job %s failed: %s", job.id, exc.message)
            else:
                log.exception("job %s failed", job.id)
            job.error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            job.exception = exc
            state = "failed"
        finally:
            with self._lock:
                self.current = None
        self._finish(job, state)

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished = state, time.time()
        try:
            self._record(job)
        except Exception as exc:
            # The record could not be written (disk full, database locked): the job still ends, and
            # says why its record is missing, rather than leaving its waiters hanging.
            log.exception("job %s: recording its end (%s) failed", job.id, state)
            if state == "done":
                job.state, job.exception = "failed", exc
                job.error = f"the job ran but its record could not be written: {exc}"
        with self._lock:
            # Keep finished jobs for a while so progress and results can still be read, not forever.
            finished = [j for j in self._jobs.values() if j.done.is_set() or j is job]
            for old in finished[:-50]:
                self._jobs.pop(old.id, None)
        job._ended()

    def _record(self, job: Job) -> None:
        n_images = len(getattr(job.result, "images", []) or [])
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, error = ?, started = ?, finished = ?, n_images = ? WHERE id = ?",
                (job.state, job.error, job.started, job.finished, n_images, job.id),
            )

    # -- surviving a restart ---------------------------------------------------------------------

    def register_kind(self, kind: str, resume: ResumeJob) -> None:
        """Say how a recorded job of ``kind`` runs again: ``resume(job_id, args)`` submits it anew
        through the same service path a new request takes (raising StudioError if it no longer can)."""
        self._kinds[kind] = resume

    def recover(self) -> dict[str, list[str]]:
        """At start: resubmit the jobs still queued (oldest first, same ids) and mark the ones found
        running as failed, leaving alone the jobs of another studio process that still runs (a CLI).
        Returns the ids as {"resumed": [...], "failed": [...]}; one log line says what was done."""
        at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        rows = self.db.conn.execute(
            "SELECT id, state, work, runner FROM jobs WHERE state IN ('queued', 'running') ORDER BY created, id"
        ).fetchall()
        report: dict[str, list[str]] = {"resumed": [], "failed": []}
        for row in rows:
            if _runner_alive(row["runner"]):
                continue
            if row["state"] == "running":
                self._fail_record(row["id"], f"the server stopped while this job ran (restart at {at})")
                report["failed"].append(row["id"])
                continue
            work = json.loads(row["work"]) if row["work"] else {"kind": None, "why": "an older version queued it"}
            resume = self._kinds.get(work["kind"])
            if resume is None:
                why = work.get("why") or f"no service runs jobs of kind {work['kind']!r}"
                self._fail_record(
                    row["id"],
                    f"the job was queued when the server stopped (restart at {at}) and cannot run again: {why}",
                )
                report["failed"].append(row["id"])
                continue
            who = work.get("principal")
            try:
                with principals.acting_as(principals.Principal(**who) if who else None):
                    resume(row["id"], work["args"])
            except StudioError as exc:  # its model is gone, a setting now refuses it, ...
                self._fail_record(row["id"], f"the job could not run again after the restart at {at}: {exc.message}")
                report["failed"].append(row["id"])
                continue
            report["resumed"].append(row["id"])
        if rows:
            log.info(
                "restart: %d queued job(s) resumed, %d marked failed (%s)",
                len(report["resumed"]),
                len(report["failed"]),
                ", ".join(report["failed"]) or "none",
            )
        return report

    def _fail_record(self, job_id: str, reason: str) -> None:
        with self.db.tx() as conn:
            conn.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE id = ?", (reason, time.time(), job_id)
            )

    def stop(self) -> None:
        """Shutdown: take no new jobs; interrupt the running job (it stops at its next step and
        records what it finished, as interrupted); leave the queued ones queued in their records, for
        the next start. Whoever waits for a queued job is told so (503) now."""
        with self._lock:
            self._closed = self._stopping = True
            running = self.current
            parked = [j for j in self._jobs.values() if j.state == "queued"]
        if running is not None:
            running.control.interrupt.set()
        for job in parked:
            job.error = f"the studio is stopping; job {job.id} stays queued and runs when the studio starts again"
            job.exception = ModelUnavailable(job.error)
            job._ended()

    def give_up(self, job: Job, reason: str) -> None:
        """Shutdown, past the grace: tell whoever waits for ``job`` (still running) that it will not
        end in time (503 ``reason``). Its record is left as it is: running, for the next start."""
        job.error = reason
        job.exception = ModelUnavailable(reason)
        job._ended()

    def close(self, timeout: float = 30) -> bool:
        """Shut down: ``stop``, and wait (at most ``timeout`` s) for the running job to stop. Returns
        whether the worker ended; if not, one log line says so, and the engine it uses stays loaded
        (the registry frees an image engine only once no job uses it)."""
        self.stop()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            running = self.current
            log.warning(
                "image job %s is still running %.1f s after it was interrupted; it is left to finish",
                running.id if running else "?",
                timeout,
            )
            return False
        return True
