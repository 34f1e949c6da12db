"""Waiting in a request handler for an image job or a text run: on the event loop, never on a server
thread, and stopping the work when the client goes away.

A thread parked in ``job.wait`` per waiting request would exhaust AnyIO's thread pool (40 threads) with
a few dozen queued jobs, and every sync route (``/health``, ``/sdapi/v1/progress``, ``/v1/models``)
would stop answering. ``Job.wait_async`` is woken by the job's own thread instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ..contracts import TextChunk
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


async def run_to_end(request: Request, run: Any, on_chunk: Callable[[TextChunk], None] | None = None) -> None:
    """Consume a text run (a chat, an edit, a template run: anything async-iterable with ``cancel``),
    passing each chunk to ``on_chunk``; a client that disconnects first stops it (what was generated
    so far is still recorded by the run)."""

    async def consume() -> None:
        async for chunk in run:
            if on_chunk is not None:
                on_chunk(chunk)

    task = asyncio.ensure_future(consume())
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if not done and await request.is_disconnected():
            run.cancel()
            task.cancel()
            break
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def events_of(request: Request, run: Any, name: str) -> AsyncIterator[Any]:
    """The events of ``run`` (a blocking iterable with ``cancel()``: an article, a code turn, a
    comparison), produced in a thread of its own and handed to the event loop. A client that goes away,
    or a consumer that stops early, cancels the run; what it made is kept by its service all the same.
    Use it under ``contextlib.aclosing`` so stopping early cancels at once."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server stopping): nobody is reading any more
            run.cancel()

    def produce() -> None:
        try:
            for event in run:
                put(event)
        finally:
            put(None)

    # The run's thread works as this request's user (principal): it records what it makes as theirs.
    threading.Thread(target=contextvars.copy_context().run, args=(produce,), name=name, daemon=True).start()
    finished = False
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=DISCONNECT_POLL_SECONDS * 2)
            except TimeoutError:
                if await request.is_disconnected():
                    run.cancel()
                continue
            if event is None:
                break
            yield event
        finished = True
    finally:
        if not finished:
            run.cancel()


def sse_of(request: Request, run: Any, name: str):
    """``run``'s events (each with ``as_dict()``) as a server-sent event stream ending in ``[DONE]``."""
    from fastapi.responses import StreamingResponse

    async def lines() -> AsyncIterator[str]:
        async with contextlib.aclosing(events_of(request, run, name)) as events:
            async for event in events:
                yield f"data: {json.dumps(event.as_dict(), ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream")
