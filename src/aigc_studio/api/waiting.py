"""Waiting for an image job in a request handler: on the event loop, never on a server thread, and
cancelling the job when the client goes away.

A thread parked in ``job.wait`` per waiting request would exhaust AnyIO's thread pool (40 threads) with
a few dozen queued jobs, and every sync route (``/health``, ``/sdapi/v1/progress``, ``/v1/models``)
would stop answering. ``Job.wait_async`` is woken by the job's own thread instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ..errors import Interrupted
from ..services.jobs import Job, JobQueue

log = logging.getLogger("aigc_studio.server")

DISCONNECT_POLL_SECONDS = 0.25


async def wait_for_job(request: Request, jobs: JobQueue, job: Job) -> Any:
    """The job's result once it ends; its error if it failed.

    A client that disconnects meanwhile interrupts its job: a queued one is dropped, a running one
    stops at its next step, and the job is recorded as interrupted. A job interrupted before it
    started (by its client or anyone) has no result: Interrupted (409) says so.
    """
    ended = asyncio.ensure_future(job.wait_async())
    try:
        while True:
            done, _ = await asyncio.wait({ended}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                break
            if await request.is_disconnected():
                log.info("client of job %s disconnected; interrupting it", job.id)
                await run_in_threadpool(jobs.interrupt, job.id)  # it writes the job's record
                break
        result = await ended
    finally:
        ended.cancel()  # when this request is cancelled itself (server shutdown): stop waiting
    if result is None:
        raise Interrupted(f"image job {job.id} was interrupted before it started; nothing was generated")
    return result
