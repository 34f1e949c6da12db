"""AUTOMATIC1111 compatibility: an A1111 txt2img/img2img request made into an ``ImageRequest`` by the
field table (``a1111_fields``), and A1111's options, stored and reported.

A field the studio cannot honour at the value sent is refused with a 422 that names it, before anything
is queued, so an A1111 client gets either what it asked for or the reason it cannot. A field a client
leaves out takes A1111's API default (50 steps, sampler Euler, inpaint "only masked" ...), so a client
that relies on A1111's defaults gets A1111's behaviour; the CLI and the web UI keep the studio's defaults.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import ValidationError

from ..access import require_admin
from ..config import Config, save_setting
from ..contracts import ImageRequest, Mode, limits_of
from ..errors import InvalidRequest, NotFound
from ..images.infotext import parse_infotext, to_request_fields
from ..models.registry import ModelInfo
from ..storage.db import Database
from .a1111_fields import (
    DYNAMIC_PROMPTS_ARGS,
    DYNAMIC_PROMPTS_SCRIPT,
    IMG2IMG,
    INFOTEXT_OPTIONS,
    OPTIONS,
    TIMESTEP_SAMPLERS,
    TXT2IMG,
    Honoured,
    Neutral,
    Option,
    dynamic_prompts_arg_problem,
)
from .a1111_schema import DYNAMIC_PROMPTS_PATTERN, NAME_FIELDS
from .images import ImageService, decode_base64, open_image
from .models import ModelService

__all__ = ["A1111Service", "Endpoint", "Prepared", "decode_b64_image"]

log = logging.getLogger("aigc_studio.a1111")

Endpoint = Literal["txt2img", "img2img"]
TABLES = {"txt2img": TXT2IMG, "img2img": IMG2IMG}
# Keys of a pasted infotext that are not request fields: the model stays the one asked for, as with
# A1111's default "disregard checkpoint information from pasted infotext" (disable_weights_auto_swap).
_INFOTEXT_SKIPPED = {"sd_model_hash", "sd_model_checkpoint", "clip_skip"}
_HIRES_KEYS = {"hr_scale", "hr_upscaler", "hr_resize_x", "hr_resize_y", "hr_second_pass_steps"}


def decode_b64_image(
    data: object, what: str, open_image: Callable[[bytes, str], Image.Image] = open_image
) -> Image.Image:
    """A base64 image (or data URL, as browsers send) -> PIL image, with an error naming ``what``;
    ``open_image`` decodes it (``ImageService.open_image`` applies the studio's pixel limit)."""
    if not isinstance(data, str):
        raise InvalidRequest(f"{what} must be a base64-encoded image (a string), got {type(data).__name__}", param=what)
    return open_image(decode_base64(data, what), what)


@dataclass
class Prepared:
    """An A1111 request made ready to queue: ``ImageService.submit(request, mode, **submit)``."""

    request: ImageRequest
    mode: Mode
    submit: dict[str, Any]
    send_images: bool
    echo: dict[str, Any]
    persist: dict[str, Any] = field(default_factory=dict)  # options kept afterwards (restore_afterwards false)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _cast(raw: str, default: object) -> object:
    """An infotext value (text) as the type of the option's default, as A1111's ``opts.cast_value``."""
    if isinstance(default, bool):
        return raw.strip().lower() == "true"
    for kind in (int, float):
        if isinstance(default, kind):
            try:
                return kind(raw)
            except ValueError:
                return raw
    return raw


def _type_ok(value: object, default: object) -> bool:
    """Whether ``value`` has the JSON type of ``default`` (what the schema declares for the option)."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):  # a JSON integer: 3 or 3.0, never 3.5
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


class A1111Service:
    def __init__(self, db: Database, images: ImageService, models: ModelService, config: Config):
        self.db = db
        self.images = images
        self.models = models
        self.config = config

    # -- generation ------------------------------------------------------------------------------

    def prepare(self, sent: dict[str, Any], endpoint: Endpoint) -> Prepared:
        """Check an A1111 request field by field and make the ImageRequest; raises a 4xx naming every
        field that cannot be honoured. Nothing is queued or stored here."""
        table = TABLES[endpoint]
        fields = {k: v for k, v in sent.items() if v is not None}
        errors: list[tuple[str, str]] = []
        for name in sent:
            if name not in table:
                close = [f for f in table if f.startswith(name)] or difflib.get_close_matches(name, list(table), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                errors.append((name, f"{name}: A1111's {endpoint} request has no such field{hint}"))
        for name in (*NAME_FIELDS, "sampler_index"):
            if isinstance(fields.get(name), str):
                # Spaces around a name do not count (ImageRequest strips them): whitespace alone is "".
                fields[name] = fields[name].strip()
        if fields.get("sampler_index"):
            # Checked even where sampler_name wins, so that a value the schema refuses is refused.
            problem = self._sampler_problem(fields["sampler_index"])
            if problem:
                errors.append(("sampler_index", f"sampler_index: {problem}"))
        infotext = fields.get("infotext") or ""
        if len(infotext) > 20_000:
            errors.append(("infotext", f"infotext: at most 20000 characters, got {len(infotext)}"))
        overrides = dict(fields.get("override_settings") or {})
        origins: dict[str, str] = {}  # option -> the infotext label it came from
        if infotext and len(infotext) <= 20_000:
            origins = self._apply_infotext(infotext, endpoint, fields, overrides)

        request_fields: dict[str, Any] = {}
        defaults: dict[str, Any] = {}
        for name, policy in table.items():
            value = fields.get(name)
            if isinstance(policy, Honoured):
                # As in A1111 ("sampler_name or sampler_index", "hr_sampler_name or sampler_name"), an
                # empty text means the field's default.
                if value is not None and value != "" and value not in policy.same:
                    request_fields[policy.field] = value
                elif value is None and policy.a1111_default is not None:
                    defaults[policy.field] = policy.a1111_default
            elif isinstance(policy, Neutral) and not policy.accepts(value):
                errors.append((name, self._refusal(name, policy, value)))
        if "sampler_name" not in request_fields:
            if fields.get("sampler_index"):
                request_fields["sampler_name"] = fields["sampler_index"]
            else:
                defaults["sampler_name"] = "Euler"  # A1111's API default (sampler_index), not the studio's
        if endpoint == "img2img":
            self._mask_blur(fields, request_fields, errors)
        self._styles(fields, request_fields, errors)
        self._alwayson(fields, request_fields, errors)

        model, persist = self._overrides(overrides, origins, request_fields, defaults, errors)
        if fields.get("override_settings_restore_afterwards") is False:
            lasting = [k for k in overrides if OPTIONS.get(k) and OPTIONS[k].kind in ("field", "neutral")]
            lasting = [k for k in lasting if not OPTIONS[k].is_default(overrides[k])]
            if lasting:
                errors.append(
                    (
                        "override_settings_restore_afterwards",
                        "override_settings_restore_afterwards: false keeps the overrides for later generations, "
                        "and the studio keeps only sd_model_checkpoint, CLIP_stop_at_last_layers and "
                        f"token_merging_ratio, not "
                        f"{', '.join(lasting)}",
                    )
                )
        else:
            persist = {}
        if persist:
            # Kept overrides change the server's settings for everyone: refused before anything is queued.
            require_admin("override_settings_restore_afterwards false (it keeps the overrides as server settings)")
        if errors:
            raise InvalidRequest("; ".join(message for _, message in errors), param=errors[0][0])

        submit: dict[str, Any] = {"defaults": defaults, "keep": not fields.get("do_not_save_samples", False)}
        mode: Mode = "txt2img"
        if endpoint == "img2img":
            init_images = fields.get("init_images") or []
            if not isinstance(init_images, list):
                raise InvalidRequest("init_images must be a list of base64 images", param="init_images")
            if not init_images:
                raise InvalidRequest("init_images must hold one base64 image", param="init_images")
            submit["init_image"] = decode_b64_image(init_images[0], "init_images", self.images.open_image)
            if fields.get("mask"):
                submit["mask"] = decode_b64_image(fields["mask"], "mask", self.images.open_image)
            mode = "inpaint" if "mask" in submit else "img2img"
        if model is not None:
            request_fields["model"] = model.id
        return Prepared(
            request=ImageRequest(**request_fields),
            mode=mode,
            submit=submit,
            send_images=fields.get("send_images", True) is not False,
            echo=self._echo(sent),
            persist=persist,
        )

    def finish(self, prepared: Prepared) -> None:
        """After a request ran: keep its override settings when it asked to (restore_afterwards false)."""
        if prepared.persist:
            self.set_options(prepared.persist, load=False)

    @staticmethod
    def _refusal(name: str, policy: Neutral, value: object) -> str:
        if name == "script_name":
            return f"script_name: Script {value!r} not found ({policy.why})"
        return f"{name}: {policy.why}; accepted only as {policy.allowed_text()}, got {_json(value)}"

    def _apply_infotext(self, text: str, endpoint: Endpoint, fields: dict, overrides: dict) -> dict[str, str]:
        # As A1111's apply_infotext: a parameter fills a field only when the request did not set it, and
        # the options the infotext names join override_settings unless those already set them.
        parsed = parse_infotext(text)
        derived = to_request_fields(parsed)
        table = TABLES[endpoint]
        for name, value in derived.items():
            if name in table and name not in _INFOTEXT_SKIPPED and fields.get(name) is None:
                fields[name] = value
        # A1111 turns the hires fix on when the infotext has a hires parameter and a denoising strength.
        hires = "denoising_strength" in derived and _HIRES_KEYS & set(derived)
        if endpoint == "txt2img" and hires and fields.get("enable_hr") is None:
            fields["enable_hr"] = True
        origins = {}
        for label, key in INFOTEXT_OPTIONS.items():
            if label in parsed.params and key not in overrides:
                overrides[key] = _cast(parsed.params[label], OPTIONS[key].default)
                origins[key] = label
        return origins

    def _styles(self, fields: dict, request_fields: dict, errors: list) -> None:
        # Checked here so that an unknown name is a 422 like every other refused field (the studio's own
        # API answers 404 for it).
        names = fields.get("styles") or []
        if not names:
            return
        craft = self.images.prompt_craft
        if craft is None:
            errors.append(("styles", "styles: this studio has no prompt service to apply them"))
            return
        try:
            craft.styles.resolve(list(names))
        except NotFound as exc:
            errors.append(("styles", f"styles: {exc.message}"))
            return
        request_fields["styles"] = list(names)

    @staticmethod
    def _alwayson(fields: dict, request_fields: dict, errors: list) -> None:
        # The sd-dynamic-prompts extension is the one always-on script the studio runs (see a1111_fields).
        scripts = fields.get("alwayson_scripts") or {}
        if len(scripts) > 1:
            names = ", ".join(repr(name) for name in scripts)
            errors.append(("alwayson_scripts", f"alwayson_scripts: one script at most (Dynamic Prompts), got {names}"))
            return
        for name, value in scripts.items():
            if not re.fullmatch(DYNAMIC_PROMPTS_PATTERN, name):
                errors.append(
                    (
                        "alwayson_scripts",
                        f"alwayson_scripts: always on script {name!r} not found (the studio runs only "
                        f"{DYNAMIC_PROMPTS_SCRIPT.title()!r}, as the sd-dynamic-prompts extension is called)",
                    )
                )
                continue
            args = value.get("args", []) if isinstance(value, dict) and set(value) <= {"args"} else None
            if not isinstance(args, list) or len(args) > len(DYNAMIC_PROMPTS_ARGS):
                errors.append(
                    (
                        "alwayson_scripts",
                        f'alwayson_scripts.{name}: give {{"args": [...]}} with at most '
                        f"{len(DYNAMIC_PROMPTS_ARGS)} script args",
                    )
                )
                continue
            values = [*args, *(default for _, _, default in DYNAMIC_PROMPTS_ARGS[len(args) :])]
            problems = [
                f"alwayson_scripts.{name}.args[{i}] ({DYNAMIC_PROMPTS_ARGS[i][0]}): {problem}"
                for i, value in enumerate(args)
                if (problem := dynamic_prompts_arg_problem(i, value))
            ]
            if problems:
                errors += [("alwayson_scripts", problem) for problem in problems]
            elif values[0]:
                request_fields["dynamic_prompts"] = "combinatorial" if values[1] else "random"

    @classmethod
    def _mask_blur(cls, fields: dict, request_fields: dict, errors: list) -> None:
        # A1111: mask_blur sets both directions; without it, mask_blur_x and mask_blur_y (default 4 each).
        # Either way each is checked: the schema declares their range whether or not they apply.
        for key in ("mask_blur_x", "mask_blur_y"):
            if fields.get(key) is None:
                continue
            problem = cls._field_problem(key, fields[key])
            if problem:
                errors.append((key, f"{key}: {problem}"))
            elif "mask_blur" not in fields:
                request_fields[key] = fields[key]

    def _overrides(
        self, overrides: dict, origins: dict, request_fields: dict, defaults: dict, errors: list
    ) -> tuple[ModelInfo | None, dict]:
        """Apply a request's override_settings (and the options its infotext names, ``origins``); returns
        the model they name and the options that could be kept afterwards."""
        model = None
        persist: dict[str, Any] = {}
        sampler = self._sampler(request_fields.get("sampler_name") or defaults.get("sampler_name"))
        for key, value in overrides.items():
            where = f"infotext {origins[key]!r} ({key})" if key in origins else f"override_settings.{key}"
            option = OPTIONS.get(key)
            if option is None:
                errors.append(
                    (
                        where,
                        f"{where}: not an A1111 option the studio knows, so it cannot say what it "
                        "would change; known options: GET /sdapi/v1/options",
                    )
                )
                continue
            if key == "sd_model_checkpoint":
                if value is not None and not isinstance(value, str):
                    errors.append((where, f"{where}: must be a model name (text) or null, got {_json(value)}"))
                elif value:
                    model = self.models.resolve_checkpoint(value)
                    persist[key] = model.id
            elif key == "CLIP_stop_at_last_layers":
                problem = self._clip_skip_problem(value)
                if problem:
                    errors.append((where, f"{where}: {problem}"))
                else:
                    # A1111's request has no clip_skip field
                    request_fields.setdefault("clip_skip", int(value))
                    persist[key] = int(value)
            elif key == "token_merging_ratio":
                problem = self._token_merging_problem(value)
                if problem:
                    errors.append((where, f"{where}: {problem}"))
                else:  # 0 too: it turns the setting off for this request
                    request_fields.setdefault("token_merging_ratio", float(value))
                    persist[key] = float(value)
            elif option.kind == "field":
                problem = self._field_option_problem(option, value)
                if problem:
                    errors.append((where, f"{where}: {problem}"))
                elif not option.is_default(value) and option.field not in request_fields:
                    applies = key != "eta_ddim" if sampler not in TIMESTEP_SAMPLERS else key != "eta_ancestral"
                    if applies:
                        request_fields[option.field] = value
            elif option.kind == "neutral" and not option.is_default(value):
                errors.append(
                    (where, f"{where}: {option.why}; accepted only as {option.neutral_text()}, got {_json(value)}")
                )
            elif option.kind == "inert":
                if not _type_ok(value, option.default):
                    errors.append((where, f"{where}: must be like {_json(option.default)}, got {_json(value)}"))
                else:
                    persist[key] = value
        return model, persist

    @classmethod
    def _field_option_problem(cls, option: Option, value: object) -> str | None:
        # Checked whether or not it applies (eta_ddim with an ancestral sampler): the schema declares
        # the option's range, so a value out of it is refused either way.
        if not _type_ok(value, option.default):
            return f"must be like {_json(option.default)}, got {_json(value)}"
        return cls._field_problem(str(option.field), value)

    @staticmethod
    def _field_problem(field: str, value: object) -> str | None:
        """What is wrong with ``value`` for ImageRequest's ``field``, or None."""
        try:
            ImageRequest(**{field: value})
        except ValidationError as exc:
            return exc.errors()[0]["msg"].removeprefix("Value error, ") + f", got {_json(value)}"
        return None

    @staticmethod
    def _sampler_problem(name: str) -> str | None:
        try:
            ImageRequest(sampler_name=name)
        except ValidationError as exc:
            return exc.errors()[0]["msg"].removeprefix("Value error, ")
        return None

    @staticmethod
    def _sampler(name: object) -> str | None:
        try:
            return ImageRequest(sampler_name=name).sampler_name if isinstance(name, str) else None
        except ValidationError:
            return None  # the request itself reports it

    @staticmethod
    def _clip_skip_problem(value: object) -> str | None:
        if not _type_ok(value, 1):  # a JSON integer: 2 or 2.0
            return f"must be a whole number from 1 to 12, got {_json(value)}"
        try:
            ImageRequest(clip_skip=int(value))
        except ValidationError as exc:
            return exc.errors()[0]["msg"] + f", got {value}"
        return None

    @staticmethod
    def _token_merging_problem(value: object) -> str | None:
        limits = limits_of(ImageRequest, "token_merging_ratio")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not limits["ge"] <= value <= limits["le"]:
            return f"must be a number from {limits['ge']:g} to {limits['le']:g}, got {_json(value)}"
        return None

    @staticmethod
    def _echo(sent: dict) -> dict:
        """The request as A1111 echoes it in ``parameters``: input images left out unless asked for."""
        echoed = dict(sent)
        if not echoed.get("include_init_images"):
            for key in ("init_images", "mask"):
                if key in echoed:
                    echoed[key] = None
        return echoed

    # -- options ---------------------------------------------------------------------------------

    def checkpoint(self, info: ModelInfo) -> dict:
        """A model as A1111's /sd-models lists a checkpoint: title "name [hash]", hash, sha256, file."""
        sha = self.images.registry.sha256(info)
        short = sha[:10] if sha else None
        return {
            "title": f"{info.id} [{short}]" if short else info.id,
            "model_name": info.id,
            "hash": short,
            "sha256": sha,
            "filename": info.path or info.id,
            "config": None,
        }

    def options(self) -> dict[str, Any]:
        """A1111's options as the studio holds them: stored values, the studio's own where it has one."""
        values = {key: option.default for key, option in OPTIONS.items()}
        values.update(self._stored())
        images_dir = str(self.config.outputs_dir / "images")
        for key in ("outdir_samples", "outdir_txt2img_samples", "outdir_img2img_samples"):
            values[key] = images_dir
        registry = self.images.registry
        try:
            title = self.checkpoint(registry.resolve(registry.default_image_model, kind="image"))["title"]
        except InvalidRequest:
            title = None  # no image model installed
        values["sd_model_checkpoint"] = title
        values["sd_checkpoint_hash"] = title.split("[")[-1].rstrip("]") if title and "[" in title else None
        values["CLIP_stop_at_last_layers"] = int(self.config.values.get("clip_skip", 1))
        values["token_merging_ratio"] = float(self.config.values.get("token_merging_ratio", 0.0))
        return values

    def set_options(self, options: dict[str, Any], *, load: bool = True) -> None:
        """A1111's POST /options: keeps the options it knows (the model and clip skip are studio settings,
        options that change no image are stored) and ignores unknown keys, as A1111 does. An option that
        would change later images in a way the studio cannot is refused, and then nothing is set. They are
        the server's settings: on a team server only an admin may set them."""
        require_admin("setting A1111 options (server settings)")
        errors: list[tuple[str, str]] = []
        model: ModelInfo | None = None
        stored: dict[str, Any] = {}
        for key, value in options.items():
            option = OPTIONS.get(key)
            if option is None:
                continue
            if key == "sd_model_checkpoint":
                if value is not None and not isinstance(value, str):
                    errors.append((key, f"{key}: must be a model name (text) or null, got {_json(value)}"))
                elif value:
                    model = self.models.resolve_checkpoint(value)
            elif key == "CLIP_stop_at_last_layers":
                problem = self._clip_skip_problem(value)
                if problem:
                    errors.append((key, f"{key}: {problem}"))
            elif key == "token_merging_ratio":
                problem = self._token_merging_problem(value)
                if problem:
                    errors.append((key, f"{key}: {problem}"))
            elif option.kind in ("field", "neutral") and not option.is_default(value):
                why = option.why or f"the studio keeps no global {option.field}; set it per request"
                errors.append((key, f"{key}: {why}; only {option.neutral_text()} can be set here"))
            elif option.kind == "inert":
                if not _type_ok(value, option.default):
                    errors.append((key, f"{key}: must be like {_json(option.default)}, got {_json(value)}"))
                else:
                    stored[key] = value
        if errors:
            raise InvalidRequest("; ".join(message for _, message in errors), param=errors[0][0])
        ignored = sorted(set(options) - set(OPTIONS))
        if ignored:
            log.info("ignored options that A1111 or the studio does not know: %s", ", ".join(ignored))
        if "CLIP_stop_at_last_layers" in options:
            save_setting("clip_skip", int(options["CLIP_stop_at_last_layers"]))
            self.config.values["clip_skip"] = int(options["CLIP_stop_at_last_layers"])
        if "token_merging_ratio" in options:
            save_setting("token_merging_ratio", float(options["token_merging_ratio"]))
            self.config.values["token_merging_ratio"] = float(options["token_merging_ratio"])
        if stored:
            with self.db.tx() as conn:
                conn.executemany(
                    "INSERT INTO a1111_options (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [(key, _json(value)) for key, value in stored.items()],
                )
        if model is not None:
            if load:
                # As in A1111, setting the checkpoint loads it, so the next generation starts warm; loading
                # first leaves the default as it was when the model cannot load.
                self.images.registry.image_engine(model.id)
            self.models.set_default(model.id, kind="image")

    def _stored(self) -> dict[str, Any]:
        rows = self.db.conn.execute("SELECT key, value FROM a1111_options")
        stored = {row["key"]: json.loads(row["value"]) for row in rows if row["key"] in OPTIONS}
        # A value of another type than the option's (stored by an older studio) is reported as the default.
        return {key: value for key, value in stored.items() if _type_ok(value, OPTIONS[key].default)}
