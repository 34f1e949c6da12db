"""Every generated image is labeled: through the image service (plain engine), the A1111 and OpenAI APIs,
the compare grid; each label recorded with the image and each one off when its setting is; the raw
generation reproduced exactly with labels off; NSFW actions and the prompt block-list; exiftool reads
the result."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.engines.plain import PlainEngine
from aigc_studio.errors import InvalidRequest
from aigc_studio.images.infotext import write_png
from aigc_studio.labels import watermark
from aigc_studio.labels.aigc import SOURCE_CREATED, SOURCE_EDITED
from aigc_studio.labels.credentials import read_credentials
from aigc_studio.labels.embed import read_image_labels
from aigc_studio.services.compare import Axis
from aigc_studio.studio import Studio
from aigc_studio.ui.image_labels import labels_html

from . import schema
from .conftest import a1111_server

# Every label off and NSFW allowed: the studio as it was before labels.
ALL_OFF = {"label_visible": False, "label_metadata": False, "c2pa": False, "watermark": False, "nsfw_action": "allow"}
SIDE = 256  # the watermark needs at least watermark.MIN_SIDE pixels a side; 256 leaves room for the mark


def make(**settings) -> Studio:
    return Studio(load_config(model="echo", image_model="plain", **settings))


@pytest.fixture
def studio(aigc_home):
    s = make()
    yield s
    s.close()


def request(size: int = SIDE, seed: int = 7, prompt: str = "a lighthouse at dusk", **fields) -> ImageRequest:
    return ImageRequest(prompt=prompt, steps=1, seed=seed, width=size, height=size, **fields)


def raw_output(req: ImageRequest) -> Image.Image:
    """The engine called directly: the pixels before any label."""
    return PlainEngine().generate(req, "txt2img").images[0]


def record(studio: Studio, image_id: str) -> dict:
    return next(r for r in studio.images.list(limit=1000) if r["id"] == image_id)


def pixels(image_or_bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(image_or_bytes)) if isinstance(image_or_bytes, bytes) else image_or_bytes
    return np.asarray(image.convert("RGB")).astype(np.int16)


def outside(box: list[int], shape: tuple) -> np.ndarray:
    """A mask of the pixels outside the mark's box (right and bottom exclusive)."""
    keep = np.ones(shape[:2], dtype=bool)
    left, top, right, bottom = box
    keep[top:bottom, left:right] = False
    return keep


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_txt2img_file_carries_every_label_and_the_record_says_what_was_applied(studio):
    job = studio.images.submit(request())
    made = job.wait().images[0]
    data = made.path.read_bytes()
    assert data == made.data  # what the APIs send is the file
    assert np.array_equal(pixels(data), pixels(made.image))  # ... and GeneratedImage.image its pixels
    found = read_image_labels(data)
    assert found.infotext == made.infotext and found.infotext.startswith("a lighthouse at dusk\nSteps: 1,")
    assert (found.aigc.label, found.aigc.content_producer, found.aigc.produce_id) == ("1", "AIGC-Studio", made.id)
    assert found.integrity == "match" and sorted(found.aigc_where) == ["png-text", "xmp"]
    assert found.source_type == SOURCE_CREATED
    c2pa = read_credentials(data, "png", studio.labeler.credentials().trust_anchors())
    assert c2pa.state == "trusted", c2pa.reason
    assert c2pa.actions == ["c2pa.created"] and c2pa.source_type == SOURCE_CREATED
    assert c2pa.title == f"{made.id}.png" and c2pa.ingredients == []
    row = record(studio, made.id)
    assert row["watermark"] == watermark.payload_for(made.id) == row["labels"]["watermark"]
    assert studio.images.known_watermarks() == {row["watermark"]: made.id}
    reading = watermark.detect(Image.open(made.path), studio.images.known_watermarks())
    assert reading.found and reading.payload == row["watermark"] and reading.item == made.id
    assert row["nsfw_action"] == "none" and 0 <= row["nsfw_score"] < 0.8
    labels = row["labels"]
    assert labels["nsfw_score"] == row["nsfw_score"] and labels["nsfw"] == {"setting": "blur", "threshold": 80}
    assert labels["visible"]["text"] == "AI生成" and labels["visible"]["position"] == "bottom-right"
    left, top, right, bottom = labels["visible"]["box"]
    assert left > SIDE / 2 and top > SIDE / 2 and right <= SIDE and bottom <= SIDE  # in the bottom-right corner
    assert (labels["metadata"], labels["c2pa"], labels["source_type"]) == (True, True, SOURCE_CREATED)
    assert labels["digest"] == found.aigc.reserved_code1 and labels["producer"] == "AIGC-Studio"
    assert studio.jobs.describe(job.id)["phase"] is None  # "labeling" only while it runs (see below)


def test_progress_says_labeling_while_the_pipeline_runs(studio):
    seen = []
    label_image = studio.labeler.label_image

    def watching(*args, **kwargs):
        seen.append(studio.jobs.describe(studio.jobs.current.id)["phase"])
        return label_image(*args, **kwargs)

    studio.labeler.label_image = watching
    studio.images.generate(request(size=64, batch_size=2))
    assert seen == ["labeling", "labeling"]


def test_img2img_is_a_composite_edited_with_the_users_image_as_ingredient(studio):
    source = Image.new("RGB", (SIDE, SIDE), (200, 120, 40))
    made = studio.images.generate(request(denoising_strength=0.5), "img2img", init_image=source).images[0]
    found = read_image_labels(made.data)
    assert found.source_type == SOURCE_EDITED and found.integrity == "match"
    c2pa = read_credentials(made.data, "png", studio.labeler.credentials().trust_anchors())
    assert c2pa.state == "trusted" and "c2pa.edited" in c2pa.actions and c2pa.source_type == SOURCE_EDITED
    assert c2pa.ingredients == ["source.png (parentOf)"]
    assert record(studio, made.id)["labels"]["source_type"] == SOURCE_EDITED


def test_with_every_label_off_the_file_is_the_raw_generation_byte_for_byte(aigc_home):
    studio = make(**ALL_OFF)
    try:
        made = studio.images.generate(request()).images[0]
    finally:
        studio.close()
    raw = raw_output(request())
    assert np.array_equal(pixels(made.path.read_bytes()), pixels(raw))
    before = io.BytesIO()
    write_png(raw, before, made.infotext)  # what the studio wrote before labels existed
    assert made.path.read_bytes() == before.getvalue()
    found = read_image_labels(made.data)
    assert (found.aigc, found.source_type, found.integrity) == (None, None, None)
    assert read_credentials(made.data, "png").state == "absent"
    labels = record(studio, made.id)["labels"]
    assert (labels["visible"], labels["metadata"], labels["c2pa"], labels["watermark"]) == (None, False, False, None)
    assert labels["nsfw_action"] == "none" and labels["nsfw"]["setting"] == "allow" and labels["nsfw_score"] >= 0


def test_labels_on_change_only_the_marks_box_and_the_watermarks_small_amplitude(aigc_home):
    on, off = make(), make(**ALL_OFF)
    try:
        labeled = on.images.generate(request(seed=11)).images[0]
        plain = off.images.generate(request(seed=11)).images[0]
    finally:
        on.close()
        off.close()
    assert labeled.infotext == plain.infotext == read_image_labels(labeled.data).infotext
    raw = pixels(raw_output(request(seed=11)))
    assert np.array_equal(pixels(plain.data), raw)
    final = pixels(labeled.data)
    box = record(on, labeled.id)["labels"]["visible"]["box"]
    keep = outside(box, raw.shape)
    assert (final[~keep] != raw[~keep]).any()  # the mark is there
    # Outside the box only the watermark changed pixels: as close to the raw image as the watermark alone makes it.
    watermark_only = pixels(watermark.embed(raw_output(request(seed=11)), watermark.payload_for(labeled.id)))
    measured = psnr(watermark_only[keep], raw[keep])
    assert psnr(final[keep], raw[keep]) >= measured - 1.0
    assert measured >= 30  # a small amplitude: the watermark is invisible


@pytest.mark.parametrize("setting", ["label_visible", "label_metadata", "c2pa", "watermark"])
def test_each_label_off_is_absent_from_the_file_and_recorded_off(aigc_home, setting):
    studio = make(**{setting: False})
    try:
        made = studio.images.generate(request(seed=3)).images[0]
        anchors = studio.labeler.credentials().trust_anchors()
    finally:
        studio.close()
    labels, row = record(studio, made.id)["labels"], record(studio, made.id)
    found = read_image_labels(made.data)
    c2pa = read_credentials(made.data, "png", anchors)
    raw = raw_output(request(seed=3))
    if setting == "label_visible":
        assert labels["visible"] is None
        # no mark: the file is the raw image with the watermark only, corner included
        assert np.array_equal(pixels(made.data), pixels(watermark.embed(raw, labels["watermark"])))
    else:
        assert labels["visible"]["text"] == "AI生成"
    if setting == "label_metadata":
        assert (labels["metadata"], labels["producer"], labels["digest"]) == (False, None, None)
        assert (found.aigc, found.source_type) == (None, None)
        assert c2pa.state == "trusted" and c2pa.source_type == SOURCE_CREATED  # C2PA says it on its own
    else:
        assert labels["metadata"] and found.aigc.produce_id == made.id and found.integrity == "match"
    if setting == "c2pa":
        assert labels["c2pa"] is False and c2pa.state == "absent"
    else:
        assert labels["c2pa"] is True and c2pa.state == "trusted"
    if setting == "watermark":
        assert labels["watermark"] is None and row["watermark"] is None
        keep = outside(labels["visible"]["box"], pixels(raw).shape)
        assert np.array_equal(pixels(made.data)[keep], pixels(raw)[keep])  # outside the mark: the raw pixels
        assert watermark.detect(made.image, {watermark.payload_for(made.id): made.id}).item is None
    else:
        assert labels["watermark"] == row["watermark"] == watermark.payload_for(made.id)


def test_nsfw_blur_at_threshold_zero_is_applied_stored_and_shown(aigc_home):
    studio = make(nsfw_threshold=0, nsfw_action="blur")
    try:
        made = studio.images.generate(request(seed=5)).images[0]
    finally:
        studio.close()
    row = record(studio, made.id)
    assert row["nsfw_action"] == "blurred" and row["labels"]["nsfw"] == {"setting": "blur", "threshold": 0}
    keep = outside(row["labels"]["visible"]["box"], (SIDE, SIDE))
    raw, final = pixels(raw_output(request(seed=5))), pixels(made.data)
    assert final[keep].std(axis=0).max() < raw[keep].std(axis=0).min() / 3  # the noise is blurred away
    entry = next(e for e in studio.gallery.entries(kind="image") if e.id == made.id)
    assert (entry.nsfw_action, entry.nsfw_score) == ("blurred", row["nsfw_score"])
    shown = labels_html("en", entry.labels)
    assert f"NSFW {row['nsfw_score'] * 100:.0f}% · blurred" in shown and "AI-generated" in shown
    assert "已模糊" in labels_html("zh-CN", entry.labels) and "AI生成" in labels_html("zh-CN", entry.labels)
    listed = CliRunner().invoke(cli, ["images", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith(made.id))
    assert " blurred " in line and "visible,watermark,metadata,c2pa" in line


def test_nsfw_block_replaces_the_picture_with_grey(aigc_home):
    studio = make(nsfw_threshold=0, nsfw_action="block", watermark=False)
    try:
        made = studio.images.generate(request(seed=5)).images[0]
    finally:
        studio.close()
    row = record(studio, made.id)
    assert row["nsfw_action"] == "blocked"
    keep = outside(row["labels"]["visible"]["box"], (SIDE, SIDE))
    assert (pixels(made.data)[keep] == 128).all()  # nothing of the picture is left, only the mark
    assert read_image_labels(made.data).integrity == "match"  # what is served is still labeled


def test_blocklist_refuses_before_anything_is_queued_or_stored(aigc_home):
    studio = make(prompt_blocklist="castle, 城堡")

    def counts():
        conn = studio.db.conn
        return [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("jobs", "images")]

    try:
        with pytest.raises(InvalidRequest) as refused:
            studio.images.submit(request(prompt="an old castle on a hill"))
        assert "'castle'" in refused.value.message and "prompt_blocklist" in refused.value.message
        assert refused.value.param == "prompt"
        with pytest.raises(InvalidRequest, match="'城堡'"):
            studio.images.submit(request(prompt="山上的古老城堡"))
        with pytest.raises(InvalidRequest, match="'castle'"):  # the hires pass's own prompt too
            studio.images.submit(request(prompt="a hill", enable_hr=True, hr_prompt="a castle", size=64))
        with a1111_server(studio) as live:
            openai = httpx.post(f"{live.url}/v1/images/generations", json={"prompt": "a castle", "size": "256x256"})
            assert openai.status_code == 400
            assert "'castle'" in openai.json()["error"]["message"] and openai.json()["error"]["param"] == "prompt"
            sdapi = httpx.post(f"{live.url}/sdapi/v1/txt2img", json={"prompt": "a castle", "steps": 1})
            assert sdapi.status_code == 422 and "prompt_blocklist" in sdapi.json()["detail"]  # A1111's status
            assert counts() == [0, 0]
            allowed = httpx.post(f"{live.url}/v1/images/generations", json={"prompt": "a lake", "size": "256x256"})
            assert allowed.status_code == 200
        assert counts() == [1, 1]
    finally:
        studio.close()


def test_exiftool_reads_the_labels_of_a_labeled_file(studio):
    made = studio.images.generate(request(size=64)).images[0]
    out = subprocess.run(["exiftool", "-j", "-G1", str(made.path)], capture_output=True, text=True, check=True)
    tags = json.loads(out.stdout)[0]
    for key in ("XMP-TC260:Aigc", "PNG:AIGC"):
        assert json.loads(tags[key])["ProduceID"] == made.id
    assert tags["XMP-iptcExt:DigitalSourceType"] == SOURCE_CREATED
    assert tags["PNG:Parameters"] == made.infotext
    assert tags["CBOR:ActionsAction"] == "c2pa.created" and tags["JUMBF:JUMDLabel"] == "c2pa"


def test_a1111_and_openai_apis_return_the_labeled_files(studio):
    source = Image.new("RGB", (64, 64), (30, 90, 160))
    buffer = io.BytesIO()
    source.save(buffer, format="PNG")
    with a1111_server(studio) as live:
        txt = httpx.post(f"{live.url}/sdapi/v1/txt2img", json={"prompt": "a boat", "steps": 1, "width": 64})
        assert txt.status_code == 200, txt.text
        sent = base64.b64decode(txt.json()["images"][0])
        first = studio.images.list()[0]
        assert sent == Path(first["path"]).read_bytes()
        assert read_image_labels(sent).aigc.produce_id == first["id"]
        body = {
            "prompt": "a boat",
            "steps": 2,
            "width": 64,
            "height": 64,
            "init_images": [base64.b64encode(buffer.getvalue()).decode()],
            "denoising_strength": 0.5,
        }
        img2img = httpx.post(f"{live.url}/sdapi/v1/img2img", json=body, timeout=60)
        assert img2img.status_code == 200, img2img.text
        edited = base64.b64decode(img2img.json()["images"][0])
        assert read_image_labels(edited).source_type == SOURCE_EDITED
        assert "c2pa.edited" in read_credentials(edited, "png").actions
        unsaved = httpx.post(
            f"{live.url}/sdapi/v1/txt2img", json={"prompt": "a kite", "steps": 1, "do_not_save_samples": True}
        )
        kept = base64.b64decode(unsaved.json()["images"][0])
        found = read_image_labels(kept)
        assert found.integrity == "match" and found.aigc.produce_id.startswith("img-")
        assert found.aigc.produce_id not in [r["id"] for r in studio.images.list()]  # labeled, not kept
        openai = httpx.post(
            f"{live.url}/v1/images/generations",
            json={"prompt": "a gull", "size": "256x256", "response_format": "b64_json"},
            timeout=60,
        )
        gull = base64.b64decode(openai.json()["data"][0]["b64_json"])
        newest = studio.images.list()[0]
        assert read_image_labels(gull).aigc.produce_id == newest["id"] and newest["watermark"] is not None
        listed = httpx.get(f"{live.url}/api/images").json()
        assert listed[0]["labels"]["visible"]["text"] == "AI生成" and listed[0]["nsfw_action"] == "none"
        assert listed[0]["watermark"] == newest["watermark"]


def test_images_made_before_labels_show_as_not_labeled(studio):
    made = studio.images.generate(request(size=64)).images[0]
    with studio.db.tx() as conn:  # as m012 leaves a row made by an older studio
        conn.execute("UPDATE images SET labels = NULL, nsfw_score = NULL, nsfw_action = NULL, watermark = NULL")
    assert "images_watermark" in schema.indexes(studio.db, "images") and "m012_labels" in studio.db.migrations_applied()
    row = record(studio, made.id)
    assert (row["labels"], row["nsfw_score"], row["nsfw_action"]) == (None, None, None)
    assert "not labeled" in labels_html("en", None) and "未标识" in labels_html("zh-CN", None)
    listed = CliRunner().invoke(cli, ["images", "list"])
    line = next(line for line in listed.output.splitlines() if line.startswith(made.id))
    assert "not labeled" in line and " - " in line
    with a1111_server(studio) as live:
        shown = httpx.get(f"{live.url}/api/images").json()[0]
        assert (shown["labels"], shown["nsfw_score"], shown["nsfw_action"]) == (None, None, None)

    small = studio.images.generate(request(size=64)).images[0]  # under the watermark's minimum side
    assert small.labels["watermark"] is None and "128" in small.labels["watermark_skipped"]
    assert "no watermark: the image is too small" in labels_html("en", small.labels)


def test_compare_grid_is_labeled_with_the_comparisons_id(studio):
    comparison = studio.compare.images_compare(request(size=64), axes=[Axis("cfg_scale", [3, 7])])
    events = list(comparison)
    assert events[-1].type == "done"
    saved = studio.compare.get(comparison.id)
    data = studio.compare.grid_file(comparison.id).read_bytes()
    found = read_image_labels(data)
    assert found.aigc.produce_id == comparison.id and found.integrity == "match" and found.infotext is None
    assert read_credentials(data, "png").actions == ["c2pa.created"]
    assert saved["request"]["grid_labels"]["c2pa"] is True
    for cell in saved["results"]:  # each cell is a labeled gallery image
        assert record(studio, cell["image_id"])["labels"]["visible"]["text"] == "AI生成"


def test_arena_image_battle_with_a_blocked_prompt_is_refused_whole(aigc_home):
    studio = make(prompt_blocklist="castle")
    try:
        with pytest.raises(InvalidRequest, match=r"'castle'.*prompt_blocklist"):
            studio.arena.start("a castle", category="image", models=["plain", "plain2"])
        assert studio.db.conn.execute("SELECT count(*) FROM arena_battles").fetchone()[0] == 0
    finally:
        studio.close()


def test_cli_output_in_another_format_keeps_the_labels(aigc_home, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_IMAGE_MODEL", "plain")
    target = tmp_path / "boat.jpg"
    result = CliRunner().invoke(cli, ["image", "a boat", "--steps", "1", "--size", "256x256", "-o", str(target)])
    assert result.exit_code == 0, result.output
    found = read_image_labels(target.read_bytes())
    assert found.format == "jpeg" and found.integrity == "match" and found.source_type == SOURCE_CREATED
    assert read_credentials(target.read_bytes(), "jpeg").actions == ["c2pa.created"]


def test_a_real_tiny_model_through_the_a1111_api_gives_a_labeled_png(aigc_home, tmp_path):
    """The same on a real (tiny) diffusers model, as webuiapi asks for it: 128×128, so the watermark fits."""
    from .tiny_models import build_tiny_sd

    model = build_tiny_sd(tmp_path / "tiny", kind="sd15")
    studio = Studio(load_config(model="echo"))
    studio.registry.add(model.folder, model_id="tiny-sd15")
    try:
        with a1111_server(studio) as live:
            made = live.api.txt2img(prompt="a red fox", seed=7, steps=2, width=128, height=128, cfg_scale=5)
            assert made.info["sd_model_name"] == "tiny-sd15"
        row = studio.images.list()[0]
        data = Path(row["path"]).read_bytes()
        assert pixels(data).tolist() == pixels(made.image).tolist()  # the API's image is the file's
        found = read_image_labels(data)
        assert found.aigc.produce_id == row["id"] and found.integrity == "match"
        assert found.source_type == SOURCE_CREATED and found.infotext == made.info["infotexts"][0]
        c2pa = read_credentials(data, "png", studio.labeler.credentials().trust_anchors())
        assert c2pa.state == "trusted" and c2pa.actions == ["c2pa.created"]
        reading = watermark.detect(Image.open(io.BytesIO(data)), {row["watermark"]: row["id"]})
        assert reading.item == row["id"]
        assert row["nsfw_action"] == ("blurred" if row["nsfw_score"] >= 0.8 else "none")  # the defaults: blur at 80%
    finally:
        studio.close()


def test_progress_previews_carry_the_visible_mark_when_it_is_on(aigc_home):
    grey = Image.new("RGB", (128, 128), (128, 128, 128))
    on, off = make(), make(label_visible=False)
    try:
        marked = pixels(on.labeler.marked_preview(lambda: grey)())
        assert np.array_equal(pixels(off.labeler.marked_preview(lambda: grey)()), pixels(grey))
        assert on.labeler.marked_preview(lambda: None)() is None  # no preview yet
        tiny = Image.new("RGB", (8, 8), "gray")  # too small for the mark: shown as it is
        assert on.labeler.marked_preview(lambda: tiny)() is tiny
    finally:
        on.close()
        off.close()
    changed = np.argwhere((marked != pixels(grey)).any(axis=2))
    assert changed.size and changed[:, 0].min() > 64 and changed[:, 1].min() > 64  # only in the bottom-right corner
