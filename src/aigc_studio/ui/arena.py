"""The Arena tab: a blind battle (two anonymous panes answering at once), four vote buttons, the names
after the vote, and the leaderboard. The work is the arena service's (``studio.arena``)."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from ..services.arena import CATEGORIES
from .common import Mistake, UIContext, note, reports_to
from .i18n import t, text

BOARD_COLUMNS = ("ar_col_rank", "ar_col_model", "ar_col_score", "ar_col_elo", "ar_col_battles", "ar_col_winrate")
VOTE_KEYS = {"a": "ar_vote_a", "b": "ar_vote_b", "tie": "ar_vote_tie", "bad": "ar_vote_bad"}


def build(ctx: UIContext, lang: gr.Radio) -> tuple[Callable, list[gr.Component], list[gr.Component]]:
    """The tab; returns (its refresh handler, inputs after the language, outputs), run when the tab opens:
    the models to choose from and the leaderboard."""
    battle_id = gr.State(None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            prompt = gr.Textbox(label=t("ar_prompt"), placeholder=t("ar_prompt_ph"), lines=3, elem_id="arena-prompt")
        with gr.Column(scale=1, min_width=240):
            category = gr.Radio(
                [(t(f"ar_cat_{c}"), c) for c in CATEGORIES],
                value="chat",
                label=t("ar_category"),
                elem_id="arena-category",
            )
            models = gr.Dropdown(
                [],
                multiselect=True,
                max_choices=2,
                label=t("ar_models"),
                info=t("ar_models_info"),
                elem_id="arena-models",
            )
            start = gr.Button(t("ar_battle"), variant="primary", elem_id="arena-battle")
    battle_note = gr.HTML(elem_id="arena-note")
    with gr.Row(equal_height=True):
        with gr.Column():
            label_a = gr.Markdown(f"### {text('en', 'ar_model_a')}", elem_id="arena-label-a")
            pane_a = gr.Markdown(elem_id="arena-a", elem_classes=["aigc-conversation"])
            image_a = gr.Image(visible=False, show_label=False, elem_id="arena-image-a", interactive=False)
        with gr.Column():
            label_b = gr.Markdown(f"### {text('en', 'ar_model_b')}", elem_id="arena-label-b")
            pane_b = gr.Markdown(elem_id="arena-b", elem_classes=["aigc-conversation"])
            image_b = gr.Image(visible=False, show_label=False, elem_id="arena-image-b", interactive=False)
    with gr.Row():
        votes = {
            choice: gr.Button(t(key), interactive=False, elem_id=f"arena-vote-{choice}")
            for choice, key in VOTE_KEYS.items()
        }
    reveal = gr.HTML(elem_id="arena-reveal")
    gr.Markdown(t("ar_board_title"))
    with gr.Row(elem_classes=["aigc-bottom-row"]):
        board_category = gr.Dropdown(
            [(t("ar_all"), "all")] + [(t(f"ar_cat_{c}"), c) for c in CATEGORIES],
            value="all",
            label=t("ar_board_category"),
            scale=3,
            elem_id="arena-board-category",
        )
        refresh_button = gr.Button(t("refresh"), scale=1, min_width=120, elem_id="arena-board-refresh")
    board = gr.Dataframe(interactive=False, wrap=True, elem_id="arena-board", max_height=360)
    board_notes = gr.HTML(elem_id="arena-board-notes", elem_classes=["aigc-hint"])
    vote_buttons = list(votes.values())

    def labels(lang_value: str, view: dict | None = None) -> tuple[str, str]:
        names = {}
        for answer in (view or {}).get("answers", []):
            if answer["model"]:
                names[answer["side"]] = f" = {answer['model']}"
        return (
            f"### {text(lang_value, 'ar_model_a')}{names.get('a', '')}",
            f"### {text(lang_value, 'ar_model_b')}{names.get('b', '')}",
        )

    def leaderboard(lang_value: str, which: str):
        studio = ctx.studio
        result = studio.arena.leaderboard(None if which in (None, "all") else which, bootstrap=200)
        rows = []
        for s in result.standings:
            if s.battles == 0:
                rows.append(["—", s.model, text(lang_value, "ar_no_battles"), "—", 0, "—"])
                continue
            score = f"{s.score:.0f} ({s.ci_low:.0f}–{s.ci_high:.0f})"
            rows.append([s.rank, s.model, score, f"{s.elo:.0f}", s.battles, f"{s.win_rate:.0%}"])
        notes = text(lang_value, "ar_board_note", battles=result.battles)
        return gr.Dataframe(value=rows, headers=[text(lang_value, k) for k in BOARD_COLUMNS]), notes

    def on_open(lang_value: str, which: str):
        studio = ctx.studio
        kinds = {m.id: m.kind for m in studio.registry.all()}
        choices = sorted(
            {*studio.arena.available("chat"), *studio.arena.available("image")}, key=lambda m: (kinds[m], m)
        )
        return gr.Dropdown(choices=choices), *leaderboard(lang_value, which)

    @reports_to(battle_note)
    def on_battle(lang_value: str, prompt_value: str, category_value: str, chosen: list[str] | None):
        if not (prompt_value or "").strip():
            raise Mistake("ar_prompt_missing")
        image = category_value == "image"
        run = ctx.studio.arena.start(
            prompt_value,
            category=category_value,
            models=list(chosen or []),
        )
        # Nothing named yet: the panes say Model A and Model B, the vote buttons wait for both answers.
        label_a_value, label_b_value = labels(lang_value)
        shown = {"a": "", "b": ""}
        idle = [gr.Button(interactive=False)] * len(vote_buttons)
        waiting = note(text(lang_value, "ar_answering"), "info")
        yield {
            battle_id: run.id,
            label_a: label_a_value,
            label_b: label_b_value,
            image_a: gr.Image(value=None, visible=image),
            image_b: gr.Image(value=None, visible=image),
            pane_a: gr.Markdown(value="", visible=not image),
            pane_b: gr.Markdown(value="", visible=not image),
            reveal: "",
            battle_note: waiting,
            **dict(zip(vote_buttons, idle, strict=True)),
        }
        for event in run:
            if event.text:
                shown[event.side] += event.text
                yield {pane_a: shown["a"], pane_b: shown["b"]}
        view = run.wait()
        answers = {a["side"]: a for a in view["answers"]}
        failed = [a for a in view["answers"] if a["error"]]
        update = {
            pane_a: answers["a"]["text"] if not answers["a"]["error"] else f"⚠ {answers['a']['error']}",
            pane_b: answers["b"]["text"] if not answers["b"]["error"] else f"⚠ {answers['b']['error']}",
            battle_note: note(text(lang_value, "ar_failed"), "error") if failed else "",
            **{b: gr.Button(interactive=not failed) for b in vote_buttons},
        }
        if image:
            for side, target in (("a", image_a), ("b", image_b)):
                if answers[side]["image_id"]:
                    update[target] = str(ctx.studio.images.file(answers[side]["image_id"]))
        yield update

    def revealed(lang_value: str, view: dict) -> str:
        names = {a["side"]: a["model"] for a in view["answers"]}
        vote = text(lang_value, VOTE_KEYS[view["vote"]])
        return note(text(lang_value, "ar_revealed", a=names["a"], b=names["b"], vote=vote), "ok")

    def on_language(lang_value: str, battle: str | None, which: str):
        # What handlers wrote (the pane titles, the names, the table) in the page's new language.
        view = ctx.studio.arena.get(battle) if battle else None
        voted = view is not None and view["vote"] is not None
        return *labels(lang_value, view), revealed(lang_value, view) if voted else "", *leaderboard(lang_value, which)

    def voter(choice: str):
        @reports_to(reveal)
        def on_vote(lang_value: str, battle: str | None, which: str):
            if not battle:
                raise Mistake("ar_battle_first")
            view = ctx.studio.arena.vote(battle, choice)
            return (
                *labels(lang_value, view),
                revealed(lang_value, view),
                *[gr.Button(interactive=False)] * len(vote_buttons),
                *leaderboard(lang_value, which),
            )

        return on_vote

    start.click(
        on_battle,
        [lang, prompt, category, models],
        [battle_id, label_a, label_b, pane_a, pane_b, image_a, image_b, reveal, battle_note, *vote_buttons],
    )
    prompt.submit(
        on_battle,
        [lang, prompt, category, models],
        [battle_id, label_a, label_b, pane_a, pane_b, image_a, image_b, reveal, battle_note, *vote_buttons],
    )
    for choice, button in votes.items():
        button.click(
            voter(choice),
            [lang, battle_id, board_category],
            [label_a, label_b, reveal, *vote_buttons, board, board_notes],
        )
    lang.change(on_language, [lang, battle_id, board_category], [label_a, label_b, reveal, board, board_notes])
    refresh_button.click(leaderboard, [lang, board_category], [board, board_notes])
    board_category.change(leaderboard, [lang, board_category], [board, board_notes])
    return on_open, [board_category], [models, board, board_notes]
