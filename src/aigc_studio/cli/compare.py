"""``aigc compare``: one prompt to several models side by side (text, or images with --image), and the
saved comparisons (``aigc compare list``, ``aigc compare show ID``)."""

from __future__ import annotations

import json
import time

import click
from pydantic import ValidationError

from ..contracts import ImageRequest, TextOptions
from ..errors import validation_message
from ..services.compare import parse_axis
from .options import field_option, options_from, sampling_options
from .streaming import ReadingLine

# The image parameters `aigc compare --image` takes (the seed is the shared --seed).
IMAGE_FIELDS = ("negative_prompt", "steps", "cfg_scale", "width", "height", "sampler_name", "scheduler")


def _image_options(fn):
    """The image parameters a comparison takes, as options from their declarations."""
    for name in reversed(IMAGE_FIELDS):
        fn = field_option(ImageRequest, name)(fn)
    return fn


class _DefaultRun(click.Group):
    """``aigc compare PROMPT ...`` runs a comparison; ``list`` and ``show`` are the saved ones. A prompt
    that is exactly "list" or "show" is ``aigc compare run list``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _fmt(value, pattern: str = "{:.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _table(panes: list[dict]) -> None:
    """The panes' timings, one row each."""
    width = max(len(p["model"]) for p in panes)
    click.echo(f"{'':3} {'model':<{width}}  {'TTFT ms':>8}  {'tok/s':>7}  {'tokens':>6}  {'time s':>7}  finish")
    for i, p in enumerate(panes, 1):
        finish = p.get("finish_reason") or "-"
        if p["status"] == "error":
            finish = "error"
        duration = None if p.get("duration_ms") is None else p["duration_ms"] / 1000
        click.echo(
            f"{i:>2}. {p['model']:<{width}}  {_fmt(p.get('ttft_ms')):>8}  {_fmt(p.get('tokens_per_s'), '{:.1f}'):>7}"
            f"  {_fmt(p.get('completion_tokens')):>6}  {_fmt(duration, '{:.2f}'):>7}  {finish}"
        )


def _pane_block(index: int, model: str, text: str, error: str | None) -> None:
    click.secho(f"── [{index + 1}] {model} " + "─" * max(4, 60 - len(model)), fg="cyan")
    if text:
        click.echo(text.rstrip())
    if error:
        click.secho(f"Error: {error}", fg="red")
    click.echo()


def _run_text(studio, prompt: str, models: list[str], system: str | None, options: TextOptions) -> None:
    comparison = studio.compare.text(prompt, models, system=system, options=options, source="cli")
    click.secho(f"asking {len(models)} models at once: {', '.join(comparison.models)}", dim=True, err=True)
    events = iter(comparison)
    finished = 0
    reading = ReadingLine()  # a long prompt being read, on a terminal
    try:
        for event in events:
            if event.type == "reading":
                reading.show(event.read or 0, event.prompt_tokens or 0, f"the prompt in [{event.pane + 1}]")
                continue
            if event.type != "delta":
                reading.clear()
            if event.type == "pane_done":
                finished += 1
                _pane_block(event.pane, event.model, event.text or "", None)
            elif event.type == "pane_error":
                finished += 1
                _pane_block(event.pane, event.model, event.text or "", event.message)
    except KeyboardInterrupt:
        events.close()  # stops every pane; what was answered is saved
        click.secho("\n[stopped]", fg="yellow", err=True)
    _table(comparison.panes)
    click.secho(f"saved as {comparison.id} (aigc compare show {comparison.id})", dim=True, err=True)


def _run_images(studio, request: ImageRequest, models: list[str], grid: tuple[str, ...]) -> None:
    axes = [parse_axis(spec) for spec in grid]
    comparison = studio.compare.images_compare(request, models, axes, source="cli")
    total = len(comparison.cells)
    click.secho(f"{total} images, seed {comparison.request.seed}, one after another", dim=True, err=True)
    names = [a.name for a in comparison.axes]
    events = iter(comparison)
    try:
        for event in events:
            cell = event.cell
            if cell is None:
                continue
            where = f"{names[0]}={cell['x']}" + (f", {names[1]}={cell['y']}" if "y" in cell else "")
            if event.type == "cell":
                click.echo(f"[{cell['index'] + 1}/{total}] {where}: {cell['path']} ({cell['seconds']:.1f} s)")
            else:
                click.secho(f"[{cell['index'] + 1}/{total}] {where}: failed: {cell['error']}", fg="red")
    except KeyboardInterrupt:
        events.close()
        click.secho("\n[stopped]", fg="yellow", err=True)
    click.echo(f"grid: {comparison.grid_path}")
    click.secho(f"saved as {comparison.id} (aigc compare show {comparison.id})", dim=True, err=True)


def register(cli: click.Group) -> None:
    from .main import _friendly_errors, _studio

    @cli.group(cls=_DefaultRun)
    def compare() -> None:
        """The same prompt to 2-4 models side by side: aigc compare "PROMPT" -m A -m B [--image] [--grid ...].

        Text: the models answer at once; each answer is printed, labelled, as its model finishes, then a
        table of time to first token, tokens/s, tokens and finish reason. Images: the same prompt, seed
        and parameters over the models (a row), or over a parameter's values (--grid cfg=3,7,11, a second
        --grid for Y); the files and a labelled grid image are saved. Comparisons are kept: list, show.
        """

    @compare.command("run")
    @click.argument("prompt")
    @click.option("-m", "--model", "models", multiple=True, help="A model to compare (2-4; one with --grid).")
    @click.option("-s", "--system", help="System prompt, the same for every model (text).")
    @click.option("--image", is_flag=True, help="Compare image models (or parameter values) instead of text models.")
    @click.option(
        "--grid",
        multiple=True,
        metavar="NAME=V1,V2,...",
        help="With --image: vary a parameter (cfg, steps, sampler, scheduler, seed, width, height, denoising, "
        "clip_skip, model); a second --grid is the Y axis. At most 16 images.",
    )
    @sampling_options
    @_image_options
    @_friendly_errors
    def compare_run(prompt, models, system, image, grid, **kwargs):
        """Compare models on PROMPT (this is what `aigc compare PROMPT` runs)."""
        image_fields = {k: kwargs.pop(k) for k in IMAGE_FIELDS}
        options = options_from(kwargs)
        if not image:
            given = [f"--{k.replace('_', '-')}" for k, v in image_fields.items() if v is not None]
            if grid or given:
                raise click.UsageError(f"{', '.join(['--grid'] * bool(grid) + given)} only go with --image")
            _run_text(_studio(), prompt, list(models), system, options)
            return
        text_only = [
            f"--{k.replace('_', '-')}" for k, v in options.model_dump(exclude_unset=True).items() if k != "seed"
        ]
        if text_only or system:
            raise click.UsageError(f"{', '.join(text_only + ['--system'] * bool(system))} are for text comparisons")
        fields = {k: v for k, v in image_fields.items() if v is not None}
        if options.seed is not None:
            fields["seed"] = options.seed
        try:
            request = ImageRequest(prompt=prompt, **fields)
        except ValidationError as exc:
            raise click.UsageError(validation_message(exc.errors())[0]) from None
        _run_images(_studio(), request, list(models), grid)

    @compare.command("list")
    @click.option("-n", "--limit", default=20, show_default=True, help="How many, newest first.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def compare_list(limit, as_json):
        """Saved comparisons, newest first."""
        rows = _studio().compare.list(limit)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
            prompt = row["prompt"].replace("\n", " ")
            prompt = prompt if len(prompt) <= 50 else prompt[:49] + "…"
            click.echo(f"{row['id']}  {when}  {row['kind']:<5}  {', '.join(row['models'])}  {prompt}")

    @compare.command("show")
    @click.argument("comparison_id")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON with every pane's or cell's fields.")
    @_friendly_errors
    def compare_show(comparison_id, as_json):
        """One saved comparison: the answers and their timings, or the images and their infotexts."""
        record = _studio().compare.get(comparison_id)
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False, indent=2))
            return
        click.secho(f"{record['id']} ({record['kind']}): {record['prompt']}", bold=True)
        if record["kind"] == "text":
            for i, pane in enumerate(record["results"]):
                _pane_block(i, pane["model"], pane["text"], pane.get("error"))
            _table(record["results"])
            return
        for cell in record["results"]:
            where = f"x={cell['x']}" + (f", y={cell['y']}" if "y" in cell else "")
            click.echo(
                f"[{cell['index'] + 1}] {cell['model']} {where}: {cell.get('path') or 'failed: ' + cell['error']}"
            )
            if cell.get("infotext"):
                click.secho("    " + cell["infotext"].splitlines()[-1], dim=True)
        click.echo(f"grid: {record['grid_path']}")
