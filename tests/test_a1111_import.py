"""Scanning an AUTOMATIC1111 models folder: what is found, and the names and hashes A1111 would show."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from aigc_studio.errors import InvalidRequest
from aigc_studio.images import hashing
from aigc_studio.images.hashing import model_hash
from aigc_studio.models.a1111 import scan_a1111


def _checkpoint(path: Path, keys: dict[str, list[int]], filler: bytes = b"") -> Path:
    """A small safetensors file whose tensor names (and shapes) look like a real checkpoint's."""
    header, offset = {}, 0
    for name, shape in keys.items():
        header[name] = {"dtype": "U8", "shape": shape, "data_offsets": [offset, offset + 1]}
        offset += 1
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset + filler)
    return path


SD15 = {
    "cond_stage_model.transformer.text_model.embeddings.position_ids": [1, 77],
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
}
PIX2PIX = {**SD15, "model.diffusion_model.input_blocks.0.0.weight": [320, 8, 3, 3]}
SDXL = {
    "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": [1, 77],
    "conditioner.embedders.1.model.ln_final.weight": [1280],
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
}
SD21 = {
    "cond_stage_model.model.ln_final.weight": [1024],
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
}


@pytest.fixture
def install(tmp_path) -> Path:
    """An A1111 install with a few models of each kind, and things A1111 would not list."""
    root = tmp_path / "stable-diffusion-webui"
    sd = root / "models" / "Stable-diffusion"
    _checkpoint(sd / "v1-5-pruned-emaonly.safetensors", SD15)
    _checkpoint(sd / "XL" / "sd_xl_turbo_1.0_fp16.safetensors", SDXL)
    _checkpoint(sd / "edit" / "instruct-pix2pix-00-22000.safetensors", PIX2PIX)
    _checkpoint(sd / "sd_turbo.safetensors", SD21)
    (sd / "old.ckpt").write_bytes(b"PK\x03\x04 a pickle, never opened")
    (sd / "old.vae.safetensors").write_bytes(b"a VAE kept next to its checkpoint")
    (sd / "Put Stable Diffusion checkpoints here.txt").write_text("")
    (sd / "v1-5-pruned-emaonly.yaml").write_text("model: {}\n")
    (sd / ".trash").mkdir()
    (sd / ".trash" / "deleted.safetensors").write_bytes(b"hidden folder: not listed")
    (root / "models" / "Lora" / "styles").mkdir(parents=True)
    (root / "models" / "Lora" / "add_detail.safetensors").write_bytes(b"lora one")
    (root / "models" / "Lora" / "styles" / "ink.pt").write_bytes(b"lora two")
    (root / "models" / "VAE").mkdir()
    (root / "models" / "VAE" / "vae-ft-mse-840000-ema-pruned.safetensors").write_bytes(b"vae")
    return root


def test_lists_checkpoints_loras_and_vaes_with_a1111_names(install):
    found = scan_a1111(install)

    assert [(m.kind, m.relative_name) for m in found] == [
        ("image", "edit/instruct-pix2pix-00-22000.safetensors"),
        ("image", "old.ckpt"),
        ("image", "sd_turbo.safetensors"),
        ("image", "v1-5-pruned-emaonly.safetensors"),
        ("image", "XL/sd_xl_turbo_1.0_fp16.safetensors"),
        ("lora", "add_detail.safetensors"),
        ("lora", "styles/ink.pt"),
        ("vae", "old.vae.safetensors"),
        ("vae", "vae-ft-mse-840000-ema-pruned.safetensors"),
    ]
    xl = next(m for m in found if m.name == "sd_xl_turbo_1.0_fp16")
    sd = install / "models" / "Stable-diffusion"
    short = model_hash(sd / "XL" / "sd_xl_turbo_1.0_fp16.safetensors")
    assert xl.title == f"XL/sd_xl_turbo_1.0_fp16.safetensors [{short}]"
    assert xl.short_title == f"sd_xl_turbo_1.0_fp16 [{short}]"
    assert xl.model_name == "XL_sd_xl_turbo_1.0_fp16"
    assert xl.hash == short and xl.sha256 == hashing.sha256_file(xl.path) and len(short) == 10
    assert xl.path == (sd / "XL" / "sd_xl_turbo_1.0_fp16.safetensors").resolve()
    assert xl.size_bytes == xl.path.stat().st_size
    assert {m.engine for m in found} == {"diffusers"}


def test_architecture_is_read_from_the_safetensors_header(install):
    by_name = {m.name: m.architecture for m in scan_a1111(install) if m.kind == "image"}
    assert by_name == {
        "v1-5-pruned-emaonly": "sd15",
        "sd_xl_turbo_1.0_fp16": "sdxl",
        "instruct-pix2pix-00-22000": "sd15-pix2pix",
        "sd_turbo": "sd21",
        "old": None,  # a .ckpt's keys need torch to read: not during a scan
    }


def test_the_models_folder_itself_can_be_given(install):
    assert scan_a1111(install / "models") == scan_a1111(install)


def test_hash_cache_means_each_file_is_read_once(install, tmp_path, monkeypatch):
    cache = tmp_path / "hashes.json"
    first = scan_a1111(install, hash_cache=cache)
    assert len(json.loads(cache.read_text())) == len(first)

    def no_reading(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(hashing, "sha256_file", no_reading)
    monkeypatch.setattr("aigc_studio.models.a1111.sha256_file", no_reading)
    assert scan_a1111(install, hash_cache=cache) == first


def test_without_hashes_titles_are_the_bare_names(install):
    found = scan_a1111(install, hashes=False)
    v15 = next(m for m in found if m.name == "v1-5-pruned-emaonly")
    assert (v15.title, v15.short_title, v15.hash, v15.sha256) == (
        "v1-5-pruned-emaonly.safetensors",
        "v1-5-pruned-emaonly",
        None,
        None,
    )


def test_a_folder_that_is_not_a1111_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(InvalidRequest) as err:
        scan_a1111(tmp_path)
    assert err.value.message == (
        f"{tmp_path.resolve()} is not an AUTOMATIC1111 install or its models folder: neither "
        f"{tmp_path.resolve() / 'models' / 'Stable-diffusion'} nor {tmp_path.resolve() / 'Stable-diffusion'} exists"
    )


def test_an_install_with_only_checkpoints_is_fine(tmp_path):
    _checkpoint(tmp_path / "models" / "Stable-diffusion" / "only.safetensors", SD15)
    assert [m.title.split(" [")[0] for m in scan_a1111(tmp_path)] == ["only.safetensors"]


def test_aigc_models_import_a1111_adds_the_checkpoints(install, aigc_home):
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli

    r = CliRunner().invoke(cli, ["models", "import-a1111", str(install)])
    assert r.exit_code == 0, r.output
    assert "imported 5 checkpoint(s)" in r.output  # four .safetensors and the .ckpt; no LoRA or VAE
    listing = CliRunner().invoke(cli, ["models", "list"]).output
    assert "v1-5-pruned-emaonly" in listing and "xl_sd_xl_turbo_1.0_fp16" in listing
    assert "add_detail" not in listing and "vae-ft-mse" not in listing
    again = CliRunner().invoke(cli, ["models", "import-a1111", str(install / "models")])
    assert "imported 0 checkpoint(s)" in again.output and "already added" in again.output
