"""The Ray Serve deployments that run the studio's engines on a Ray cluster (``aigc serve --ray``).

One deployment per modality. A replica loads a model the first time a request names it and keeps it
(``@serve.multiplexed``: each model id is loaded once per replica, least recently used ones make room),
with the same loader the registry uses in process (``models.registry.load_text_engine`` /
``load_image_engine``), from the path the gateway sends. The model id that Serve multiplexes on is
that load spec as JSON (``spec_id``), so a replica needs nothing from the gateway's database: only the
files at the same path, and the studio installed.

The gateway side, which turns these into ``TextEngine`` / ``ImageEngine`` objects, is
``engines.ray_serve``. This module is imported on the replicas.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import ray
from ray import serve

from ..contracts import Control, ImageRequest, Message, Mode, StepInfo, TextRequest

# How many models one replica keeps loaded before the least recently used goes.
MODELS_PER_REPLICA = 2
_END = object()


def spec_id(**spec: object) -> str:
    """The multiplexed model id for a load spec: the spec itself, as canonical JSON."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _threads(setting: int) -> int:
    """The threads an engine runs with on this replica: the ``threads`` setting, or when it is 0 (all
    cores) the CPUs Ray gave the replica. llama.cpp's threads wait for each other at every step, so
    more threads than the replica's CPUs lose far more than they gain: measured on 2 busy cores, the
    embedded model decoded 64 tokens in 30 s with 2 threads and 2.4 s with 1."""
    if setting:
        return setting
    assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    return max(1, int(assigned))


def _model_info(spec: dict, kind: str):
    from ..models.registry import ModelInfo

    return ModelInfo(id=spec["id"], engine=spec["engine"], kind=kind, path=spec["path"], variant=spec.get("variant"))


class _Loaded:
    """A loaded engine as the multiplexer holds it: Serve calls ``__del__`` when it evicts a model, which
    frees the engine's memory now rather than whenever the garbage collector runs."""

    def __init__(self, engine):
        self.engine = engine

    def __del__(self):
        self.engine.close()


async def _iterate_in_thread(iterator, cancel: threading.Event):
    """The items of a blocking iterator, each fetched on a worker thread; ``cancel`` is set when the
    caller goes away (Serve cancels this coroutine), which the engine watches to stop its work."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            item = await loop.run_in_executor(None, next, iterator, _END)
            if item is _END:
                return
            yield item
    finally:
        cancel.set()


@serve.deployment(name="aigc-text")
class TextDeployment:
    """Text engines (llama.cpp, transformers) on a replica."""

    def __init__(self, signals):
        self.signals = signals

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def model(self, model_id: str) -> _Loaded:
        from ..models.registry import load_text_engine

        spec = json.loads(model_id)
        options = {key: spec[key] for key in ("context", "parallel", "device", "prompt_batch")}
        options["threads"] = _threads(spec["threads"])
        engine = await asyncio.to_thread(load_text_engine, _model_info(spec, "text"), **options)
        return _Loaded(engine)

    async def _engine(self):
        return (await self.model(serve.get_multiplexed_model_id())).engine

    async def describe(self) -> dict:
        """What the gateway's engine object must know without a round trip per use."""
        engine = await self._engine()
        metadata = getattr(engine, "metadata", {})
        return {
            "context_length": engine.context_length,
            "parallel": engine.parallel,
            "flags": {name: getattr(engine, name) for name in dir(engine) if name.startswith(("supports_", "can_"))},
            "metadata": {k: v for k, v in metadata.items() if "chat_template" not in k and _plain(v)},
            "trained_context": getattr(engine, "trained_context", None),
        }

    async def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None, request: TextRequest | None
    ) -> int:
        engine = await self._engine()
        return await asyncio.to_thread(engine.count_prompt_tokens, messages, prompt, request)

    async def check(self, request: TextRequest) -> int:
        """Refuse what the engine cannot do for ``request``; returns its prompt's token count."""
        engine = await self._engine()
        await asyncio.to_thread(engine.check, request)
        return await asyncio.to_thread(engine.count_prompt_tokens, request.messages, request.prompt, request)

    async def stream(self, request_id: str, request: TextRequest):
        """The engine's chunks; a cancel signal for ``request_id`` stops it, and its last chunk still comes."""
        engine = await self._engine()
        cancel = threading.Event()
        waiter = asyncio.ensure_future(self.signals.wait.remote(request_id))
        waiter.add_done_callback(lambda _: cancel.set())
        try:
            async for chunk in _iterate_in_thread(engine.stream(request, cancel), cancel):
                yield chunk
        finally:
            self.signals.forget.remote(request_id)


def _plain(value: object) -> bool:
    # GGUF metadata holds token tables of 50k entries; the gateway shows only scalars and short lists.
    return not isinstance(value, list | tuple) or len(value) <= 64


@ray.remote(num_cpus=0)
class Signals:
    """Cancel, interrupt and skip, from the gateway to the replica running a request: the gateway signals
    by request id; a text replica waits for a signal, an image replica polls at each step. (A replica
    cannot be addressed directly, and a streamed answer flows only the other way. Cancelling the
    handle's call instead would cut the stream before the engine's last chunk, which carries the usage
    and the finish reason the record needs.)"""

    def __init__(self):
        self._signals: dict[str, tuple[set[str], asyncio.Event]] = {}

    def _entry(self, request_id: str) -> tuple[set[str], asyncio.Event]:
        return self._signals.setdefault(request_id, (set(), asyncio.Event()))

    async def signal(self, request_id: str, what: str) -> None:
        signals, event = self._entry(request_id)
        signals.add(what)
        event.set()

    async def take(self, request_id: str) -> list[str]:
        """The signals sent for a request so far; "skip" is taken once, "interrupt" stays."""
        signals, _ = self._signals.get(request_id, (set(), None))
        taken = sorted(signals)
        signals.discard("skip")
        return taken

    async def wait(self, request_id: str) -> None:
        """Returns once a signal is sent for the request (or it is forgotten)."""
        await self._entry(request_id)[1].wait()

    async def forget(self, request_id: str) -> None:
        entry = self._signals.pop(request_id, None)
        if entry is not None:
            entry[1].set()


@serve.deployment(name="aigc-image")
class ImageDeployment:
    """Image engines (diffusers) on a replica; one generation at a time per replica."""

    def __init__(self, signals):
        self.signals = signals
        self.lock = asyncio.Lock()

    @serve.multiplexed(max_num_models_per_replica=1)
    async def model(self, model_id: str) -> _Loaded:
        from ..models.registry import load_image_engine

        spec = json.loads(model_id)
        cache_dir = Path(spec["cache_dir"]) if spec.get("cache_dir") else None
        info = _model_info(spec, "image")
        engine = await asyncio.to_thread(
            load_image_engine,
            info,
            threads=_threads(spec["threads"]),
            compile=spec["compile"],
            cache_dir=cache_dir,
            openvino=spec.get("openvino", False),
        )
        return _Loaded(engine)

    async def describe(self) -> dict:
        engine = (await self.model(serve.get_multiplexed_model_id())).engine
        return {
            "flags": {name: getattr(engine, name) for name in dir(engine) if name.startswith("supports_")},
            "max_size": engine.max_size,
        }

    async def generate(self, request_id: str, request: ImageRequest, mode: Mode, init_image, mask):
        """Steps as ``("step", StepInfo fields)`` while the engine runs, then ``("result", ImageResult)``."""
        engine = (await self.model(serve.get_multiplexed_model_id())).engine
        control = Control()
        events = _StepEvents(self.signals, request_id, control)

        def run():
            try:
                return engine.generate(request, mode, init_image=init_image, mask=mask, on_step=events, control=control)
            finally:
                events.done()

        async with self.lock:
            try:
                result = asyncio.get_running_loop().run_in_executor(None, run)
                async for event in _iterate_in_thread(iter(events.queue.get, _END), control.interrupt):
                    yield event
                yield ("result", await result)
            finally:
                control.interrupt.set()
                self.signals.forget.remote(request_id)


class _StepEvents:
    """The engine's ``on_step``: queues each step for the gateway and applies the signals the gateway sent."""

    def __init__(self, signals, request_id: str, control: Control):
        import queue

        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.signals, self.request_id, self.control = signals, request_id, control

    def __call__(self, step: StepInfo) -> None:
        for what in ray.get(self.signals.take.remote(self.request_id)):
            getattr(self.control, what).set()
        self.queue.put(("step", (step.step, step.total, step.batch, step.phase)))

    def done(self) -> None:
        self.queue.put(_END)
