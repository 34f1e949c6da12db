"""Stable Diffusion prompt craft: expansion of an idea by the LLM, A1111 styles, wildcards and dynamic
prompts. One service (``studio.prompts``) that the CLI, the APIs, the web UI and the image service use.

- **Expansion**: a short idea becomes a detailed prompt and negative prompt through the shipped template
  ``sd-expand`` (``templates/sd-expand.en.toml``, ``.zh.toml``; a user's template of that name takes its
  place). A model that can constrain its answer (llama.cpp) answers JSON that matches a schema, whose
  grammar also keeps both prompts to English letters and punctuation (SD's CLIP reads English), so even
  the 135M SmolLM2 answers something that parses. A model that cannot (the echo test engine) answers
  free text, which is taken as the prompt when it is not JSON. The run is one-off: it leaves no
  conversation in chat history.
- **Styles** (``prompt_styles``) and **dynamic prompts** (``dynamic_prompts``) turn an image request into
  the prompts that actually run, one per image (``plan``), before anything is queued.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..contracts import ImageRequest, Message, ResponseFormat, TextOptions
from ..errors import InvalidRequest
from .chat import ChatService
from .dynamic_prompts import MAX_COMBINATIONS, DynamicMode, DynamicPrompts
from .prompt_styles import StyleStore, apply_styles
from .template_library import TemplateLibrary

__all__ = ["EXPAND_TEMPLATE", "Expansion", "PromptCraft", "PromptPlan", "expansion_schema", "idea_language"]

EXPAND_TEMPLATE = "sd-expand"
MAX_IDEA = 2000
# Letters, digits and the punctuation of SD prompts ("(word:1.2)", "8k, f/1.8"); no quote or backslash,
# so the grammar never has to escape one.
_PROMPT_CHARS = "[A-Za-z0-9 ,.:;()'!?&+/_-]"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def expansion_schema() -> dict:
    """The JSON Schema an expansion answers to (enforced by the model's grammar)."""
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "pattern": f"^{_PROMPT_CHARS}{{1,400}}$"},
            "negative_prompt": {"type": "string", "pattern": f"^{_PROMPT_CHARS}{{0,200}}$"},
        },
        "required": ["prompt", "negative_prompt"],
        "additionalProperties": False,
    }


def idea_language(idea: str) -> str:
    """ "zh" when the idea holds Chinese (or Japanese) characters, else "en": the template to speak in."""
    return "zh" if _CJK.search(idea) else "en"


@dataclass
class Expansion:
    """An expanded idea: the prompts, and what made them."""

    idea: str
    prompt: str
    negative_prompt: str
    model: str
    seed: int | None
    template: str  # "sd-expand.en"
    structured: bool  # True: the answer was held to the JSON schema by the model's grammar
    response_id: str
    completion_tokens: int


@dataclass
class PromptPlan:
    """The prompts an image request runs: one (prompt, negative prompt) per image, in order. ``template``
    and ``negative_template`` are the text the dynamic prompts were drawn from (None without them)."""

    prompts: list[tuple[str, str]]
    styles: list[str] = field(default_factory=list)
    dynamic: DynamicMode | None = None
    template: str | None = None
    negative_template: str | None = None

    @property
    def varies(self) -> bool:
        """Whether the images have prompts of their own (then each runs on its own)."""
        return len(set(self.prompts)) > 1


class PromptCraft:
    def __init__(self, home: Path, chat: ChatService, templates: TemplateLibrary):
        self.styles = StyleStore(home / "styles.csv")
        self.dynamic = DynamicPrompts(home / "wildcards")
        self.chat = chat
        self.templates = templates

    # -- expansion -------------------------------------------------------------------------------

    def expand(
        self,
        idea: str,
        *,
        language: str | None = None,
        seed: int | None = None,
        model: str | None = None,
        temperature: float | None = None,
    ) -> Expansion:
        """Expand ``idea`` into a detailed SD prompt and negative prompt with the text model ``model``
        (unset: the default). ``language`` ("en"/"zh") picks the template; unset, the idea's own. The
        same seed gives the same answer. Raises InvalidRequest (empty or long idea, a model answer that
        is not usable), ModelNotFound, ContextLengthExceeded."""
        idea = (idea or "").strip()
        if not idea:
            raise InvalidRequest("idea must not be empty: give a few words of what to draw", param="idea")
        if len(idea) > MAX_IDEA:
            raise InvalidRequest(f"idea is at most {MAX_IDEA} characters, got {len(idea)}", param="idea")
        if language is not None and language not in ("en", "zh"):
            raise InvalidRequest(f"language must be en or zh, got {language!r}", param="language")
        language = language or idea_language(idea)
        template = self.templates.get(EXPAND_TEMPLATE, language)
        system, prompt = template.render(idea=idea)
        messages = [Message(role="system", content=system)] if system else []
        messages.append(Message(role="user", content=prompt))

        info = self.chat.resolve_model(model or self.chat.registry.default_model)
        lease = self.chat.registry.lease(info.id)
        try:
            structured = bool(lease.engine.supports_response_format)
        finally:
            lease.release()
        options = TextOptions(
            seed=seed,
            max_tokens=self.chat.limits.cap_tokens(400),
            temperature=0.8 if temperature is None else temperature,
        )
        response_format = (
            ResponseFormat(type="json_schema", name="sd_prompt", schema=expansion_schema(), strict=True)
            if structured
            else None
        )
        prepared = self.chat.prepare(
            messages,
            model=info.id,
            options=options,
            source="prompt-expand",
            store=False,
            response_format=response_format,
        )
        result = self.chat.complete(prepared)
        if result.finish_reason not in ("stop", "length"):
            raise InvalidRequest(f"the model stopped before answering ({result.finish_reason})", param="idea")
        positive, negative = _read_answer(result.text, structured, info.id)
        return Expansion(
            idea=idea,
            prompt=positive,
            negative_prompt=negative,
            model=info.id,
            seed=result.seed,
            template=template.key,
            structured=structured,
            response_id=result.response_id,
            completion_tokens=result.usage.completion_tokens,
        )

    # -- images ----------------------------------------------------------------------------------

    def apply_styles(self, prompt: str, negative_prompt: str, names: list[str]) -> tuple[str, str]:
        """The prompts with the saved styles ``names`` applied in order (A1111's rule); NotFound names an
        unknown style."""
        return apply_styles(prompt, negative_prompt, self.styles.resolve(list(names)))

    def preview(
        self, template: str, mode: DynamicMode = "random", *, count: int = 1, seed: int | None = None
    ) -> list[str]:
        """The prompts a dynamic template gives: ``count`` random ones with ``seed``, or every
        combination (at most MAX_COMBINATIONS)."""
        if mode not in ("random", "combinatorial"):
            raise InvalidRequest(f"mode must be random or combinatorial, got {mode!r}", param="mode")
        if not 1 <= count <= MAX_COMBINATIONS:
            raise InvalidRequest(f"count must be 1-{MAX_COMBINATIONS}, got {count}", param="count")
        return self.dynamic.expand(template, mode, count=count, seed=seed, what="template")

    def plan(self, request: ImageRequest) -> PromptPlan:
        """The prompt and negative prompt of each image ``request`` makes: its styles applied (A1111's
        rule), then its dynamic prompts drawn, as A1111 with the sd-dynamic-prompts extension does.
        Random mode draws one prompt per image (batch size × batch count) from the dynamic seed (unset:
        the request's seed, which must be fixed by then); combinatorial mode makes one image per
        combination. Raises InvalidRequest/NotFound naming what is wrong; nothing is changed."""
        prompt, negative = request.prompt, request.negative_prompt
        if request.styles:
            prompt, negative = self.apply_styles(prompt, negative, request.styles)
        count = request.batch_size * request.n_iter
        mode = request.dynamic_prompts
        if mode is None:
            return PromptPlan([(prompt, negative)] * count, styles=list(request.styles))
        seed = request.dynamic_seed if request.dynamic_seed is not None else request.seed
        if mode == "random":
            positives = self.dynamic.expand(prompt, "random", count=count, seed=seed, what="prompt")
            negatives = self.dynamic.expand(negative, "random", count=count, seed=seed, what="negative_prompt")
        else:
            positives = self.dynamic.expand(prompt, "combinatorial", what="prompt")
            negatives = self.dynamic.expand(negative, "combinatorial", what="negative_prompt")
        # As the extension: the negative prompts are repeated (or cut) to one per positive one.
        negatives = negatives or [""]
        negatives = (negatives * (len(positives) // len(negatives) + 1))[: len(positives)]
        return PromptPlan(
            list(zip(positives, negatives, strict=True)),
            styles=list(request.styles),
            dynamic=mode,
            template=prompt,
            negative_template=negative,
        )


def _read_answer(text: str, structured: bool, model: str) -> tuple[str, str]:
    """The prompts from a model's answer: JSON with "prompt" and "negative_prompt"; from a model that
    cannot be held to JSON, a plain-text answer is the prompt."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        if structured:
            raise InvalidRequest(
                f"model '{model}' gave an answer that is not the JSON asked for (it ran out of tokens?): "
                f"{stripped[:200]!r}",
                param="idea",
            ) from None
        if not stripped:
            raise InvalidRequest(f"model '{model}' gave an empty answer", param="idea") from None
        return stripped, ""
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise InvalidRequest(f"model '{model}' answered JSON without a prompt: {stripped[:200]!r}", param="idea")
    negative = data.get("negative_prompt")
    positive = data["prompt"].strip()
    if not positive:
        raise InvalidRequest(f"model '{model}' answered an empty prompt", param="idea")
    return positive, negative.strip() if isinstance(negative, str) else ""
