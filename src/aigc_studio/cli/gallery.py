"""`aigc images list`: the gallery's images in the terminal, with their NSFW score, action and labels."""

from __future__ import annotations

import json
import time

import click

from ..services.labeling import applied_labels


def labels_column(labels: dict | None) -> str:
    """What an image carries, for a table cell: "visible,watermark,metadata,c2pa", "none" when every
    label was off, "not labeled" for an image made before labels existed."""
    applied = applied_labels(labels)
    if applied is None:
        return "not labeled"
    return ",".join(applied) or "none"


def register(cli: click.Group) -> None:
    @cli.group()
    def images() -> None:
        """The generated images the gallery keeps (``aigc image`` makes them)."""

    @images.command("list")
    @click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 1000), help="How many.")
    @click.option("-q", "--query", default=None, help="Only images whose prompt has this text.")
    @click.option("--model", default=None, help="Only images of this model.")
    @click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
    def images_list(limit, query, model, as_json):
        """Recent images, newest first: id, time, mode, model, NSFW score (percent) and the action taken
        (none, blurred, blocked), the labels applied, prompt."""
        from .main import _studio

        rows = _studio().images.list(limit=limit, query=query, model=model)
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        click.echo(f"{'id':<21} {'time':<16} {'mode':<7} {'model':<14} {'nsfw':>5} {'action':<7} {'labels':<31} prompt")
        for r in rows:
            score = "-" if r["nsfw_score"] is None else f"{r['nsfw_score'] * 100:.0f}%"
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
            click.echo(
                f"{r['id']:<21} {when:<16} {r['mode']:<7} {r['model']:<14} {score:>5} {r['nsfw_action'] or '-':<7} "
                f"{labels_column(r['labels']):<31} {r['prompt']}"
            )
