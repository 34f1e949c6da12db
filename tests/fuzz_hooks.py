"""Schemathesis hooks for fuzzing the studio's APIs: used by tests/test_openapi.py, and by ``st run`` from
the repository root (schemathesis.toml names this file), so a run by hand fuzzes the same way.

Two things JSON Schema cannot say, supplied here:

- What an input image is. The schema declares ``init_images``, ``mask`` and PNG info's ``image`` as
  strings of format ``base64-image``; this file makes them real images (PNG, JPEG or WebP; RGB, grey or
  RGBA; sometimes as a data: URL), all 64×64 so that a mask always fits its image.
- Positive requests that generate stay small, and inside the rules that span several fields, which the
  operation's 400 or 422 documents:
  - images: no saved style names and no braces or wildcards in dynamic prompts (the server has none),
    width and height at most 128, batch_size, n_iter and n at most 2, the hires fix by a scale of
    at most 2 or to a size of 64–256 a side (so batch × width × height and the hires size fit);
  - text: every string at most 100 characters (so the prompt fits the model's context), max_tokens at
    most 4 (set when the request leaves it out), SmolLM2 for a request with a response format or tools
    that names an echo test model (which cannot honour them: a 400), tool names made unique, a
    tool_choice that names a given tool (or "none" without tools), top_logprobs only with logprobs,
    logit_bias tokens under 1000 (every model has those), and a small JSON Schema the llama.cpp grammar
    enforces wherever the request carries one (JSON Schema cannot say which schemas those are);
  - prompt tools: a styles file that is one (import), expansion by the echo test model, and dynamic
    templates without choices or wildcards (the server has no wildcard files);
  - articles (/api/write/article, /api/write/outline): one section of 100 words, every string at most 100
    characters, max_tokens at most 4, an article's outline given (one heading), and the model the echo
    test engine (AIGC_FUZZ_WRITE_MODEL) unless the request names another: a run is several generations,
    and SmolLM2's (tests/test_write_live.py) would take the whole fuzzing budget;
  - half of them (chosen by the case itself, so runs repeat) name the server's own models, so that they
    reach a model rather than a 404: AIGC_FUZZ_TEXT_MODEL (smollm2-135m) and AIGC_FUZZ_IMAGE_MODEL (plain).
  - editing (/api/write/edit): the selection inside the text and not blank, tone only for the tone
    operation, translate into the other language, max_tokens at most 4; these and template runs name
    AIGC_FUZZ_EDIT_MODEL (echo) where they name the server's model or none;
  - templates: a created or edited template's prompt uses exactly its variables, each with a default (so
    a run needs no values), and is the fuzzer's own, never an override of a shipped one (see
    _own_template); an imported one is a valid file; a run gives values for a shipped template's
    required variables.
  - code (/api/code/...): generation by the echo test engine (AIGC_FUZZ_CODE_MODEL) in any case that names
    no model, max_tokens at most 4, repair at most 1, a language the sandbox runs when the turn runs
    code, runs kept tiny (wall 2 s, CPU 1 s, 256 MiB, 64 KiB of output, 8 processes, 8 MiB of temp
    space: a fuzzed program may loop or flood), code and prompts not blank once cut to 100 characters, and
    an edit to block 1 (one past the last is the most a block may be) in a language that runs;
  - comparisons (/api/compare, /api/compare/images): every string at most 100 characters, max_tokens at
    most 4; half of them compare the server's SmolLM2 with the echo test engine (two different models);
    an image comparison is one image per cell (batch_size and n_iter 1, no hires fix, at most 4 steps,
    at most 128 pixels a side) and half of them a grid of two CFG values over the plain engine.
  - inspect (/api/inspect): the file, multipart or base64 in JSON, a real image as for base64-image.
  - arena battles (/api/arena/battles): text ones between the echo test models, at most 4 tokens;
    image ones at most 128 pixels a side and 2 steps (by default 64×64).
  With the plain image engine and SmolLM2 every one takes milliseconds. Negative requests are left as
  generated: the server must refuse each before anything is queued.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tomllib
import zlib
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image

IMAGE_FORMAT = "base64-image"  # aigc_studio.services.a1111_schema.IMAGE_FORMAT
A1111_PATHS = {"/sdapi/v1/txt2img", "/sdapi/v1/img2img"}
TEXT_PATHS = {"/v1/chat/completions", "/v1/completions"}
IMAGES_PATH = "/v1/images/generations"
EDIT_PATH = "/api/write/edit"
TEMPLATE_PATHS = {"/api/templates", "/api/templates/{key}"}  # create or import (POST) and edit (PUT)
RUN_PATH = "/api/templates/{key}/run"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "aigc_studio" / "templates"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # aigc_studio.services.templates.IDENTIFIER
WRITE_PATHS = {"/api/write/article", "/api/write/outline"}
ARENA_PATH = "/api/arena/battles"
MAX_SIDE, MAX_BATCH, MAX_TOKENS = 128, 2, 4
TEXT_MODEL = os.environ.get("AIGC_FUZZ_TEXT_MODEL", "smollm2-135m")
# Editing and template runs: the echo test engine (the operations' prompts are long for SmolLM2 on 2 cores;
# what is fuzzed here is the API, and tests/test_api_editing.py runs a real SmolLM2 edit).
EDIT_MODEL = os.environ.get("AIGC_FUZZ_EDIT_MODEL", "echo")
IMAGE_MODEL = os.environ.get("AIGC_FUZZ_IMAGE_MODEL", "plain")
STYLES_CSV = 'name,prompt,negative_prompt\nfuzzed,"a style, {prompt}",blurry\n'
WRITE_MODEL = os.environ.get("AIGC_FUZZ_WRITE_MODEL", "echo")
CODE_MODEL = os.environ.get("AIGC_FUZZ_CODE_MODEL", "echo")
CODE_GENERATE_PATH = "/api/code/generate"
CODE_RUN_PATH = "/api/code/run"
CODE_EDIT_PATH = "/api/code/sessions/{session_id}/versions"
RUN_NAMES = {"python", "py", "python3", "javascript", "js", "node", "nodejs"}  # contracts.RUN_LANGUAGES
SMALL_RUN = {"wall_seconds": 2, "cpu_seconds": 1, "memory_mb": 256, "processes": 8, "output_kb": 64, "files_mb": 8}
SMALL_SCHEMA = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 4}}, "required": ["a"]}


def _encode(mode: str, colour: int, kind: str, data_url: bool) -> str:
    image = Image.new(mode, (64, 64), colour if mode == "L" else (colour, 255 - colour, colour // 2, 200)[: len(mode)])
    if kind == "JPEG" and mode == "RGBA":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, kind)
    text = base64.b64encode(buf.getvalue()).decode()
    return f"data:image/{kind.lower()};base64,{text}" if data_url else text


images = st.builds(
    _encode,
    st.sampled_from(["RGB", "L", "RGBA"]),
    st.integers(0, 255),
    st.sampled_from(["PNG", "JPEG", "WEBP"]),
    st.booleans(),
)
schemathesis.openapi.format(IMAGE_FORMAT, images)
# /api/inspect's JSON upload (aigc_studio.api.routers.inspect.UPLOAD_FORMAT): a real file to read.
schemathesis.openapi.format("base64-file", images)
INSPECT_PATH = "/api/inspect"


def _over(body: dict, key: str, limit: float) -> bool:
    # a number (an integer may come as 3.0) above the limit
    value = body.get(key)
    return isinstance(value, int | float) and not isinstance(value, bool) and value > limit


def _plain_template(text: str) -> str:
    # No choices, wildcards or variables: a dynamic template that gives itself back.
    for mark in ("{", "}", "$", "__"):
        text = text.replace(mark, "")
    return text


def _small_a1111(body: dict) -> None:
    # Which style names exist, and which prompts are well-formed dynamic templates with wildcard files,
    # JSON Schema cannot say: positive requests name no style and give dynamic prompts plain text.
    if body.get("styles"):
        body["styles"] = []
    if body.get("alwayson_scripts"):
        for key in ("prompt", "negative_prompt"):
            if isinstance(body.get(key), str):
                body[key] = _plain_template(body[key])
    for key in ("width", "height"):
        if _over(body, key, MAX_SIDE):
            body[key] = MAX_SIDE
    for key in ("batch_size", "n_iter"):
        if _over(body, key, MAX_BATCH):
            body[key] = MAX_BATCH
    if _over(body, "hr_scale", 2):
        body["hr_scale"] = 2
    x, y = body.get("hr_resize_x") or 0, body.get("hr_resize_y") or 0
    if x and y:  # both: the picture covers that size
        body["hr_resize_x"], body["hr_resize_y"] = min(max(x, 64), 256), min(max(y, 64), 256)
    elif x or y:  # one: the other follows the aspect ratio, which could leave it under 64
        body["hr_resize_x"] = body["hr_resize_y"] = 0


def _ours(body: dict) -> bool:
    return zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode()) % 2 == 0


def _short(value: object) -> object:
    if isinstance(value, str):
        return value[:100]
    if isinstance(value, list):
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def _small_text(body: dict) -> None:
    body.update(_short(body))
    if _ours(body):
        body["model"] = TEXT_MODEL
    for key in ("max_tokens", "max_completion_tokens"):
        if _over(body, key, MAX_TOKENS):
            body[key] = MAX_TOKENS
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = MAX_TOKENS
    tools = body.get("tools") or []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool["function"]
        if function["name"] in names:
            function["name"] = f"{function['name'][:56]}_{i}"
        names.add(function["name"])
        if function.get("parameters") is not None:
            function["parameters"] = dict(SMALL_SCHEMA)
    choice = body.get("tool_choice")
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    if choice not in (None, "none") and not tools:
        body["tool_choice"] = "none"
    elif named is not None and named not in names:
        body["tool_choice"] = "auto"
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"), dict):
        response_format["json_schema"]["schema"] = dict(SMALL_SCHEMA)
    if body.get("top_logprobs") and not body.get("logprobs"):
        body["top_logprobs"] = None
    constrained = isinstance(response_format, dict) and response_format.get("type") != "text"
    if body.get("model") in ("echo", "echo2") and (constrained or (tools and body.get("tool_choice") != "none")):
        body["model"] = TEXT_MODEL  # the echo test models cannot constrain an answer or call tools (their 400)
    if isinstance(body.get("logit_bias"), dict):
        body["logit_bias"] = {str(int(k) % 1000): v for k, v in body["logit_bias"].items()}


def _small_openai_images(body: dict) -> None:
    if _ours(body):
        body["model"] = IMAGE_MODEL
    if _over(body, "n", MAX_BATCH):
        body["n"] = MAX_BATCH
    if isinstance(body.get("size"), str):
        width, height = (min(int(side), MAX_SIDE) for side in body["size"].split("x"))
        body["size"] = f"{width}x{height}"
    elif "size" not in body:
        body["size"] = f"{MAX_SIDE}x{MAX_SIDE}"


def _small_options(body: dict) -> None:
    options = body.get("options")
    if not isinstance(options, dict):
        options = body["options"] = {}
    if options.get("max_tokens") is None or _over(options, "max_tokens", MAX_TOKENS):
        options["max_tokens"] = MAX_TOKENS
    if isinstance(options.get("stop"), list):
        options["stop"] = [s for s in options["stop"] if s]  # an empty stop string is refused


def _fitting_edit(body: dict) -> None:
    body.update(_short(body))
    if _ours(body) or body.get("model") is None:
        body["model"] = EDIT_MODEL
    text = body.get("text") or ""
    if not text.strip():
        text = body["text"] = "Some text to edit."
    size, op = len(text), body.get("op")
    start = min(body.get("start") or 0, size)
    end = size if body.get("end") is None else min(body["end"], size)
    start, end = min(start, end), max(start, end)
    # the selection must be inside the text and hold something to edit (continue: text before it)
    if not (text[:end] if op == "continue" else text[start:end]).strip():
        start, end = 0, size
    body["start"], body["end"] = start, end
    if op == "tone":
        body["tone"] = (body.get("tone") or "").strip() or "formal"
    else:
        body.pop("tone", None)
    body.pop("target", None)  # translate: into the other language
    _small_options(body)


def _shipped_variables(key: str | None) -> dict:
    """The variables of the shipped template ``key`` ({} when there is none): links from a listing can
    lead the fuzzer to one."""
    path = SHIPPED / f"{key}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")).get("variables", {}) if key and path.is_file() else {}


def _valid_template(body: dict) -> None:
    if "toml" in body:  # an import
        body.clear()
        body["toml"] = IMPORTED
        return
    body.update(_short(body))
    if isinstance(body.get("name"), str) and (SHIPPED / f"{body['name']}.{body.get('language')}.toml").is_file():
        body["name"] = "fuzz-" + body["name"][:58]  # see _own_template
    variables = {k: v for k, v in (body.get("variables") or {}).items() if IDENTIFIER.match(k)}
    for spec in variables.values():
        spec["default"] = spec.get("default") or "x"  # so that running it needs no values
    body["variables"] = variables
    body["prompt"] = "Write about " + " and ".join("{" + name + "}" for name in variables) + "."
    if isinstance(body.get("system"), str):
        body["system"] = body["system"].replace("{", "").replace("}", "")


def _own_template(case) -> None:
    """Edit a template of the fuzzer's own, never a shipped one. Editing a shipped template saves an
    override, and deleting that brings the shipped one back at the same address — as documented, but a
    stateful fuzzer reads it as a deleted resource still served (use after free)."""
    key = (case.path_parameters or {}).get("key")
    if key and (SHIPPED / f"{key}.toml").is_file():
        case.path_parameters["key"] = "fuzz-" + key


IMPORTED = """name = "fuzz-import"
language = "en"
kind = "general"
prompt = "Write about {topic}."

[variables.topic]
default = "the sea"
"""


def _small_write(body: dict, path: str) -> None:
    body.update(_short(body))
    if _ours(body):
        body["model"] = WRITE_MODEL
    body["sections"], body["length"] = 1, 100
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    options["max_tokens"] = min(options.get("max_tokens") or MAX_TOKENS, MAX_TOKENS)
    body["options"] = options
    if path == "/api/write/article":
        body["headings"] = (body.get("headings") or ["One"])[:1]


def _small_run(spec: dict) -> None:
    limits = spec.get("limits") if isinstance(spec.get("limits"), dict) else {}
    for key, most in SMALL_RUN.items():
        if key not in limits or _over(limits, key, most):
            limits[key] = most
    # node needs 8 processes of its own: fewer is a 400 for a JavaScript run, a rule the schema cannot say.
    limits["processes"] = SMALL_RUN["processes"]
    spec["limits"] = limits


def _small_code(body: dict, path: str) -> None:
    body.update(_short(body))
    if path == CODE_GENERATE_PATH:
        body["model"] = CODE_MODEL
        if not str(body.get("prompt") or "").strip():
            body["prompt"] = "write a sort"
        _small_options(body)
        if _over(body, "repair", 1):
            body["repair"] = 1
        if isinstance(body.get("run"), dict):
            _small_run(body["run"])
            if isinstance(body.get("language"), str) and body["language"].strip().lower() not in RUN_NAMES:
                body["language"] = None  # only python and javascript run: another language is a 400
    elif path == CODE_RUN_PATH:
        _small_run(body)
        if isinstance(body.get("code"), str) and not body["code"].strip():
            body["code"] = "print(1)"
    else:  # an edit
        body["block"] = 1
        if not str(body.get("code") or "").strip():
            body["code"] = "print(1)"
        if isinstance(body.get("language"), str) and body["language"].strip().lower() not in RUN_NAMES:
            body["language"] = None  # a version that cannot run would make a later run of it a 400


COMPARE_PATH, COMPARE_IMAGES_PATH = "/api/compare", "/api/compare/images"


# Two valid values for each parameter a grid may vary (a model axis needs two image models: the server has one).
GRID_VALUES = {
    "cfg": [3, 7],
    "steps": [1, 2],
    "sampler": ["Euler", "Euler a"],
    "scheduler": ["Automatic", "Karras"],
    "seed": [1, 2],
    "width": [64, 128],
    "height": [64, 128],
    "denoising": [0.3, 0.6],
    "clip_skip": [1, 2],
}
GRID_VALUES.update(
    {"cfg_scale": GRID_VALUES["cfg"], "sampler_name": GRID_VALUES["sampler"], "denoising_strength": [0.3, 0.6]}
)


def _distinct(names: list) -> list:
    # The same model twice (in any case) is refused; JSON Schema cannot say "distinct, ignoring case".
    seen: set[str] = set()
    out = []
    for i, name in enumerate(names):
        name = name if name.lower() not in seen else f"{name[:90]}-{i}"
        seen.add(name.lower())
        out.append(name)
    return out


def _small_compare(body: dict) -> None:
    body.update(_short(body))
    body["models"] = [TEXT_MODEL, EDIT_MODEL] if _ours(body) else _distinct(body["models"])
    _small_options(body)


def _small_compare_images(body: dict) -> None:
    # Positive requests stay inside the rules the schema cannot say: values each parameter takes, one axis
    # per parameter, at most two axes (models count as one), at least one, one image per cell.
    body.update(_short(body))
    _small_a1111(body)
    body["batch_size"] = body["n_iter"] = 1
    body["enable_hr"] = False
    body["dynamic_prompts"] = None  # refused in a comparison (every cell has the same prompt)
    # ImageRequest declares samplers and schedule types as text (the names are in the descriptions)
    body.update(sampler_name="Euler a", scheduler="Automatic", hr_sampler_name=None, hr_scheduler=None)
    body["hr_upscaler"] = "Latent"
    if _over(body, "steps", 4):
        body["steps"] = 4
    if _ours(body):
        body["model"] = IMAGE_MODEL
        body["models"] = [IMAGE_MODEL]
        body["grid"] = [{"name": "cfg", "values": [3, 7]}]
        return
    models = body["models"] = _distinct(body.get("models") or [])
    grid, names = [], set()
    for axis in body.get("grid") or []:
        name = axis["name"] if axis["name"] in GRID_VALUES else "cfg"
        key = GRID_VALUES[name][0]
        if key in names:
            continue
        names.add(key)
        grid.append({"name": name, "values": GRID_VALUES[name]})
    room = 1 if len(models) >= 2 else 2
    grid = grid[:room]
    if not grid and len(models) < 2:
        grid = [{"name": "cfg", "values": [3, 7]}]
    body["grid"] = grid


def _small_battle(body: dict) -> None:
    # Text battles name the echo test models (two answers per case; SmolLM2's arena path is tested in
    # tests/test_arena_api.py), at most 4 tokens; image battles are small and short.
    body.update(_short(body))
    if body.get("category") != "image":
        body["models"] = ["echo", "echo2"]
        body.pop("image", None)  # image parameters in a text battle are a 400 (a rule across two fields)
        if _over(body, "max_tokens", MAX_TOKENS):
            body["max_tokens"] = MAX_TOKENS
        body.setdefault("max_tokens", MAX_TOKENS)
    elif isinstance(body.get("image"), dict):
        image = body["image"]
        for key in ("width", "height"):
            if _over(image, key, MAX_SIDE):
                image[key] = MAX_SIDE
        if _over(image, "steps", 2):
            image["steps"] = 2
    else:
        body["image"] = {"width": 64, "height": 64, "steps": 2}


def _unnamed_battle(body: dict) -> None:
    # Any case, negative ones too: a text battle the server takes without models would draw SmolLM2 and
    # may ask it for 4096 tokens. Naming the echo models (a valid value) and capping a valid max_tokens
    # leave a negative case negative.
    if body.get("category") != "image" and ("models" not in body or body["models"] == []):
        body["models"] = ["echo", "echo2"]
    tokens = body.get("max_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool) and 1 <= tokens <= 4096:
        body["max_tokens"] = min(tokens, MAX_TOKENS)
    elif "max_tokens" not in body:
        body["max_tokens"] = MAX_TOKENS


@schemathesis.hook
def map_case(context, case):
    """Keep positive generation requests small (see the module's docstring)."""
    meta = case.meta
    path = case.operation.path
    if path == ARENA_PATH and isinstance(case.body, dict):
        _unnamed_battle(case.body)
    if path in WRITE_PATHS and isinstance(case.body, dict) and case.body.get("model") in (None, ""):
        # Any case, negative ones too: a request the server takes without a model (or with "") would run
        # the default model (SmolLM2) for several generations; naming the echo engine changes nothing else.
        case.body["model"] = WRITE_MODEL
    if path == CODE_GENERATE_PATH and isinstance(case.body, dict) and case.body.get("model") in (None, ""):
        case.body["model"] = CODE_MODEL  # as for articles: never a whole turn of SmolLM2 by default
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return case
    if path == INSPECT_PATH and "file" in case.body:
        # a multipart upload: a real image, one of the drawn kinds (as for base64-image)
        choice = zlib.crc32(repr(case.body["file"]).encode())
        kind = ("PNG", "JPEG", "WEBP")[choice % 3]
        case.body["file"] = base64.b64decode(_encode("RGB", choice % 256, kind, False))
    if path in A1111_PATHS:
        _small_a1111(case.body)
    elif path in TEXT_PATHS:
        _small_text(case.body)
    elif path == IMAGES_PATH:
        _small_openai_images(case.body)
    elif path == "/api/prompts/wildcards/preview" and isinstance(case.body.get("template"), str):
        case.body["template"] = _plain_template(case.body["template"])
    elif path == "/api/prompts/styles.csv":
        case.body["csv"] = STYLES_CSV
    elif path == "/api/prompts/expand":
        case.body["model"] = "echo"  # the test model answers at once; tests/test_prompt_craft_live.py runs SmolLM2
    elif path == EDIT_PATH:
        _fitting_edit(case.body)
    elif path in TEMPLATE_PATHS and case.operation.method.upper() in ("POST", "PUT"):
        _own_template(case)
        _valid_template(case.body)
    elif path == RUN_PATH:
        case.body.update(_short(case.body))
        # the fuzzer's templates give every variable a default; a shipped one gets its required ones
        required = _shipped_variables((case.path_parameters or {}).get("key"))
        case.body["variables"] = {name: "x" for name, spec in required.items() if "default" not in spec}
        # always a model the server has: the stateful phase reads a 404 for an unknown model as the
        # template it just created not being found (an unknown model's 404 is fuzzed on /v1)
        case.body["model"] = EDIT_MODEL
        _small_options(case.body)
    elif path in WRITE_PATHS:
        _small_write(case.body, path)
    elif path in (CODE_GENERATE_PATH, CODE_RUN_PATH, CODE_EDIT_PATH):
        _small_code(case.body, path)
    elif path == COMPARE_PATH:
        _small_compare(case.body)
    elif path == COMPARE_IMAGES_PATH:
        _small_compare_images(case.body)
    elif path == ARENA_PATH:
        _small_battle(case.body)
    return case
