"""The studio's contract types: what every layer passes to every other, and imports from here.

Text: ``Message`` (with ``ToolCall``), ``TextOptions``, ``TextRequest`` (with ``Tool`` and
``ResponseFormat``), ``TextChunk`` (with ``ToolCallDelta``), ``Usage``. Images: ``ImageRequest``
(every AUTOMATIC1111 parameter declared once, with its limits and description: the API schema, the CLI
options and the UI widgets are made from it), the sampler and schedule-type names, ``StepInfo``,
``Control``, ``ImageResult``. Code: ``RunLimits``, ``RunRequest``, ``RunResult`` (a run in the
sandbox). This module imports nothing of the studio, so an import line shows the
layer it crosses: engines, services, storage and the shells all take their data types from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "HIRES_FIELDS",
    "HR_UPSCALERS",
    "INPAINTING_FILL",
    "INPAINT_FIELDS",
    "MAX_STOP",
    "RUN_LANGUAGES",
    "SAMPLERS",
    "SCHEDULERS",
    "Control",
    "FinishReason",
    "ImageRequest",
    "ImageResult",
    "JsonInt",
    "Message",
    "Mode",
    "ResponseFormat",
    "Role",
    "RunLimits",
    "RunRequest",
    "RunResult",
    "StepInfo",
    "TextChunk",
    "TextOptions",
    "TextRequest",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "json_int",
    "limits_of",
    "split_sampler_name",
]


def _integral(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    return value


def json_int(**bounds: int) -> Any:
    """An integer as JSON Schema's "integer" has it, for request models in strict mode: 3 or 3.0, never
    3.5, "3" or true (strict pydantic alone refuses 3.0, which JSON Schema calls an integer). ``bounds``
    (ge, le, ...) are checked and declared as the schema's minimum and maximum."""
    return Annotated[int, Field(**bounds), BeforeValidator(_integral)]


JsonInt = json_int()


def limits_of(model: type[BaseModel], field: str) -> dict[str, Any]:
    """The limits declared on ``model.field`` (ge, le, gt, lt, multiple_of, min_length, max_length), as
    Field arguments: for a request model that takes the field under its own name."""
    names = ("ge", "le", "gt", "lt", "multiple_of", "min_length", "max_length")
    return {
        name: getattr(item, name)
        for item in model.model_fields[field].metadata
        for name in names
        if getattr(item, name, None) is not None
    }


# ---------------------------------------------------------------------------------------------------
# Text

Role = Literal["system", "user", "assistant", "tool"]
# llama.cpp's server takes any number of stop strings; this cap only keeps one request from making every
# generated token scan thousands of them.
MAX_STOP = 64
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class ToolCall(BaseModel):
    """A function call the model made: OpenAI's ``tool_calls`` entry, flattened."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    arguments: str = Field(description="The arguments, as JSON text (OpenAI sends and returns them as a string).")


class Message(BaseModel):
    """One chat turn. An assistant turn may carry ``tool_calls`` (then ``content`` is often empty); a
    ``tool`` turn carries the result of the call named by ``tool_call_id``."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = ""
    name: str | None = Field(None, max_length=200, description="Optional name of the participant.")
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _tool_fields_fit_the_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages carry tool_calls, not {self.role} messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError(f"only tool messages carry a tool_call_id, not {self.role} messages")
        return self


class Tool(BaseModel):
    """A function the model may call: its name, what it does, and a JSON Schema of its arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOL_NAME_PATTERN, description="a-z, A-Z, 0-9, _ and -, at most 64 characters.")
    description: str = ""
    parameters: dict = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object (unset: no arguments).",
    )


class ResponseFormat(BaseModel):
    """What the answer must be: free text, any JSON object, or JSON matching ``schema``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_only_for_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.schema_ is None:
            raise ValueError("a json_schema response format needs its schema")
        if self.type != "json_schema" and self.schema_ is not None:
            raise ValueError(f"a schema goes with type json_schema, not {self.type}")
        return self


# "none", "auto", "required", or the name of the one function that must be called.
ToolChoice = str


class TextOptions(BaseModel):
    """Sampling options, with OpenAI's names where OpenAI has one and llama.cpp's otherwise."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=2, description="Sampling temperature; 0 is greedy.")
    top_p: float | None = Field(None, ge=0, le=1, description="Nucleus sampling: keep tokens up to this mass.")
    top_k: int | None = Field(None, ge=0, le=1000, description="Keep the k most likely tokens (0: all).")
    min_p: float | None = Field(None, ge=0, le=1, description="Drop tokens below min_p × the top probability.")
    # 0 would divide logits by zero in llama.cpp (infinite logits abort its grammar sampler).
    repeat_penalty: float | None = Field(
        None, ge=0.01, le=10, description="Penalty for repeated tokens (1: off; 0.01-10)."
    )
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Penalty for tokens already present.")
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="Penalty proportional to how often a token appeared."
    )
    seed: int | None = Field(None, ge=-1, le=2**32 - 1, description="Random seed (-1 or unset: random).")
    max_tokens: int | None = Field(
        None, ge=1, le=1_000_000, description="Most tokens to generate (unset: until the context is full)."
    )
    stop: list[str] = Field(
        default_factory=list, max_length=MAX_STOP, description=f"Stop at any of these strings (at most {MAX_STOP})."
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value


@dataclass
class TextRequest:
    """Chat messages to answer, or (``prompt`` set) raw text to continue without a chat template.

    ``response_format`` constrains the answer (JSON, or JSON matching a schema). ``tools`` are functions
    the model may call; ``tool_choice`` says whether it must ("required", or one function's name), may
    ("auto") or must not ("none"); ``parallel_tool_calls`` lets one answer hold several calls.
    ``logit_bias`` adds to a token's logit before sampling (token id -> -100..100, OpenAI's meaning).
    ``logprobs`` (unset: none) asks for each generated token's log probability and that many of the
    most likely alternatives. ``progress`` asks an engine that reads prompts in steps to report every
    step, the first (what the prompt cache held) and the last included, as llama-server's
    ``return_progress`` does; without it only a prompt longer than one step is reported, and not its
    last step.
    """

    messages: list[Message]
    options: TextOptions = field(default_factory=TextOptions)
    prompt: str | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None
    progress: bool = False

    @property
    def calls_tools(self) -> bool:
        """True when the model is offered tools (some given, and tool_choice is not "none")."""
        return bool(self.tools) and self.tool_choice != "none"


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens whose KV cache was reused from an earlier request (the prompt cache), not evaluated.
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ToolCallDelta:
    """A piece of a tool call as it is generated: the first piece of call ``index`` has its ``id`` and
    ``name``; later pieces add text to its ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class TokenLogprob:
    """A generated token with its log probability (under the model's distribution, before temperature and
    truncation) and, in ``top``, the most likely tokens at its place."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[TokenLogprob] = field(default_factory=list)


FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]


class PromptProgress(NamedTuple):
    """How far an engine has read a prompt: ``read`` of ``total`` tokens, of which ``cached`` came from
    the prompt cache (they count as read), ``ms`` after reading began (llama-server's prompt_progress:
    processed, total, cache, time_ms)."""

    read: int
    total: int
    cached: int = 0
    ms: float = 0.0


@dataclass
class TextChunk:
    """A piece of generated text (or of a tool call). The last chunk of a stream has ``finish_reason`` and
    ``usage`` set, and the complete ``tool_calls`` when the model called tools."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    seed: int | None = None
    # Seconds spent evaluating the prompt and generating, measured by the engine.
    prompt_seconds: float | None = None
    decode_seconds: float | None = None
    tool_call: ToolCallDelta | None = None
    tool_calls: list[ToolCall] | None = None
    # The sampling values the engine actually used (its own defaults included), for the record.
    sampling: dict | None = None
    # With TextRequest.logprobs: the tokens whose text is in this chunk.
    logprobs: list[TokenLogprob] | None = None
    # Sent, with no text, while a long prompt is evaluated: as reading starts and after each of the
    # engine's steps (every step, the last included, with TextRequest.progress).
    prompt_progress: PromptProgress | None = None


# ---------------------------------------------------------------------------------------------------
# Images

# A1111's sampler names, in its order. Every image engine maps each one to its own solver.
SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M",
    "DPM++ SDE",
    "DPM++ 2M SDE",
    "DPM++ 2S a",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DDIM",
    "PLMS",
    "UniPC",
    "LCM",
)
# A1111's schedule types: API name -> label (the label is what infotext writes as "Schedule type").
SCHEDULERS: dict[str, str] = {
    "automatic": "Automatic",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
}
# A1111's hires-fix upscalers that need no extra weights: latent interpolations and PIL resampling.
HR_UPSCALERS: tuple[str, ...] = (
    "Latent",
    "Latent (antialiased)",
    "Latent (bicubic)",
    "Latent (bicubic antialiased)",
    "Latent (nearest)",
    "Latent (nearest-exact)",
    "Lanczos",
    "Nearest",
)
# The ImageRequest fields that only some modes use: the hires fix (txt2img) and inpainting. The CLI
# offers them, and records leave them out, by these lists.
HIRES_FIELDS: tuple[str, ...] = (
    "enable_hr",
    "hr_scale",
    "hr_resize_x",
    "hr_resize_y",
    "hr_upscaler",
    "hr_second_pass_steps",
    "hr_sampler_name",
    "hr_scheduler",
    "hr_prompt",
    "hr_negative_prompt",
)
INPAINT_FIELDS: tuple[str, ...] = (
    "mask_blur",
    "mask_blur_x",
    "mask_blur_y",
    "inpainting_fill",
    "inpainting_mask_invert",
    "inpaint_full_res",
    "inpaint_full_res_padding",
)
# A1111's inpainting_fill values: what the masked area starts from.
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}

Mode = Literal["txt2img", "img2img", "inpaint", "edit"]


def _canonical(value: str, choices: list[str], what: str) -> str:
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(choices)}")


def _sampler(value: str) -> str:
    try:
        return _canonical(value, list(SAMPLERS), "sampler")
    except ValueError as exc:
        example = f"{SAMPLERS[0]} {SCHEDULERS['karras']}"
        raise ValueError(f"{exc}; a schedule type may follow the name, as in {example!r}") from None


def split_sampler_name(name: str) -> tuple[str, str] | None:
    """``"DPM++ 2M Karras"`` -> ``("DPM++ 2M", "Karras")``: a sampler name that carries a schedule type,
    as A1111 accepts them (its ``sd_samplers.get_sampler_and_scheduler``); None for any other name.

    The schedule type may be given by its label or its API name (``"SGM Uniform"``, ``"sgm_uniform"``),
    in any case."""
    folded = name.strip().lower()
    if any(folded == sampler.lower() for sampler in SAMPLERS):
        return None
    for key, label in SCHEDULERS.items():
        for suffix in {key, label.lower()}:
            if folded.endswith(" " + suffix):
                sampler = folded[: -len(suffix) - 1].strip()
                for known in SAMPLERS:
                    if sampler == known.lower():
                        return known, label
    return None


class ImageRequest(BaseModel):
    """One generation request, with A1111's field names, defaults and meaning."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", max_length=20_000, description="What to draw. (word:1.2) raises a word's weight.")
    negative_prompt: str = Field("", max_length=20_000, description="What to keep out of the image.")
    steps: int = Field(20, ge=1, le=150, description="Denoising steps.")
    sampler_name: str = Field("Euler a", description="Sampler, by A1111's name: " + ", ".join(SAMPLERS) + ".")
    scheduler: str = Field("Automatic", description="Schedule type: " + ", ".join(SCHEDULERS.values()) + ".")
    cfg_scale: float = Field(7.0, ge=0, le=30, description="How strongly the prompt steers (CFG scale).")
    seed: int = Field(-1, ge=-1, le=2**32 - 1, description="Seed; -1 picks one at random (and records it).")
    subseed: int = Field(-1, ge=-1, le=2**32 - 1, description="Variation seed; -1 picks one at random.")
    subseed_strength: float = Field(0.0, ge=0, le=1, description="How far toward the variation seed (0: none).")
    width: int = Field(512, ge=64, le=2048, multiple_of=8, description="Width in pixels, a multiple of 8.")
    height: int = Field(512, ge=64, le=2048, multiple_of=8, description="Height in pixels, a multiple of 8.")
    batch_size: int = Field(1, ge=1, le=16, description="Images per batch (generated together).")
    n_iter: int = Field(1, ge=1, le=100, description="Batches, one after another (A1111's batch count).")
    denoising_strength: float = Field(0.75, ge=0, le=1, description="img2img: how much to change (0: nothing).")
    mask_blur: int = Field(4, ge=0, le=64, description="Inpainting: blur of the mask edge, in pixels.")
    mask_blur_x: int | None = Field(
        None, ge=0, le=64, description="Inpainting: horizontal blur of the mask edge (unset: mask_blur)."
    )
    mask_blur_y: int | None = Field(
        None, ge=0, le=64, description="Inpainting: vertical blur of the mask edge (unset: mask_blur)."
    )
    inpainting_fill: int = Field(
        1,
        ge=0,
        le=3,
        description="Inpainting: masked area starts from 0 fill, 1 original, 2 latent noise, 3 latent nothing.",
    )
    inpainting_mask_invert: int = Field(
        0, ge=0, le=1, description="Inpainting: 0 repaints the masked (white) area, 1 the area outside it."
    )
    inpaint_full_res: bool = Field(
        False,
        description="Inpainting: repaint only the masked region at full resolution (A1111's 'Only masked'), "
        "then paste it back; off: the whole picture.",
    )
    inpaint_full_res_padding: int = Field(
        32, ge=0, le=256, description="Inpainting, only masked: pixels of context around the masked region."
    )
    resize_mode: int = Field(
        0,
        ge=0,
        le=3,
        description="img2img: how the input image fits the size: 0 just resize, 1 crop and resize, "
        "2 resize and fill, 3 just resize (latent upscale).",
    )
    image_cfg_scale: float = Field(1.5, ge=0, le=30, description="Instruction edit: how closely to keep the input.")
    clip_skip: int = Field(1, ge=1, le=12, description="Stop the text encoder this many layers early (1: off).")
    tiling: bool = Field(False, description="Seamless tiling: the image repeats without visible seams.")
    token_merging_ratio: float = Field(
        0,
        ge=0,
        le=0.9,
        description="Token merging (tomesd, as A1111): the share of similar tokens merged before self-attention;"
        " faster, changes the picture (0: off).",
    )
    s_min_uncond: float = Field(
        0,
        ge=0,
        le=15,
        description="Negative Guidance minimum sigma (A1111's NGMS): below this noise level every other step"
        " runs the prompt alone, without the negative prompt; faster, changes the picture (0: off).",
    )
    s_min_uncond_all: bool = Field(
        False,
        description="With s_min_uncond: skip the negative prompt at every step below it, not every other one"
        " (A1111's 'NGMS all steps').",
    )
    eta: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Noise multiplier of the ancestral and SDE samplers (A1111's Eta; unset: 1) and DDIM's eta "
        "(unset: 0); a sampler without one ignores it, as in A1111.",
    )
    enable_hr: bool = Field(
        False, description="Hires fix (txt2img): generate, upscale, then denoise again at the larger size."
    )
    hr_scale: float = Field(2.0, ge=1, le=4, description="Hires fix: upscale by this factor.")
    hr_resize_x: int = Field(
        0, ge=0, le=4096, description="Hires fix: resize width to this instead of scaling (0: from hr_scale)."
    )
    hr_resize_y: int = Field(
        0, ge=0, le=4096, description="Hires fix: resize height to this instead of scaling (0: from hr_scale)."
    )
    hr_upscaler: str = Field("Latent", description="Hires fix upscaler: " + ", ".join(HR_UPSCALERS) + ".")
    hr_second_pass_steps: int = Field(
        0, ge=0, le=150, description="Hires fix: steps of the second pass (0: the same as steps)."
    )
    hr_sampler_name: str | None = Field(None, description="Hires fix: sampler of the second pass (unset: the same).")
    hr_scheduler: str | None = Field(None, description="Hires fix: schedule type of the second pass (unset: the same).")
    hr_prompt: str = Field("", max_length=20_000, description="Hires fix: prompt of the second pass (empty: the same).")
    hr_negative_prompt: str = Field(
        "", max_length=20_000, description="Hires fix: negative prompt of the second pass (empty: the same)."
    )
    model: str | None = Field(None, description="Image model id or alias; unset: the default image model.")
    styles: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="Saved prompt styles (AIGC_HOME/styles.csv) applied to the prompts, in order, as A1111 does.",
    )
    dynamic_prompts: Literal["random", "combinatorial"] | None = Field(
        None,
        description="Dynamic prompts: {a|b} choices and __wildcards__ drawn per image; random (one per image) or "
        "combinatorial (one image per combination). Unset: braces are literal, as in A1111.",
    )
    dynamic_seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Seed of the random dynamic-prompt picks (unset: the image seed)."
    )

    @model_validator(mode="before")
    @classmethod
    def _schedule_in_sampler_name(cls, data: object) -> object:
        # A1111 clients send "DPM++ 2M Karras" (the sampler names of A1111 before 1.9): the schedule type
        # in the name applies unless the request asks for another one than Automatic.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for sampler_key, schedule_key in (("sampler_name", "scheduler"), ("hr_sampler_name", "hr_scheduler")):
            name = data.get(sampler_key)
            split = split_sampler_name(name) if isinstance(name, str) else None
            if split is None:
                continue
            data[sampler_key] = split[0]
            asked = data.get(schedule_key)
            if asked is None or (isinstance(asked, str) and asked.strip().lower() == "automatic"):
                data[schedule_key] = split[1]
        return data

    @field_validator("sampler_name")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return _sampler(value)

    @field_validator("hr_sampler_name")
    @classmethod
    def _known_hr_sampler(cls, value: str | None) -> str | None:
        return None if value is None else _sampler(value)

    @field_validator("scheduler", "hr_scheduler")
    @classmethod
    def _known_scheduler(cls, value: str | None) -> str | None:
        if value is None:
            return None
        key = value.strip().lower().replace(" ", "_")
        if key in SCHEDULERS:
            return SCHEDULERS[key]
        return _canonical(value, list(SCHEDULERS.values()), "schedule type")

    @field_validator("hr_upscaler")
    @classmethod
    def _known_upscaler(cls, value: str) -> str:
        return _canonical(value, list(HR_UPSCALERS), "hires upscaler")

    @model_validator(mode="after")
    def _not_too_many_pixels(self) -> ImageRequest:
        if self.batch_size * self.width * self.height > 16 * 1024 * 1024:
            raise ValueError("batch_size × width × height must be at most 16 megapixels per batch")
        return self


@dataclass
class StepInfo:
    """Progress of one denoising step, handed to ``on_step``."""

    step: int  # 1-based, within the current batch
    total: int
    batch: int  # 0-based index of the batch (n_iter)
    # Returns a small preview of the current latents, or None; cheap, but only call it when shown.
    preview: Callable[[], object | None] = lambda: None
    # Set for work between steps that takes long enough to show (sd_speed.COMPILING, OPENVINO_PHASE); step
    # is then the count reached so far, not a new step.
    phase: str = ""


# The phase of an image model's first request while its UNet and VAE are made ready for OpenVINO.
OPENVINO_PHASE = "preparing the UNet and VAE for OpenVINO (once per model)"


@dataclass
class Control:
    """Set by the job queue while an engine runs: ``interrupt`` stops everything, ``skip`` the current batch."""

    interrupt: threading.Event = field(default_factory=threading.Event)
    skip: threading.Event = field(default_factory=threading.Event)


@dataclass
class ImageResult:
    images: list  # PIL.Image.Image, batch order
    seeds: list[int]  # the seed of each image (A1111: seed + index)
    subseeds: list[int]
    interrupted: bool = False
    runtime: str | None = None  # what ran the UNet when not PyTorch ("OpenVINO 2026.4.1")


# ---------------------------------------------------------------------------------------------------
# Code runs (the sandbox)

# The languages the sandbox runs, with the names a user may give each.
RUN_LANGUAGES: dict[str, tuple[str, ...]] = {
    "python": ("python", "py", "python3"),
    "javascript": ("javascript", "js", "node", "nodejs"),
}


def run_language(value: str) -> str:
    """The canonical name ("python", "javascript") of a language a user named; ValueError listing the
    names allowed when the sandbox does not run it."""
    name = str(value).strip().lower()
    for language, names in RUN_LANGUAGES.items():
        if name in names:
            return language
    allowed = ", ".join(n for names in RUN_LANGUAGES.values() for n in names)
    raise ValueError(f"language must be one of {allowed}, got {value!r}")


class RunLimits(BaseModel):
    """What one run may use. The defaults are safe for a small program; each may be raised up to the
    maximum the studio is configured with (settings ``run_max_*``), which is itself bounded by ``le``."""

    model_config = ConfigDict(extra="forbid")

    wall_seconds: float = Field(10.0, gt=0, le=600, description="Wall-clock time before the run is killed.")
    cpu_seconds: json_int(ge=1, le=600) = Field(10, description="CPU seconds of each process before it is killed.")
    memory_mb: json_int(ge=16, le=65536) = Field(512, description="Memory (data segment) of each process, MiB.")
    processes: json_int(ge=1, le=1024) = Field(32, description="Processes and threads the run may have at once.")
    output_kb: json_int(ge=1, le=1048576) = Field(
        1024, description="stdout and stderr together, KiB; past this the run is killed and the output cut."
    )
    files_mb: json_int(ge=1, le=4096) = Field(64, description="Size of the run's writable temp dir, MiB.")


class RunRequest(BaseModel):
    """One program to run in the sandbox: its source, language, command-line arguments and stdin."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field(description="python (py) or javascript (js, node).")
    code: str = Field(min_length=1, max_length=1_000_000, description="The program's source.")
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="Command-line arguments."
    )
    stdin: str = Field("", max_length=1_000_000, description="What the program reads on standard input.")
    limits: RunLimits = Field(default_factory=RunLimits)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return run_language(value)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: give the program to run")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


# Which limit stopped a run: the studio's own timers and counters (wall, output) or the kernel's (cpu,
# memory, processes, files), the latter read from how the program died and what it printed.
RunLimit = Literal["wall", "cpu", "memory", "processes", "output", "files"]


@dataclass
class RunResult:
    """What a run did: its output (cut at ``output_kb``), how it ended, what it cost."""

    language: str
    runtime: str  # the interpreter and its version, e.g. "Python 3.11.2", "Node.js v20.20.2"
    stdout: str
    stderr: str
    exit_code: int | None  # None when it was killed by a signal
    signal: str | None  # "SIGKILL", "SIGXCPU", ... when it was killed by one
    wall_seconds: float
    cpu_seconds: float | None  # user + system of every process the run waited for; None when it was killed
    limit: RunLimit | None  # the limit that stopped it, if one did
    truncated: bool  # stdout/stderr were cut at the output limit
    limits: RunLimits

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.limit is None

    def to_dict(self) -> dict:
        return {
            "language": self.language,
            "runtime": self.runtime,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "wall_seconds": round(self.wall_seconds, 4),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 4),
            "limit": self.limit,
            "truncated": self.truncated,
            "ok": self.ok,
            "limits": self.limits.model_dump(),
        }
