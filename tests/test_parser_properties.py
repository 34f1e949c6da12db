"""Properties of the parsers and writers of what the studio records: A1111 infotext (images/infotext.py)
and the AIGC labels (labels/: the AIGC JSON field, Markdown front matter, HTML meta, .docx properties,
the text label line, the watermark's payload bits).

Each writer's output parses back to what was written (round trip), over any Unicode text: commas,
colons, quotes, newlines, Chinese, control and line-separator characters. Each parser takes arbitrary
input without raising anything but its documented ValueError, and returns what it can.

Bounded (a few hundred examples each, no deadline: the machine is shared) and repeatable
(``derandomize``): a failure reproduces. tests/test_infotext.py and tests/test_label_files.py hold the
narrower properties written with those modules (A1111's request fields, XMP forms, image files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re

import numpy as np
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from aigc_studio.images.infotext import format_infotext, parse_infotext, read_infotext, save_image, to_request_fields
from aigc_studio.labels.aigc import AigcLabel, LabelFormatError
from aigc_studio.labels.text import (
    TEXT_LABEL,
    TextLabeling,
    add_label_line,
    find_label_line,
    front_matter,
    read_text_labels,
    strip_label_line,
)
from aigc_studio.labels.watermark import bits_of, detect, payload_of
from aigc_studio.services.export import to_docx, to_html, to_markdown

SETTINGS = {"deadline": None, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}

# Any character but lone surrogates (which no UTF-8 file or JSON string can carry).
CHARACTER = st.characters(exclude_categories=["Cs"])
# Text a user types, weighted towards what the formats treat specially.
SPECIAL = st.sampled_from(
    [
        *(",", ":", '"', "'", "\n", "\r\n", "\\", "{", "}", "(", ")", "x", "8x8", "一只猫，水彩画：高清"),
        *("\x00", "\x85", "\u2028", "\ufffe", " ", "\t", "Negative prompt:", "Template: "),
        "Steps: 20, Seed: 1, Size: 8x8",
    ]
)
TEXT = st.lists(st.one_of(st.text(CHARACTER, max_size=8), SPECIAL), max_size=6).map("".join)


# -- A1111 infotext ------------------------------------------------------------------------------


def _as_a1111_keeps(text: str) -> str:
    # What the infotext layout can carry for a prompt: lines split at "\n", each stripped, none starting
    # with "Negative prompt:" (that line starts the negative prompt, in A1111 too), no blank first line.
    lines = [line.strip() for line in text.split("\n")]
    return "\n".join(line for line in lines if not line.startswith("Negative prompt:")).strip()


PROMPT = TEXT.map(_as_a1111_keeps)
KEY = st.from_regex(r"\A\w[\w \-/]{1,12}\Z")  # what format_infotext accepts as a key
SIZE = re.compile(r"(\d+)x(\d+)")


@settings(max_examples=400, **SETTINGS)
@given(PROMPT, PROMPT, st.dictionaries(KEY, TEXT, min_size=3, max_size=6))
@example('a cat, 猫: "quoted"\nline two', "blurry, 模糊", {"Steps": "20", "Model": "a, b: c", "VAE": '"x"'})
def test_infotext_parameters_written_then_parsed_come_back(prompt, negative, params):
    assume(all(value != key for key, value in params.items()))  # a value equal to its key is a flag
    expected: dict[str, str] = {}
    for key, value in params.items():
        size = SIZE.fullmatch(value)  # A1111 splits a "WxH" value into "<key>-1" and "<key>-2"
        if size:
            expected[f"{key}-1"], expected[f"{key}-2"] = size.groups()
        else:
            expected[key] = value
    parsed = parse_infotext(format_infotext(prompt, negative, params))
    assert (parsed.prompt, parsed.negative_prompt, parsed.params) == (prompt, negative, expected)


@settings(max_examples=600, **SETTINGS)
@given(st.one_of(st.text(CHARACTER), st.lists(st.one_of(TEXT, SPECIAL), max_size=8).map("\n".join)))
def test_infotext_parsing_never_raises_and_returns_what_it_can(text):
    parsed = parse_infotext(text)
    assert isinstance(parsed.prompt, str) and isinstance(parsed.negative_prompt, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.params.items())
    # Typing the fields refuses a value of the wrong type with ValueError naming it, nothing else.
    with contextlib.suppress(ValueError):
        to_request_fields(parsed)


@settings(max_examples=100, **SETTINGS)
@given(TEXT.filter(bool), st.sampled_from([".png", ".jpg", ".webp"]))
def test_infotext_survives_the_image_file(tmp_path_factory, text, suffix):
    # PNG text chunks (tEXt, or iTXt for what Latin-1 cannot hold) and EXIF UserComment (JPEG, WebP).
    # EXIF pads a comment with NULs, so trailing NULs are padding to every reader, A1111's too.
    path = tmp_path_factory.mktemp("infotext") / f"image{suffix}"
    save_image(Image.new("RGB", (8, 8), "red"), path, text)
    assert read_infotext(path) == (text.rstrip("\x00") if suffix != ".png" else text)


# -- the AIGC label field ------------------------------------------------------------------------

LABEL_FIELD = st.one_of(st.text(CHARACTER, max_size=20), TEXT, st.text(CHARACTER, min_size=200, max_size=300))
LABELS = st.builds(
    AigcLabel,
    content_producer=LABEL_FIELD,
    produce_id=LABEL_FIELD,
    label=st.sampled_from(["1", "2", "3"]),
    content_propagator=LABEL_FIELD,
    propagate_id=LABEL_FIELD,
    reserved_code2=LABEL_FIELD,
)


@settings(max_examples=300, **SETTINGS)
@given(LABELS)
def test_the_aigc_json_round_trips(label):
    assert AigcLabel.from_json(label.to_json()) == label
    assert AigcLabel.from_json(label.to_json().encode()) == label


@settings(max_examples=600, **SETTINGS)
@given(
    st.one_of(
        st.text(CHARACTER),
        st.binary(),
        st.sampled_from(["[]", "null", "1", '"x"', '{"Label": 4}', '{"Label": null}', '{"Label": 1.0}', "{"]),
        st.dictionaries(st.sampled_from(["Label", "ContentProducer", "ProduceID", "x"]), st.none() | TEXT).map(
            json.dumps
        ),
    )
)
def test_the_aigc_json_parser_refuses_junk_with_label_format_error_only(data):
    try:
        label = AigcLabel.from_json(data)
    except LabelFormatError as exc:
        assert str(exc).startswith("the AIGC label")
    else:
        assert label.label in ("1", "2", "3")


# -- text labels: the label line, front matter, HTML meta, .docx ------------------------------


@settings(max_examples=400, **SETTINGS)
@given(TEXT, st.sampled_from(["zh", "en"]), st.sampled_from(["start", "end"]))
def test_the_label_line_is_added_found_and_stripped(body, language, position):
    labelled = add_label_line(body, language, position)
    found = find_label_line(labelled)
    if find_label_line(body) is not None:  # a text that carries a line already is left as it is
        assert labelled == body
    elif body.strip():
        assert found == (TEXT_LABEL[language], position)
        # the body back as the digest takes it: \r\n as \n, without the whitespace around it
        assert strip_label_line(labelled).strip() == body.replace("\r\n", "\n").strip()
    else:
        assert found is not None and found[0] == TEXT_LABEL[language]


_NOT_YAML = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff]")


@settings(max_examples=400, **SETTINGS)
@given(LABELS, TEXT, TEXT)
@example(AigcLabel("", "", reserved_code2="\x85"), "", "")  # NEL: splitlines() cut the JSON there
@example(AigcLabel("平台\u2028", "id"), "\x1e title", "body")  # LS in the JSON, a record separator in the title
def test_markdown_front_matter_round_trips(label, title, body):
    data = (front_matter(label, title) + body).encode()
    read = read_text_labels(data, "article.md")
    assert read.aigc == label and read.aigc_error is None
    # YAML cannot hold line breaks or control characters in a one-line scalar: the title has spaces there
    assert read.title == _NOT_YAML.sub(" ", title)


def _export(kind: str, content: str, title: str, labeling: TextLabeling) -> bytes:
    if kind == "md":
        return to_markdown(content, title, labeling).encode()
    if kind == "html":
        return to_html(content, title, labeling=labeling).encode()
    return to_docx(content, title, labeling)


@settings(max_examples=150, **SETTINGS)
@given(
    LABELS,
    TEXT,
    st.one_of(TEXT, st.just("# 标题\n\nSome *text*, 中文。\n\n- a\n- b\n")),
    st.sampled_from(["zh", "en", None]),
    st.sampled_from(["start", "end"]),
    st.sampled_from(["md", "html", "docx"]),
)
@example(AigcLabel("p", "i"), "\x1f", "", "zh", "start", "docx")  # was a ValueError from python-docx
@example(AigcLabel("p" * 300, "i"), "t", "body", None, "end", "docx")  # was: over 255 characters
def test_an_exported_document_carries_its_labels_back(label, title, content, language, position, kind):
    data = _export(kind, content, title, TextLabeling(language, position, aigc=label))
    read = read_text_labels(data, f"article.{kind}")
    # ReservedCode1 is the exporter's digest of the body it wrote, and it matches that body
    assert read.aigc is not None and dataclasses.replace(read.aigc, reserved_code1="") == label
    assert read.integrity == "match"
    if language:
        assert read.label_line in TEXT_LABEL.values()


@settings(max_examples=400, **SETTINGS)
@given(
    st.one_of(st.binary(max_size=600), TEXT.map(str.encode), st.just(b"---\nAIGC: '{'\n---\n")),
    st.sampled_from([None, "a.md", "a.html", "a.txt", "a.docx", "a"]),
)
def test_reading_text_labels_from_junk_raises_value_error_only(data, filename):
    with contextlib.suppress(ValueError):
        read_text_labels(data, filename)


# -- the watermark's payload ---------------------------------------------------------------------


@settings(max_examples=300, **SETTINGS)
@given(st.integers(0, 2**32 - 1))
def test_the_watermark_payload_bits_round_trip(payload):
    assert payload_of(bits_of(payload).astype(float)) == payload


@settings(max_examples=8, **SETTINGS)
@given(
    st.integers(1, 300),
    st.integers(1, 300),
    st.sampled_from(["RGB", "L", "RGBA", "P", "1"]),
    st.integers(0, 2**32 - 1),
)
def test_reading_a_watermark_from_any_picture_never_raises(width, height, mode, seed):
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    picture = Image.fromarray(noise).convert(mode)
    reading = detect(picture.convert("RGB"), {})
    assert reading.payload is None or 0 <= reading.payload < 2**32
    assert 0 <= reading.confidence <= 1
    # an image the studio did not mark reads as unmarked
    assert not reading.found or reading.item is None


def test_a_docx_export_of_a_title_with_control_characters_opens():
    data = to_docx("text\x0b here", "a\x1ftitle", TextLabeling("en", "end", aigc=AigcLabel("p", "i")))
    from docx import Document

    document = Document(io.BytesIO(data))
    assert document.core_properties.title == "a\ufffdtitle"
    assert document.paragraphs[0].text == "text\ufffd here"


def test_a_document_titled_with_a_control_character_exports_to_word(tmp_path):
    # was a 500: python-docx refused the title; the fuzzer's titles hold such characters
    import httpx

    from .conftest import studio_server

    with studio_server(tmp_path / "home", load_default=False, model="echo", image_model="plain") as live:
        body = {"title": "Tides\x1f and moons", "model": "echo", "sections": 1, "length": 100}
        r = httpx.post(live.url + "/api/write/outline", json=body, timeout=60)
        assert r.status_code == 200, r.text
        r = httpx.get(f"{live.url}/api/documents/{r.json()['id']}/export", params={"format": "docx"}, timeout=60)
    assert r.status_code == 200, r.text
    from docx import Document

    assert Document(io.BytesIO(r.content)).core_properties.title == "Tides\ufffd and moons"
