"""Prompt styles as AUTOMATIC1111 keeps them: ``AIGC_HOME/styles.csv``, one style a row.

The file is A1111's own (``modules/styles.py``): UTF-8 with a byte-order mark, a header row
``name,prompt,negative_prompt``, the csv module's quoting (a field with a comma, a quote or a newline is
quoted, quotes doubled), so a file copied from an A1111 install works here and back. A1111's older
``name,text`` header is read too. Applying styles follows A1111's rule: a style text holding ``{prompt}``
puts the prompt there; any other is appended after ", ". Styles apply in the order given, the positive
text to the prompt and the negative text to the negative prompt alike.

Every change (add, edit, remove, import) is written to a temporary file and renamed over the old one, so
a failed write or a refused import leaves the file as it was.
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InvalidRequest, NotFound, StudioError
from ..storage.files import write_atomic
from ..storage.owners import owned_path

__all__ = [
    "MAX_STYLES_FILE_BYTES",
    "PromptStyle",
    "StyleExists",
    "StyleStore",
    "apply_styles",
    "merge_prompts",
    "parse_styles_csv",
    "styles_csv",
]

FIELDS = ("name", "prompt", "negative_prompt")
MAX_STYLES_FILE_BYTES = 5_000_000
MAX_NAME = 200
MAX_TEXT = 20_000  # as ImageRequest's prompt


class StyleExists(StudioError):
    """A style of that name is already there (409: edit it instead)."""

    status = 409
    code = "style_exists"


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def merge_prompts(style_text: str, prompt: str) -> str:
    """A1111's rule for one style: ``{prompt}`` in the style takes the prompt; otherwise the style text
    follows the prompt after ", " (an empty side is left out)."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: list[PromptStyle]) -> tuple[str, str]:
    """The prompt and negative prompt with ``styles`` applied, in order."""
    for style in styles:
        prompt = merge_prompts(style.prompt, prompt)
        negative_prompt = merge_prompts(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def check_style(name: str, prompt: str, negative_prompt: str, where: str = "style") -> PromptStyle:
    """A style with its fields checked; InvalidRequest says which field is wrong and what is allowed."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"{where}: name must be a non-empty text", param="name")
    if name != name.strip():
        raise InvalidRequest(f"{where}: name {name!r} must not start or end with spaces", param="name")
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"{where}: name is at most {MAX_NAME} characters, got {len(name)}", param="name")
    if "\n" in name or "\r" in name:
        raise InvalidRequest(f"{where}: name {name!r} must be one line", param="name")
    for field, value in (("name", name), ("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}: {field} must be text", param=field)
        if "\x00" in value:
            raise InvalidRequest(f"{where}: {field} must not hold a NUL character", param=field)
        if len(value) > MAX_TEXT:
            raise InvalidRequest(f"{where}: {field} is at most {MAX_TEXT} characters, got {len(value)}", param=field)
    return PromptStyle(name, prompt, negative_prompt)


def parse_styles_csv(text: str, where: str = "styles.csv") -> list[PromptStyle]:
    """The styles of an A1111 styles.csv text; InvalidRequest naming the line for a malformed file.

    Accepted: a header with ``name`` and ``prompt`` (or A1111's older ``text``), ``negative_prompt``
    optional, columns in any order; fields quoted the csv way. Refused: no header, a row with more
    fields than the header, an unclosed quote, an empty or repeated name (A1111 would keep the last
    silently; here it is named, so nothing is lost unseen).
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return []
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise InvalidRequest(f"{where}: line 1: {exc}", param="file") from None
    prompt_column = "prompt" if "prompt" in header else "text" if "text" in header else None
    if "name" not in header or prompt_column is None:
        raise InvalidRequest(
            f"{where}: line 1 must be the header name,prompt,negative_prompt (A1111's styles.csv); got "
            f"{','.join(header)!r}",
            param="file",
        )
    styles: dict[str, PromptStyle] = {}
    line = reader.line_num
    while True:
        start = line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidRequest(f"{where}: line {start}: {exc}", param="file") from None
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            raise InvalidRequest(
                f"{where}: line {start}: {len(row)} fields, but the header has {len(header)} "
                "(quote a field that holds a comma)",
                param="file",
            )
        values = dict(zip(header, row, strict=False))
        name = values.get("name", "")
        style = check_style(
            name, values.get(prompt_column, ""), values.get("negative_prompt", ""), f"{where}: line {start}"
        )
        if name in styles:
            raise InvalidRequest(f"{where}: line {start}: the style {name!r} is there twice", param="file")
        styles[name] = style
    return list(styles.values())


def styles_csv(styles: list[PromptStyle]) -> str:
    """The styles as A1111 writes styles.csv (with the byte-order mark A1111's ``utf-8-sig`` writes)."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(style.as_dict() for style in styles)
    return "\ufeff" + out.getvalue()


class StyleStore:
    """The styles in ``path`` (AIGC_HOME/styles.csv), read fresh on every call so that an edit made in
    a text editor, or by the CLI beside a running server, is seen at once."""

    def __init__(self, path: Path, *, per_user: bool = True):
        self.local_path, self.per_user = path, per_user
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The caller's styles.csv: ``AIGC_HOME/styles.csv``, or a signed-in user's own (``per_user``;
        otherwise always the file given)."""
        return owned_path(self.local_path) if self.per_user else self.local_path

    def all(self) -> list[PromptStyle]:
        """Every style, in file order; InvalidRequest naming the line when the file is malformed."""
        if not self.path.is_file():
            return []
        return parse_styles_csv(self.path.read_text(encoding="utf-8-sig"), str(self.path))

    def get(self, name: str) -> PromptStyle:
        """The style called ``name``; NotFound lists the styles there are."""
        return self.resolve([name])[0]

    def resolve(self, names: list[str]) -> list[PromptStyle]:
        """The styles called ``names``, in that order; one NotFound naming every unknown one."""
        styles = {s.name: s for s in self.all()}
        unknown = [n for n in names if n not in styles]
        if unknown:
            known = ", ".join(styles) or "none (add one with `aigc prompt styles add`)"
            raise NotFound(
                f"no style {', '.join(map(repr, unknown))}; the styles are: {known}",
                param="styles",
                code="style_not_found",
            )
        return [styles[n] for n in names]

    def save(self, name: str, prompt: str = "", negative_prompt: str = "", *, replace: bool = True) -> PromptStyle:
        """Add the style ``name``, or change it (``replace``); StyleExists when it exists and ``replace``
        is False."""
        style = check_style(name, prompt, negative_prompt)
        with self._lock:
            styles = {s.name: s for s in self.all()}
            if name in styles and not replace:
                raise StyleExists(f"a style named {name!r} already exists; edit it instead", param="name")
            styles[name] = style
            self._write(list(styles.values()))
        return style

    def remove(self, name: str) -> PromptStyle:
        """Remove the style ``name`` and return it; NotFound when there is none."""
        with self._lock:
            removed = self.get(name)
            self._write([s for s in self.all() if s.name != name])
        return removed

    def import_csv(self, text: str, where: str = "the imported file", *, replace: bool = False) -> list[PromptStyle]:
        """Read an A1111 styles.csv and add its styles: ``replace`` swaps the whole set, otherwise a style
        of the same name is updated and the others are kept. The file is checked whole first: a
        malformed one changes nothing."""
        imported = parse_styles_csv(text, where)
        with self._lock:
            styles = {} if replace else {s.name: s for s in self.all()}
            styles.update({s.name: s for s in imported})
            self._write(list(styles.values()))
        return imported

    def export_csv(self) -> str:
        """The styles as an A1111 styles.csv text."""
        return styles_csv(self.all())

    def _write(self, styles: list[PromptStyle]) -> None:
        write_atomic(self.path, styles_csv(styles))
