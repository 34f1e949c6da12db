"""The catalog and `pull`, against a fake hub on loopback: nothing here may reach huggingface.co."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import struct
from pathlib import Path

import pytest
from huggingface_hub import constants, hf_hub_download, snapshot_download

from aigc_studio.errors import ModelNotFound
from aigc_studio.images.hashing import model_hash
from aigc_studio.models.catalog import CATALOG, CatalogEntry, find
from aigc_studio.models.pull import PullError, TqdmProgress, pull

from .fakehub import FakeHub

GGUF_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
GGUF_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
SD_REPO = "stabilityai/sd-turbo"
CHUNK = 16 * 1024


@pytest.fixture(autouse=True)
def hermetic_hub(tmp_path, monkeypatch):
    """huggingface_hub with no user state, and a guard that fails the test if anything leaves loopback."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(key, raising=False)
    # huggingface_hub read these at import, before the environment above was set.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # no agent-registry fetch from hf.co
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    # 10 MiB chunks would make every test file one chunk; resuming needs several.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)

    left_loopback: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            left_loopback.append(str(host))
            raise socket.gaierror(f"test guard: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert left_loopback == [], f"tried to reach {left_loopback}"


def _safetensors(path: Path, tensors: dict[str, int]) -> None:
    """A valid safetensors file of uint8 tensors, ``{name: byte count}``, with seeded content."""
    header, offset = {}, 0
    for name, size in tensors.items():
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + _noise(offset, seed=path.name))


def _noise(size: int, seed: str) -> bytes:
    out, counter = bytearray(), 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def repos(tmp_path) -> dict[str, Path]:
    """A GGUF repo and an SD-Turbo-shaped diffusers repo, laid out as on the hub, tiny."""
    gguf = tmp_path / "hub" / "gguf"
    gguf.mkdir(parents=True)
    # GGUF magic, version 3, no tensors, no metadata, then filler: enough for the magic-byte check.
    (gguf / GGUF_FILE).write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + _noise(300_000, "gguf"))
    (gguf / "qwen2.5-0.5b-instruct-q8_0.gguf").write_bytes(b"GGUF" + _noise(50_000, "q8"))
    (gguf / "README.md").write_text("# Qwen2.5-0.5B-Instruct-GGUF\n")

    sd = tmp_path / "hub" / "sd"
    (sd / "scheduler").mkdir(parents=True)
    (sd / "tokenizer").mkdir()
    (sd / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (sd / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "EulerDiscreteScheduler"}))
    (sd / "tokenizer" / "vocab.json").write_text(json.dumps({"a</w>": 0}))
    (sd / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    for part, weights in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ):
        (sd / part).mkdir()
        (sd / part / "config.json").write_text(json.dumps({"part": part}))
        _safetensors(sd / part / f"{weights}.fp16.safetensors", {"w": 40_000})
        _safetensors(sd / part / f"{weights}.safetensors", {"w": 80_000})  # fp32: must not be pulled
    (sd / "sd_turbo.safetensors").write_bytes(_noise(90_000, "single"))  # the single file: not pulled
    (sd / "README.md").write_text("# sd-turbo\n")
    return {GGUF_REPO: gguf, SD_REPO: sd}


@pytest.fixture
def hub(repos, monkeypatch):
    with FakeHub(repos) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


# -- catalog ---------------------------------------------------------------------------------------


def test_find_resolves_ids_and_aliases_case_insensitively():
    assert find("SD-Turbo").repo_id == "stabilityai/sd-turbo"
    assert find(" LCM ").id == "lcm-dreamshaper-v7"
    assert find("qwen2.5-1.5b").files == ("qwen2.5-1.5b-instruct-q4_k_m.gguf",)
    assert find("Qwen/Qwen2.5-0.5B-Instruct-GGUF").id == "qwen2.5-0.5b-instruct"


def test_unknown_name_lists_the_catalog():
    with pytest.raises(ModelNotFound) as err:
        find("sd-ultra")
    message = err.value.message
    assert message.startswith("'sd-ultra' is not in the model catalog; known: ")
    for entry in CATALOG:
        assert entry.id in message


def test_catalog_entries_are_consistent():
    names = [n.lower() for e in CATALOG for n in (e.id, *e.aliases)]
    assert len(names) == len(set(names)), "an id or alias names two entries"
    by_id = {e.id: e for e in CATALOG}
    assert {
        "sd-turbo",
        "sdxl-turbo",
        "sd15",
        "lcm-dreamshaper-v7",
        "instruct-pix2pix",
        "qwen2.5-0.5b-instruct",
        "qwen2.5-1.5b-instruct",
    } <= set(by_id)
    for e in CATALOG:
        assert (e.kind, e.engine) in {("text", "llamacpp"), ("image", "diffusers")}, e.id
        assert e.is_folder == (e.kind == "image"), e.id
        assert e.size_bytes > 100_000_000 and e.license and e.description and e.architecture, e.id
        if e.kind == "image":
            assert "model_index.json" in e.allow_patterns, e.id
            assert not any("safety_checker" in p for p in e.allow_patterns), e.id
        else:
            assert all(f.endswith(".gguf") for f in e.files), e.id
    assert by_id["sd-turbo"].defaults == {
        "steps": 1,
        "cfg_scale": 0.0,
        "sampler_name": "Euler a",
        "width": 512,
        "height": 512,
    }
    lcm = by_id["lcm-dreamshaper-v7"].defaults
    assert (lcm["sampler_name"], lcm["steps"]) == ("LCM", 4)
    assert by_id["instruct-pix2pix"].architecture == "sd15-pix2pix"
    with pytest.raises(ValueError, match="either files or allow_patterns"):
        CatalogEntry(id="x", kind="text", engine="llamacpp", repo_id="a/b", size_bytes=1, license="", description="")


# -- pull ------------------------------------------------------------------------------------------


def test_pull_one_file_reports_progress_up_to_the_total(hub, repos, tmp_path):
    calls: list[tuple[int, int, str]] = []
    path = pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models", progress=lambda *a: calls.append(a))

    assert path == tmp_path / "models" / "qwen2.5-0.5b-instruct" / GGUF_FILE
    source = (repos[GGUF_REPO] / GGUF_FILE).read_bytes()
    assert path.read_bytes() == source
    size = len(source)
    assert calls[-1] == (size, size, GGUF_FILE)
    assert all(total == size for _, total, _ in calls)
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and len(calls) > size // CHUNK  # one report per chunk, never backwards
    # Only the asked-for file: not the other quantization, not the README.
    assert sorted(p.name for p in path.parent.iterdir()) == [".cache", GGUF_FILE]

    # A second pull finds the verified file and downloads nothing.
    before = len(hub.requests)
    calls.clear()
    assert pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models", progress=lambda *a: calls.append(a)) == path
    assert [r for r in hub.requests[before:] if r.body_bytes] == []
    assert calls == [(size, size, GGUF_FILE)]


def test_pull_folder_takes_only_the_catalog_patterns(hub, repos, tmp_path):
    calls: list[tuple[int, int, str]] = []
    folder = pull(find("sd-turbo"), tmp_path / "models", progress=lambda *a: calls.append(a))

    assert folder == tmp_path / "models" / "sd-turbo"
    pulled = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    assert pulled == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    for name in pulled:
        assert (folder / name).read_bytes() == (repos[SD_REPO] / name).read_bytes(), name
    total = sum((repos[SD_REPO] / name).stat().st_size for name in pulled)
    assert calls[-1][:2] == (total, total)
    # The bookkeeping folder is hidden, so the folder's model hash is that of the weights alone.
    reference = tmp_path / "reference"
    for name in pulled:
        (reference / name).parent.mkdir(parents=True, exist_ok=True)
        (reference / name).write_bytes((repos[SD_REPO] / name).read_bytes())
    assert model_hash(folder) == model_hash(reference)


def test_a_cut_transfer_resumes_from_where_it_stopped(hub, repos, tmp_path):
    size = (repos[GGUF_REPO] / GGUF_FILE).stat().st_size
    hub.cut_next(GGUF_FILE, after=100_000)

    path = pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models")

    assert path.read_bytes() == (repos[GGUF_REPO] / GGUF_FILE).read_bytes()
    first, second = hub.downloads(GGUF_FILE)
    assert (first.range, first.body_bytes) == (None, 100_000)
    # Whole chunks of the cut transfer were kept; the retry asked for the rest only.
    kept = 100_000 // CHUNK * CHUNK
    assert second.range == f"bytes={kept}-" and second.status == 206
    assert second.body_bytes == size - kept < size


def test_an_interrupted_pull_continues_next_time(hub, repos, tmp_path):
    size = (repos[GGUF_REPO] / GGUF_FILE).stat().st_size

    def ctrl_c_midway(done: int, total: int, file: str) -> None:
        if done >= 5 * CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models", progress=ctrl_c_midway)
    target = tmp_path / "models" / "qwen2.5-0.5b-instruct"
    assert not (target / GGUF_FILE).exists()

    calls: list[tuple[int, int, str]] = []
    path = pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models", progress=lambda *a: calls.append(a))

    assert path.read_bytes() == (repos[GGUF_REPO] / GGUF_FILE).read_bytes()
    again = hub.downloads(GGUF_FILE)[-1]
    kept = 4 * CHUNK  # the chunk being reported when Ctrl-C came was never written
    assert again.range == f"bytes={kept}-"
    assert again.body_bytes == size - kept < size
    assert calls[0] == (kept, size, GGUF_FILE)  # progress starts from what is already on disk
    assert calls[-1] == (size, size, GGUF_FILE)
    assert list(target.rglob("*.part")) == []


def test_a_corrupted_partial_file_is_caught_and_deleted(hub, repos, tmp_path):
    entry = find("qwen2.5-0.5b-instruct")
    pull(entry, tmp_path / "first")
    part_name = next((tmp_path / "first" / entry.id / ".cache" / "aigc").glob("*.json")).name
    oid = json.loads((tmp_path / "first" / entry.id / ".cache" / "aigc" / part_name).read_text())["oid"]
    # A partial file whose first bytes are wrong (a disk error, a bad copy): resuming it cannot fix it.
    books = tmp_path / "models" / entry.id / ".cache" / "aigc"
    books.mkdir(parents=True)
    (books / f"{GGUF_FILE}.{oid[:16]}.part").write_bytes(b"XXXX" + _noise(60_000, "junk"))

    with pytest.raises(PullError) as err:
        pull(entry, tmp_path / "models")

    assert f"{GGUF_FILE} from {GGUF_REPO} arrived corrupted" in err.value.message
    assert "it was deleted, run the pull again" in err.value.message
    assert list(books.glob("*.part")) == []
    assert pull(entry, tmp_path / "models").read_bytes() == (repos[GGUF_REPO] / GGUF_FILE).read_bytes()


def test_unknown_repo_says_which_repo_and_where(hub, tmp_path):
    entry = CatalogEntry(
        id="ghost",
        kind="text",
        engine="llamacpp",
        repo_id="nobody/ghost-GGUF",
        files=("ghost.gguf",),
        size_bytes=1,
        license="",
        description="",
    )
    with pytest.raises(PullError) as err:
        pull(entry, tmp_path / "models")
    assert err.value.message == (
        f"the repo nobody/ghost-GGUF does not exist on {hub.url} (or it is private); the catalog entry "
        "'ghost' names a wrong repo, or HF_ENDPOINT points at a mirror that lacks it"
    )


def test_missing_file_says_the_catalog_is_out_of_date(hub, tmp_path):
    entry = CatalogEntry(
        id="qwen-q3",
        kind="text",
        engine="llamacpp",
        repo_id=GGUF_REPO,
        files=("qwen2.5-0.5b-instruct-q3_k_m.gguf",),
        size_bytes=1,
        license="",
        description="",
    )
    with pytest.raises(PullError) as err:
        pull(entry, tmp_path / "models")
    assert err.value.message.startswith(
        f"{GGUF_REPO}@main on {hub.url} has no file qwen2.5-0.5b-instruct-q3_k_m.gguf; "
        "the catalog entry 'qwen-q3' is out of date"
    )
    folder = CatalogEntry(
        id="sd-bf16",
        kind="image",
        engine="diffusers",
        repo_id=SD_REPO,
        allow_patterns=("model_index.json", "unet/*.bf16.safetensors"),
        size_bytes=1,
        license="",
        description="",
    )
    with pytest.raises(PullError, match=r"has nothing matching unet/\*\.bf16\.safetensors; the catalog entry"):
        pull(folder, tmp_path / "models")


def test_hub_down_says_what_to_do(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(PullError) as err:
        pull(find("sd-turbo"), tmp_path / "models")
    message = err.value.message
    assert message.startswith(f"could not reach the hub at http://127.0.0.1:{port} (ConnectError")
    assert message.endswith(
        "run the same pull again: finished files are kept and a partial file continues where it stopped"
    )
    assert err.value.code == "pull_failed"


def test_offline_mode_is_refused_up_front(hub, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PullError, match="HF_HUB_OFFLINE is set"):
        pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models")
    assert hub.requests == []


def test_tqdm_progress_draws_one_bar_to_100_percent(hub, tmp_path):
    out = io.StringIO()
    with TqdmProgress("qwen2.5-0.5b-instruct", file=out, mininterval=0) as bar:
        pull(find("qwen2.5-0.5b-instruct"), tmp_path / "models", progress=bar)
    assert bar.bar.n == bar.bar.total == os.path.getsize(tmp_path / "models" / "qwen2.5-0.5b-instruct" / GGUF_FILE)
    assert "100%" in out.getvalue() and GGUF_FILE in out.getvalue()


def test_the_fake_hub_serves_huggingface_hubs_own_downloaders(hub, repos, tmp_path):
    """If huggingface_hub's own functions work against FakeHub, the tests above test the real protocol."""
    one = hf_hub_download(GGUF_REPO, GGUF_FILE, local_dir=tmp_path / "one", endpoint=hub.url)
    assert Path(one).read_bytes() == (repos[GGUF_REPO] / GGUF_FILE).read_bytes()
    folder = snapshot_download(
        SD_REPO, local_dir=tmp_path / "snap", endpoint=hub.url, allow_patterns=["model_index.json", "unet/*"]
    )
    assert sorted(p.name for p in (Path(folder) / "unet").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors",
    ]
    assert (Path(folder) / "model_index.json").is_file()


# -- the CLI ---------------------------------------------------------------------------------------


def test_aigc_models_pull_registers_the_model(hub, aigc_home):
    from click.testing import CliRunner

    from aigc_studio.cli.main import cli
    from aigc_studio.config import load_config
    from aigc_studio.studio import Studio

    r = CliRunner().invoke(cli, ["models", "pull", "qwen2.5-0.5b-instruct"])
    assert r.exit_code == 0, r.output
    assert "pulled qwen2.5-0.5b-instruct (text)" in r.output
    r = CliRunner().invoke(cli, ["models", "pull", "sd-turbo"])
    assert "pulled sd-turbo (image)" in r.output
    again = CliRunner().invoke(cli, ["models", "pull", "sd-turbo"])
    assert "up to date" in again.output
    studio = Studio(load_config())
    turbo = studio.registry.resolve("sd-turbo")
    assert turbo.kind == "image" and turbo.defaults["steps"] == 1 and turbo.variant == "fp16"
    assert turbo.path.startswith(str(aigc_home / "models"))
    assert studio.registry.resolve("qwen2.5-0.5b-instruct").kind == "text"
    r = CliRunner().invoke(cli, ["models", "pull", "gpt-5"])
    assert r.exit_code == 1 and "sd-turbo" in r.output
