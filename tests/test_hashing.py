"""Model hashes as A1111 computes them, the studio's folder hash, and the on-disk hash cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from aigc_studio.images import hashing
from aigc_studio.images.hashing import HashCache, folder_sha256, legacy_model_hash, model_hash, sha256_file

HELLO_SHA256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"  # sha256(b"hello world")
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.safetensors"
    path.write_bytes(b"hello world")
    return path


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every full-file hash so tests can tell a cache hit from a re-read."""
    calls: list[Path] = []
    real = hashing.sha256_file

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(hashing, "sha256_file", counting)
    return calls


def test_sha256_and_model_hash_of_known_file(hello: Path):
    assert sha256_file(hello) == HELLO_SHA256
    assert model_hash(hello) == "b94d27b993"


def test_sha256_spanning_many_blocks(tmp_path: Path):
    data = bytes(range(256)) * (4096 * 3 + 7)  # ~3 MiB, not a multiple of the 1 MiB block
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_legacy_hash_reads_64k_at_1mib(tmp_path: Path):
    data = os.urandom(0x100000) + b"\x01" * 0x10000 + os.urandom(5000)
    path = tmp_path / "old.ckpt"
    path.write_bytes(data)
    assert legacy_model_hash(path) == hashlib.sha256(b"\x01" * 0x10000).hexdigest()[:8]


def test_legacy_hash_of_small_file_is_empty_digest(hello: Path):
    assert legacy_model_hash(hello) == EMPTY_SHA256[:8] == "e3b0c442"


def _diffusers_folder(root: Path) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "text_encoder").mkdir()
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"hello world")
    (root / "text_encoder" / "model.bin").write_bytes(b"")
    (root / "unet" / "config.json").write_text("{}")  # not a weight file
    (root / ".cache" / "huggingface" / "stale.safetensors").write_bytes(b"ignored")
    return root


def test_folder_hash_follows_documented_rule(tmp_path: Path):
    folder = _diffusers_folder(tmp_path / "tiny-sd")
    listing = f"{EMPTY_SHA256}  text_encoder/model.bin\n{HELLO_SHA256}  unet/diffusion_pytorch_model.safetensors\n"
    expected = hashlib.sha256(listing.encode()).hexdigest()
    assert folder_sha256(folder) == expected
    assert model_hash(folder) == expected[:10]


def test_folder_hash_changes_when_a_weight_changes(tmp_path: Path):
    folder = _diffusers_folder(tmp_path / "tiny-sd")
    before = model_hash(folder)
    (folder / "text_encoder" / "model.bin").write_bytes(b"x")
    assert model_hash(folder) != before


def test_folder_without_weights_is_an_error(tmp_path: Path):
    (tmp_path / "empty" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no \*.safetensors or \*.bin weight files under"):
        model_hash(tmp_path / "empty")


def test_cache_hashes_once_and_persists(tmp_path: Path, hello: Path, counted_reads: list[Path]):
    cache_file = tmp_path / "state" / "hashes.json"
    cache = HashCache(cache_file)
    assert cache.sha256(hello) == HELLO_SHA256
    assert cache.model_hash(hello) == "b94d27b993"
    assert counted_reads == [hello]

    stat = hello.stat()
    assert json.loads(cache_file.read_text()) == {
        str(hello.resolve()): {"mtime_ns": stat.st_mtime_ns, "size": 11, "sha256": HELLO_SHA256}
    }
    # A new cache object (a restarted studio) trusts the file on disk.
    assert HashCache(cache_file).model_hash(hello) == "b94d27b993"
    assert counted_reads == [hello]


def test_cache_rehashes_when_mtime_changes(tmp_path: Path, hello: Path, counted_reads: list[Path]):
    cache = HashCache(tmp_path / "hashes.json")
    cache.sha256(hello)
    mtime_ns = hello.stat().st_mtime_ns
    hello.write_bytes(b"HELLO WORLD")  # same size
    os.utime(hello, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
    assert cache.sha256(hello) == hashlib.sha256(b"HELLO WORLD").hexdigest()
    assert len(counted_reads) == 2


def test_cache_rehashes_when_size_changes(tmp_path: Path, hello: Path, counted_reads: list[Path]):
    cache = HashCache(tmp_path / "hashes.json")
    cache.sha256(hello)
    mtime_ns = hello.stat().st_mtime_ns
    hello.write_bytes(b"hello world!")
    os.utime(hello, ns=(mtime_ns, mtime_ns))  # same mtime: only the size gives it away
    assert cache.sha256(hello) == hashlib.sha256(b"hello world!").hexdigest()
    assert len(counted_reads) == 2


def test_cache_folder_hash_reuses_file_hashes(tmp_path: Path, counted_reads: list[Path]):
    folder = _diffusers_folder(tmp_path / "tiny-sd")
    expected = folder_sha256(folder)
    counted_reads.clear()
    cache = HashCache(tmp_path / "hashes.json")
    assert cache.sha256(folder) == expected
    assert sorted(p.name for p in counted_reads) == ["diffusion_pytorch_model.safetensors", "model.bin"]
    assert cache.model_hash(folder) == expected[:10]
    assert len(counted_reads) == 2


def test_unreadable_cache_file_starts_empty(tmp_path: Path, hello: Path, caplog: pytest.LogCaptureFixture):
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{not json")
    assert HashCache(cache_file).sha256(hello) == HELLO_SHA256
    assert "ignoring unreadable hash cache" in caplog.text
    assert json.loads(cache_file.read_text())[str(hello.resolve())]["sha256"] == HELLO_SHA256
