"""POST /api/inspect on a live server: a multipart upload and a JSON body give the same report as the
service; what it cannot read is a 400 naming the formats, an oversized picture a 413, another content
type a 415, all in the API's error shape."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

from aigc_studio.images.infotext import write_png

from .conftest import studio_server
from .test_inspect import INFOTEXT, huge_png_header, jpeg_bytes, picture

ACCEPTED = (
    "an image (PNG, JPEG or WebP; other formats Pillow reads give format and pixels only)"
    " or a text file (.md, .html, .txt, .docx)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("inspect-home")
    with studio_server(home, load_default=False, model="echo", image_model="plain") as live:
        yield live


def a1111_png() -> bytes:
    buf = io.BytesIO()
    write_png(picture(), buf, INFOTEXT)
    return buf.getvalue()


def test_a_multipart_upload_gets_the_report(server):
    data = a1111_png()
    r = httpx.post(server.url + "/api/inspect", files={"file": ("fox.png", data, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["verdict"] == "AI-generated (A1111 parameters)"
    assert report["file"]["name"] == "fox.png" and report["file"]["size"] == len(data)
    assert report["a1111"]["parameters"]["CFG scale"] == "7"
    assert report == server.studio.inspector.inspect(data, "fox.png")


def test_a_json_body_with_base64_gets_the_same_report(server):
    data = jpeg_bytes(picture())
    body = {"data": base64.b64encode(data).decode(), "filename": "photo.jpg"}
    r = httpx.post(server.url + "/api/inspect", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["file"] == {
        "name": "photo.jpg",
        "kind": "image",
        "format": "jpeg",
        "size": len(data),
        "width": 256,
        "height": 256,
    }
    assert r.json()["verdict"].startswith("No AI label found")
    # as a browser's data: URL, without a name
    url = "data:image/jpeg;base64," + body["data"]
    r = httpx.post(server.url + "/api/inspect", json={"data": url}, timeout=60)
    assert r.status_code == 200 and r.json()["file"]["name"] is None


def test_a_file_that_is_not_an_image_or_text_is_a_400_naming_the_formats(server):
    r = httpx.post(
        server.url + "/api/inspect", files={"file": ("blob.bin", b"\x00\x01\x02", "application/octet-stream")}
    )
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": f"blob.bin is not a file inspect can read; send {ACCEPTED}",
            "type": "invalid_request_error",
            "param": "file",
            "code": None,
        }
    }


@pytest.mark.parametrize(
    "body, message, param",
    [
        ({"data": "not base64!"}, "data is not valid base64", "data"),
        ({"data": ""}, "data: String should have at least 1 character", "data"),
        ({"filename": "x.png"}, "data: Field required", "data"),
        ({"data": "AAAA", "extra": 1}, "extra: Extra inputs are not permitted", "extra"),
    ],
)
def test_a_bad_json_body_is_a_400_naming_the_field(server, body, message, param):
    r = httpx.post(server.url + "/api/inspect", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"].startswith(message) and error["param"] == param


def test_a_multipart_body_without_the_file_part_is_a_400(server):
    r = httpx.post(server.url + "/api/inspect", data={"name": "x"}, files={"other": ("a.png", b"x")})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "the multipart body needs the file in a part named 'file'"


def test_another_content_type_is_a_415_naming_the_two_accepted(server):
    r = httpx.post(server.url + "/api/inspect", content=a1111_png(), headers={"content-type": "image/png"})
    assert r.status_code == 415
    assert r.json()["error"]["message"] == (
        "send the file as multipart/form-data (a part named 'file') or as application/json"
        " (data in base64, filename), got image/png"
    )


def test_an_image_over_the_pixel_limit_is_a_413_and_the_server_still_answers(server):
    r = httpx.post(server.url + "/api/inspect", files={"file": ("bomb.png", huge_png_header(100_000, 100_000))})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert "the limit is 64 megapixels (setting max_image_megapixels)" in r.json()["error"]["message"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_the_schema_declares_both_bodies_and_the_errors(server):
    operation = httpx.get(server.url + "/openapi.json").json()["paths"]["/api/inspect"]["post"]
    content = operation["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert content["application/json"]["schema"]["required"] == ["data"]
    assert set(operation["responses"]) == {"200", "400", "413", "415", "429"}
