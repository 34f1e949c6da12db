"""`aigc arena battle|vote|show|leaderboard`: blind battles between two models from the terminal."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..config import load_config
from ..services.arena import CATEGORIES, VOTES

VOTE_HELP = "a: Model A is better, b: Model B, tie, bad: both are bad"


def _studio():
    from ..studio import Studio

    return Studio(load_config())


def _show(studio, view: dict) -> None:
    click.echo(f"battle {view['id']} ({view['category']}): {view['prompt']}")
    for answer in view["answers"]:
        name = f" = {answer['model']}" if answer["model"] else ""
        click.echo(f"\n── {answer['label']}{name} ──")
        if answer["error"]:
            click.echo(f"(failed: {answer['error']})")
        elif answer["image_id"]:
            click.echo(f"image: {studio.images.file(answer['image_id'])}")
        else:
            click.echo(answer["text"])
    if view["vote"]:
        click.echo(f"\nvote: {view['vote']}")


def register(cli: click.Group) -> None:
    @cli.group()
    def arena() -> None:
        """Blind battles: two models answer one prompt as Model A and Model B; you vote, then see who they
        were. The votes make a Bradley–Terry leaderboard per category."""

    @arena.command("battle")
    @click.argument("prompt")
    @click.option("--category", type=click.Choice(CATEGORIES), default="chat", show_default=True)
    @click.option("-m", "--model", "models", multiple=True, help="A model to put in (0-2); the rest are drawn.")
    @click.option("--system", default="", help="A system prompt for both (text battles).")
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="The same seed for both (default: random).")
    @click.option("--max-tokens", type=click.IntRange(1, 4096), default=512, show_default=True)
    @click.option("--steps", type=click.IntRange(1, 150), help="Image battles: denoising steps.")
    @click.option("--size", type=click.IntRange(64, 2048), help="Image battles: width and height in pixels.")
    @click.option("--vote", type=click.Choice(VOTES), help=f"Vote at once ({VOTE_HELP}); otherwise you are asked.")
    @click.option("--json", "as_json", is_flag=True, help="Print the battle as JSON (no question asked).")
    def arena_battle(prompt, category, models, system, seed, max_tokens, steps, size, vote, as_json):
        """Start a battle on PROMPT, show the two anonymous answers, then take your vote."""
        studio = _studio()
        try:
            image = {k: v for k, v in {"steps": steps, "width": size, "height": size}.items() if v is not None}
            view = studio.arena.battle(
                prompt,
                category=category,
                models=list(models),
                system=system,
                seed=seed,
                max_tokens=max_tokens,
                image=image or None,
            )
            if vote is None and not as_json:
                _show(studio, view)
                choice = click.prompt(
                    f"\nYour vote ({VOTE_HELP}; skip to vote later)",
                    type=click.Choice([*VOTES, "skip"]),
                    default="skip",
                    show_choices=False,
                )
                vote = None if choice == "skip" else choice
            if vote is not None:
                view = studio.arena.vote(view["id"], vote)
            if as_json:
                click.echo(json.dumps(view, ensure_ascii=False, indent=2))
            elif vote is None:
                click.echo(f"not voted; later: aigc arena vote {view['id']} a|b|tie|bad")
            else:
                _show(studio, view)
        finally:
            studio.close()

    @arena.command("vote")
    @click.argument("battle_id")
    @click.argument("vote", type=click.Choice(VOTES))
    def arena_vote(battle_id, vote):
        """Vote on a battle (once) and see which models they were."""
        studio = _studio()
        try:
            _show(studio, studio.arena.vote(battle_id, vote))
        finally:
            studio.close()

    @arena.command("show")
    @click.argument("battle_id")
    def arena_show(battle_id):
        """Show a battle (the models only once it is voted)."""
        studio = _studio()
        try:
            _show(studio, studio.arena.get(battle_id))
        finally:
            studio.close()

    @arena.command("leaderboard")
    @click.option("--category", type=click.Choice(CATEGORIES), help="One category (default: all battles).")
    @click.option(
        "--bootstrap",
        type=click.IntRange(0, 2000),
        default=200,
        show_default=True,
        help="Resamples for the 95% intervals.",
    )
    @click.option("--json", "as_json", is_flag=True)
    def arena_leaderboard(category, bootstrap, as_json):
        """Bradley–Terry scores (Elo scale, mean 1000) with bootstrap 95% intervals, online Elo, battles."""
        studio = _studio()
        try:
            board = studio.arena.leaderboard(category, bootstrap=bootstrap)
        finally:
            studio.close()
        if as_json:
            click.echo(json.dumps({**asdict(board), "category": category}, indent=2))
            return
        click.echo(f"{'rank':>4}  {'model':<24} {'score':>6}  {'95% CI':<13} {'elo':>6} {'battles':>7} {'win rate':>8}")
        for s in board.standings:
            if s.battles == 0:
                click.echo(f"{'-':>4}  {s.model:<24} no battles yet")
                continue
            ci = f"{s.ci_low:.0f}-{s.ci_high:.0f}" if s.ci_low is not None else "-"
            rate = f"{s.win_rate:.0%}"
            click.echo(f"{s.rank:>4}  {s.model:<24} {s.score:>6.0f}  {ci:<13} {s.elo:>6.0f} {s.battles:>7} {rate:>8}")
        click.echo(f"{board.battles} voted battle(s); a tie or both-bad counts half a win each")
        for note in board.notes:
            click.echo(f"note: {note}")
