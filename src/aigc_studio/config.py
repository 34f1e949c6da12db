"""Settings: one place that says where state lives and what the defaults are.

Precedence, highest first: a CLI flag, an environment variable (``AIGC_*``), the config file
``$AIGC_HOME/config.toml``, the built-in default. Every setting is declared once in ``SETTINGS``
so the CLI help, the environment names and the config file keys cannot drift apart.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    key: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return "AIGC_" + self.key.upper()


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("host", "127.0.0.1", "Address the server binds to; loopback unless you say otherwise."),
        Setting("port", 7860, "Port of the web UI and the APIs."),
        Setting("model", "smollm2-135m", "Default text model id or alias."),
        Setting("image_model", "", "Default image model id or alias (unset: the image model added last)."),
        Setting("threads", 0, "CPU threads for llama.cpp (0: all cores)."),
        Setting("context", 0, "Context length for GGUF models (0: the model's trained length)."),
        Setting("max_loaded", 2, "Text models kept loaded at once; the default model is always kept."),
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
    def db_path(self) -> Path:
        return self.home / "studio.db"

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
    """Read the config file and environment, then apply non-None ``overrides`` (CLI flags)."""
    home = aigc_home()
    home.mkdir(parents=True, exist_ok=True)
    from_file: dict[str, object] = {}
    config_file = home / "config.toml"
    if config_file.exists():
        with config_file.open("rb") as f:
            from_file = tomllib.load(f)
        unknown = sorted(set(from_file) - set(SETTINGS))
        if unknown:
            raise ValueError(f"{config_file}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    values: dict[str, object] = {}
    for key, setting in SETTINGS.items():
        value = from_file.get(key, setting.default)
        if setting.env in os.environ:
            value = os.environ[setting.env]
        if overrides.get(key) is not None:
            value = overrides[key]
        if isinstance(setting.default, int) and not isinstance(value, int):
            try:
                value = int(value)  # type: ignore[arg-type]
            except ValueError:
                raise ValueError(f"{setting.env} must be an integer, got {value!r}") from None
        values[key] = value
    return Config(home=home, values=values)


def save_setting(key: str, value: object) -> Path:
    """Write one setting to ``$AIGC_HOME/config.toml``, keeping the others (the file is flat)."""
    if key not in SETTINGS:
        raise ValueError(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
    home = aigc_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    values: dict[str, object] = {}
    if path.exists():
        with path.open("rb") as f:
            values = tomllib.load(f)
    values[key] = value
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
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
            path.write_bytes(before)
        raise
    return path
