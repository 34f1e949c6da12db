"""The web UI on a team server: Gradio learns who is signed in, and every handler runs as them.

The login page (api/auth.py) sets the session cookie; the auth middleware resolves it for every request,
Gradio's included, and runs the request under ``principal.acting_as``. Gradio asks ``gradio_user`` for the
user's name (its ``auth_dependency``; a request without one gets Gradio's 401), and hands the name to
handlers as ``gr.Request.username``. Handlers themselves run later, in Gradio's queue, outside the request
that queued them, so ``run_as_signed_in_user`` wraps each one: it looks the name up again (a removed user
or a changed role counts at once) and runs the handler under ``acting_as``. A handler then reads
``principal.current()`` / ``owner()`` as any service does; nothing in a tab needs to know.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import gradio as gr
from fastapi import Request
from gradio.context import LocalContext

from ..principal import Principal, acting_as, current

SIGN_OUT = (
    '<form method="post" action="/logout" id="aigc-signout" style="margin:0">'
    '<button type="submit" style="background:none;border:0;cursor:pointer;color:var(--body-text-color-subdued);'
    'text-decoration:underline">Sign out · 退出登录</button></form>'
)


def gradio_user(request: Request) -> str | None:
    """Gradio's ``auth_dependency``: the signed-in user's name, which the middleware has already found."""
    who = current()
    return who.name if who is not None else None


def run_as_signed_in_user(blocks: gr.Blocks, lookup: Callable[[str], Principal | None]) -> Callable:
    """Wrap every event handler of ``blocks`` to run as the user ``gr.Request.username`` names, found by
    ``lookup``. A handler whose user is gone is refused (it never runs as the local, unfiltered studio).
    Returns the wrapper, for the handlers a tab adds when it is built on first opening (ui/app.py)."""

    def wrap(fn: Callable) -> Callable:
        return _as_user(fn, lookup)

    for block_fn in blocks.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = wrap(block_fn.fn)
    return wrap


def _signed_in(lookup: Callable[[str], Principal | None]) -> Principal:
    request = LocalContext.request.get(None)
    name = getattr(request, "username", None)
    who = lookup(name) if name else None
    if who is None:
        raise gr.Error("You are signed out: reload the page and sign in again. · 已退出登录：请刷新页面并重新登录。")
    return who


def _as_user(fn: Callable, lookup: Callable[[str], Principal | None]) -> Callable:
    # functools.wraps keeps the signature (Gradio reads it to pass gr.Request and the like) and the kind
    # of function is kept too: Gradio streams a generator's values and awaits a coroutine.
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_gen(*args, **kwargs):
            who = _signed_in(lookup)
            iterator = fn(*args, **kwargs)
            try:
                while True:
                    with acting_as(who):
                        try:
                            item = await iterator.__anext__()
                        except StopAsyncIteration:
                            return
                    yield item
            finally:
                with acting_as(who):
                    await iterator.aclose()  # a stopped event: its clean-up runs as the user too

        return async_gen
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args, **kwargs):
            who = _signed_in(lookup)
            iterator = fn(*args, **kwargs)
            # Each step may run in another worker thread (another context): set the user around each one.
            try:
                while True:
                    with acting_as(who):
                        try:
                            item = next(iterator)
                        except StopIteration:
                            return
                    yield item
            finally:
                with acting_as(who):
                    iterator.close()  # a stopped event: its clean-up runs as the user too

        return gen
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args, **kwargs):
            with acting_as(_signed_in(lookup)):
                return await fn(*args, **kwargs)

        return coroutine

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        with acting_as(_signed_in(lookup)):
            return fn(*args, **kwargs)

    return plain
