"""Engines that run on a Ray Serve cluster, seen by the studio as ordinary engines (``aigc serve --ray``).

``RayEngineHost`` starts (or joins) a Ray cluster, deploys the studio's two deployments
(``engines.ray_deployments``) and hands the registry a ``RayTextEngine`` or ``RayImageEngine`` for each
local model, which implement the engine contracts (``base.TextEngine``, ``image_base.ImageEngine``) by
calling a deployment handle. The services, the APIs and the UI do not change: the studio's own FastAPI
app stays the gateway, and Serve's HTTP proxy is not started.

What crosses the handle: the model's load spec (id, engine, path, options) as the multiplexed model id;
requests and answers as the contract types. Text streams chunk by chunk (``options(stream=True)``);
cancelling a text request sends a signal the replica waits for (the ``Signals`` actor), which sets the
engine's cancel event there, so the engine's last chunk (usage, finish reason) still comes back. An
image generation streams its steps (progress) and then its result; interrupt and skip reach the replica
through the same actor, which it polls at each step. Live previews of the latents are not sent.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ..contracts import Control, ImageRequest, ImageResult, Message, Mode, StepInfo, TextChunk, TextRequest
from ..errors import SettingError, StudioError
from .base import TextEngine
from .image_base import ImageEngine

log = logging.getLogger("aigc_studio.ray")

INSTALL_HINT = "Ray Serve is not installed: .venv/bin/pip install -e '.[ray]' (or bash setup.sh --dev)"
TEXT_APP, IMAGE_APP = "aigc-text", "aigc-image"
NAMESPACE = "aigc-studio"


def _call(response):
    """A handle call's result; a studio error raised on the replica is raised here as itself (a 4xx
    with its own message), not wrapped in Ray's traceback."""
    import ray

    try:
        return response.result()
    except ray.exceptions.RayTaskError as exc:
        raise _unwrapped(exc) from None


def _unwrapped(exc: Exception) -> Exception:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, StudioError) else exc


class RayTextEngine(TextEngine):
    """A text model served by the ``aigc-text`` deployment."""

    def __init__(self, handle, signals, info_id: str, spec: str, max_replicas: int):
        self._handle = handle.options(multiplexed_model_id=spec)
        self._signals = signals
        described = _call(self._handle.describe.remote())  # loads the model on a replica, once
        super().__init__(info_id, described["context_length"])
        for name, value in described["flags"].items():
            setattr(self, name, value)
        self.metadata = described["metadata"]
        self._checked = threading.local()  # (request, its prompt tokens) of this thread's last check
        self.trained_context = described["trained_context"]
        # The gateway's worker lets this many requests stream at once; the replicas share them.
        self.parallel = described["parallel"] * max_replicas

    def count_prompt_tokens(
        self, messages: list[Message], prompt: str | None = None, request: TextRequest | None = None
    ) -> int:
        checked = getattr(self._checked, "last", None)
        if checked is not None and checked[0] is request and (messages, prompt) == (request.messages, request.prompt):
            return checked[1]
        return _call(self._handle.count_prompt_tokens.remote(messages, prompt, request))

    def check(self, request: TextRequest) -> None:
        """Check on the replica, which counts the request's prompt in the same round trip: the chat
        service asks for that count next, on the same thread."""
        self._checked.last = (request, _call(self._handle.check.remote(request)))

    def stream(self, request: TextRequest, cancel: threading.Event) -> Iterator[TextChunk]:
        import ray

        request_id = uuid.uuid4().hex
        chunks = self._handle.options(stream=True).stream.remote(request_id, request)
        done = threading.Event()
        signal = functools.partial(self._signals.signal.remote, request_id, "cancel")
        threading.Thread(target=_call_when, args=(cancel, done, signal), daemon=True).start()
        try:
            yield from chunks
        except ray.exceptions.RayTaskError as exc:
            raise _unwrapped(exc) from None
        finally:
            done.set()
            chunks.cancel()  # a no-op once the stream has ended; stops the replica if the caller left early


def _call_when(event: threading.Event, done: threading.Event, action: Callable[[], object]) -> None:
    """Call ``action`` once ``event`` is set, unless ``done`` comes first."""
    while not done.is_set():
        if event.wait(0.05):
            action()
            return


class RayImageEngine(ImageEngine):
    """An image model served by the ``aigc-image`` deployment."""

    def __init__(self, handle, signals, info_id: str, spec: str):
        super().__init__(info_id)
        self._handle = handle.options(multiplexed_model_id=spec)
        self._signals = signals
        described = _call(self._handle.describe.remote())
        for name, value in described["flags"].items():
            setattr(self, name, value)
        self.max_size = described["max_size"]

    def generate(
        self,
        request: ImageRequest,
        mode: Mode,
        *,
        init_image: object | None = None,
        mask: object | None = None,
        on_step: Callable[[StepInfo], None] = lambda info: None,
        control: Control | None = None,
    ) -> ImageResult:
        import ray

        control = control or Control()
        request_id = uuid.uuid4().hex
        done = threading.Event()
        forward = threading.Thread(target=self._forward, args=(request_id, control, done), daemon=True)
        forward.start()
        events = self._handle.options(stream=True).generate.remote(request_id, request, mode, init_image, mask)
        try:
            for kind, payload in events:
                if kind == "result":
                    return payload
                step, total, batch, phase = payload
                on_step(StepInfo(step, total, batch, phase=phase))
        except ray.exceptions.RayTaskError as exc:
            raise _unwrapped(exc) from None
        finally:
            done.set()
        raise RuntimeError(f"the image replica ended without a result for request {request_id}")

    def _forward(self, request_id: str, control: Control, done: threading.Event) -> None:
        """Send the gateway's interrupt and skip to the replica (it polls for them at each step)."""
        while not done.wait(0.05):
            if control.skip.is_set():
                control.skip.clear()  # the engine clears skip once it has skipped; here, once sent
                self._signals.signal.remote(request_id, "skip")
            if control.interrupt.is_set():
                self._signals.signal.remote(request_id, "interrupt")
                return


def _loopback_only() -> None:
    """Keep a local cluster's servers on 127.0.0.1, as Ray itself does on macOS and Windows.

    On Linux Ray turns a loopback node address into the machine's own address, so its GCS, raylet,
    agents and workers listen where other machines can reach them. Its switch for single-machine
    clusters (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the address as given: the variable is for
    the processes Ray starts, the constant for this one, which read it when ``ray`` was imported. What
    still listens on every interface is each Serve replica's gRPC port (the README says so)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _studio_path() -> str:
    """PYTHONPATH for the replicas: the folder this studio was imported from first, so that a replica on
    this machine runs the same code as the gateway (a source checkout run with PYTHONPATH or sys.path, as
    the benches do, or an install); on another node a folder that is not there is skipped by Python."""
    source = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join([source, *(p for p in paths if p and p != source)])


class RayEngineHost:
    """The studio's engines on a Ray cluster: started (or joined) here, deployed, and handed out.

    ``address``: "" starts a local cluster in this process, kept to loopback where Ray allows it;
    "auto" joins the cluster started on this machine with ``ray start``; "ray://host:port" connects
    through Ray Client. Replica counts autoscale between ``min_replicas`` and ``max_replicas``; each
    replica takes one GPU where the cluster has GPUs, and ``cpus_per_replica`` CPUs, which its engine's
    threads default to. ``num_cpus``: the CPUs of a local cluster (None: all).
    """

    engines = ("llamacpp", "transformers", "diffusers")

    def __init__(
        self,
        address: str = "",
        *,
        min_replicas: int = 1,
        max_replicas: int = 1,
        cpus_per_replica: int = 1,
        num_cpus: int | None = None,
    ):
        if min_replicas > max_replicas:
            raise SettingError(
                f"ray_min_replicas ({min_replicas}) must not be more than ray_max_replicas ({max_replicas})"
            )
        try:
            import ray
            from ray import serve
        except ImportError:
            raise StudioError(INSTALL_HINT) from None
        from . import ray_deployments

        if not address:
            _loopback_only()
        self.address = address
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self._started_cluster = not address
        # Workers started by a cluster of its own (``ray start``) do not inherit this process's environment.
        runtime_env = {"env_vars": {"PYTHONPATH": _studio_path()}}
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, runtime_env=runtime_env)
        else:
            os.environ["PYTHONPATH"] = runtime_env["env_vars"]["PYTHONPATH"]  # the workers Ray starts here
            ray.init(
                num_cpus=num_cpus,
                namespace=NAMESPACE,
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                log_to_driver=False,
            )
        # Handles only: the studio's FastAPI app is the gateway, so Serve's HTTP proxy is not started.
        serve.start(proxy_location="Disabled")
        self.gpus = int(ray.cluster_resources().get("GPU", 0))
        actor = {"num_gpus": 1, "num_cpus": cpus_per_replica} if self.gpus else {"num_cpus": cpus_per_replica}
        autoscaling = {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "initial_replicas": max(1, min_replicas),
        }
        # Owned by this process: it goes when the gateway goes, and the deployments bound to it with it.
        self.signals = ray_deployments.Signals.remote()
        text = ray_deployments.TextDeployment.options(
            ray_actor_options=actor,
            autoscaling_config={**autoscaling, "target_ongoing_requests": 4},
            max_ongoing_requests=16,
        )
        image = ray_deployments.ImageDeployment.options(
            ray_actor_options=actor,
            autoscaling_config={**autoscaling, "target_ongoing_requests": 1},
            max_ongoing_requests=4,
        )
        try:
            self.text = serve.run(text.bind(self.signals), name=TEXT_APP, route_prefix=None)
            self.image = serve.run(image.bind(self.signals), name=IMAGE_APP, route_prefix=None)
        except RuntimeError as exc:
            raise StudioError(
                f"Ray Serve could not start the studio's deployments ({exc}); every node that runs replicas needs"
                " this studio and ray 2.60.0 installed, and their logs are in /tmp/ray/session_latest/logs/serve"
                " on that node"
            ) from None
        log.info(
            "Ray Serve: %s, replicas %d-%d per deployment, %s",
            address or "local cluster on 127.0.0.1",
            min_replicas,
            max_replicas,
            f"{self.gpus} GPU(s), one per replica" if self.gpus else "no GPU",
        )

    def text_engine(
        self, info, *, context: int, threads: int, parallel: int, device: str, prompt_batch: int
    ) -> TextEngine:
        """A ``RayTextEngine`` for ``info``, its model loaded on a replica."""
        from .ray_deployments import spec_id

        spec = spec_id(
            id=info.id,
            engine=info.engine,
            path=info.path,
            variant=info.variant,
            context=context,
            threads=threads,
            parallel=parallel,
            device=device,
            prompt_batch=prompt_batch,
        )
        return RayTextEngine(self.text, self.signals, info.id, spec, self.max_replicas)

    def image_engine(
        self, info, *, threads: int, compile: bool, cache_dir: Path | None, openvino: bool = False
    ) -> ImageEngine:
        """A ``RayImageEngine`` for ``info``, its model loaded on a replica."""
        from .ray_deployments import spec_id

        spec = spec_id(
            id=info.id,
            engine=info.engine,
            path=info.path,
            variant=info.variant,
            threads=threads,
            compile=compile,
            openvino=openvino,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
        return RayImageEngine(self.image, self.signals, info.id, spec)

    def close(self) -> None:
        """Remove the studio's applications; a cluster started here is shut down with them."""
        import ray
        from ray import serve

        for app in (TEXT_APP, IMAGE_APP):
            serve.delete(app)
        if self._started_cluster:
            serve.shutdown()
        ray.shutdown()
