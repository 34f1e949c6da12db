"""Inspect: files from other tools, files from this studio, tampered and stripped files, text exports, and
the `aigc inspect` command. Real components throughout: Pillow-written files, exiftool, c2pa-python
with certificates made in the test, the RivaGAN watermark and the NSFW classifier's ONNX models, a
real SQLite gallery with the plain image engine."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.contracts import ImageRequest
from aigc_studio.errors import InvalidRequest, TooLarge
from aigc_studio.images.infotext import write_png
from aigc_studio.labels.aigc import SOURCE_CREATED, AigcLabel, image_digest
from aigc_studio.services.inspect import summary
from aigc_studio.studio import Studio

INFOTEXT = (
    "a red fox in snow\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 256x256"
)
IPTC_CREATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@pytest.fixture
def studio(aigc_home):
    studio = Studio(load_config(model="echo", image_model="plain"))
    yield studio
    studio.close()


def picture(size: int = 256, seed: int = 0) -> Image.Image:
    """A photo-like test picture: smooth gradients with texture (the watermark needs some detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x * 200 + 30, y * 180 + 40, (1 - x) * 150 + 60], axis=-1)
    noise = rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def png_bytes(image: Image.Image, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **save)
    return buf.getvalue()


def jpeg_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def change_last_pixel(data: bytes) -> bytes:
    """The same PNG, every chunk kept (metadata, C2PA manifest), with one channel of its last pixel
    changed: the last byte of the filtered scanlines is referenced by no later byte, whatever the filter."""
    chunks = _chunks(data)
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")))
    raw[-1] ^= 0x10
    out, written = [data[:8]], False
    for kind, body in chunks:
        if kind == b"IDAT":
            if not written:
                out.append(_chunk(b"IDAT", zlib.compress(bytes(raw))))
                written = True
            continue
        out.append(_chunk(kind, body))
    return b"".join(out)


def strip_metadata(data: bytes) -> bytes:
    """What most tools do on save: Pillow re-writes the pixels and nothing else."""
    return png_bytes(Image.open(io.BytesIO(data)).convert("RGB"))


def labeled_file(studio: Studio, image: Image.Image, produce_id: str, fmt: str = "png") -> bytes:
    """A file as the studio labels one, built from the label libraries: watermark, TC260 label over the
    final pixels, IPTC, infotext, then C2PA with the studio's own credentials."""
    from aigc_studio.labels.credentials import Credentials
    from aigc_studio.labels.embed import encode_image
    from aigc_studio.labels.watermark import embed, payload_for

    marked = embed(image, payload_for(produce_id))
    label = AigcLabel("AIGC-Studio", produce_id, reserved_code1=image_digest(marked))
    data = encode_image(marked, fmt, infotext=INFOTEXT, aigc=label, source_type=SOURCE_CREATED)
    credentials = Credentials(studio.config.home / "c2pa")
    credentials.ensure()
    return credentials.sign(data, fmt, title=f"{produce_id}.{fmt}", source_type=SOURCE_CREATED, produce_id=produce_id)


def gallery_image(studio: Studio) -> dict:
    """An image generated through the studio (plain engine), as the gallery keeps it."""
    request = ImageRequest(prompt="a red fox in snow", model="plain", width=256, height=256, steps=2, seed=42)
    image_id = studio.images.generate(request).images[0].id
    return next(r for r in studio.images.list(limit=10) if r["id"] == image_id)


# -- files from other tools --------------------------------------------------------------------------


def test_an_a1111_png_with_only_parameters(studio):
    buf = io.BytesIO()
    write_png(picture(), buf, INFOTEXT)
    report = studio.inspector.inspect(buf.getvalue(), "00001-42.png")
    assert report["verdict"] == "AI-generated (A1111 parameters)"
    assert report["file"] == {
        "name": "00001-42.png",
        "kind": "image",
        "format": "png",
        "size": len(buf.getvalue()),
        "width": 256,
        "height": 256,
    }
    a1111 = report["a1111"]
    assert a1111["infotext"] == INFOTEXT
    assert (a1111["prompt"], a1111["negative_prompt"]) == ("a red fox in snow", "blurry")
    assert a1111["parameters"]["Sampler"] == "Euler a" and a1111["parameters"]["Seed"] == "42"
    assert a1111["parameters"]["Size-1"] == "256"
    assert report["aigc"]["found"] is False and report["aigc"]["reason"] == "no TC260 AIGC label"
    assert report["c2pa"]["state"] == "absent"
    assert report["watermark"]["found"] is False and report["item"] is None


def test_a_plain_jpeg_carries_nothing_and_says_so(studio):
    report = studio.inspector.inspect(jpeg_bytes(picture()), "photo.jpg")
    assert report["verdict"] == "No AI label found (no TC260 label, AI source type, C2PA credentials or watermark)"
    assert report["file"]["format"] == "jpeg"
    for kind in ("a1111", "aigc", "iptc", "watermark"):
        assert report[kind]["found"] is False, kind
    assert report["c2pa"]["state"] == "absent"
    assert 0 <= report["nsfw"]["score"] < 0.5 and report["nsfw"]["stored_score"] is None
    text = summary(report)
    assert text.startswith("No AI label found")
    assert "\nTC260 AIGC label: absent (no TC260 AIGC label)" in text
    assert "\nC2PA: absent" in text and "\nStudio item: absent" in text


def test_an_iptc_source_type_written_by_exiftool(studio, tmp_path):
    path = tmp_path / "tagged.jpg"
    path.write_bytes(jpeg_bytes(picture()))
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", f"-XMP-iptcExt:DigitalSourceType={IPTC_CREATED}", str(path)],
        check=True,
    )
    report = studio.inspector.inspect(path.read_bytes(), path.name)
    assert report["iptc"]["source_type"] == IPTC_CREATED
    assert report["iptc"]["meaning"] == "created by a trained AI model from a prompt (trainedAlgorithmicMedia)"
    assert report["verdict"] == "AI-generated (IPTC trainedAlgorithmicMedia)"
    assert report["aigc"]["found"] is False


def test_a_camera_source_type_is_no_ai_claim_and_a_malformed_label_is_flagged(studio, tmp_path):
    path = tmp_path / "camera.jpg"
    path.write_bytes(jpeg_bytes(picture()))
    capture = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-XMP-iptcExt:DigitalSourceType={capture}", str(path)])
    report = studio.inspector.inspect(path.read_bytes(), path.name)
    assert report["iptc"]["meaning"] == "captured by a camera (digitalCapture)" and report["iptc"]["ai"] is False
    assert report["verdict"] == "No AI label found (no TC260 label, AI source type, C2PA credentials or watermark)"

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("AIGC", "{not json")
    report = studio.inspector.inspect(png_bytes(picture(), pnginfo=info), "odd.png")
    assert report["aigc"]["found"] is False and report["aigc"]["reason"].startswith("an AIGC field is present but")
    assert report["verdict"].endswith("; warning: a TC260 label is there but malformed")


def test_c2pa_signed_elsewhere_is_valid_but_not_trusted(studio, tmp_path):
    from aigc_studio.labels.credentials import Credentials

    # another signer's CA, made here: a valid signature that chains to nothing this studio trusts
    other = Credentials(tmp_path / "someone-else")
    other.ensure()
    signed = other.sign(png_bytes(picture()), "png", title="x.png", source_type=SOURCE_CREATED, produce_id="img-1")
    report = studio.inspector.inspect(signed, "x.png")
    c2pa = report["c2pa"]
    assert c2pa["state"] == "valid", c2pa
    assert c2pa["actions"] == ["c2pa.created"] and c2pa["source_type"] == SOURCE_CREATED
    assert report["verdict"] == "AI-generated (C2PA valid)"


# -- files from this studio --------------------------------------------------------------------------


def test_a_studio_file_reports_every_label_and_the_item(studio):
    record = gallery_image(studio)
    data = labeled_file(studio, picture(), record["id"])
    report = studio.inspector.inspect(data, f"{record['id']}.png")
    aigc = report["aigc"]
    assert aigc["fields"]["ProduceID"] == record["id"] and aigc["fields"]["ContentProducer"] == "AIGC-Studio"
    assert aigc["label"] == "1" and aigc["meaning"] == "generated by AI"
    assert aigc["integrity"] == "match" and {"xmp", "png-text"} <= set(aigc["where"])
    assert report["iptc"]["source_type"] == IPTC_CREATED
    assert report["c2pa"]["state"] == "trusted", report["c2pa"]
    from aigc_studio.labels.watermark import payload_for

    mark = report["watermark"]
    assert mark["found"] and mark["payload"] == f"{payload_for(record['id']):08x}"
    assert mark["item"] == record["id"] and mark["in_gallery"] and mark["link"] == f"/api/images/{record['id']}.png"
    assert report["item"]["id"] == record["id"] and report["item"]["prompt"] == "a red fox in snow"
    assert report["item"]["link"] == f"/api/images/{record['id']}.png"
    assert report["verdict"] == (
        f"AI-generated (TC260 label 1, IPTC trainedAlgorithmicMedia, C2PA trusted, watermark → {record['id']},"
        " A1111 parameters)"
    )
    text = summary(report)
    assert "integrity: match" in text and f"{record['id']}: a red fox in snow" in text


def test_one_changed_pixel_breaks_the_integrity_and_the_signature(studio):
    data = labeled_file(studio, picture(), "img-0123abcd")
    tampered = change_last_pixel(data)
    before = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
    after = np.asarray(Image.open(io.BytesIO(tampered)).convert("RGB"), dtype=int)
    assert int((before != after).any(axis=-1).sum()) == 1  # one pixel, nothing else
    report = studio.inspector.inspect(tampered, "tampered.png")
    assert report["aigc"]["found"] and report["aigc"]["integrity"] == "mismatch"
    assert report["c2pa"]["state"] == "invalid"
    assert "dataHash.mismatch" in report["c2pa"]["reason"]
    assert report["verdict"].endswith("; warning: content changed since labeling, C2PA credentials invalid")


def test_stripped_metadata_leaves_the_watermark_pointing_to_the_item(studio):
    from aigc_studio.labels.watermark import payload_for

    record = gallery_image(studio)
    stripped = strip_metadata(Path(record["path"]).read_bytes())
    report = studio.inspector.inspect(stripped, "stripped.png")
    assert report["aigc"]["found"] is False and report["c2pa"]["state"] == "absent"
    assert report["a1111"]["found"] is False
    mark = report["watermark"]
    assert mark["found"] and mark["payload"] == f"{payload_for(record['id']):08x}"
    assert mark["item"] == record["id"] and mark["link"] == f"/api/images/{record['id']}.png"
    assert report["item"]["id"] == record["id"]
    assert report["verdict"] == f"AI-generated (watermark → {record['id']})"


def test_a_gallery_item_shows_its_stored_nsfw_result(studio):
    record = gallery_image(studio)
    report = studio.inspector.inspect(Path(record["path"]).read_bytes(), "x.png")
    assert report["item"]["id"] == record["id"]
    assert report["nsfw"]["stored_score"] == record["nsfw_score"] and report["nsfw"]["stored_action"] == "none"
    assert f"stored: {record['nsfw_score']:.2f}, action none" in summary(report)


# -- text exports ------------------------------------------------------------------------------------


def exported(studio: Studio, fmt: str):
    """An article (its outline, by the echo engine) exported as the Write tab exports it."""
    from aigc_studio.services.article_spec import ArticleSpec

    run = studio.writing.start(ArticleSpec(title="Tea", sections=2), outline_only=True)
    list(run)
    return run.document_id, studio.writing.export(run.document_id, fmt)


@pytest.mark.parametrize("fmt, format_name, where", [("md", "markdown", "front-matter"), ("html", "html", "html-meta")])
def test_a_text_export_reports_its_label_and_the_document(studio, fmt, format_name, where):
    doc_id, out = exported(studio, fmt)
    report = studio.inspector.inspect(out.data, out.filename)
    assert report["file"]["kind"] == "text" and report["file"]["format"] == format_name
    aigc = report["aigc"]
    assert aigc["fields"]["ProduceID"] == f"{doc_id}/v1" and aigc["where"] == [where]
    assert aigc["integrity"] == "match"
    assert report["text"]["label_line"] == "本文由人工智能生成" and report["text"]["position"] == "end"
    assert report["item"]["id"] == doc_id and report["item"]["version"] == 1 and report["item"]["prompt"] == "Tea"
    assert report["verdict"] == "AI-generated (TC260 label 1, label line)"
    assert report["c2pa"]["state"] == "absent" and report["watermark"]["found"] is False


@pytest.mark.parametrize("fmt, before, after", [("md", "# Tea", "# Tex"), ("html", "<h1>Tea</h1>", "<h1>Tex</h1>")])
def test_a_text_export_edited_by_one_character_no_longer_matches(studio, fmt, before, after):
    _, out = exported(studio, fmt)
    text = out.data.decode("utf-8")
    assert text.count(before) == 1
    report = studio.inspector.inspect(text.replace(before, after).encode("utf-8"), out.filename)
    assert report["aigc"]["integrity"] == "mismatch"
    assert report["verdict"] == "AI-generated (TC260 label 1, label line); warning: content changed since labeling"
    assert "integrity: mismatch — ReservedCode1 does not match the content" in summary(report)


def test_a_docx_export_edited_by_one_character_no_longer_matches(studio):
    import docx

    doc_id, out = exported(studio, "docx")
    report = studio.inspector.inspect(out.data, out.filename)
    assert report["aigc"]["integrity"] == "match" and report["aigc"]["where"] == ["docx-properties"]
    document = docx.Document(io.BytesIO(out.data))
    heading = next(p for p in document.paragraphs if p.text == "Tea")
    heading.runs[0].text = "Tex"
    buf = io.BytesIO()
    document.save(buf)
    edited = studio.inspector.inspect(buf.getvalue(), None)  # no name: the bytes say docx
    assert edited["file"]["format"] == "docx" and edited["aigc"]["integrity"] == "mismatch"
    assert edited["item"]["id"] == doc_id


# -- refusals ----------------------------------------------------------------------------------------


def test_a_file_that_is_neither_image_nor_text_is_refused_naming_the_formats(studio):
    with pytest.raises(InvalidRequest) as caught:
        studio.inspector.inspect(b"\x00\x01\x02 not a picture", "data.bin")
    assert caught.value.message == (
        "data.bin is not a file inspect can read; send an image (PNG, JPEG or WebP; other formats Pillow"
        " reads give format and pixels only) or a text file (.md, .html, .txt, .docx)"
    )
    with pytest.raises(InvalidRequest, match=r"the file empty\.png is empty"):
        studio.inspector.inspect(b"", "empty.png")


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims a huge picture (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(studio):
    with pytest.raises(TooLarge) as caught:
        studio.inspector.inspect(huge_png_header(9000, 9000), "bomb.png")
    assert caught.value.message == (
        "file is 9000x9000 (81 megapixels); the limit is 64 megapixels (setting max_image_megapixels)"
    )
    with pytest.raises(TooLarge, match="the limit is 64 megapixels"):
        studio.inspector.inspect(huge_png_header(100_000, 100_000), "bomb.png")


# -- the command -------------------------------------------------------------------------------------


def test_the_command_prints_the_verdict_first_and_json_on_request(aigc_home, tmp_path):
    path = tmp_path / "fox.png"
    write_png(picture(), path, INFOTEXT)
    run = CliRunner().invoke(cli, ["inspect", str(path)])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[0] == "AI-generated (A1111 parameters)"
    assert f"File: fox.png — png, {path.stat().st_size} bytes, 256x256 px" in lines
    assert "  prompt: a red fox in snow" in lines and "  Sampler: Euler a" in lines
    assert "TC260 AIGC label: absent (no TC260 AIGC label)" in lines
    run = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert run.exit_code == 0
    report = json.loads(run.output)
    assert report["verdict"] == "AI-generated (A1111 parameters)" and report["a1111"]["parameters"]["Steps"] == "20"


def test_the_command_exits_2_for_a_file_it_cannot_read(aigc_home, tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01\x02\x03")
    run = CliRunner().invoke(cli, ["inspect", str(path)])
    assert run.exit_code == 2
    assert "Error: notes.bin is not a file inspect can read; send an image (PNG, JPEG or WebP" in run.output
    run = CliRunner().invoke(cli, ["inspect", str(tmp_path / "missing.png")])
    assert run.exit_code == 2 and "does not exist" in run.output


def test_the_command_prints_only_the_parameters_on_request(aigc_home, tmp_path):
    path = tmp_path / "fox.png"
    write_png(picture(), path, INFOTEXT)
    run = CliRunner().invoke(cli, ["inspect", "--infotext", str(path)])
    assert run.exit_code == 0 and run.output == INFOTEXT + "\n"
    run = CliRunner().invoke(cli, ["inspect", "--fields", str(path)])
    assert run.exit_code == 0
    assert json.loads(run.output) == {
        "prompt": "a red fox in snow",
        "negative_prompt": "blurry",
        "steps": 20,
        "sampler_name": "Euler a",
        "cfg_scale": 7.0,
        "seed": 42,
        "width": 256,
        "height": 256,
    }
    bare = tmp_path / "bare.png"
    picture().save(bare)
    run = CliRunner().invoke(cli, ["inspect", "--infotext", str(bare)])
    assert run.exit_code == 1 and f"{bare} carries no generation parameters" in run.output


def test_an_image_generated_here_reports_every_label_and_its_item(studio):
    record = gallery_image(studio)
    path = Path(record["path"])
    report = studio.inspector.inspect(path.read_bytes(), path.name)
    assert report["verdict"] == (
        f"AI-generated (TC260 label 1, IPTC trainedAlgorithmicMedia, C2PA trusted, watermark → {record['id']},"
        " A1111 parameters)"
    )
    assert report["a1111"]["infotext"] == record["infotext"]
    assert report["aigc"]["fields"]["ProduceID"] == record["id"] and report["aigc"]["integrity"] == "match"
    assert report["c2pa"]["produce_id"] == record["id"] and report["c2pa"]["actions"] == ["c2pa.created"]
    mark = report["watermark"]
    assert mark["payload"] == f"{record['watermark']:08x}" and mark["item"] == record["id"] and mark["in_gallery"]
    item = report["item"]
    assert (item["id"], item["prompt"], item["model"]) == (record["id"], "a red fox in snow", "plain")
    assert item["created"] == record["created"] and item["labels"]["visible"]["text"] == "AI生成"
    text = summary(report)
    assert "labels when made: visible, watermark, metadata, c2pa" in text
    assert f"identifies: {record['id']} (a gallery image of this studio)" in text


def test_an_img2img_result_says_edited_with_its_source_as_ingredient(studio):
    request = ImageRequest(prompt="the fox at night", model="plain", width=256, height=256, steps=2, seed=1)
    result = studio.images.generate(request, "img2img", init_image=picture())
    path = Path(result.images[0].path)
    report = studio.inspector.inspect(path.read_bytes(), path.name)
    edited = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
    assert report["iptc"]["source_type"] == edited
    assert report["iptc"]["meaning"] == "a picture changed by a trained AI model (compositeWithTrainedAlgorithmicMedia)"
    assert report["c2pa"]["state"] == "trusted" and report["c2pa"]["actions"] == ["c2pa.opened", "c2pa.edited"]
    assert len(report["c2pa"]["ingredients"]) == 1 and "parentOf" in report["c2pa"]["ingredients"][0]
    assert report["verdict"].startswith("AI-generated (TC260 label 1, IPTC compositeWithTrainedAlgorithmicMedia, ")
