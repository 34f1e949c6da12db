"""Limits per user: requests per minute, generations at once, upload size, tokens and pixels per request.

Who a request counts against is the signed-in user (``principal.current()``) when there is one, else the
client's address, which the server's request middleware records with ``from_client``; every loopback
address, and work with no HTTP request behind it (the CLI), is one user, "local". The rate is a token
bucket per user: ``rate_limit_per_minute`` requests a minute on average, as many at once after a quiet
minute. A generation (a text answer being streamed, an image job queued or running) holds a slot from
the moment it is accepted to its end; ``max_concurrent_jobs`` slots per user. Every figure is a setting
whose 0 means no limit, and every refusal says what was refused, the limit, and its setting.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .. import principal
from ..config import Config
from ..errors import InvalidRequest, TooLarge, TooManyRequests

LOCAL = "local"
# How soon a client refused for running too many generations should look again: a generation's end
# cannot be foreseen, and a short image or answer takes a few seconds.
CONCURRENCY_RETRY_AFTER = 5

_client: ContextVar[str | None] = ContextVar("aigc_client", default=None)


@contextmanager
def from_client(address: str | None) -> Iterator[None]:
    """Count the work of this block against ``address`` (the client's IP) when no user is signed in."""
    token = _client.set(address)
    try:
        yield
    finally:
        _client.reset(token)


def requester() -> str:
    """Who the current work counts against: ``user:<id>``, ``addr:<ip>``, or ``local`` (loopback, CLI)."""
    signed_in = principal.current()
    if signed_in is not None:
        return f"user:{signed_in.user_id}"
    address = _client.get()
    if not address:
        return LOCAL
    try:
        if ipaddress.ip_address(address).is_loopback:
            return LOCAL
    except ValueError:  # a Unix socket's path or a test client's name: not an address to tell apart
        return LOCAL
    return f"addr:{address}"


class Slot:
    """One generation's hold on its user's share of ``max_concurrent_jobs``. Released once, by whoever
    ends the generation; one dropped unreleased (a prepared answer never run) is released when it is
    garbage-collected, so a user is never locked out by work that never ran."""

    def __init__(self, limits: Limits, key: str):
        self.key = key
        self._finalizer = weakref.finalize(self, limits._release, key)
        self._finalizer.atexit = False

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        self._finalizer()


class Limits:
    """The limits of one studio, read from its settings (0: no limit)."""

    def __init__(self, config: Config | None = None):
        values = config.values if config is not None else {}
        self.rate_per_minute = int(values.get("rate_limit_per_minute", 0))
        self.concurrent_jobs = int(values.get("max_concurrent_jobs", 0))
        self.upload_bytes = int(values.get("max_upload_mb", 0)) * 2**20
        self.max_tokens = int(values.get("max_tokens_per_request", 0))
        self.megapixels = int(values.get("max_request_megapixels", 0))
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens left, when counted)
        self._running: dict[str, int] = {}

    # Requests per minute

    def check_rate(self) -> None:
        """Count one request against the current user; TooManyRequests (with ``retry_after``) past the rate."""
        if not self.rate_per_minute:
            return
        key, now = requester(), time.monotonic()
        per_second = self.rate_per_minute / 60
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.rate_per_minute), now))
            tokens = min(float(self.rate_per_minute), tokens + (now - then) * per_second)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1 - tokens) / per_second))
                raise TooManyRequests(
                    f"too many requests: the limit is {self.rate_per_minute} requests per minute per user "
                    f"(setting rate_limit_per_minute); try again in {wait} s",
                    retry_after=wait,
                    code="rate_limit_exceeded",
                )
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 10_000:  # a full bucket says nothing a new one would not
                cutoff = now - 60
                self._buckets = {k: v for k, v in self._buckets.items() if v[1] > cutoff}

    # Generations at once

    def slot(self, what: str) -> Slot:
        """A slot for one generation of the current user (``what`` names it in the refusal); release it
        when the generation ends. TooManyRequests when the user already holds ``max_concurrent_jobs``."""
        key = requester()
        with self._lock:
            held = self._running.get(key, 0)
            if self.concurrent_jobs and held >= self.concurrent_jobs:
                raise TooManyRequests(
                    f"too many generations at once: {what} would be your {held + 1}th running or queued "
                    f"(text answers and image jobs); the limit is {self.concurrent_jobs} per user (setting "
                    f"max_concurrent_jobs); try again when one ends",
                    retry_after=CONCURRENCY_RETRY_AFTER,
                    code="concurrency_limit_exceeded",
                )
            self._running[key] = held + 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        with self._lock:
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)

    def running(self, key: str | None = None) -> int:
        """Generations the user (default: the current one) holds slots for."""
        with self._lock:
            return self._running.get(key or requester(), 0)

    # Sizes of one request

    def check_upload(self, size: int, what: str) -> None:
        """TooLarge when an uploaded file of ``size`` bytes is over ``max_upload_mb``."""
        if self.upload_bytes and size > self.upload_bytes:
            raise TooLarge(
                f"{what} is {size / 2**20:.1f} MiB; the limit for an uploaded file is "
                f"{self.upload_bytes // 2**20} MiB (setting max_upload_mb)",
                param=what,
            )

    def check_max_tokens(self, asked: int | None) -> None:
        """InvalidRequest when a request asks for more than ``max_tokens_per_request`` new tokens."""
        if self.max_tokens and asked is not None and asked > self.max_tokens:
            raise InvalidRequest(
                f"max_tokens must be from 1 to {self.max_tokens} on this server (setting "
                f"max_tokens_per_request), got {asked}",
                param="max_tokens",
            )

    def cap_tokens(self, wanted: int) -> int:
        """A figure a service chose itself (an article section's share), kept within the limit."""
        return min(wanted, self.max_tokens) if self.max_tokens else wanted

    def check_pixels(self, width: int, height: int, batch_size: int, n_iter: int, hires: str = "") -> None:
        """InvalidRequest when the images of one request (``width``x``height``, the hires fix's size when
        it runs, as ``hires`` says) hold more than ``max_request_megapixels``; it names the field to
        lower and the range it may take."""
        if not self.megapixels:
            return
        limit = self.megapixels * 1_000_000
        each, images = width * height, batch_size * n_iter
        if each * images <= limit:
            return
        made = f"{images} image{'s' if images > 1 else ''} of {width}x{height}{hires}"
        total = f"{each * images / 1e6:.1f} megapixels"
        setting = f"the limit is {self.megapixels} megapixels per request (setting max_request_megapixels)"
        if each > limit:
            field = "hr_scale" if hires else "width"
            allowed = f"width × height{' after hires fix' if hires else ''} must be at most {limit:,} pixels"
        elif each * batch_size > limit:
            field = "batch_size"
            allowed = f"batch_size × n_iter must be at most {limit // each} at {width}x{height}"
        else:
            field = "n_iter"
            allowed = f"n_iter must be from 1 to {limit // (each * batch_size)} with batch_size {batch_size}"
        raise InvalidRequest(f"{field}: this request makes {made} ({total}); {setting}: {allowed}", param=field)
