"""Wildcards and dynamic prompts, through the ``dynamicprompts`` package (the library behind A1111's
sd-dynamic-prompts extension).

``{red|blue} car`` picks one variant, ``{2$$a|b|c}`` two of them joined by ",", ``__colors__`` a line of
``AIGC_HOME/wildcards/colors.txt`` (``__animals/cats__`` one in a sub-folder; ``.json`` and ``.yaml``
collections and globs such as ``__animals/*__`` as the package reads them). Random mode draws one prompt
per image from a generator seeded with the seed, so the same seed gives the same picks; combinatorial
mode lists every combination, up to ``MAX_COMBINATIONS``.

Before anything is drawn the template is checked, so that what the package would do silently never
happens: unbalanced braces are an error that names the place (the package reads a lone ``}`` as text),
and a wildcard with no file is an error that names it (the package would write ``__name__`` into the
prompt and, in combinatorial mode, repeat it without end).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InvalidRequest

__all__ = [
    "MAX_COMBINATIONS",
    "DynamicMode",
    "DynamicPrompts",
    "WildcardFile",
    "check_braces",
]

DynamicMode = Literal["random", "combinatorial"]
# A combinatorial request makes one image per combination; this bounds a request, as A1111's 100 batches do.
MAX_COMBINATIONS = 100
MAX_WILDCARD_DEPTH = 10

# The package logs a warning and carries on for what the studio refuses up front; keep its log quiet.
logging.getLogger("dynamicprompts").setLevel(logging.ERROR)


@dataclass(frozen=True)
class WildcardFile:
    name: str  # as written between "__" and "__"
    values: list[str]


def check_braces(template: str, what: str = "prompt") -> None:
    """InvalidRequest naming the first ``{`` never closed or ``}`` never opened."""
    opened: list[int] = []
    for i, ch in enumerate(template):
        if ch == "{":
            opened.append(i)
        elif ch == "}":
            if not opened:
                raise InvalidRequest(
                    f"{what}: unbalanced braces: '}}' at character {i + 1} closes no '{{' "
                    "(dynamic prompts read {a|b} as a choice; turn them off for literal braces)",
                    param=what,
                )
            opened.pop()
    if opened:
        raise InvalidRequest(
            f"{what}: unbalanced braces: '{{' at character {opened[-1] + 1} is never closed "
            "(dynamic prompts read {a|b} as a choice; turn them off for literal braces)",
            param=what,
        )


class DynamicPrompts:
    """Dynamic prompts over the wildcard files in ``folder`` (AIGC_HOME/wildcards)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _manager(self):
        from dynamicprompts.wildcards import WildcardManager

        # A fresh manager each time: files edited or added since the last call are seen. Without the
        # folder, a manager with none (the package warns about a missing folder).
        return WildcardManager(self.folder if self.folder.is_dir() else None)

    def wildcards(self) -> list[WildcardFile]:
        """Every wildcard the folder holds, by name, with its values."""
        manager = self._manager()
        if not self.folder.is_dir():
            return []
        return [
            WildcardFile(name, list(manager.get_values(name).iterate_string_values_weighted()))
            for name in sorted(manager.get_collection_names())
        ]

    def check(self, template: str, what: str = "prompt") -> None:
        """InvalidRequest for unbalanced braces, a template the package cannot parse, or a wildcard
        (here or inside a wildcard file) that has no file; the message names it."""
        from dynamicprompts.parser.parse import parse
        from pyparsing import ParseBaseException

        check_braces(template, what)
        manager = self._manager()
        seen: set[str] = set()

        def visit(text: str, where: str, depth: int) -> None:
            try:
                command = parse(text)
            except ParseBaseException as exc:
                raise InvalidRequest(f"{where}: not a dynamic prompt the parser can read: {exc}", param=what) from None
            for name in _wildcard_names(command):
                if name in seen:
                    continue
                seen.add(name)
                values = list(manager.get_values(name).iterate_string_values_weighted()) if ".." not in name else []
                if not values:
                    known = ", ".join(sorted(manager.get_collection_names())) if self.folder.is_dir() else ""
                    raise InvalidRequest(
                        f"{where}: no wildcard file for __{name}__ (looked for {self.folder / name}.txt, .json or "
                        f".yaml); the wildcards are: {known or 'none'}",
                        param=what,
                    )
                if depth < MAX_WILDCARD_DEPTH:
                    for value in values:
                        if "__" in value or "{" in value:
                            visit(value, f"{where}: in wildcard __{name}__", depth + 1)

        visit(template, what, 0)

    def expand(
        self, template: str, mode: DynamicMode, *, count: int = 1, seed: int | None = None, what: str = "prompt"
    ) -> list[str]:
        """The prompts ``template`` gives: ``count`` random ones drawn with ``seed`` (random mode), or
        every combination (combinatorial mode; InvalidRequest past MAX_COMBINATIONS, with the bound)."""
        from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator

        self.check(template, what)
        manager = self._manager()
        if mode == "random":
            return RandomPromptGenerator(manager, seed=seed).generate(template, count)
        prompts = CombinatorialPromptGenerator(manager).generate(template, MAX_COMBINATIONS + 1)
        if len(prompts) > MAX_COMBINATIONS:
            raise InvalidRequest(
                f"{what}: combinatorial mode gives more than {MAX_COMBINATIONS} prompts from this template; "
                f"at most {MAX_COMBINATIONS} (narrow a choice or a wildcard, or use random mode)",
                param=what,
            )
        return prompts


def _wildcard_names(command) -> list[str]:
    """The wildcard names a parsed template uses directly (a name built from a variable is left to the
    package, which cannot know it before drawing)."""
    from dynamicprompts.commands import WildcardCommand

    names: list[str] = []

    def walk(node) -> None:
        if isinstance(node, WildcardCommand):
            if isinstance(node.wildcard, str):
                names.append(node.wildcard)
            return
        for attr in ("tokens", "variants", "value", "values", "command", "inner"):
            child = getattr(node, attr, None)
            if child is None:
                continue
            for item in child if isinstance(child, list | tuple) else [child]:
                walk(item)

    walk(command)
    return names
