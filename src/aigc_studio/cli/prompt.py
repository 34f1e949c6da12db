"""`aigc prompt`: Stable Diffusion prompt craft from the terminal: expand an idea, manage A1111 styles
(AIGC_HOME/styles.csv), list wildcards and preview dynamic prompts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..services.dynamic_prompts import MAX_COMBINATIONS
from ..storage.files import write_atomic


@contextmanager
def _prompts() -> Iterator:
    from .main import _studio

    studio = _studio()
    try:
        yield studio.prompts
    finally:
        studio.close()


def register(cli: click.Group) -> None:
    @cli.group()
    def prompt() -> None:
        """Stable Diffusion prompts: expand an idea, styles, wildcards and dynamic prompts."""

    @prompt.command()
    @click.argument("idea")
    @click.option("--lang", type=click.Choice(["en", "zh"]), help="Template language (default: the idea's own).")
    @click.option("--seed", type=click.IntRange(-1, 2**32 - 1), help="The same seed gives the same expansion.")
    @click.option("-m", "--model", help="Text model (default: the default text model).")
    @click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature [0..2] (default 0.8).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON with the model, seed and template.")
    def expand(idea, lang, seed, model, temperature, as_json):
        """Expand IDEA into a detailed SD prompt and negative prompt with the text model (English prompts,
        since SD reads English; a Chinese idea works too)."""
        with _prompts() as prompts:
            result = prompts.expand(idea, language=lang, seed=seed, model=model, temperature=temperature)
        if as_json:
            click.echo(json.dumps(result.__dict__, ensure_ascii=False, indent=2))
            return
        click.echo(result.prompt)
        if result.negative_prompt:
            click.echo(f"Negative prompt: {result.negative_prompt}")
        click.secho(f"model {result.model}, seed {result.seed}, template {result.template}", fg="cyan", err=True)

    @prompt.group()
    def styles() -> None:
        """Saved styles, as A1111's styles.csv (AIGC_HOME/styles.csv)."""

    @styles.command("list")
    @click.option("--json", "as_json", is_flag=True)
    def styles_list(as_json):
        """List the styles."""
        with _prompts() as prompts:
            found = prompts.styles.all()
        if as_json:
            click.echo(json.dumps([s.as_dict() for s in found], ensure_ascii=False, indent=2))
            return
        if not found:
            click.echo("no styles: add one with `aigc prompt styles add NAME --prompt ...`, or import a styles.csv")
        for style in found:
            click.echo(f"{style.name}\t{_one_line(style.prompt)}\t{_one_line(style.negative_prompt)}")

    @styles.command("show")
    @click.argument("name")
    def styles_show(name):
        """Show the style NAME."""
        with _prompts() as prompts:
            style = prompts.styles.get(name)
        click.echo(f"name: {style.name}\nprompt: {style.prompt}\nnegative_prompt: {style.negative_prompt}")

    @styles.command("add")
    @click.argument("name")
    @click.option("-p", "--prompt", "text", default="", help="Style text; {prompt} marks where the prompt goes.")
    @click.option("-n", "--negative", default="", help="Negative prompt text; {prompt} works the same way.")
    @click.option("--replace", is_flag=True, help="Change the style if it exists.")
    def styles_add(name, text, negative, replace):
        """Add the style NAME (or change it, with --replace)."""
        with _prompts() as prompts:
            prompts.styles.save(name, text, negative, replace=replace)
        click.echo(f"saved style {name!r}")

    @styles.command("rm")
    @click.argument("names", nargs=-1, required=True)
    def styles_rm(names):
        """Remove styles by name."""
        with _prompts() as prompts:
            for name in names:
                prompts.styles.remove(name)
                click.echo(f"removed style {name!r}")

    @styles.command("import")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--replace", is_flag=True, help="Replace all styles with the file's (default: add or update).")
    def styles_import(file, replace):
        """Import an A1111 styles.csv; a malformed file changes nothing and the message names the line."""
        with _prompts() as prompts:
            imported = prompts.styles.import_csv(file.read_bytes().decode("utf-8-sig"), str(file), replace=replace)
        click.echo(f"imported {len(imported)} style(s): {', '.join(s.name for s in imported)}")

    @styles.command("export")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
    def styles_export(output):
        """Write the styles as an A1111 styles.csv."""
        with _prompts() as prompts:
            text = prompts.styles.export_csv()
        if output:
            write_atomic(output, text)
            click.echo(str(output), err=True)
        else:
            sys.stdout.write(text.removeprefix("\ufeff"))

    @styles.command("apply")
    @click.argument("names", nargs=-1, required=True)
    @click.option("-p", "--prompt", "text", required=True, help="The prompt to style.")
    @click.option("-n", "--negative", default="", help="The negative prompt to style.")
    def styles_apply(names, text, negative):
        """Print PROMPT with the styles NAMES applied in order, as generation applies them."""
        with _prompts() as prompts:
            positive, negative = prompts.apply_styles(text, negative, list(names))
        click.echo(positive)
        if negative:
            click.echo(f"Negative prompt: {negative}")

    @prompt.group()
    def wildcards() -> None:
        """Wildcard files (AIGC_HOME/wildcards/NAME.txt, used as __NAME__) and dynamic prompts."""

    @wildcards.command("list")
    def wildcards_list():
        """List the wildcards with how many values each has."""
        with _prompts() as prompts:
            found = prompts.dynamic.wildcards()
            folder = prompts.dynamic.folder
        if not found:
            click.echo(f"no wildcards: put NAME.txt files (one value a line) in {folder}")
        for wildcard in found:
            shown = ", ".join(wildcard.values[:5]) + (", ..." if len(wildcard.values) > 5 else "")
            click.echo(f"__{wildcard.name}__\t{len(wildcard.values)}\t{shown}")

    @wildcards.command("preview")
    @click.argument("template")
    @click.option("--combinatorial", is_flag=True, help=f"Every combination (at most {MAX_COMBINATIONS}).")
    @click.option("-n", "--count", type=click.IntRange(1, MAX_COMBINATIONS), default=5, show_default=True)
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random mode: the same seed, the same picks.")
    def wildcards_preview(template, combinatorial, count, seed):
        """Print the prompts TEMPLATE gives ({a|b} choices, {2$$a|b|c}, __wildcards__): COUNT random ones, or
        every combination."""
        with _prompts() as prompts:
            found = prompts.preview(template, "combinatorial" if combinatorial else "random", count=count, seed=seed)
        for line in found:
            click.echo(line)


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")
