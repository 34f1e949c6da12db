"""Settings: one place that says where state lives and what the defaults are.

Precedence, highest first: a CLI flag, an environment variable (``AIGC_*``), the config file
``$AIGC_HOME/config.toml``, the built-in default. Every setting is declared once in ``SETTINGS``, with
the check its value must pass, so the CLI help, the environment names, the config file keys and what is
refused cannot drift apart. A value the studio could not start with is refused where it is read or
saved, with the key and where it came from (the file, the variable).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .access import require_admin
from .errors import SettingError
from .storage.files import write_atomic


def _integer(value: object) -> int:
    # TOML gives ints; variables, flags and UI boxes give strings. A bool or a float is a mistake.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError


def integer(low: int, high: int | None = None) -> Callable[[object], int]:
    """A check: an integer from ``low`` to ``high`` (no upper end when None)."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"

    def check(value: object) -> int:
        try:
            number = _integer(value)
        except ValueError:
            raise ValueError(f"must be {allowed}, got {value!r}") from None
        if number < low or (high is not None and number > high):
            raise ValueError(f"must be {allowed}, got {number}")
        return number

    return check


def number(low: float, high: float) -> Callable[[object], float]:
    """A check: a number from ``low`` to ``high`` (a variable or a UI box may give it as text)."""
    allowed = f"a number from {low:g} to {high:g}"

    def check(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ValueError(f"must be {allowed}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValueError(f"must be {allowed}, got {value!r}")
        return float(value)

    return check


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def host(value: object) -> str:
    """A check: an IP address (v4 or v6) or a host name (letters, digits, hyphens, dot-separated labels)."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text:
        try:
            ipaddress.ip_address(text)
            return text
        except ValueError:
            labels = text.removesuffix(".").split(".")
            # An all-digit last label is a mistyped address (999.1.1.1), never a host name.
            named = len(labels) == 1 or not labels[-1].isdigit()
            if len(text) <= 253 and named and all(_HOST_LABEL.fullmatch(label) for label in labels):
                return text
    raise ValueError(f"must be an IP address (127.0.0.1, ::1, 0.0.0.0) or a host name (localhost), got {value!r}")


def is_loopback(name: str) -> bool:
    """Whether binding ``name`` serves this machine alone: a loopback address or ``localhost``. Any other
    name may resolve to an address that others reach, so it counts as not loopback."""
    if name.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip()).is_loopback
    except ValueError:
        return False


def text(required: bool) -> Callable[[object], str]:
    """A check: a string; with ``required``, not an empty one."""

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be text, got {value!r}")
        if required and not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    return check


def boolean(value: object) -> bool:
    """A check: true or false (a variable may say 1/0, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"must be true or false, got {value!r}")


def choice(*options: str) -> Callable[[object], str]:
    """A check: one of ``options`` (case-insensitive; the option as declared is returned)."""

    def check(value: object) -> str:
        if isinstance(value, str):
            for option in options:
                if value.strip().lower() == option.lower():
                    return option
        raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")

    check.options = options  # the UI offers these in a drop-down
    return check


def device(value: object) -> str:
    """A check: a torch device for transformers models (auto, cpu, cuda, cuda:N)."""
    if isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d{1,2})?", value.strip()):
        return value.strip()
    raise ValueError(f"must be auto, cpu, cuda or cuda:N (N a GPU index), got {value!r}")


def ray_address(value: object) -> str:
    """A check: a Ray cluster address for ``aigc serve --ray``: empty, auto, ray://HOST:PORT or HOST:PORT."""
    text_value = value.strip() if isinstance(value, str) else value
    if isinstance(text_value, str) and (
        text_value in ("", "auto") or re.fullmatch(r"(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}", text_value)
    ):
        return text_value
    raise ValueError(f"must be empty (a local cluster), auto, ray://HOST:PORT or HOST:PORT, got {value!r}")


def database_url(value: object) -> str:
    """A check: empty (the SQLite file under AIGC_HOME) or a postgresql:// URL."""
    if not isinstance(value, str):
        raise ValueError(f"must be text, got {value!r}")
    url = value.strip()
    if url and not url.startswith(("postgresql://", "postgres://")):
        # Only the scheme is quoted back: the rest may hold a password.
        scheme = url.split("://", 1)[0] + "://" if "://" in url else url[:12]
        raise ValueError(f"must be empty (SQLite under AIGC_HOME) or a postgresql:// URL, got one starting {scheme!r}")
    return url


@dataclass(frozen=True)
class Setting:
    key: str
    default: object
    help: str
    # Returns the value to use, or raises ValueError saying what is allowed ("must be ..., got ...").
    # None: the check that the default's type implies (true/false, an integer of at least 0, text).
    check: Callable[[object], object] | None = None

    @property
    def env(self) -> str:
        return "AIGC_" + self.key.upper()

    def parse(self, value: object, where: str) -> object:
        """``value`` as the studio uses it; SettingError naming the key and ``where`` if it is refused."""
        check = self.check
        if check is None:
            kind = type(self.default)
            check = boolean if kind is bool else integer(0) if kind is int else text(required=False)
        try:
            return check(value)
        except ValueError as exc:
            prefix = f"{where}: " if where else ""
            raise SettingError(f"{prefix}{self.key} {exc}", param=self.key) from None


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("host", "127.0.0.1", "Address the server binds to; loopback unless you say otherwise.", host),
        Setting("port", 7860, "Port of the web UI and the APIs.", integer(1, 65535)),
        Setting(
            "auth",
            "auto",
            "Sign-in for the server: auto (required when host is not a loopback address, off on 127.0.0.1) or on"
            " (always required). With it, every route but /health and /docs needs a user's API key, password or"
            " web session.",
            choice("auto", "on"),
        ),
        Setting(
            "database_url",
            "",
            "Where the studio keeps its records: empty, the SQLite file AIGC_HOME/studio.db; or a PostgreSQL"
            " database, postgresql://USER@HOST:PORT/NAME (a team server's). Keep the password out of the URL"
            " (the Settings tab shows it): libpq reads PGPASSWORD or ~/.pgpass. Files stay under AIGC_HOME."
            " Takes effect on restart.",
            database_url,
        ),
        Setting("model", "smollm2-135m", "Default text model id or alias.", text(required=True)),
        Setting(
            "image_model",
            "",
            "Default image model id or alias (unset: the image model added last).",
            text(required=False),
        ),
        Setting("threads", 0, "CPU threads for llama.cpp (0: all cores).", integer(0, 1024)),
        Setting(
            "context",
            0,
            "Context length of each request to a local text model (0: the model's trained length, up to 4096"
            " per slot for llama.cpp models; a transformers model never goes past its trained length).",
            integer(0),
        ),
        Setting(
            "parallel",
            4,
            "Requests a llama.cpp model decodes together (its slots); each slot holds its own context, so"
            " memory grows with parallel × context.",
            integer(1, 64),
        ),
        Setting(
            "prompt_batch",
            128,
            "Prompt tokens a llama.cpp model evaluates per step. A longer prompt is read in steps, reporting"
            " its progress after each, and the model's other answers go on between the steps; larger steps"
            " read long prompts faster on a GPU.",
            integer(16, 8192),
        ),
        Setting(
            "device",
            "auto",
            "Where transformers models run: auto (CUDA when torch sees a GPU, else the CPU), cpu, cuda or cuda:N.",
            device,
        ),
        Setting("max_loaded", 2, "Text models kept loaded at once; the default model is always kept.", integer(1, 64)),
        Setting(
            "model_memory",
            "both",
            "Which models stay in memory: both (the default text model and the current image model) or one"
            " (loading either kind frees the other once nothing runs on it; for machines short of memory).",
            choice("both", "one"),
        ),
        Setting(
            "max_body_mb",
            64,
            "Largest request body the server accepts, in MiB (uploaded images included).",
            integer(1, 4096),
        ),
        # Limits per user (services/limits.py): 0 is no limit, the local default, where one person
        # uses the studio and a comparison or a bench runs many generations at once.
        Setting(
            "rate_limit_per_minute",
            0,
            "Requests a user may send to the APIs a minute (a burst of that many after a quiet minute); 0: no limit.",
            integer(0, 1_000_000),
        ),
        Setting(
            "max_concurrent_jobs",
            0,
            "Generations a user may have running or queued at once (text answers being streamed, image jobs);"
            " 0: no limit.",
            integer(0, 10_000),
        ),
        Setting(
            "max_upload_mb",
            64,
            "Largest uploaded file (an image for img2img, inpainting or PNG info, a file to inspect), in MiB.",
            integer(1, 4096),
        ),
        Setting(
            "max_tokens_per_request",
            0,
            "Most new tokens one text request may ask for (max_tokens); a request that sets none gets at most"
            " this many; 0: no limit.",
            integer(0, 1_000_000),
        ),
        Setting(
            "max_request_megapixels",
            0,
            "Most pixels one image request may make, in megapixels: width × height (after hires fix) ×"
            " batch_size × n_iter; 0: no limit.",
            integer(0, 100_000),
        ),
        Setting(
            "max_image_megapixels",
            64,
            "Largest image the studio decodes, in megapixels (width × height ÷ 1,000,000).",
            integer(1, 178),  # past 178, Pillow's own guard against decompression bombs refuses first
        ),
        Setting(
            "clip_skip",
            1,
            "Clip skip of image generations that do not set one (A1111's CLIP_stop_at_last_layers option).",
            integer(1, 12),
        ),
        Setting(
            "token_merging_ratio",
            0.0,
            "Token merging (tomesd) of image generations that do not set one, 0 to 0.9 (A1111's option of the"
            " same name): faster, changes the picture; 0: off.",
            number(0, 0.9),
        ),
        Setting(
            "image_compile",
            False,
            "Compile each image model's UNet with torch.compile (needs a C compiler): the first image after"
            " loading a model waits minutes for it; runs uncompiled when compiling fails.",
        ),
        Setting(
            "image_openvino",
            False,
            "Run each image model's UNet and VAE decoder on OpenVINO (CPU): faster (SD 1.5 on 2 cores: 1.15-1.19×),"
            " the same picture, more memory; the first image of a model waits minutes while it converts (once;"
            " kept in the cache).",
        ),
        # The most a code run may ask for (see contracts.RunLimits for each one's default and ceiling).
        Setting("run_max_wall_seconds", 60, "Most wall-clock seconds a code run may ask for.", integer(1, 600)),
        Setting("run_max_cpu_seconds", 60, "Most CPU seconds per process a code run may ask for.", integer(1, 600)),
        Setting("run_max_memory_mb", 2048, "Most memory (MiB per process) a code run may ask for.", integer(16, 65536)),
        Setting("run_max_processes", 128, "Most processes a code run may ask for.", integer(1, 1024)),
        Setting("run_max_output_kb", 16384, "Most output (KiB) a code run may ask for.", integer(1, 1048576)),
        Setting("run_max_files_mb", 512, "Most temp-dir space (MiB) a code run may ask for.", integer(1, 4096)),
        # AI-generated content labels (GB 45438-2025, IPTC, C2PA): all on by default; see labels/.
        Setting(
            "label_visible",
            True,
            "Draw the visible AI-generated mark in a corner of every generated image.",
        ),
        Setting(
            "label_language", "zh", "Language of visible labels: zh (AI生成), en (AI-generated).", choice("zh", "en")
        ),
        Setting(
            "label_position",
            "bottom-right",
            "Corner of the visible image mark.",
            choice("bottom-right", "bottom-left", "top-right", "top-left"),
        ),
        Setting("label_opacity", 80, "Opacity of the visible image mark, in percent.", integer(10, 100)),
        Setting(
            "label_text",
            True,
            "Add a label line (本文由人工智能生成 / Generated by AI) to generated text that is exported or copied.",
        ),
        Setting("label_text_position", "end", "Where the text label line goes: start or end.", choice("start", "end")),
        Setting(
            "label_metadata",
            True,
            "Write the implicit labels (TC260 AIGC field, IPTC digital source type) into every file.",
        ),
        Setting(
            "aigc_producer",
            "AIGC-Studio",
            "ContentProducer code written in the implicit AIGC label (your organisation's code, if it has one).",
            text(required=True),
        ),
        Setting("c2pa", True, "Sign every generated image with C2PA content credentials."),
        Setting(
            "c2pa_cert",
            "",
            "Your own C2PA certificate chain (PEM); empty: one the studio makes under AIGC_HOME/c2pa on first use.",
            text(required=False),
        ),
        Setting(
            "c2pa_key", "", "The private key (PEM) of c2pa_cert; empty with c2pa_cert empty.", text(required=False)
        ),
        Setting("watermark", True, "Embed an invisible watermark that identifies each generated image."),
        Setting(
            "nsfw_action",
            "blur",
            "What to do with an image the NSFW classifier scores at or above nsfw_threshold: allow, blur or block.",
            choice("allow", "blur", "block"),
        ),
        Setting("nsfw_threshold", 80, "NSFW score (percent) from which nsfw_action applies.", integer(0, 100)),
        Setting(
            "prompt_blocklist",
            "",
            "Words or phrases (comma- or line-separated) that no image prompt may contain.",
            text(required=False),
        ),
        # aigc serve --ray: where the engines run (engines/ray_serve.py).
        Setting(
            "ray_address",
            "",
            "Ray cluster for `aigc serve --ray`: empty starts a local one in the server's process, auto joins"
            " the one `ray start` runs on this machine, ray://HOST:PORT connects to a remote one.",
            ray_address,
        ),
        Setting(
            "ray_min_replicas",
            1,
            "Fewest Ray Serve replicas of each engine deployment (0: none while idle; the first request waits"
            " for one to start).",
            integer(0, 64),
        ),
        Setting(
            "ray_max_replicas",
            1,
            "Most Ray Serve replicas of each engine deployment; each takes one GPU where the cluster has GPUs.",
            integer(1, 64),
        ),
        Setting(
            "ray_cpus_per_replica",
            1,
            "CPUs each Ray Serve replica takes; its engine runs that many threads unless threads is set.",
            integer(1, 256),
        ),
        Setting(
            "shutdown_grace",
            5,
            "Seconds a stopping server (SIGTERM, Ctrl-C) gives running work to stop and record what it"
            " finished; queued image jobs stay queued for the next start.",
            integer(1, 300),
        ),
        Setting(
            "test_models",
            0,
            "1: show the built-in test models (the 'plain' image and 'echo' text engines) in model lists and"
            " accept their names; the test suite turns it on.",
            integer(0, 1),
        ),
    ]
}


def aigc_home() -> Path:
    """The folder that holds all user state (database, outputs, models, logs)."""
    return Path(os.environ.get("AIGC_HOME") or Path.home() / ".aigc").expanduser()


@dataclass
class Config:
    home: Path
    values: dict[str, object] = field(default_factory=dict)

    def __getattr__(self, key: str) -> object:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def auth_required(self) -> bool:
        """Whether the server makes every caller sign in: setting auth on, or auto with a bind address
        that other machines can reach."""
        return self.values.get("auth") == "on" or not is_loopback(str(self.values.get("host", "127.0.0.1")))

    @property
    def db_path(self) -> Path:
        return self.home / "studio.db"

    @property
    def database(self) -> Path | str:
        """What ``Database`` opens: the database_url when set, else the SQLite file."""
        return str(self.values.get("database_url") or "") or self.db_path

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def load_config(**overrides: object) -> Config:
    """Read the config file and environment, then apply non-None ``overrides`` (CLI flags).

    Raises SettingError (one line: the source, the key, what is allowed) for a value the studio
    could not start with, or a key it does not know.
    """
    home = aigc_home()
    home.mkdir(parents=True, exist_ok=True)
    from_file: dict[str, object] = {}
    config_file = home / "config.toml"
    if config_file.exists():
        try:
            with config_file.open("rb") as f:
                from_file = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise SettingError(f"{config_file} is not valid TOML: {exc}") from None
        unknown = sorted(set(from_file) - set(SETTINGS))
        if unknown:
            raise SettingError(f"{config_file}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    values: dict[str, object] = {}
    for key, setting in SETTINGS.items():
        value, where = setting.default, "the default"
        if key in from_file:
            value, where = from_file[key], str(config_file)
        if setting.env in os.environ:
            value, where = os.environ[setting.env], f"environment variable {setting.env}"
        if overrides.get(key) is not None:
            value, where = overrides[key], f"option --{key.replace('_', '-')}"
        values[key] = setting.parse(value, where)
    return Config(home=home, values=values)


def save_setting(key: str, value: object) -> Path:
    """Write one setting to ``$AIGC_HOME/config.toml``, keeping the others (the file is flat).

    The value is checked first: one the studio could not start with is refused (SettingError) and
    the file is left as it was. On a team server only an admin may (Forbidden): the file is the server's.
    """
    require_admin("changing server settings")
    if key not in SETTINGS:
        raise SettingError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}", param=key)
    value = SETTINGS[key].parse(value, "")
    home = aigc_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    values: dict[str, object] = {}
    if path.exists():
        with path.open("rb") as f:
            values = tomllib.load(f)
    values[key] = value
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def file_settings() -> dict[str, object]:
    """What ``$AIGC_HOME/config.toml`` holds, with the default for each setting it leaves out (no
    environment variables, no flags): what the next start reads from the file."""
    path = aigc_home() / "config.toml"
    from_file: dict[str, object] = {}
    if path.exists():
        with path.open("rb") as f:
            from_file = tomllib.load(f)
    return {key: from_file.get(key, setting.default) for key, setting in SETTINGS.items()}


def save_settings(changes: dict[str, object]) -> Path:
    """Write several settings to ``config.toml``, all or none: when ``save_setting`` refuses one (a
    ValueError naming it), the file is put back as it was and the error raised."""
    path = aigc_home() / "config.toml"
    before = path.read_bytes() if path.exists() else None
    try:
        for key, value in changes.items():
            save_setting(key, value)
    except ValueError:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, before)
        raise
    return path
