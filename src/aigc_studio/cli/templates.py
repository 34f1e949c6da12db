"""`aigc templates list|show|add|edit|rm|export|import|run`: prompt templates from the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..config import load_config
from ..services.language_fit import language_fit
from ..services.template_library import source_of, template_from_fields
from ..services.templates import KINDS, LANGUAGES
from ..storage.files import write_atomic
from .options import options_from, sampling_options
from .streaming import echo_answer


def studio_for(**overrides):
    from ..studio import Studio

    return Studio(load_config(**overrides))


def read_input(path: str) -> tuple[str, str]:
    """(text, where) of a file argument; ``-`` is stdin."""
    if path == "-":
        return sys.stdin.read(), "stdin"
    file = Path(path)
    if not file.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="FILE")
    return file.read_text(encoding="utf-8"), str(file)


def pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    """``name=value`` options as a dict; UsageError naming the one without ``=``."""
    found = {}
    for item in values:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise click.UsageError(f"{option} takes NAME=VALUE, got {item!r}")
        found[name.strip()] = value
    return found


def register(cli: click.Group) -> None:
    @cli.group()
    def templates() -> None:
        """Prompt templates with named variables ({topic}): the shipped ones in English and Chinese, and
        your own under AIGC_HOME/templates (one of yours with a shipped one's name takes its place)."""

    @templates.command("list")
    @click.option("--kind", type=click.Choice(KINDS), help="Only templates of this kind.")
    @click.option("--lang", "language", type=click.Choice(LANGUAGES), help="Only templates in this language.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def templates_list(kind, language, as_json):
        """List templates: key (NAME.LANG), kind, source (shipped, user, override) and title."""
        studio = studio_for()
        try:
            listed = studio.templates.all(kind=kind, language=language)
            if as_json:
                rows = [
                    {"key": t.key, "kind": t.kind, "source": source_of(t), "title": t.title, "variables": _vars(t)}
                    for t in listed
                ]
                click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            else:
                for t in listed:
                    click.echo(f"{t.key:<24} {t.kind:<8} {source_of(t):<9} {t.title}")
            for problem in studio.templates.problems():
                click.secho(f"skipped: {problem}", fg="yellow", err=True)
        finally:
            studio.close()

    @templates.command("show")
    @click.argument("key")
    def templates_show(key):
        """Print the template KEY (e.g. blog-post.zh) as its TOML file; where it comes from on stderr."""
        studio = studio_for()
        try:
            template = studio.templates.get(key)
            click.secho(f"# {template.key}: {source_of(template)}", fg="cyan", err=True)
            click.echo(studio.templates.export(key)[1], nl=False)
        finally:
            studio.close()

    @templates.command("add")
    @click.argument("file", required=False)
    @click.option("--name", help="Template name: letters, digits, '-' and '_'.")
    @click.option("--lang", "language", type=click.Choice(LANGUAGES), default="en", show_default=True)
    @click.option("--kind", type=click.Choice(KINDS), default="general", show_default=True)
    @click.option("--title", default="", help="A short title.")
    @click.option("--description", default="", help="What the template is for.")
    @click.option("--system", default=None, help="System prompt (may use variables).")
    @click.option("--prompt", help="The prompt, with {variables}; {{ and }} for literal braces.")
    @click.option("--var", "variables", multiple=True, help="A variable: NAME=DESCRIPTION. Repeatable.")
    @click.option("--default", "defaults", multiple=True, help="A variable's default: NAME=VALUE. Repeatable.")
    @click.option("--replace", is_flag=True, help="Replace a user template of the same name and language.")
    def templates_add(file, name, language, kind, title, description, system, prompt, variables, defaults, replace):
        """Add a template from FILE (a TOML template file; - for stdin) or from the options
        (--name --prompt --var ...). It is checked first: unknown or unused variables, unbalanced
        braces and a malformed file are refused, and nothing is written."""
        if file is not None:
            if name or prompt:
                raise click.UsageError("give a FILE or --name/--prompt, not both")
            text, where = read_input(file)
        else:
            if not name or not prompt:
                raise click.UsageError("give a template FILE, or --name and --prompt (with --var for each variable)")
            described, given = pairs(variables, "--var"), pairs(defaults, "--default")
            unknown = sorted(set(given) - set(described))
            if unknown:
                raise click.UsageError(f"--default for {', '.join(unknown)}, which no --var declares")
            spec = {v: {"description": d, "default": given.get(v)} for v, d in described.items()}
            text = template_from_fields(
                name=name,
                language=language,
                kind=kind,
                prompt=prompt,
                title=title,
                description=description,
                system=system,
                variables=spec,
            )
            where = f"template '{name}.{language}'"
        studio = studio_for()
        try:
            saved = studio.templates.save(text, replace=replace, where=where)
            click.echo(f"added {saved.key} ({source_of(saved)})")
        finally:
            studio.close()

    @templates.command("edit")
    @click.argument("key")
    @click.argument("file", required=False)
    def templates_edit(key, file):
        """Change the template KEY: to FILE's content (- for stdin), or in your $EDITOR. Editing a shipped
        template saves your copy in its place (`aigc templates rm KEY` brings the shipped one back)."""
        studio = studio_for()
        try:
            current = studio.templates.export(key)[1]
            if file is not None:
                text, where = read_input(file)
            else:
                edited = click.edit(current, extension=".toml")
                if edited is None or edited == current:
                    click.echo("unchanged")
                    return
                text, where = edited, f"your edit of {key}"
            saved = studio.templates.save(text, key=key, replace=True, where=where)
            click.echo(f"saved {saved.key} ({source_of(saved)})")
        finally:
            studio.close()

    @templates.command("rm")
    @click.argument("keys", nargs=-1, required=True)
    def templates_rm(keys):
        """Delete your templates KEY...; a shipped template cannot be deleted, and deleting your copy of
        one restores it."""
        studio = studio_for()
        try:
            for key in keys:
                deleted = studio.templates.delete(key)
                click.echo(f"deleted {key}" + ("; the shipped template is back" if deleted.restored else ""))
        finally:
            studio.close()

    @templates.command("export")
    @click.argument("key")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
    def templates_export(key, output):
        """Write the template KEY as a TOML file, which `aigc templates import` reads back."""
        studio = studio_for()
        try:
            _, text = studio.templates.export(key)
            if output is None:
                click.echo(text, nl=False)
            else:
                write_atomic(output, text)
                click.echo(f"wrote {output}", err=True)
        finally:
            studio.close()

    @templates.command("import")
    @click.argument("files", nargs=-1, required=True)
    @click.option("--replace", is_flag=True, help="Replace your templates of the same name and language.")
    def templates_import(files, replace):
        """Import template files (- for stdin). Each is checked first; one of yours with the same name and
        language is an error unless --replace. Stops at the first that fails (those before it stay)."""
        studio = studio_for()
        try:
            for file in files:
                text, where = read_input(file)
                saved = studio.templates.save(text, replace=replace, where=where)
                click.echo(f"imported {saved.key} ({source_of(saved)})")
        finally:
            studio.close()

    @templates.command("run")
    @click.argument("key")
    @click.option("--var", "variables", multiple=True, help="A variable's value: NAME=VALUE. Repeatable.")
    @click.option("-m", "--model", help="Text model (default: the default model).")
    @sampling_options
    def templates_run(key, variables, model, **kwargs):
        """Fill the template KEY with --var values and stream the model's answer. A one-off generation:
        it is not kept in chat history."""
        options = options_from(kwargs)
        values = pairs(variables, "--var")
        studio = studio_for()
        try:
            template = studio.templates.get(key)
            prepared = studio.templates.prepare_run(key, values, model=model, options=options, source="cli")
            fit = language_fit(studio.chat.resolve_model(prepared.model), template.language)
            if fit:
                click.secho(f"note: {fit}", fg="yellow", err=True)
            run = studio.chat.start(prepared)
            try:
                echo_answer(run)
            except KeyboardInterrupt:
                click.secho("\n[stopped]", fg="yellow", err=True)
            click.echo()
        finally:
            studio.close()


def _vars(template) -> list[dict]:
    return [{"name": v.name, "description": v.description, "default": v.default} for v in template.variables]
