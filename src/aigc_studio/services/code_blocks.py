"""Code in a model's answer: the fenced blocks, their languages, and a guess at the language a request
asks for.

Small models write fences loosely: ```` ``` ```` or ``~~~``, a tag or none, an indented fence inside a
list, a tag with extras (```` ```js title="sort.js" ````), a fence never closed because the answer was
cut off at the token limit. All of these are read. An answer with no fence at all whose lines are
plainly code is taken whole (the block says so, for the version's note); prose is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..contracts import RUN_LANGUAGES

__all__ = [
    "LANGUAGE_TITLES",
    "CodeBlock",
    "canonical_language",
    "extract_blocks",
    "language_in_request",
    "sniff_language",
]

# How the templates name a language ("Write a {language} program").
LANGUAGE_TITLES = {"python": "Python", "javascript": "JavaScript"}
# Fence tags that are a run language by another name (beyond the names the sandbox accepts).
_TAG_ALIASES = {"jsx": "javascript", "mjs": "javascript", "cjs": "javascript", "py3": "python", "python2": "python"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")


@dataclass(frozen=True)
class CodeBlock:
    """One block of code in an answer. ``language`` is canonical ("python", "javascript") for the run
    languages, the tag as written (lowercased) for any other, None when the fence had no tag."""

    code: str
    language: str | None
    tag: str = ""
    closed: bool = True  # False: the fence was still open where the answer ended
    fenced: bool = True  # False: no fence in the answer; the whole answer was taken as code


def canonical_language(name: str | None) -> str | None:
    """ "python" / "javascript" for any of their names (py, python3, js, node, ...); another name
    lowercased as written; None for none."""
    if not name or not name.strip():
        return None
    name = name.strip().lower()
    for language, names in RUN_LANGUAGES.items():
        if name in names:
            return language
    return _TAG_ALIASES.get(name, name)


def _tag(info: str) -> str:
    """The language word of a fence's info string: ``js title="x"`` → js, ``{.python}`` → python,
    ``python:sort.py`` → python."""
    word = info.strip().split()[0] if info.strip() else ""
    word = word.strip("{}.").split(":")[0].split(",")[0]
    return word if re.fullmatch(r"[A-Za-z0-9_+#-]{1,30}", word) else ""


def _dedent(lines: list[str], indent: str) -> list[str]:
    # Remove the fence's own indentation (a fence inside a list item), never more than a line has.
    return [line[len(indent) :] if line.startswith(indent) else line.lstrip(" \t") for line in lines]


def extract_blocks(answer: str) -> list[CodeBlock]:
    """The code blocks of ``answer``, in order. Empty blocks are skipped; a fence still open at the end
    gives a block with ``closed`` False; an answer without fences that is plainly code gives one block
    with ``fenced`` False; prose gives none."""
    lines = answer.splitlines()
    blocks: list[CodeBlock] = []
    i = 0
    saw_fence = False
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        saw_fence = True
        fence, indent, info = opening["fence"], opening["indent"], opening["info"]
        body: list[str] = []
        i += 1
        closed = False
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            # A closing fence is the same character, at least as long, with no tag after it.
            closes = closing and not closing["info"] and closing["fence"][0] == fence[0]
            if closes and len(closing["fence"]) >= len(fence):
                closed = True
                i += 1
                break
            body.append(lines[i])
            i += 1
        code = "\n".join(_dedent(body, indent)).strip("\n")
        if code.strip():
            tag = _tag(info)
            blocks.append(CodeBlock(code + "\n", canonical_language(tag), tag.lower(), closed))
    if not saw_fence and _plainly_code(lines):
        code = answer.strip("\n")
        blocks.append(CodeBlock(code + "\n", None, "", True, fenced=False))
    return blocks


_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:def|class|import|from|return|if|elif|else|for|while|try|except|finally|with|function|const|let|var|
           async|await|export|switch|case|break|continue|throw|raise|pass)\b
      | console\.|print\(|module\.exports|\#|//|/\*
      | .*[;{}]\s*$
      | .*\)\s*:?\s*$
      | [\w.\[\]]+\s*(?:=|\+=|-=|\*=|/=)\s*\S
      | [}\])]
    )""",
    re.VERBOSE,
)


def _plainly_code(lines: list[str]) -> bool:
    """True when the answer reads as a program: at least two lines, four in five of them code-like and
    none a plain sentence (words ending in a full stop)."""
    content = [line for line in lines if line.strip()]
    if len(content) < 2:
        return False
    sentence = re.compile(r"^[A-Z\u4e00-\u9fff][^;{}()=]*[.。!?！？:：]$")
    if any(sentence.match(line.strip()) and len(line.split()) > 3 for line in content):
        return False
    code_like = sum(1 for line in content if _CODE_LINE.match(line))
    return code_like * 5 >= len(content) * 4


_PY_SIGNS = re.compile(
    r"^\s*(def |elif |import |from \S+ import |print\(|class \w+.*:\s*$)|:\s*$|\bself\b|\bNone\b", re.M
)
_JS_SIGNS = re.compile(r"\bfunction\b|\bconst |\blet |\bvar |console\.log|=>|;\s*$|\bnull\b|\bundefined\b|===", re.M)


def sniff_language(code: str) -> str | None:
    """ "python" or "javascript" when the code reads clearly as one of them, else None."""
    py, js = len(_PY_SIGNS.findall(code)), len(_JS_SIGNS.findall(code))
    if py > js:
        return "python"
    if js > py:
        return "javascript"
    return None


# A language named in a request, in English or Chinese text ("用 Python 写", "用JS实现"): letters next
# to Chinese characters count as a word's edge.
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_+#])"
_REQUEST_NAMES = {
    "javascript": r"javascript|js|node(?:\.?js)?|ecmascript",
    "python": r"python3?|py",
}


def language_in_request(text: str) -> str | None:
    """The run language a request names ("write a JavaScript bubble sort" → javascript, "用 Python 写"
    → python); None when it names neither, or both (a translation between them is for the fences to
    tell)."""
    found = {
        language
        for language, names in _REQUEST_NAMES.items()
        if re.search(_EDGE_BEFORE + f"(?:{names})" + _EDGE_AFTER, text, re.IGNORECASE)
    }
    return found.pop() if len(found) == 1 else None
