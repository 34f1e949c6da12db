"""A1111-compatible infotext: exact layout, A1111's parser rules, and storage in PNG/JPEG/WebP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import aigc_studio.images
from aigc_studio.images.infotext import (
    InfotextParams,
    format_infotext,
    params_from_request,
    parse_infotext,
    read_infotext,
    save_image,
    to_request_fields,
    write_png,
)

A1111_PARAMS: dict[str, object] = {
    "Steps": 20,
    "Sampler": "Euler a",
    "Schedule type": "Karras",
    "CFG scale": 7.0,
    "Seed": 965400086,
    "Size": "512x512",
    "Model hash": "45dee52b3c",
    "Model": "v1-5-pruned-emaonly",
    "Denoising strength": None,
    "Version": "v1.10.1",
}
A1111_TEXT = (
    "a cat, best quality\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x512, "
    "Model hash: 45dee52b3c, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)


# --- format -------------------------------------------------------------------------------------


def test_format_matches_a1111_layout_exactly():
    assert format_infotext("a cat, best quality", "blurry, lowres", A1111_PARAMS) == A1111_TEXT


def test_format_omits_empty_negative_and_keeps_fractional_floats():
    text = format_infotext("a cat", "", {"Steps": 30, "CFG scale": 7.5, "Seed": 1, "Denoising strength": 0.35})
    assert text == "a cat\nSteps: 30, CFG scale: 7.5, Seed: 1, Denoising strength: 0.35"


def test_format_quotes_values_like_a1111_quote():
    params = {
        "Steps": 20,
        "Lora hashes": "add_detail: 7c6bad76eb54, 水彩: 0123456789ab",
        "Notes": "line one\nline two",
        "Model": 'plain"quote inside',
    }
    assert format_infotext("p", "", params) == (
        'p\nSteps: 20, Lora hashes: "add_detail: 7c6bad76eb54, 水彩: 0123456789ab", '
        'Notes: "line one\\nline two", Model: plain"quote inside'
    )


def test_format_quotes_values_the_parser_would_otherwise_change():
    params = {"Steps": 1, "A": None, "Empty": "", "Padded": " x ", "Quoted": '"x"', "Open": '"x'}
    assert format_infotext("p", "", params) == (
        'p\nSteps: 1, Empty: "", Padded: " x ", Quoted: "\\"x\\"", Open: "\\"x"'
    )


def test_format_writes_flag_whose_value_is_its_key_as_bare_key():
    assert format_infotext("p", "", {"Steps": 5, "Tiling": "Tiling", "Seed": 3}) == "p\nSteps: 5, Tiling, Seed: 3"


def test_format_rejects_keys_the_parser_cannot_read():
    with pytest.raises(ValueError, match=r"infotext key 'CFG: scale' is not readable back"):
        format_infotext("p", "", {"CFG: scale": 7})


# --- parse --------------------------------------------------------------------------------------


def test_parse_a1111_docstring_example():
    text = (
        "girl with an artist's beret, determined, blue eyes, desert scene, ((eyeshadow)), (coquettish)\n"
        "Negative prompt: ugly, fat, (((deformed))), [blurry], bad anatomy, (extra_limb)\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b\n"
    )
    parsed = parse_infotext(text)
    assert parsed == InfotextParams(
        prompt="girl with an artist's beret, determined, blue eyes, desert scene, ((eyeshadow)), (coquettish)",
        negative_prompt="ugly, fat, (((deformed))), [blurry], bad anatomy, (extra_limb)",
        params={
            "Steps": "20",
            "Sampler": "Euler a",
            "CFG scale": "7",
            "Seed": "965400086",
            "Size-1": "512",
            "Size-2": "512",
            "Model hash": "45dee52b",
        },
    )
    assert (parsed.width, parsed.height) == (512, 512)


def test_parse_multiline_prompt_and_negative():
    text = (
        "  masterpiece,\nBREAK a cat  \nNegative prompt: blurry,\n  lowres\n"
        "Steps: 4, Sampler: LMS, Seed: 7, Size: 640x384, Hires resize: 1280x768"
    )
    parsed = parse_infotext(text)
    assert parsed.prompt == "masterpiece,\nBREAK a cat"
    assert parsed.negative_prompt == "blurry,\nlowres"
    assert parsed.params == {
        "Steps": "4",
        "Sampler": "LMS",
        "Seed": "7",
        "Size-1": "640",
        "Size-2": "384",
        "Hires resize-1": "1280",
        "Hires resize-2": "768",
    }
    assert (parsed.width, parsed.height) == (640, 384)


def test_parse_last_line_with_fewer_than_three_pairs_is_prompt():
    parsed = parse_infotext("a cat\nSteps: 20, Seed: 1")
    assert parsed == InfotextParams(prompt="a cat\nSteps: 20, Seed: 1", negative_prompt="", params={})
    assert parsed.width is None and parsed.height is None


def test_parse_unquotes_json_values():
    text = 'p\nSteps: 1, Lora hashes: "a: 1, b \\"2\\"", Notes: "x\\ny", Seed: 2'
    assert parse_infotext(text).params == {"Steps": "1", "Lora hashes": 'a: 1, b "2"', "Notes": "x\ny", "Seed": "2"}


def test_parse_splits_only_whole_wxh_values():
    text = 'p\nSteps: 1, Size: 64x32, Model: 12x34, VAE: 12x34b, Notes: "8x8\\n", Seed: 2'
    parsed = parse_infotext(text)
    assert parsed.params == {
        "Steps": "1",
        "Size-1": "64",
        "Size-2": "32",
        "Model-1": "12",
        "Model-2": "34",
        "VAE": "12x34b",
        "Notes": "8x8\n",
        "Seed": "2",
    }
    # A model whose name looks like a size still comes back whole.
    assert to_request_fields(parsed)["sd_model_checkpoint"] == "12x34"


def test_parse_reads_a1111_text_from_format():
    parsed = parse_infotext(A1111_TEXT)
    assert parsed.prompt == "a cat, best quality"
    assert parsed.negative_prompt == "blurry, lowres"
    assert list(parsed.params) == [
        "Steps",
        "Sampler",
        "Schedule type",
        "CFG scale",
        "Seed",
        "Size-1",
        "Size-2",
        "Model hash",
        "Model",
        "Version",
    ]


# --- request fields -----------------------------------------------------------------------------


def test_to_request_fields_types_and_names():
    text = (
        "a cat\nNegative prompt: dog\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, "
        "Seed: 42, Size: 768x512, Model hash: 45dee52b3c, Model: v1-5, Variation seed: 99, "
        "Variation seed strength: 0.3, Denoising strength: 0.55, Clip skip: 2, Version: v1.10.1"
    )
    assert to_request_fields(parse_infotext(text)) == {
        "prompt": "a cat",
        "negative_prompt": "dog",
        "steps": 28,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "cfg_scale": 6.5,
        "seed": 42,
        "width": 768,
        "height": 512,
        "sd_model_hash": "45dee52b3c",
        "subseed": 99,
        "subseed_strength": 0.3,
        "denoising_strength": 0.55,
        "clip_skip": 2,
        "sd_model_checkpoint": "v1-5",
    }


def test_to_request_fields_falls_back_to_hash_for_checkpoint():
    fields = to_request_fields(parse_infotext("p\nSteps: 1, Seed: 2, Model hash: abcdef0123"))
    assert fields["sd_model_checkpoint"] == "abcdef0123"
    assert type(fields["steps"]) is int and type(fields["seed"]) is int


def test_to_request_fields_names_the_bad_field():
    with pytest.raises(ValueError, match=r"infotext field 'Steps' must be int, got 'many'"):
        to_request_fields(parse_infotext("p\nSteps: many, Seed: 2, Sampler: LMS"))


def test_params_from_request_follows_a1111_order_and_omissions():
    params = params_from_request(
        {
            "steps": 20,
            "sampler_name": "Euler a",
            "scheduler": "Karras",
            "cfg_scale": 7.0,
            "seed": 965400086,
            "width": 512,
            "height": 512,
            "sd_model_hash": "45dee52b3c",
            "sd_model_checkpoint": "v1-5-pruned-emaonly",
            "subseed": 5,
            "subseed_strength": 0,
            "clip_skip": 1,
        }
    )
    assert format_infotext("a cat, best quality", "blurry, lowres", {**params, "Version": "v1.10.1"}) == A1111_TEXT


# An A1111 1.10 hires-fix infotext and an inpainting one, as its create_infotext writes them.
A1111_HIRES = (
    "a castle\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
    "Seed: 1, Size: 512x512, Model hash: 45dee52b3c, Model: v1-5, Denoising strength: 0.45, "
    'Hires sampler: Euler, Hires prompt: "a castle, detailed", Hires schedule type: Exponential, '
    "Hires resize: 1024x0, Hires steps: 10, Hires upscaler: Latent (antialiased), Version: v1.10.1"
)
A1111_INPAINT = (
    "a pond\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 2, Size: 512x512, "
    "Denoising strength: 0.75, Mask mode: Inpaint not masked, Mask blur: 4, Inpaint area: Only masked, "
    "Masked area padding: 32, Masked content: latent nothing, Version: v1.10.1"
)


def test_hires_and_inpaint_infotexts_read_into_request_fields():
    assert to_request_fields(parse_infotext(A1111_HIRES)) == {
        "prompt": "a castle",
        "negative_prompt": "blurry",
        "steps": 20,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "cfg_scale": 7.0,
        "seed": 1,
        "width": 512,
        "height": 512,
        "sd_model_hash": "45dee52b3c",
        "denoising_strength": 0.45,
        "hr_resize_x": 1024,
        "hr_resize_y": 0,
        "hr_second_pass_steps": 10,
        "hr_upscaler": "Latent (antialiased)",
        "hr_sampler_name": "Euler",
        "hr_scheduler": "Exponential",
        "hr_prompt": "a castle, detailed",
        "enable_hr": True,
        "sd_model_checkpoint": "v1-5",
    }
    fields = to_request_fields(parse_infotext(A1111_INPAINT))
    assert {k: fields[k] for k in fields if k.startswith(("mask", "inpaint"))} == {
        "mask_blur": 4,
        "inpaint_full_res_padding": 32,
        "inpainting_mask_invert": 1,
        "inpainting_fill": 3,
        "inpaint_full_res": True,
    }
    assert "enable_hr" not in fields  # a denoising strength alone is img2img's
    tiled = to_request_fields(parse_infotext("p\nSteps: 2, Seed: 3, Tiling: True, Resize mode: Resize and fill"))
    assert (tiled["tiling"], tiled["resize_mode"]) == (True, 2)
    with pytest.raises(ValueError, match="'Mask mode' must be one of Inpaint masked, Inpaint not masked, got 'x'"):
        to_request_fields(parse_infotext("p\nSteps: 2, Seed: 3, Mask mode: x"))


def test_params_from_request_writes_hires_and_inpaint_keys_as_a1111():
    hires = {
        "prompt": "a castle",
        "negative_prompt": "blurry",
        "steps": 20,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "cfg_scale": 7.0,
        "seed": 1,
        "width": 512,
        "height": 512,
        "sd_model_hash": "45dee52b3c",
        "sd_model_checkpoint": "v1-5",
        "denoising_strength": 0.45,
        "enable_hr": True,
        "hr_scale": 2.0,
        "hr_resize_x": 1024,
        "hr_resize_y": 0,
        "hr_second_pass_steps": 10,
        "hr_upscaler": "Latent (antialiased)",
        "hr_sampler_name": "Euler",
        "hr_scheduler": "Exponential",
        "hr_prompt": "a castle, detailed",
        "hr_negative_prompt": "blurry",  # the same as the first pass: not written
    }
    params = {**params_from_request(hires), "Version": "v1.10.1"}
    assert format_infotext("a castle", "blurry", params) == A1111_HIRES
    inpaint = {
        "steps": 20,
        "sampler_name": "Euler a",
        "scheduler": "Automatic",
        "cfg_scale": 7,
        "seed": 2,
        "width": 512,
        "height": 512,
        "denoising_strength": 0.75,
        "mask_blur": 4,
        "inpainting_mask_invert": 1,
        "inpaint_full_res": True,
        "inpaint_full_res_padding": 32,
        "inpainting_fill": 3,
    }
    assert format_infotext("a pond", "", {**params_from_request(inpaint), "Version": "v1.10.1"}) == A1111_INPAINT
    # unequal blurs: A1111 writes no blur at all
    assert params_from_request({**inpaint, "mask_blur_x": 2, "mask_blur_y": 6})["Mask blur"] is None
    assert params_from_request({**hires, "enable_hr": False})["Hires upscaler"] is None


# --- properties ---------------------------------------------------------------------------------

_CHARS = st.sampled_from(list("abcXYZ019 ,:;\"'()[]{}<>\\/-_.!?=\t") + list("猫水彩画的风格中文。：，"))
_LINE = st.text(_CHARS, max_size=30).map(str.strip).filter(lambda s: s and not s.startswith("Negative prompt:"))
_PROMPT = st.lists(_LINE, max_size=4).map("\n".join)
_FREE_TEXT = st.text(st.one_of(_CHARS, st.just("\n")), max_size=25)


@st.composite
def _request(draw: st.DrawFn) -> dict[str, object]:
    fields: dict[str, object] = {
        "prompt": draw(_PROMPT),
        "negative_prompt": draw(_PROMPT),
        "steps": draw(st.integers(1, 150)),
        "sampler_name": draw(st.sampled_from(["Euler a", "DPM++ 2M", "DPM++ SDE", "LMS", "UniPC"])),
        "scheduler": draw(st.sampled_from(["Automatic", "Karras", "Exponential", "SGM Uniform"])),
        "cfg_scale": draw(st.one_of(st.integers(1, 30).map(float), st.floats(1, 30, allow_nan=False))),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "width": draw(st.integers(1, 256)) * 8,
        "height": draw(st.integers(1, 256)) * 8,
        "sd_model_hash": draw(st.text("0123456789abcdef", min_size=10, max_size=10)),
        "sd_model_checkpoint": draw(_FREE_TEXT.filter(bool)),
    }
    if draw(st.booleans()):
        fields["subseed"] = draw(st.integers(0, 2**32 - 1))
        fields["subseed_strength"] = draw(st.floats(0.01, 1))
    if draw(st.booleans()):
        fields["denoising_strength"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        fields["clip_skip"] = draw(st.integers(2, 12))
    if draw(st.booleans()):
        fields["tiling"] = True
    if draw(st.booleans()):  # hires fix: A1111 ticks it back only with a denoising strength
        fields["enable_hr"] = True
        fields["denoising_strength"] = draw(st.floats(0, 1))
        fields["hr_upscaler"] = draw(st.sampled_from(["Latent", "Latent (nearest-exact)", "Lanczos"]))
        if draw(st.booleans()):
            fields["hr_scale"] = draw(st.floats(1, 4))
        else:
            fields["hr_resize_x"], fields["hr_resize_y"] = draw(st.integers(0, 512)) * 8, draw(st.integers(1, 512)) * 8
        if draw(st.booleans()):
            fields["hr_second_pass_steps"] = draw(st.integers(1, 150))
        if draw(st.booleans()):
            fields["hr_prompt"] = draw(_PROMPT.filter(lambda p: p and p != fields["prompt"]))
    elif draw(st.booleans()):  # inpainting
        fields["denoising_strength"] = draw(st.floats(0, 1))
        fields["mask_blur"] = draw(st.integers(1, 64))
        fields["inpainting_fill"] = draw(st.sampled_from([0, 2, 3]))
        fields["inpainting_mask_invert"] = 1
        fields["inpaint_full_res"] = True
        fields["inpaint_full_res_padding"] = draw(st.integers(0, 256))
    return fields


@settings(max_examples=300, deadline=None)
@given(_request())
def test_request_survives_format_and_parse(fields):
    text = format_infotext(fields["prompt"], fields["negative_prompt"], params_from_request(fields))
    assert to_request_fields(parse_infotext(text)) == fields


@settings(max_examples=300, deadline=None)
@given(
    _PROMPT,
    _PROMPT,
    st.dictionaries(
        st.sampled_from(["Model", "VAE", "Lora hashes", "TI hashes", "Extra/key-x", "Version"]), _FREE_TEXT, min_size=3
    ),
)
def test_free_text_params_survive_format_and_parse(prompt, negative, params):
    assume(all(value != key for key, value in params.items()))
    # A1111 splits any "WxH" value into "<key>-1"/"<key>-2"; mirror that in what we expect back.
    expected: dict[str, str] = {}
    for key, value in params.items():
        width, sep, height = value.partition("x")
        if sep and width.isascii() and width.isdigit() and height.isascii() and height.isdigit():
            expected[f"{key}-1"], expected[f"{key}-2"] = width, height
        else:
            expected[key] = value
    parsed = parse_infotext(format_infotext(prompt, negative, params))
    assert (parsed.prompt, parsed.negative_prompt, parsed.params) == (prompt, negative, expected)


# --- files --------------------------------------------------------------------------------------

CHINESE_TEXT = format_infotext("一只猫, 水彩画: 高清", "模糊", A1111_PARAMS)


def _image(mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (16, 8), (200, 30, 60, 255)[: len(mode)] if mode != "L" else 128)


def test_png_round_trip_chinese_uses_itxt(tmp_path: Path):
    path = tmp_path / "out.png"
    write_png(_image(), path, CHINESE_TEXT, extra_text={"Software": "AIGC Studio"})
    raw = path.read_bytes()
    assert b"iTXtparameters\x00" in raw and "一只猫".encode() in raw
    assert read_infotext(path) == CHINESE_TEXT
    with Image.open(path) as image:
        assert image.info["Software"] == "AIGC Studio"
        assert read_infotext(image) == CHINESE_TEXT


def test_png_latin1_text_uses_plain_text_chunk(tmp_path: Path):
    buffer = io.BytesIO()
    write_png(_image(), buffer, A1111_TEXT)
    assert b"tEXtparameters\x00a cat, best quality\nNegative prompt:" in buffer.getvalue()
    buffer.seek(0)
    assert read_infotext(buffer) == A1111_TEXT


def test_png_extra_text_may_not_override_parameters():
    with pytest.raises(ValueError, match="extra_text must not contain 'parameters'"):
        write_png(_image(), io.BytesIO(), "x", extra_text={"parameters": "y"})


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp", ".PNG"])
def test_save_image_round_trip_by_suffix(tmp_path: Path, suffix: str):
    path = tmp_path / f"out{suffix}"
    save_image(_image("RGBA"), path, CHINESE_TEXT)
    assert read_infotext(path) == CHINESE_TEXT
    with Image.open(path) as image:
        assert image.format == {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".PNG": "PNG"}[suffix]
        assert image.size == (16, 8)


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_exif_user_comment_is_written_like_piexif(tmp_path: Path, suffix: str):
    path = tmp_path / f"out{suffix}"
    save_image(_image(), path, CHINESE_TEXT)
    with Image.open(path) as image:
        exif = image.getexif()
        assert exif.endian == ">"
        comment = b"UNICODE\x00" + CHINESE_TEXT.encode("utf-16-be")
        assert exif.get_ifd(0x8769)[0x9286] == comment
        # Tag 0x9286 typed UNDEFINED (7): piexif, and so A1111, cannot decode it typed BYTE.
        assert b"\x92\x86\x00\x07" + len(comment).to_bytes(4, "big") in image.info["exif"]


def test_reads_little_endian_exif_comment(tmp_path: Path):
    exif = Image.Exif()
    exif.endian = "<"
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + "猫 cat".encode("utf-16-le")
    path = tmp_path / "le.jpg"
    _image().save(path, exif=exif.tobytes())
    assert read_infotext(path) == "猫 cat"


def test_reads_ascii_exif_comment(tmp_path: Path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + b"Steps: 1, Seed: 2, Sampler: LMS\x00"
    path = tmp_path / "ascii.webp"
    _image().save(path, exif=exif.tobytes())
    assert read_infotext(path) == "Steps: 1, Seed: 2, Sampler: LMS"


def test_image_without_metadata_reads_none(tmp_path: Path):
    for name in ("plain.png", "plain.jpg", "none.webp"):
        save_image(_image(), tmp_path / name, None)
        assert read_infotext(tmp_path / name) is None


def test_save_image_rejects_unknown_suffix(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unsupported image suffix '\.gif'.*use \.png, \.jpg, \.jpeg or \.webp"):
        save_image(_image(), tmp_path / "x.gif", "p")


def test_jpeg_refuses_infotext_too_long_for_exif(tmp_path: Path):
    with pytest.raises(ValueError, match=r"infotext is too long for JPEG EXIF \(\d+ bytes, at most 65533\)"):
        save_image(_image(), tmp_path / "long.jpg", "x" * 40000)
    save_image(_image(), tmp_path / "long.webp", "x" * 40000)
    assert read_infotext(tmp_path / "long.webp") == "x" * 40000


def test_images_package_imports_no_torch_or_diffusers():
    src = Path(aigc_studio.images.__file__).resolve().parents[2]
    code = (
        "import sys, aigc_studio.images.infotext, aigc_studio.images.hashing;"
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
