"""Compare: one prompt to several models side by side, for text and for images.

A text comparison sends the same messages and options (seed included) to 2-4 text models at once: each
model's answer runs in a thread of its own through the chat service (``store=False``: no conversation
is left in chat history; the comparison is its own record). Models served by other processes (a remote
server) truly overlap; two in-process llama.cpp models share the machine's cores, so each runs slower
than alone. One event stream merges the panes: ``delta`` (a pane's new text), ``pane_done`` (its text
and timings), ``pane_error`` (why it failed; the other panes go on), then ``done`` with the saved id.

An image comparison runs one ImageRequest (the same prompt, seed and parameters) over 2-4 image models
in a row, or over the values of one or two parameters (an X/Y grid, as A1111's X/Y/Z plot) through the
image service's job queue: the cells run one after another, each reported as it finishes, and a
composed grid image with axis labels is saved beside them.

Everything that can be refused is refused before anything runs: the number of models, unknown or
repeated ones, a prompt that does not fit a model, a grid value out of range.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import ValidationError

from ..contracts import ImageRequest, Message, TextOptions
from ..engines.samplers import SamplerError, sampler_fields
from ..errors import InvalidRequest, NotFound, StudioError, validation_message
from ..images.grid import compose_grid
from ..models.registry import Registry
from ..storage.comparisons import ComparisonStore
from ..storage.files import write_atomic
from ..storage.history import new_id
from .chat import ChatRun, ChatService, PreparedChat
from .images import ImageService, check_hires_size
from .jobs import Job

__all__ = [
    "AXES",
    "Axis",
    "CompareEvent",
    "CompareService",
    "ImageComparison",
    "TextComparison",
    "parse_axis",
]

log = logging.getLogger("aigc_studio.compare")

MIN_MODELS, MAX_MODELS = 2, 4
MAX_AXIS_VALUES = 8
MAX_CELLS = 16
MAX_PROMPT = 20_000

# The parameters a grid can vary: the names a user types (A1111's short ones too) -> ImageRequest fields.
AXES = {
    "cfg": "cfg_scale",
    "cfg_scale": "cfg_scale",
    "steps": "steps",
    "sampler": "sampler_name",
    "sampler_name": "sampler_name",
    "scheduler": "scheduler",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "denoising": "denoising_strength",
    "denoising_strength": "denoising_strength",
    "clip_skip": "clip_skip",
    "model": "model",
}
_AXIS_NAMES = ", ".join(sorted({v for v in AXES.values()}))


@dataclass
class CompareEvent:
    """One event of a comparison. Text: ``reading`` (pane, model, read of prompt_tokens: a long prompt
    being read, before the pane's text), ``delta`` (pane, text), ``pane_done`` (pane, model, text, stats),
    ``pane_error`` (pane, model, message, text so far). Images: ``cell`` (cell), ``cell_error`` (cell with
    its error). Both end with ``done`` (comparison_id, duration_ms)."""

    type: str
    pane: int | None = None
    model: str | None = None
    text: str | None = None
    message: str | None = None
    stats: dict | None = None
    cell: dict | None = None
    comparison_id: str | None = None
    duration_ms: float | None = None
    read: int | None = None
    prompt_tokens: int | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Axis:
    """One grid axis: an ImageRequest field (or ``model``) and the values it takes, in order."""

    name: str
    values: list

    def label(self, value) -> str:
        return f"{self.name}: {value}"


def parse_axis(spec: str) -> Axis:
    """``cfg=3,7,11`` -> Axis("cfg_scale", ["3", "7", "11"]); the values are checked when the cells are made."""
    name, eq, values = spec.partition("=")
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if not eq or key not in AXES:
        raise InvalidRequest(
            f"grid axis must be NAME=V1,V2,... with NAME one of {_AXIS_NAMES} (or cfg, sampler, denoising), "
            f"got {spec!r}",
            param="grid",
        )
    return Axis(AXES[key], [v.strip() for v in values.split(",") if v.strip()])


def _check_models(names: list[str], resolve, kind: str) -> list[str]:
    if not MIN_MODELS <= len(names) <= MAX_MODELS:
        raise InvalidRequest(
            f"a comparison takes {MIN_MODELS}-{MAX_MODELS} {kind} models, got {len(names)}", param="models"
        )
    ids = [resolve(name).id for name in names]  # ModelNotFound names the unknown one and lists the known
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        given = [n for n, i in zip(names, ids, strict=True) if i in repeated]
        raise InvalidRequest(
            f"each model may be compared once; {', '.join(repeated)} is given more than once ({', '.join(given)})",
            param="models",
        )
    return ids


def _pane_stats(prepared: PreparedChat) -> dict:
    """What a pane's answer did, from the chat record: the timings, the tokens, how it ended and the
    sampling values that ran (the engine's own defaults included)."""
    rec = prepared.record
    tokens_per_s = rec.tokens_per_s
    if tokens_per_s is None and (rec.completion_tokens or 0) > 1 and rec.duration_ms and rec.ttft_ms is not None:
        # An engine that does not time its decoding (a remote one): the pace after the first token.
        decode_s = (rec.duration_ms - rec.ttft_ms) / 1000
        tokens_per_s = (rec.completion_tokens - 1) / decode_s if decode_s > 0 else None
    return {
        "ttft_ms": rec.ttft_ms,
        "tokens_per_s": tokens_per_s,
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "duration_ms": rec.duration_ms,
        "finish_reason": rec.finish_reason,
        "seed": rec.seed,
        "sampling": rec.options,
    }


class TextComparison:
    """A prepared text comparison. Iterate it (once) for CompareEvents; the panes start when iteration
    does. Stopping the iteration early, or ``cancel()``, stops every pane; what was answered is saved."""

    def __init__(self, service: CompareService, prompt: str, system: str | None, options: TextOptions, prepared):
        self.service, self.prompt, self.system, self.options = service, prompt, system, options
        self._prepared: list[PreparedChat] = prepared
        self.models = [p.model for p in prepared]
        self.panes: list[dict] = [{"model": m, "text": "", "status": "running", "error": None} for m in self.models]
        self._events: queue.Queue[CompareEvent] = queue.Queue()
        self._runs: list[ChatRun | None] = [None] * len(prepared)
        self._cancelled = threading.Event()
        self._started = False
        self.id: str | None = None

    def cancel(self) -> None:
        """Stop every pane still answering (each keeps what it has)."""
        self._cancelled.set()
        for run in self._runs:
            if run is not None:
                run.cancel()

    def __iter__(self) -> Iterator[CompareEvent]:
        if self._started:
            raise RuntimeError("a comparison runs once")
        self._started = True
        started = time.perf_counter()
        threads = [
            # each pane's thread works as the caller (principal), so its records are the caller's
            threading.Thread(
                target=contextvars.copy_context().run, args=(self._pane, i, p), name=f"compare-pane-{i}", daemon=True
            )
            for i, p in enumerate(self._prepared)
        ]
        for thread in threads:
            thread.start()
        remaining, finished = len(threads), False
        try:
            while remaining:
                event = self._events.get()
                remaining -= event.type in ("pane_done", "pane_error")
                yield event
            finished = True
        finally:
            if not finished:
                self.cancel()
            for thread in threads:
                thread.join(timeout=60)
            duration_ms = (time.perf_counter() - started) * 1000
            self.id = self.service.store.save(
                "text",
                self.prompt,
                self.models,
                {"system": self.system, "options": self.options.model_dump(exclude_none=True, exclude_defaults=True)},
                self.panes,
                duration_ms,
            )
        yield CompareEvent("done", comparison_id=self.id, duration_ms=duration_ms)

    def _pane(self, index: int, prepared: PreparedChat) -> None:
        pane = self.panes[index]
        run = self.service.chat.start(prepared)
        self._runs[index] = run
        try:
            for chunk in run:
                if self._cancelled.is_set():
                    run.cancel()
                if chunk.prompt_progress is not None:  # a long prompt: how much of it this model has read
                    read, tokens = chunk.prompt_progress.read, chunk.prompt_progress.total
                    pane["reading"] = [read, tokens]
                    self._events.put(
                        CompareEvent("reading", pane=index, model=pane["model"], read=read, prompt_tokens=tokens)
                    )
                if chunk.text:
                    pane.pop("reading", None)
                    pane["text"] += chunk.text
                    self._events.put(CompareEvent("delta", pane=index, model=pane["model"], text=chunk.text))
            run.result  # noqa: B018 - waits until the record is complete
            pane.pop("reading", None)
            pane.update(_pane_stats(prepared))
            pane["status"] = "cancelled" if prepared.record.status == "cancelled" else "done"
            stats = {k: v for k, v in pane.items() if k not in ("text", "model", "error")}
            self._events.put(CompareEvent("pane_done", pane=index, model=pane["model"], text=pane["text"], stats=stats))
        except Exception as exc:  # one failing pane must never stop the others
            message = exc.message if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, StudioError):
                log.exception("compare pane %s (%s) failed", index, pane["model"])
            pane.pop("reading", None)
            if prepared.record.duration_ms is not None:  # the engine ran (the worker records before it ends)
                pane.update(_pane_stats(prepared))
            pane.update(status="error", error=message)
            self._events.put(
                CompareEvent("pane_error", pane=index, model=pane["model"], message=message, text=pane["text"])
            )


@dataclass
class ImageComparison:
    """A queued image comparison. Iterate it (once) for ``cell`` / ``cell_error`` events as each cell
    finishes, then ``done``; ``cancel()`` drops the cells not yet run."""

    service: CompareService
    request: ImageRequest
    axes: list[Axis]
    cells: list[dict]
    jobs: list[Job]
    models: list[str]
    id: str = field(default_factory=lambda: new_id("cmp"))
    grid_path: Path | None = None
    grid_labels: dict | None = None  # what labeling applied to the grid image

    def cancel(self) -> None:
        for job in self.jobs:
            self.service.images.queue.interrupt(job.id)

    def __iter__(self) -> Iterator[CompareEvent]:
        started = time.perf_counter()
        pictures: list[Image.Image | None] = []
        finished = False
        try:
            for cell, job in zip(self.cells, self.jobs, strict=True):
                try:
                    result = job.wait()
                except Exception as exc:  # a failed cell is reported; the others still run
                    message = exc.message if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
                    result, cell["error"] = None, message
                if result is not None and result.images:
                    made = result.images[0]
                    cell.update(
                        image_id=made.id,
                        path=str(made.path),
                        seed=made.seed,
                        infotext=made.infotext,
                        seconds=(job.finished or time.time()) - (job.started or job.created),
                    )
                    pictures.append(made.image)
                    yield CompareEvent("cell", cell=cell)
                else:
                    cell["error"] = cell.get("error") or job.error or "the job was interrupted before it ran"
                    pictures.append(None)
                    yield CompareEvent("cell_error", cell=cell, message=cell["error"])
            finished = True
        finally:
            if not finished:
                self.cancel()
            pictures += [None] * (len(self.cells) - len(pictures))
            for cell in self.cells[len(pictures) :]:
                cell.setdefault("error", "cancelled")
            self.grid_path = self._save_grid(pictures)
            duration_ms = (time.perf_counter() - started) * 1000
            axes = [{"name": a.name, "values": a.values} for a in self.axes]
            request = {
                "image_request": self.request.model_dump(exclude_defaults=True),
                "axes": axes,
                "grid_labels": self.grid_labels,
            }
            self.service.store.save(
                "image",
                self.request.prompt,
                self.models,
                request,
                self.cells,
                duration_ms,
                grid_path=str(self.grid_path),
                comparison_id=self.id,
            )
        yield CompareEvent("done", comparison_id=self.id, duration_ms=duration_ms)

    def _save_grid(self, pictures: list[Image.Image | None]) -> Path:
        x = self.axes[0]
        y = self.axes[1] if len(self.axes) > 1 else None
        grid = compose_grid(pictures, [x.label(v) for v in x.values], [y.label(v) for v in y.values] if y else None)
        folder = self.service.images.outputs_dir / "compare"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.id}.png"
        # The grid is a picture the studio made as well: labeled as its cells are (each cell in it
        # keeps its own mark), with the comparison's id as the ProduceID.
        labeled = self.service.images.labeler.label_image(
            grid, produce_id=self.id, infotext=None, mode="txt2img", title=path.name
        )
        self.grid_labels = labeled.record
        write_atomic(path, labeled.data)  # never a half-written grid under its real name
        return path


class CompareService:
    def __init__(self, chat: ChatService, images: ImageService, registry: Registry, store: ComparisonStore):
        self.chat, self.images, self.registry, self.store = chat, images, registry, store

    def text(
        self,
        prompt: str,
        models: list[str],
        *,
        system: str | None = None,
        options: TextOptions | None = None,
        source: str = "compare",
    ) -> TextComparison:
        """Check and prepare a text comparison of ``prompt`` over 2-4 text models; iterate the result to
        run it. Blocking (loads the models). InvalidRequest / ModelNotFound / ContextLengthExceeded
        before anything runs."""
        if not prompt or not prompt.strip():
            raise InvalidRequest("prompt must not be empty", param="prompt")
        ids = _check_models(list(models), self.chat.resolve_model, "text")
        options = options or TextOptions()
        messages = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
        prepared: list[PreparedChat] = []
        try:
            for model in ids:
                prepared.append(self.chat.prepare(messages, model=model, options=options, source=source, store=False))
        except BaseException:
            for p in prepared:  # a refused comparison holds no model
                if p.lease is not None:
                    p.lease.release()
                if p.slot is not None:
                    p.slot.release()
            raise
        return TextComparison(self, prompt, system, options, prepared)

    def images_compare(
        self,
        request: ImageRequest,
        models: list[str] | None = None,
        axes: list[Axis] | None = None,
        *,
        source: str = "compare",
    ) -> ImageComparison:
        """Check and queue an image comparison: ``request`` over 2-4 ``models`` (a row), over the values
        of one or two ``axes`` (a grid; ``model`` may be one of them), or both (models as the Y axis).
        Every cell has the same seed (one is drawn when the request's is -1). Iterate the result for
        each cell as it finishes."""
        models, axes = list(models or []), list(axes or [])
        if len(models) > 1:
            axes.append(Axis("model", models))
        elif models:
            request = request.model_copy(update={"model": models[0]})
        if not axes:
            raise InvalidRequest(
                f"an image comparison needs {MIN_MODELS}-{MAX_MODELS} models or a grid axis (e.g. cfg=3,7,11)",
                param="models",
            )
        if len(axes) > 2:
            raise InvalidRequest(
                f"an image grid has at most 2 axes (models count as one), got {len(axes)}: "
                + ", ".join(a.name for a in axes),
                param="grid",
            )
        if len(axes) == 2 and axes[0].name == axes[1].name:
            raise InvalidRequest(f"the two grid axes both vary {axes[0].name}; vary two different ones", param="grid")
        for axis in axes:
            if axis.name == "model":
                axis.values = [str(v) for v in axis.values]
                _check_models(axis.values, lambda n: self.registry.resolve(n, kind="image"), "image")
            elif not 2 <= len(axis.values) <= MAX_AXIS_VALUES:
                raise InvalidRequest(
                    f"grid axis {axis.name} takes 2-{MAX_AXIS_VALUES} values, got {len(axis.values)}", param="grid"
                )
        n_cells = len(axes[0].values) * (len(axes[1].values) if len(axes) > 1 else 1)
        if n_cells > MAX_CELLS:
            raise InvalidRequest(f"an image comparison has at most {MAX_CELLS} cells, got {n_cells}", param="grid")
        if request.dynamic_prompts is not None:
            raise InvalidRequest(
                "dynamic prompts draw a prompt per image; a comparison gives every cell the same prompt "
                "(leave dynamic_prompts unset)",
                param="dynamic_prompts",
            )
        if request.batch_size != 1 or request.n_iter != 1:
            raise InvalidRequest(
                "each cell of a comparison is one image: batch_size and n_iter must be 1", param="batch_size"
            )
        # The same seed everywhere, or the cells would differ in more than what is compared.
        base = request.model_dump(exclude_unset=True)
        base["seed"] = request.seed if request.seed != -1 else random.randrange(2**32)
        base["subseed"] = request.subseed if request.subseed != -1 else random.randrange(2**32)
        x, y = axes[0], (axes[1] if len(axes) > 1 else None)
        cells, cell_requests = [], []
        for y_value in y.values if y else [None]:
            for x_value in x.values:
                fields = {**base, x.name: x_value}
                if y is not None:
                    fields[y.name] = y_value
                try:
                    cell_request = ImageRequest(**fields)
                except ValidationError as exc:
                    message, _ = validation_message(exc.errors())
                    raise InvalidRequest(f"grid: {message}", param="grid") from None
                cell = {"index": len(cells), "x": getattr(cell_request, x.name)}
                if y is not None:
                    cell["y"] = getattr(cell_request, y.name)
                cells.append(cell)
                cell_requests.append(cell_request)
        # Each axis keeps the values as they were checked (3 -> 3.0 for cfg_scale), as the cells show them.
        x.values = [c["x"] for c in cells[: len(x.values)]]
        if y is not None:
            y.values = [c["y"] for c in cells[:: len(x.values)]]
        for axis in axes:
            repeated = sorted({str(v) for v in axis.values if axis.values.count(v) > 1})
            if repeated:
                raise InvalidRequest(
                    f"grid axis {axis.name} repeats {', '.join(repeated)}; give each value once", param="grid"
                )
        for cell, cell_request in zip(cells, cell_requests, strict=True):
            self._check_cell(cell_request, cell)
        jobs: list[Job] = []
        try:
            for cell, cell_request in zip(cells, cell_requests, strict=True):
                job = self.images.submit(cell_request, source=source, resumable=False)
                cell["model"] = job.model
                jobs.append(job)
        except BaseException:
            for job in jobs:  # nothing of a refused comparison runs
                self.images.queue.interrupt(job.id)
            raise
        models_used = list(dict.fromkeys(c["model"] for c in cells))
        return ImageComparison(self, ImageRequest(**base), axes, cells, jobs, models_used)

    def _check_cell(self, request: ImageRequest, cell: dict) -> None:
        """What makes one cell differ from another (its model, sampler, size) checked before any cell is
        queued, so a comparison is refused whole rather than dropped half-way."""
        info = self.registry.resolve(request.model or self.registry.default_image_model, kind="image")
        capabilities = self.registry.image_capabilities(info)
        if capabilities is not None and "txt2img" not in capabilities:
            raise InvalidRequest(
                f"model '{info.id}' cannot draw from a prompt (txt2img); it can do {', '.join(capabilities)}",
                param="models",
            )
        try:
            sampler_fields(request)
        except SamplerError as exc:
            raise InvalidRequest(f"cell {cell['index'] + 1}: {exc}", param="grid") from None
        if request.enable_hr:
            check_hires_size(request)

    def list(self, limit: int = 50, kind: str | None = None) -> list[dict]:
        """Saved comparisons, newest first (without their results)."""
        return self.store.list(limit, kind)

    def get(self, comparison_id: str) -> dict:
        """A saved comparison whole: the panes' text and timings, or the cells' files and infotexts."""
        return self.store.get(comparison_id)

    def grid_file(self, comparison_id: str) -> Path:
        """The grid PNG of an image comparison; NotFound when there is none or its file is gone."""
        record = self.store.get(comparison_id)
        if not record["grid_path"]:
            raise NotFound(f"comparison '{comparison_id}' is a text comparison; it has no grid image")
        path = Path(record["grid_path"])
        if not path.is_file():
            raise NotFound(f"the grid of comparison '{comparison_id}' was at {path}, which is no longer there")
        return path
