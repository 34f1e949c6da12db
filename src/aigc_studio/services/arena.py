"""The arena: blind battles between two models, one vote each, and the leaderboard from the votes.

A battle is one prompt in one category (chat, writing, code, image) answered by two models — picked at
random from the available models of the right kind, or chosen — shown as "Model A" and "Model B" in a
random order. Text answers are generated concurrently through the chat service (one-off runs that leave
no conversation in chat history), images through the image service with the same seed and parameters.
The battle record keeps the models; every view of a battle leaves them out (and writes "Model A"/"Model
B" for them in error messages) until the battle has its vote. A battle takes one vote, and only once
both answers are complete: an answer that failed says nothing about quality, so such a battle cannot be
voted. The leaderboard (services/ranking.py) is computed from the voted battles, per category or over
all of them.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..contracts import ImageRequest, Message, TextOptions
from ..errors import Conflict, InvalidRequest, StudioError, validation_message
from ..models.registry import TEST_ENGINES, ModelInfo, Registry
from ..storage.arena import ArenaStore
from .chat import ChatService
from .images import ImageService
from .ranking import OUTCOMES, Battle, Leaderboard, leaderboard

log = logging.getLogger("aigc_studio.arena")

__all__ = ["CATEGORIES", "MAX_PROMPT", "VOTES", "ArenaService", "BattleRun"]

CATEGORIES = ("chat", "writing", "code", "image")
VOTES = OUTCOMES  # a, b, tie, bad (both bad)
MAX_PROMPT = 20_000
LABELS = {"a": "Model A", "b": "Model B"}


@dataclass
class BattleEvent:
    """A piece of one side's answer while a battle runs; ``done`` when that side has ended."""

    side: str  # "a" or "b"
    text: str = ""
    done: bool = False


class BattleRun:
    """A battle being answered. Iterate it for BattleEvents of both sides as they come; ``wait`` for the
    battle's view once both have ended; ``cancel`` stops both answers (what was written is kept)."""

    def __init__(self, service: ArenaService, battle_id: str, workers: list, events: queue.Queue):
        self.service, self.id = service, battle_id
        self._events = events
        self._cancel = threading.Event()
        # Each side's thread works as the caller (principal): the battle and its images are theirs.
        self._threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(work, self._cancel), daemon=True)
            for work in workers
        ]
        for thread in self._threads:
            thread.start()

    def __iter__(self) -> Iterator[BattleEvent]:
        ended = 0
        while ended < len(self._threads):
            event = self._events.get()
            ended += event.done
            yield event

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self) -> dict:
        """The battle's view (models hidden) once both answers have ended."""
        for thread in self._threads:
            thread.join()
        return self.service.get(self.id)


class ArenaService:
    def __init__(self, registry: Registry, chat: ChatService, images: ImageService, store: ArenaStore):
        self.registry, self.chat, self.images, self.store = registry, chat, images, store
        self.random = random.Random()  # tests seed it

    # -- models ----------------------------------------------------------------------------------

    def available(self, category: str) -> list[str]:
        """The models a battle of ``category`` can pick: image models for "image", text models else —
        those that can run here (a local model whose file is there, a remote model, a test engine)."""
        kind = "image" if category == "image" else "text"
        return [m.id for m in self.registry.all() if m.kind == kind and _can_run(m)]

    def pick_models(self, category: str, models: list[str] | None = None) -> tuple[str, str]:
        """Two different models for a battle, in random order: both chosen, one chosen and one drawn
        from the others, or two drawn from the available ones."""
        _check_category(category)
        chosen = list(models or [])
        if len(chosen) > 2:
            raise InvalidRequest(f"a battle is between 2 models; give 0, 1 or 2, got {len(chosen)}", param="models")
        kind = "image" if category == "image" else "text"
        chosen = [self.registry.resolve(name, kind=kind).id for name in chosen]
        if len(chosen) == 2 and chosen[0] == chosen[1]:
            raise InvalidRequest(f"a battle needs two different models, got '{chosen[0]}' twice", param="models")
        others = [m for m in self.available(category) if m not in chosen]
        missing = 2 - len(chosen)
        if len(others) < missing:
            have = sorted({*chosen, *others})
            raise InvalidRequest(
                f"an arena battle needs two {kind} models and only {len(have)} can run here "
                f"({', '.join(have) or 'none'}); add another with `aigc models pull` or `aigc models add-remote`",
                param="models",
            )
        pair = chosen + self.random.sample(others, missing)
        self.random.shuffle(pair)
        return pair[0], pair[1]

    # -- battles ---------------------------------------------------------------------------------

    def start(
        self,
        prompt: str,
        *,
        category: str = "chat",
        models: list[str] | None = None,
        system: str = "",
        seed: int | None = None,
        max_tokens: int | None = 512,
        image: dict | None = None,
    ) -> BattleRun:
        """Start a battle: pick the two models, check both can answer, store it and start the answers.

        ``seed`` (random when None) and ``max_tokens`` are the same for both text answers; ``image``
        holds ImageRequest fields (steps, width, ...) for both images. Raises StudioError subclasses
        for the user before anything is stored.
        """
        if _blank(prompt):
            raise InvalidRequest("prompt must have at least one character that is not a space", param="prompt")
        if len(prompt) > MAX_PROMPT:
            raise InvalidRequest(f"prompt must be at most {MAX_PROMPT} characters, got {len(prompt)}", param="prompt")
        model_a, model_b = self.pick_models(category, models)
        seed = self.random.randrange(2**31) if seed is None else seed
        events: queue.Queue = queue.Queue()
        if category == "image":
            fields = {**(image or {}), "prompt": prompt, "seed": seed}
            try:
                requests = {
                    side: ImageRequest(**{**fields, "model": m}) for side, m in (("a", model_a), ("b", model_b))
                }
            except ValidationError as invalid:
                message, param = validation_message(invalid.errors())
                raise InvalidRequest(message, param=param) from None
            # The image jobs are queued by the workers; a blocked prompt is refused here, before any battle.
            self.images.labeler.check_prompt(prompt)
            params = {**requests["a"].model_dump(exclude={"model"}, exclude_defaults=True), "seed": seed}
            battle_id = self.store.create(category, prompt, system, model_a, model_b, params)
            workers = [self._image_worker(battle_id, side, r, events) for side, r in requests.items()]
        else:
            if image:
                raise InvalidRequest("image parameters are for the image category only", param="image")
            messages = [Message(role="system", content=system)] if system.strip() else []
            messages.append(Message(role="user", content=prompt))
            options = TextOptions(seed=seed, max_tokens=max_tokens)
            prepared = {}
            try:
                for side, name in (("a", model_a), ("b", model_b)):
                    prepared[side] = self.chat.prepare(
                        messages, model=name, options=options, source="arena", store=False
                    )
            except StudioError as error:
                for p in prepared.values():
                    if p.lease is not None:
                        p.lease.release()
                    if p.slot is not None:
                        p.slot.release()
                raise _hidden(error, model_a, model_b) from None
            params = {"seed": seed, "max_tokens": max_tokens}
            battle_id = self.store.create(category, prompt, system, model_a, model_b, params)
            workers = [self._text_worker(battle_id, side, p, events) for side, p in prepared.items()]
        return BattleRun(self, battle_id, workers, events)

    def battle(self, prompt: str, **kwargs) -> dict:
        """Start a battle and wait for both answers; its view, models hidden. See ``start``."""
        return self.start(prompt, **kwargs).wait()

    def _text_worker(self, battle_id: str, side: str, prepared, events: queue.Queue):
        def run(cancel: threading.Event) -> None:
            pieces: list[str] = []
            finish, error = "error", None
            try:
                chat_run = self.chat.start(prepared)
                for chunk in chat_run:
                    if cancel.is_set():
                        chat_run.cancel()
                    if chunk.text:
                        pieces.append(chunk.text)
                        events.put(BattleEvent(side, chunk.text))
                finish = chat_run.result.finish_reason
            except StudioError as failure:
                error = failure.message
            except Exception as failure:  # recorded on the battle, so the other side and the vote go on
                log.exception("arena answer %s of %s failed", side, battle_id)
                error = f"the answer failed: {failure}"
            finally:
                self.store.finish(battle_id, side, "".join(pieces), finish if error is None else "error", error)
                events.put(BattleEvent(side, done=True))

        return run

    def _image_worker(self, battle_id: str, side: str, request: ImageRequest, events: queue.Queue):
        def run(cancel: threading.Event) -> None:
            answer, finish, error = "", "error", None
            try:
                job = self.images.submit(request, source="arena", resumable=False)
                while not job.done.wait(0.1):
                    if cancel.is_set():
                        self.images.queue.interrupt(job.id)
                result = job.wait()
                if result.images:
                    answer = result.images[0].id
                finish = "interrupted" if result.interrupted or not result.images else "stop"
            except StudioError as failure:
                error = failure.message
            except Exception as failure:  # recorded on the battle, so the other side and the vote go on
                log.exception("arena image %s of %s failed", side, battle_id)
                error = f"the image failed: {failure}"
            finally:
                self.store.finish(battle_id, side, answer, finish, error)
                events.put(BattleEvent(side, done=True))

        return run

    def get(self, battle_id: str) -> dict:
        """A battle as the user may see it: before the vote, "Model A"/"Model B" only; after, the models."""
        return battle_view(self.store.get(battle_id))

    def vote(self, battle_id: str, vote: str) -> dict:
        """Vote a/b/tie/bad (both bad) on a battle whose answers are complete; the view with the models."""
        if vote not in VOTES:
            raise InvalidRequest(f"vote must be one of {', '.join(VOTES)}, got {vote!r}", param="vote")
        record = self.store.get(battle_id)
        if record["vote"] is None:
            if record["finish_a"] is None or record["finish_b"] is None:
                raise Conflict(f"battle '{battle_id}' is still answering; vote once both answers are complete")
            failed = [LABELS[s] for s in "ab" if record[f"error_{s}"]]
            if failed:
                raise Conflict(
                    f"battle '{battle_id}' cannot be voted: {' and '.join(failed)} failed to answer, which says "
                    "nothing about the quality of either; start another battle",
                    code="battle_failed",
                )
        self.store.vote(battle_id, vote)
        return self.get(battle_id)

    def leaderboard(self, category: str | None = None, *, bootstrap: int = 200, seed: int = 0) -> Leaderboard:
        """The leaderboard of one category, or of all battles (``category`` None); the models that can
        battle in it but have none are listed as such."""
        if category is not None:
            _check_category(category)
        battles = [Battle(r["model_a"], r["model_b"], r["vote"]) for r in self.store.voted(category)]
        models = self.available(category) if category else self.available("chat") + self.available("image")
        return leaderboard(battles, models, bootstrap=bootstrap, seed=seed)


def battle_view(record: dict) -> dict:
    """What any shell shows of a battle: the models (and their names in error messages) only once voted."""
    revealed = record["vote"] is not None
    models = {"a": record["model_a"], "b": record["model_b"]}
    answers = []
    for side in ("a", "b"):
        error = record[f"error_{side}"]
        if error and not revealed:
            error = _hide(error, models)
        answer = record[f"answer_{side}"]
        image = record["category"] == "image"
        answers.append(
            {
                "side": side,
                "label": LABELS[side],
                "model": models[side] if revealed else None,
                "text": "" if image else answer,
                "image_id": answer if image and answer else None,
                "finish_reason": record[f"finish_{side}"],
                "error": error,
            }
        )
    done = all(a["finish_reason"] is not None for a in answers)
    return {
        "id": record["id"],
        "category": record["category"],
        "prompt": record["prompt"],
        "system": record["system"],
        "params": record["params"],
        "state": "voted" if revealed else ("ready" if done else "running"),
        "answers": answers,
        "vote": record["vote"],
        "created": record["created"],
        "voted": record["voted"],
    }


def _hide(text: str, models: dict[str, str]) -> str:
    # Longest first, so a model whose name contains the other's is replaced whole.
    for side, name in sorted(models.items(), key=lambda item: -len(item[1])):
        text = text.replace(name, LABELS[side])
    return text


def _hidden(error: StudioError, model_a: str, model_b: str) -> StudioError:
    error.message = _hide(error.message, {"a": model_a, "b": model_b})
    error.args = (error.message,)
    return error


def _blank(text: str) -> bool:
    # Blank as the API schema's pattern \S has it (Unicode White_Space): Python's isspace() also counts
    # the separators \x1c-\x1f, which the schema lets through as text.
    return all(c.isspace() and c not in "\x1c\x1d\x1e\x1f" for c in text)


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise InvalidRequest(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}", param="category")


def _can_run(info: ModelInfo) -> bool:
    return info.engine == "remote" or info.engine in TEST_ENGINES or bool(info.path and Path(info.path).exists())
