"""Labels inside image files (labels/xmp.py, labels/embed.py): written by the studio and read back by the
studio and by Debian's exiftool; written by exiftool and other tools and read by the studio."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import struct
import subprocess
import time
import zlib
from xml.sax.saxutils import quoteattr

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from aigc_studio.images.infotext import save_image, write_png
from aigc_studio.labels.aigc import SOURCE_CREATED, SOURCE_EDITED, AigcLabel, image_digest
from aigc_studio.labels.embed import encode_image, encoded_digest, read_image_labels
from aigc_studio.labels.xmp import build_xmp, label_json, parse_xmp

from .conftest import a1111_server, make_studio

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="Debian's exiftool is not installed (setup.sh)")

INFOTEXT = (
    "a cat in a garden, 花园里的猫\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 96x64"
)
LABEL = AigcLabel(content_producer="AIGC-Studio", produce_id="img-42")
# exiftool 12.57's own name for the group of the unknown TC260 namespace and its property
EXIFTOOL_AIGC = "XMP-TC260:Aigc"
# An exiftool config that defines the TC260 namespace under another prefix ("aigcns"), so exiftool itself
# can write the label into a file.
TC260_CONFIG = """%Image::ExifTool::UserDefined = (
    'Image::ExifTool::XMP::Main' => {
        aigcns => { SubDirectory => { TagTable => 'Image::ExifTool::UserDefined::aigcns' } },
    },
);
%Image::ExifTool::UserDefined::aigcns = (
    GROUPS => { 0 => 'XMP', 1 => 'XMP-aigcns', 2 => 'Image' },
    NAMESPACE => { 'aigcns' => 'http://www.tc260.org.cn/ns/AIGC/1.0/' },
    WRITABLE => 'string',
    AIGC => { },
);
1;
"""


def picture(size=(96, 64)) -> Image.Image:
    """A picture with detail (a gradient plus noise), so lossy formats really change pixels."""
    noise = Image.effect_noise(size, 30).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size).convert("RGB")
    return Image.blend(noise, gradient, 0.5)


def exiftool_json(path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", str(path)], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)[0]


# ---------------------------------------------------------------- round trips


@needs_exiftool
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_every_label_round_trips_through_the_studio_and_exiftool(fmt, tmp_path):
    image = picture()
    data = encode_image(image, fmt, infotext=INFOTEXT, aigc=LABEL, source_type=SOURCE_CREATED)

    labels = read_image_labels(data)
    assert (labels.format, labels.width, labels.height) == (fmt, 96, 64)
    assert labels.infotext == INFOTEXT
    assert (labels.aigc.content_producer, labels.aigc.produce_id, labels.aigc.label) == ("AIGC-Studio", "img-42", "1")
    # ReservedCode1 was empty, so the writer filled it with the digest of the pixels as this file decodes
    assert labels.aigc.reserved_code1 == encoded_digest(image, fmt) == labels.digest
    # lossy formats change pixels: the digest of the image before encoding would never match the file
    assert (encoded_digest(image, fmt) == image_digest(image)) is (fmt == "png")
    assert labels.integrity == "match"
    assert labels.source_type == SOURCE_CREATED
    assert labels.aigc_where == (["xmp", "png-text"] if fmt == "png" else ["xmp"])
    assert labels.aigc_error is None

    path = tmp_path / f"labelled.{fmt}"
    path.write_bytes(data)
    tags = exiftool_json(path)
    assert json.loads(tags[EXIFTOOL_AIGC]) == labels.aigc.to_dict()
    assert tags["XMP-iptcExt:DigitalSourceType"] == SOURCE_CREATED
    validation = subprocess.run(
        [EXIFTOOL, "-validate", "-warning", "-a", "-s3", str(path)], capture_output=True, text=True, timeout=60
    ).stdout
    # The JPEG's EXIF is A1111's minimal block (UserComment only), which exiftool finds incomplete; the
    # labels themselves raise nothing.
    assert not [line for line in validation.splitlines() if "XMP" in line or "PNG" in line or "RIFF" in line]
    if fmt == "png":
        assert json.loads(tags["PNG:AIGC"]) == labels.aigc.to_dict()
        assert tags["PNG:Parameters"] == INFOTEXT
    else:
        assert tags["ExifIFD:UserComment"] == INFOTEXT


def test_a_given_reserved_code_is_kept_and_edited_source_type_written():
    label = AigcLabel("Studio", "img-7", reserved_code1="batch-2026-11")
    labels = read_image_labels(encode_image(picture(), "png", infotext=None, aigc=label, source_type=SOURCE_EDITED))
    assert labels.aigc == label
    assert labels.integrity == "unchecked"  # not a sha256: digest, so nothing to check against
    assert labels.source_type == SOURCE_EDITED
    assert labels.infotext is None


@pytest.mark.parametrize("infotext", [INFOTEXT, "ascii only\nSteps: 1, Seed: 2, Size: 96x64", None])
def test_png_without_labels_is_byte_identical_to_write_png(infotext):
    image = picture()
    today = io.BytesIO()
    if infotext is None:
        image.save(today, format="PNG")
    else:
        write_png(image, today, infotext)
    assert encode_image(image, "png", infotext=infotext, aigc=None, source_type=None) == today.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_jpeg_and_webp_without_labels_are_what_save_image_writes(fmt, tmp_path):
    image = picture()
    path = tmp_path / f"today.{fmt}"
    save_image(image, path, INFOTEXT)
    assert encode_image(image, fmt, infotext=INFOTEXT, aigc=None, source_type=None) == path.read_bytes()


def test_the_source_type_alone_is_written_without_a_label():
    labels = read_image_labels(encode_image(picture(), "jpeg", infotext=None, aigc=None, source_type=SOURCE_CREATED))
    assert (labels.aigc, labels.source_type, labels.integrity, labels.aigc_where) == (None, SOURCE_CREATED, None, [])


# ---------------------------------------------------------------- other tools' files


@needs_exiftool
@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_files_tagged_by_exiftool_read_back(suffix, tmp_path):
    path = tmp_path / f"plain.{suffix}"
    picture().save(path)
    config = tmp_path / "tc260.cfg"
    config.write_text(TC260_CONFIG)
    label = {"Label": "2", "ContentProducer": "Other tool", "ProduceID": 'x<&>"'}
    subprocess.run(
        [
            EXIFTOOL,
            "-config",
            str(config),
            "-q",
            "-overwrite_original",
            f"-XMP-iptcExt:DigitalSourceType={SOURCE_EDITED}",
            f"-XMP-aigcns:AIGC={json.dumps(label)}",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    labels = read_image_labels(path.read_bytes())
    assert labels.source_type == SOURCE_EDITED
    assert (labels.aigc.label, labels.aigc.content_producer, labels.aigc.produce_id) == ("2", "Other tool", 'x<&>"')
    assert labels.aigc_where == ["xmp"]
    assert labels.integrity == "unchecked"


@needs_exiftool
def test_exiftool_source_type_only_on_a_plain_png(tmp_path):
    path = tmp_path / "plain.png"
    picture().save(path)
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", f"-XMP-iptcExt:DigitalSourceType={SOURCE_CREATED}", str(path)],
        check=True,
        timeout=60,
    )
    labels = read_image_labels(path.read_bytes())
    assert (labels.source_type, labels.aigc, labels.aigc_error) == (SOURCE_CREATED, None, None)


def _png_with_text(image: Image.Image, **chunks: str) -> bytes:
    """A PNG with text chunks as another tool writes them (tEXt, or iTXt when not Latin-1); ``xmp=``
    is the ``XML:com.adobe.xmp`` chunk."""
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text("XML:com.adobe.xmp" if key == "xmp" else key, value)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


ATTRIBUTE_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:aigc="http://www.tc260.org.cn/ns/AIGC/1.0/"
  xmlns:ext="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
  aigc:AIGC="{&quot;Label&quot;:&quot;3&quot;,&quot;ContentProducer&quot;:&quot;平台&quot;,&quot;ProduceID&quot;:&quot;p1&quot;}"
  ext:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>
</rdf:RDF></x:xmpmeta>"""


def test_attribute_form_xmp_with_other_prefixes_in_a_png_text_chunk():
    labels = read_image_labels(_png_with_text(picture(), xmp=ATTRIBUTE_XMP))
    assert (labels.aigc.label, labels.aigc.content_producer, labels.aigc.produce_id) == ("3", "平台", "p1")
    assert labels.source_type == SOURCE_CREATED
    assert labels.aigc_where == ["xmp"]


def test_rdf_resource_and_alt_forms():
    packet = (
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'xmlns:t="http://www.tc260.org.cn/ns/AIGC/1.0" xmlns:i="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">'
        f'<i:DigitalSourceType rdf:resource="{SOURCE_EDITED}"/>'
        '<t:AIGC><rdf:Alt><rdf:li xml:lang="x-default">{"Label":"1","ProduceID":"a"}</rdf:li></rdf:Alt></t:AIGC>'
        "</rdf:Description></rdf:RDF>"
    )
    found = parse_xmp(packet.encode("utf-16"))
    assert (found.aigc.produce_id, found.source_type, found.aigc_error) == ("a", SOURCE_EDITED, None)


def test_a_png_aigc_chunk_alone_is_read_and_checked():
    image = picture()
    label = AigcLabel("Other", "o-1", reserved_code1=image_digest(image))
    labels = read_image_labels(_png_with_text(image, AIGC=label.to_json()))
    assert (labels.aigc, labels.aigc_where, labels.integrity, labels.source_type) == (
        label,
        ["png-text"],
        "match",
        None,
    )


def test_label_chunks_after_the_pixel_data_and_compressed_are_read():
    # Some tools append text chunks after IDAT, or write zTXt; both are valid PNG.
    image = picture()
    label = AigcLabel("Other", "late-1", reserved_code1=image_digest(image))
    plain = io.BytesIO()
    image.save(plain, format="PNG")
    xmp = build_xmp(label, SOURCE_CREATED).encode()
    late = _png_chunk(b"zTXt", b"AIGC\0\0" + zlib.compress(label.to_json().encode())) + _png_chunk(
        b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp
    )
    data = plain.getvalue()[:-12] + late + plain.getvalue()[-12:]  # the last 12 bytes are IEND
    labels = read_image_labels(data)
    assert (labels.aigc, labels.aigc_where, labels.integrity, labels.source_type) == (
        label,
        ["xmp", "png-text"],
        "match",
        SOURCE_CREATED,
    )


def test_a1111_files_give_their_infotext(tmp_path):
    chinese = "一只猫\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 96x64"
    png = io.BytesIO()
    write_png(picture(), png, chinese)  # not Latin-1: Pillow writes it as iTXt, as A1111 does
    assert b"iTXtparameters" in png.getvalue()
    assert read_image_labels(png.getvalue()).infotext == chinese
    for suffix in ("jpg", "webp"):
        save_image(picture(), tmp_path / f"a.{suffix}", INFOTEXT)  # EXIF UserComment, as A1111's save
        labels = read_image_labels((tmp_path / f"a.{suffix}").read_bytes())
        assert (labels.infotext, labels.aigc, labels.integrity) == (INFOTEXT, None, None)


# ---------------------------------------------------------------- integrity and stripping


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_one_pixel_changed_reads_mismatch(fmt):
    image = picture()
    original = read_image_labels(encode_image(image, fmt, infotext=INFOTEXT, aigc=LABEL, source_type=SOURCE_CREATED))
    changed = image.copy()
    r, g, b = changed.getpixel((10, 10))
    changed.putpixel((10, 10), ((r + 128) % 256, g, b))
    # the same metadata (the label read back, ReservedCode1 already set) on pixels one of which differs
    data = encode_image(changed, fmt, infotext=INFOTEXT, aigc=original.aigc, source_type=SOURCE_CREATED)
    labels = read_image_labels(data)
    assert labels.aigc == original.aigc
    assert labels.integrity == "mismatch"
    assert labels.digest != labels.aigc.reserved_code1


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_resaved_by_pillow_has_no_label(fmt):
    data = encode_image(picture(), fmt, infotext=INFOTEXT, aigc=LABEL, source_type=SOURCE_CREATED)
    resaved = io.BytesIO()
    Image.open(io.BytesIO(data)).save(resaved, format=fmt.upper())
    labels = read_image_labels(resaved.getvalue())
    assert (labels.aigc, labels.source_type, labels.integrity, labels.infotext, labels.aigc_where) == (
        None,
        None,
        None,
        None,
        [],
    )


# ---------------------------------------------------------------- malformed input


def test_malformed_labels_give_aigc_error_not_an_exception():
    bad_chunk = read_image_labels(_png_with_text(picture(), AIGC="not json"))
    assert bad_chunk.aigc is None
    assert bad_chunk.aigc_error.startswith("PNG text AIGC: the AIGC label is not JSON")

    bad_label = build_xmp(None, SOURCE_CREATED).replace(
        "<Iptc4xmpExt:", '<TC260:AIGC>{"Label":"7"}</TC260:AIGC><Iptc4xmpExt:', 1
    )
    labels = read_image_labels(_png_with_text(picture(), xmp=bad_label))
    assert labels.aigc is None and labels.source_type == SOURCE_CREATED
    assert labels.aigc_error == "XMP TC260:AIGC: the AIGC label's Label must be 1, 2 or 3, got '7'"

    broken = read_image_labels(_png_with_text(picture(), xmp="<x:xmpmeta><unclosed"))
    assert broken.aigc_error.startswith("XMP packet is not well-formed XML")

    entity = '<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    assert read_image_labels(_png_with_text(picture(), xmp=entity)).aigc_error == (
        "XMP packet has a DOCTYPE or ENTITY declaration, which XMP does not allow"
    )


def test_two_labels_that_disagree_are_reported():
    image = picture()
    info = PngImagePlugin.PngInfo()
    info.add_text("AIGC", AigcLabel("B", "2").to_json())
    info.add_itxt("XML:com.adobe.xmp", build_xmp(AigcLabel("A", "1"), None))
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    labels = read_image_labels(out.getvalue())
    assert labels.aigc.content_producer == "A"
    assert labels.aigc_where == ["xmp", "png-text"]
    assert labels.aigc_error == "the labels in xmp and png-text differ; xmp's is reported"


def test_a_non_image_is_a_clear_value_error():
    with pytest.raises(ValueError, match=r"^not a readable image \(PNG, JPEG or WebP\): not an image format"):
        read_image_labels(b"%PDF-1.7 this is a document, not a picture")
    with pytest.raises(ValueError, match=r"^not a readable image \(PNG, JPEG or WebP\): it is empty \(0 bytes\)"):
        read_image_labels(b"")
    truncated = encode_image(picture(), "png", infotext=None, aigc=LABEL, source_type=None)[:400]
    with pytest.raises(ValueError, match=r"^not a readable image"):
        read_image_labels(truncated)


def test_bad_format_and_oversized_jpeg_xmp_are_refused():
    with pytest.raises(ValueError, match=r"^image format must be one of png, jpeg, webp, got 'gif'$"):
        encode_image(picture(), "gif", infotext=None, aigc=LABEL, source_type=None)
    huge = AigcLabel("AIGC-Studio", "x" * 70_000, reserved_code1="sha256:0")
    with pytest.raises(ValueError, match=r"the XMP label is too long for JPEG \(\d+ bytes, at most 65504\)"):
        encode_image(picture(), "jpeg", infotext=None, aigc=huge, source_type=None)
    assert read_image_labels(encode_image(picture(), "png", infotext=None, aigc=huge, source_type=None)).aigc == huge


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, bit_depth: int, color: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_a_huge_header_is_refused_without_decoding():
    claims = _png(40_000, 40_000, 8, 2, zlib.compress(b"\x00" * 100))
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"^image refused without decoding"):
        read_image_labels(claims)
    assert time.monotonic() - start < 5  # decoding 1.6 gigapixels would take minutes and 4.8 GB


def test_a_decompression_bomb_is_refused_without_decoding():
    # 12000x10000 one-bit pixels, all valid data: 15 MB of zeros deflated to about 15 KB
    width, height = 12_000, 10_000
    row = b"\x00" + b"\x00" * (width // 8)
    bomb = _png(width, height, 1, 0, zlib.compress(row * height, 9))
    assert len(bomb) < 100_000
    with pytest.raises(ValueError, match=r"12000x10000 \(120 megapixels\); the limit is 100 megapixels"):
        read_image_labels(bomb)
    with pytest.raises(ValueError, match=r"^image refused without decoding"):
        read_image_labels(bomb, max_pixels=1_000_000)


# ---------------------------------------------------------------- the A1111 API's png-info


def test_sdapi_png_info_returns_the_parameters_of_a_labelled_png(tmp_path):
    data = encode_image(picture(), "png", infotext=INFOTEXT, aigc=LABEL, source_type=SOURCE_CREATED)
    studio = make_studio(tmp_path / "home")
    with a1111_server(studio) as live:
        answer = httpx.post(live.url + "/sdapi/v1/png-info", json={"image": base64.b64encode(data).decode()})
    assert answer.status_code == 200
    body = answer.json()
    assert body["info"] == INFOTEXT
    assert body["parameters"]["Prompt"] == "a cat in a garden, 花园里的猫"
    assert body["parameters"]["Seed"] == "965400086"
    assert json.loads(body["items"]["AIGC"])["ProduceID"] == "img-42"


# ---------------------------------------------------------------- properties

any_text = st.text(max_size=40)
labels = st.builds(
    AigcLabel,
    content_producer=any_text | st.sampled_from(["<&>\"'", "平台 🎨", "]]>", "a\x00b\ufffe\uffff"]),
    produce_id=any_text,
    reserved_code1=st.text(min_size=1, max_size=40),  # an empty one is filled with the pixel digest
    label=st.sampled_from(["1", "2", "3"]),
    content_propagator=any_text,
    propagate_id=any_text,
    reserved_code2=any_text,
)


@settings(max_examples=200, deadline=None)
@given(
    label=labels,
    source=st.none() | st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Cn"])),
)
def test_label_json_and_xmp_round_trip(label, source):
    assert AigcLabel.from_json(label.to_json()) == label
    found = parse_xmp(build_xmp(label, source))
    assert found.aigc == label
    assert found.aigc_error is None
    assert found.source_type == ((source.strip() or None) if source is not None else None)


@settings(max_examples=100, deadline=None)
@given(
    label=labels,
    prefix=st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(
        lambda p: p != "rdf" and not p.startswith("xml")
    ),
)
def test_other_tools_attribute_form_round_trips(label, prefix):
    packet = (
        f'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
        f' xmlns:{prefix}="http://www.tc260.org.cn/ns/AIGC/1.0/" {prefix}:AIGC={quoteattr(label_json(label))}/>'
        "</rdf:RDF>"
    )
    assert parse_xmp(packet.encode()).aigc == label


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(label=labels)
def test_labels_round_trip_through_png_files(label):
    image = Image.new("RGB", (8, 8), (200, 10, 10))
    labels_read = read_image_labels(encode_image(image, "png", infotext=None, aigc=label, source_type=None))
    assert labels_read.aigc == label
    assert labels_read.aigc_where == ["xmp", "png-text"]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000) | st.text(max_size=500))
def test_parse_xmp_raises_only_value_error(data):
    with contextlib.suppress(ValueError):
        parse_xmp(data)


LABELLED = {
    fmt: encode_image(picture((16, 16)), fmt, infotext=INFOTEXT, aigc=LABEL, source_type=SOURCE_CREATED)
    for fmt in ("png", "jpeg", "webp")
}


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=3000)
    | st.builds(
        lambda fmt, cuts: _mutate(LABELLED[fmt], cuts),
        st.sampled_from(sorted(LABELLED)),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    )
)
def test_read_image_labels_raises_only_value_error(data):
    with contextlib.suppress(ValueError):
        read_image_labels(data)


def _mutate(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for where, value in changes:
        out[where % len(out)] = value
    return bytes(out)
