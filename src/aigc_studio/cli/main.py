"""The ``aigc`` command. Every flag can also be set by an environment variable (shown in --help)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from .. import __version__
from ..config import SETTINGS, load_config
from ..contracts import Message
from ..errors import StudioError
from ..storage.files import write_atomic
from .options import options_from, sampling_options
from .streaming import echo_answer


def _setting_option(key: str, *decls: str, **kwargs) -> Callable:
    s = SETTINGS[key]
    return click.option(*decls, envvar=s.env, show_envvar=True, default=None, help=s.help, **kwargs)


def _studio(**overrides):
    from ..studio import Studio

    return Studio(load_config(**overrides))


def _friendly_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StudioError as exc:
            raise click.ClickException(exc.message) from None

    return wrapper


class _StudioGroup(click.Group):
    """Every command's StudioError (a bad setting in config.toml, an unknown model, ...) is one line
    on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except StudioError as exc:
            raise click.ClickException(exc.message) from None


@click.group(cls=_StudioGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AIGC"})
@click.version_option(__version__, prog_name="aigc")
def cli() -> None:
    """AIGC Studio: chat, write, code and draw with local models.

    All state lives in AIGC_HOME (default ~/.aigc).
    """


# -- chat ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("prompt", required=False)
@_setting_option("model", "-m", "--model")
@click.option("-s", "--system", help="System prompt for a new conversation.")
@click.option("-c", "--continue", "continue_", is_flag=True, help="Continue the most recent conversation.")
@click.option("--conversation", "--cid", "conversation_id", help="Continue the conversation with this id.")
@click.option("-i", "--interactive", is_flag=True, help="Interactive even when stdin is not a terminal.")
@click.option("--stats", is_flag=True, help="Print tokens, speed and the conversation id after each answer.")
@sampling_options
@_friendly_errors
def chat(prompt, model, system, continue_, conversation_id, interactive, stats, **kwargs):
    """Chat with a model. With PROMPT (or text on stdin): one answer, streamed. Without: interactive.

    Conversations are kept in history; --continue or --conversation picks one up again. When a long
    conversation no longer fits the model's context, the oldest turns are left out and you are told.
    """
    options = options_from(kwargs)
    studio = _studio(model=model)
    if continue_ and not conversation_id:
        conversation_id = studio.history.latest_id()
        if conversation_id is None:
            raise click.ClickException("there is no conversation to continue yet")
    if prompt is None and not interactive and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    if conversation_id and model is None:
        model = studio.history.get(conversation_id)["model"]

    def answer(text: str, system_prompt: str | None, cid: str | None) -> str | None:
        messages = ([Message(role="system", content=system_prompt)] if system_prompt else []) + [
            Message(role="user", content=text)
        ]
        prepared = studio.chat.prepare(
            messages, model=model, options=options, conversation_id=cid, trim=True, source="cli"
        )
        if prepared.trimmed:
            click.secho(
                f"(left out the {prepared.trimmed} oldest message(s) to fit the "
                f"{studio.registry.engine(prepared.model).context_length}-token context)",
                fg="yellow",
                err=True,
            )
        run = studio.chat.start(prepared)
        try:
            echo_answer(run)
        except KeyboardInterrupt:
            click.secho("\n[stopped]", fg="yellow", err=True)
        click.echo()
        result = run.result
        if stats and result:
            tps = f"{result.usage.completion_tokens / max(run.prepared.record.duration_ms / 1000, 1e-9):.1f}"
            click.secho(
                f"[{result.usage.prompt_tokens} prompt + {result.usage.completion_tokens} tokens, "
                f"{run.prepared.record.tokens_per_s or 0:.1f} tok/s decode ({tps} overall), "
                f"first token {run.prepared.record.ttft_ms:.0f} ms, seed {result.seed}, "
                f"finish {result.finish_reason}, conversation {result.conversation_id}]",
                fg="cyan",
                err=True,
            )
        return result.conversation_id if result else cid

    try:
        if prompt is not None:
            answer(prompt, system, conversation_id)
            return
        model_id = studio.registry.resolve(model or studio.registry.default_model).id
        click.secho(f"Chatting with {model_id}. Type 'exit' or press Ctrl-D to quit.", fg="cyan", err=True)
        first = True
        while True:
            try:
                text = click.prompt("", prompt_suffix="> ", default="", show_default=False)
            except (EOFError, click.Abort):
                click.echo(err=True)
                break
            if text.strip() in ("exit", "quit", "/exit", "/quit"):
                break
            if not text.strip():
                continue
            conversation_id = answer(text, system if first else None, conversation_id)
            first = False
    finally:
        studio.close()


# -- history -------------------------------------------------------------------------------------


@cli.group()
def history() -> None:
    """List, show, search, delete, export and import conversations."""


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@history.command("list")
@click.option("-n", "--limit", default=20, show_default=True, help="How many conversations.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history_list(limit, as_json):
    """Recent conversations, newest first."""
    rows = _studio().history.list(limit=limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']}  {_when(r['updated'])}  {r['model']:<14} {r['n_messages']:>3} msgs  {r['title']}")


@history.command("show")
@click.argument("conversation_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with every response's options and timings.")
@_friendly_errors
def history_show(conversation_id, as_json):
    """One conversation, message by message."""
    conv = _studio().history.get(conversation_id)
    if as_json:
        click.echo(json.dumps(conv, ensure_ascii=False, indent=2))
        return
    click.secho(f"{conv['title']}  ({conv['id']}, {conv['model']}, {_when(conv['created'])})", bold=True)
    responses = {r["id"]: r for r in conv["responses"]}
    for m in conv["messages"]:
        replaced = " (replaced by a regenerated answer)" if m.get("superseded") else ""
        answers = f" (to {m['tool_call_id']})" if m.get("tool_call_id") else ""
        click.secho(f"\n{m['role']}:{replaced}{answers}", fg="cyan")
        click.echo(m["content"])
        for call in m.get("tool_calls") or []:
            click.echo(f"-> {call['name']}({call['arguments']})  [{call['id']}]")
        r = responses.get(m["response_id"])
        if r:
            speed = f", {r['tokens_per_s']:.1f} tok/s" if r["tokens_per_s"] else ""
            note = f" [{r['status']}: {r['error']}]" if r["status"] != "ok" else ""
            click.secho(f"  ({r['completion_tokens']} tokens{speed}, seed {r['seed']}){note}", dim=True)
    for r in conv["responses"]:
        if r["status"] == "error" and not any(m["response_id"] == r["id"] for m in conv["messages"]):
            click.secho(f"\n[failed request: {r['error']}]", fg="red")


@history.command("search")
@click.argument("query")
@click.option("-n", "--limit", default=20, show_default=True)
@_friendly_errors
def history_search(query, limit):
    """Messages that contain QUERY (any language, any part of a word)."""
    for r in _studio().history.search(query, limit=limit):
        snippet = " ".join(r["content"].split())
        click.echo(f"{r['id']}  {r['role']:<9} {snippet[:100]}")


@history.command("rm")
@click.argument("conversation_ids", nargs=-1, required=True)
@_friendly_errors
def history_rm(conversation_ids):
    """Delete conversations."""
    h = _studio().history
    for cid in conversation_ids:
        h.delete(cid)
        click.echo(f"deleted {cid}")


@history.command("export")
@click.argument("conversation_ids", nargs=-1)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@_friendly_errors
def history_export(conversation_ids, output):
    """Export conversations (all, or the ones named) as JSON, each answer with its AIGC label."""
    studio = _studio()
    export = studio.text_labels.label_history(studio.history.export(list(conversation_ids) or None))
    data = json.dumps(export, ensure_ascii=False, indent=2)
    if output:
        write_atomic(output, data)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(data)


@history.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@_friendly_errors
def history_import(file):
    """Import conversations from an export; ones already present are skipped."""
    try:
        data = json.load(file)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    imported, skipped = _studio().history.import_(data)
    click.echo(f"imported {imported} conversation(s), skipped {skipped} already present")


# -- models --------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Models the studio knows: list, add a local file, remove, show details."""


def _size(n: int | None) -> str:
    return f"{n / 2**20:.0f} MB" if n else "-"


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json):
    """Known models; * marks the default."""
    studio = _studio()
    rows = [m.as_dict() for m in studio.registry.all()]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    try:
        default_image = studio.registry.default_image_model
    except StudioError:
        default_image = None
    for m in rows:
        mark = "*" if m["id"] in (studio.registry.default_model, default_image) else " "
        local = m["engine"] != "remote"
        missing = "  (file missing)" if local and m["path"] and not Path(m["path"]).exists() else ""
        if not local:
            missing = f"  → {m['path']} ({m['remote_model']})"
        click.echo(
            f"{mark} {m['id']:<20} {m['kind']:<5} {m['engine']:<9} {_size(m['size_bytes']):>7}  "
            f"{', '.join(m['aliases'])}{missing}"
        )
    memory = {
        "both": "the default text model and the current image model stay loaded",
        "one": "only the kind of model last asked for stays loaded; the other is freed once idle",
    }
    # This command loads nothing: what a running server holds is its GET /api/models (and the Models tab).
    click.echo(f"model_memory = {studio.registry.model_memory}: {memory[studio.registry.model_memory]}")


@models.command("add")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="Model id (default: the file name without extension).")
@click.option("--alias", "aliases", multiple=True, help="Another name for it. Repeatable.")
@click.option(
    "--engine",
    type=click.Choice(["llamacpp", "transformers"]),
    help="Text engine to run it with (default: llama.cpp for a GGUF file, transformers for a folder).",
)
@_friendly_errors
def models_add(path, name, aliases, engine):
    """Add a local model: a GGUF file or a Hugging Face transformers folder (text), or a Stable Diffusion
    .safetensors/.ckpt file or diffusers folder (image). Files stay where they are."""
    info = _studio().models.add(path, model_id=name, aliases=list(aliases), engine=engine)
    click.echo(f"added {info.id} ({_size(info.size_bytes)}) from {info.path}")


@models.command("add-remote")
@click.argument("name")
@click.option(
    "--base-url", required=True, help="The server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1."
)
@click.option("--model", "remote_model", required=True, help="The model's name on that server (see its GET /models).")
@click.option("--api-key-env", help="Environment variable holding the API key (only its name is stored).")
@click.option(
    "--api-key-stdin", is_flag=True, help="Read the API key from standard input; kept in AIGC_HOME/keys.json (0600)."
)
@click.option("--context", "context_length", type=click.IntRange(1, 1_000_000), help="The model's context length.")
@click.option("--alias", "aliases", multiple=True, help="Another name for it. Repeatable.")
@click.option("--no-check", is_flag=True, help="Add it without asking the server (it may be offline now).")
@_friendly_errors
def models_add_remote(name, base_url, remote_model, api_key_env, api_key_stdin, context_length, aliases, no_check):
    """Add a model served by any OpenAI-compatible server (llama.cpp's server, vLLM, Ollama, a hosted
    service). It is then used like a local model: chat, /v1, writing, code, compare."""
    api_key = sys.stdin.readline().strip() if api_key_stdin else None
    if api_key_stdin and not api_key:
        raise click.UsageError("--api-key-stdin read an empty line; pipe the key in")
    info, listed = _studio().models.add_remote(
        name,
        base_url,
        remote_model,
        api_key=api_key,
        api_key_env=api_key_env,
        context_length=context_length,
        aliases=list(aliases),
        check=not no_check,
    )
    key = f"key from ${api_key_env}" if api_key_env else "key stored" if api_key else "no key"
    seen = f"; the server lists {len(listed)} model(s)" if listed else ""
    click.echo(f"added {info.id} → {info.path} ({info.remote_model}, {key}){seen}")


@models.command("rm")
@click.argument("name")
@_friendly_errors
def models_rm(name):
    """Forget a model you added (the file itself is left alone)."""
    info = _studio().registry.remove(name)
    click.echo(f"removed {info.id}")


@models.command("catalog")
def models_catalog():
    """Models that `aigc models pull` can fetch."""
    from ..models.catalog import CATALOG

    for e in CATALOG:
        click.echo(f"  {e.id:<24} {e.kind:<5} {e.size_bytes / 2**30:5.1f} GB  {e.license:<22} {e.description}")


@models.command("pull")
@click.argument("name")
@_friendly_errors
def models_pull(name):
    """Download a catalog model into $AIGC_HOME/models (resumable: run it again after a break)."""
    from ..models.catalog import find
    from ..models.pull import TqdmProgress, pull_and_register

    studio = _studio()
    entry = find(name)
    with TqdmProgress(f"pull {entry.id}") as bar:
        info, fresh = pull_and_register(entry, studio.registry, studio.config.models_dir, progress=bar)
    if fresh:
        click.echo(f"pulled {info.id} ({info.kind}) to {info.path}")
    else:
        click.echo(f"{info.id} is up to date at {info.path}")


@models.command("import-a1111")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-hash", is_flag=True, help="Do not hash the files now (hashing large checkpoints takes time).")
@_friendly_errors
def models_import_a1111(folder, no_hash):
    """Add the checkpoints of an AUTOMATIC1111 install (or its models folder); files stay where they are."""
    outcome = _studio().models.import_a1111(folder, hashes=not no_hash)
    for title in outcome.already:
        click.echo(f"  already added: {title}")
    for relative_name, why in outcome.skipped:
        click.secho(f"  skipped {relative_name}: {why}", fg="yellow", err=True)
    for model_id, title in outcome.added:
        click.echo(f"  added {model_id}  ({title})")
    click.echo(f"imported {len(outcome.added)} checkpoint(s) from {folder}")


@models.command("default")
@click.argument("name")
@_friendly_errors
def models_default(name):
    """Make NAME the default text or image model (saved in $AIGC_HOME/config.toml)."""
    studio = _studio()
    info = studio.models.set_default(name)
    click.echo(f"default {info.kind} model: {info.id} (in {studio.config.home / 'config.toml'})")


@models.command("info")
@click.argument("name")
@_friendly_errors
def models_info(name):
    """Everything known about one model, as JSON (loads it to read its metadata)."""
    studio = _studio()
    model = studio.registry.resolve(name)
    info = model.as_dict()
    if model.kind == "text":
        engine = studio.registry.engine(model.id)
        info["context_length"] = engine.context_length  # per request (per slot, for a llama.cpp model)
        info["parallel"] = engine.parallel
        if hasattr(engine, "batch"):  # llama.cpp: prompt tokens read per step
            info["prompt_batch"] = engine.batch
        info["metadata"] = {k: v for k, v in getattr(engine, "metadata", {}).items() if "chat_template" not in k}
    else:
        info["model_hash"] = studio.registry.model_hash(model)
    click.echo(json.dumps(info, ensure_ascii=False, indent=2))
    studio.close()


# -- serve ---------------------------------------------------------------------------------------


@cli.command()
@_setting_option("host", "--host")
@_setting_option("port", "--port", type=int)
@_setting_option("model", "-m", "--model")
@click.option("--log-level", default="info", show_default=True, help="Server log level.")
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help="Run the local text and image models as Ray Serve deployments (needs the ray extra).",
)
@_setting_option("ray_address", "--address", "ray_address")
def serve(host, port, model, log_level, use_ray, ray_address):
    """Start the studio server: OpenAI-compatible API at /v1, health at /health."""
    import asyncio

    import uvicorn

    from ..api.app import create_app
    from ..studio import Studio

    config = load_config(host=host, port=port, model=model, ray_address=ray_address)
    # Before anything is loaded or bound: a server others can reach must have someone who can sign in.
    user_service().check_can_serve(str(config.host), config.auth_required)
    log_config = _server_log_config(config.logs_dir / "server.log", log_level)
    engine_host = None
    if use_ray:
        from ..engines.ray_serve import RayEngineHost

        click.secho(f"starting Ray Serve ({config.ray_address or 'a local cluster on 127.0.0.1'}) ...", err=True)
        engine_host = RayEngineHost(
            str(config.ray_address),
            min_replicas=int(config.ray_min_replicas),
            max_replicas=int(config.ray_max_replicas),
            cpus_per_replica=int(config.ray_cpus_per_replica),
        )
    studio = Studio(config, engine_host=engine_host)
    click.secho(
        f"AIGC Studio {__version__} on http://{config.host}:{config.port}  (OpenAI API: /v1, data: {config.home})",
        fg="green",
        err=True,
    )
    if config.auth_required:
        click.secho("Sign-in required: API keys, basic auth or the login page (aigc users, aigc keys)", err=True)

    grace = float(config.shutdown_grace)

    class StudioServer(uvicorn.Server):
        """uvicorn's server, which at shutdown first stops the studio's work in progress: queued image
        jobs stay queued for the next start, the running one stops at its next step and records what it
        finished, answers end with what they have; the requests waiting for them then end by
        themselves. All of it within ``shutdown_grace`` seconds; past that plus a margin the process
        exits anyway (what is recorded is safe, as after a kill)."""

        async def shutdown(self, sockets=None) -> None:
            deadline = time.monotonic() + grace
            threading.Thread(
                target=_exit_after, args=(grace + SHUTDOWN_MARGIN,), name="exit-after", daemon=True
            ).start()
            await asyncio.to_thread(studio.stop, grace)
            # What is left of the grace goes to the requests still open (their answers' last events).
            self.config.timeout_graceful_shutdown = max(0.5, deadline - time.monotonic())
            await super().shutdown(sockets)

    server = StudioServer(
        uvicorn.Config(
            create_app(studio),
            host=str(config.host),
            port=int(config.port),
            log_level=log_level,
            log_config=log_config,
            timeout_graceful_shutdown=grace,
        )
    )
    # After uvicorn.Config, which sets up logging: the recovery's line goes to the log too.
    recovered = studio.recover()
    if any(recovered.values()):
        logging.getLogger("aigc_studio.server").info(
            "start after a stop: %s",
            ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in recovered.items() if v),
        )
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again once it is done
        pass
    finally:
        studio.close(timeout=grace)


# Seconds past shutdown_grace after which a stopping server exits even if work has not stopped.
SHUTDOWN_MARGIN = 5.0


def _exit_after(seconds: float) -> None:
    """The hard bound on a shutdown: a model step that does not return in time cannot hold the process.
    Exiting here is as safe as a kill: files and records are written so that one loses nothing finished."""
    time.sleep(seconds)
    logging.getLogger("aigc_studio.server").warning(
        "still stopping %.0f s after the signal (setting shutdown_grace + %.0f s); exiting now",
        seconds,
        SHUTDOWN_MARGIN,
    )
    logging.shutdown()
    os._exit(1)


def _server_log_config(path: Path, level: str) -> dict:
    """uvicorn's logging, plus a file under AIGC_HOME/logs that also gets the studio's own lines.

    Request bodies are never logged: prompts are the user's, and keys may sit in them.
    """
    import copy

    from uvicorn.config import LOGGING_CONFIG

    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["formatters"]["file"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    cfg["handlers"]["file"] = {
        "class": "logging.FileHandler",
        "filename": str(path),
        "formatter": "file",
        "encoding": "utf-8",
    }
    for name in ("uvicorn", "uvicorn.access"):
        cfg["loggers"][name]["handlers"].append("file")
    cfg["loggers"]["aigc_studio"] = {"handlers": ["default", "file"], "level": level.upper(), "propagate": False}
    return cfg


from . import editing as _editing  # noqa: E402  (each registers its commands on the group above)
from . import images as _images  # noqa: E402
from . import prompt as _prompt  # noqa: E402
from . import templates as _templates  # noqa: E402

_images.register(cli)
_prompt.register(cli)
_templates.register(cli)
_editing.register(cli)

from . import write as _write  # noqa: E402

_write.register(cli)

from . import code as _code  # noqa: E402

_code.register(cli)
from . import compare as _compare  # noqa: E402

_compare.register(cli)
from . import arena as _arena  # noqa: E402

_arena.register(cli)
from . import inspect as _inspect  # noqa: E402

_inspect.register(cli)
from . import gallery as _gallery  # noqa: E402

_gallery.register(cli)
from . import users as _users  # noqa: E402
from .users import user_service  # noqa: E402

_users.register(cli)
from . import db as _db  # noqa: E402

_db.register(cli)


def main() -> None:
    cli(prog_name="aigc")
