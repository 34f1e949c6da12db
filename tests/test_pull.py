"""The catalog and `pull`, against a fake hub on loopback: nothing here may reach huggingface.co."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
from pathlib import Path

import pytest
from huggingface_hub import constants, hf_hub_download, snapshot_download

from aigc_studio.errors import ModelNotFound
from aigc_studio.images.hashing import is_weight_file, model_hash, weight_variant
from aigc_studio.models.catalog import CATALOG, CatalogEntry, find
from aigc_studio.models.pull import PullError, TqdmProgress, pull

from .fakehub import FakeHub, isolate_huggingface_hub, noise, write_layout, write_safetensors

GGUF_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
GGUF_FILE = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
SD_REPO = "stabilityai/sd-turbo"
CHUNK = 16 * 1024
# stabilityai/sd-turbo's model_index.json, as on the hub
SD_TURBO_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.24.0.dev0",
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


@pytest.fixture(autouse=True)
def hermetic_hub(tmp_path, monkeypatch):
    """huggingface_hub with no user state, and a guard that fails the test if anything leaves loopback."""
    left_loopback = isolate_huggingface_hub(monkeypatch, tmp_path / "hf-home")
    # 10 MiB chunks would make every test file one chunk; resuming needs several.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    yield
    assert left_loopback == [], f"tried to reach {left_loopback}"


@pytest.fixture
def repos(tmp_path) -> dict[str, Path]:
    """A GGUF repo and an SD-Turbo-shaped diffusers repo, laid out as on the hub, tiny."""
    gguf = tmp_path / "hub" / "gguf"
    gguf.mkdir(parents=True)
    # GGUF magic, version 3, no tensors, no metadata, then filler: enough for the magic-byte check.
    (gguf / GGUF_FILE).write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0) + noise(300_000, "gguf"))
    (gguf / "qwen2.5-0.5b-instruct-q8_0.gguf").write_bytes(b"GGUF" + noise(50_000, "q8"))
    (gguf / "README.md").write_text("# Qwen2.5-0.5B-Instruct-GGUF\n")

    sd = tmp_path / "hub" / "sd"
    (sd / "scheduler").mkdir(parents=True)
    (sd / "tokenizer").mkdir()
    (sd / "model_index.json").write_text(json.dumps(SD_TURBO_INDEX))
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
        write_safetensors(sd / part / f"{weights}.fp16.safetensors", {"w": 40_000})
        write_safetensors(sd / part / f"{weights}.safetensors", {"w": 80_000})  # fp32: must not be pulled
    (sd / "sd_turbo.safetensors").write_bytes(noise(90_000, "single"))  # the single file: not pulled
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
            # Every weight pattern names the entry's variant (fp16) or none: never a mix.
            weights = [p for p in e.allow_patterns if is_weight_file(p)]
            assert weights and {weight_variant(p) for p in weights} == {e.variant}, e.id
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
    (books / f"{GGUF_FILE}.{oid[:16]}.part").write_bytes(b"XXXX" + noise(60_000, "junk"))

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


# -- the catalog against the repos' real layouts -----------------------------------------------------

_TOKENIZER = ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
_SAFETY = {"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}
_EXTRACTOR = {"feature_extractor": ["transformers", "CLIPImageProcessor"]}
_NO_EXTRAS = {"feature_extractor": [None, None], "image_encoder": [None, None], "safety_checker": [None, None]}


def _index(pipeline: str, scheduler: str, parts: dict[str, str], extras: dict) -> dict:
    kinds = {
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
    }
    return {"_class_name": pipeline, "scheduler": ["diffusers", scheduler], **{p: kinds[p] for p in parts}, **extras}


def _layout(top: list[str], parts: dict[str, list[str]]) -> list[str]:
    """A repo's file list: the files at its top, and each component folder's."""
    return [*top, *(f"{part}/{name}" for part, names in parts.items() for name in names)]


# What each catalog repo lists on the hub (file names; the sizes do not matter here). Sources: the
# hub's file listings as quoted in public download scripts and manifests (sd-turbo: its three fp16
# weights, 1.73 GB + 681 MB + 167 MB; sdxl-turbo: unet 5.1 GB, text_encoder and text_encoder_2 fp16,
# vae fp16; stable-diffusion-v1-5: text_encoder/model.fp16.safetensors among the fp16 set). The LCM and
# InstructPix2Pix layouts are the usual converted-repo ones; a name a repo lacks fails the pull (below).
_SD2_WEIGHTS = {
    "unet": ["config.json", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors"],
    "vae": ["config.json", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors"],
    "text_encoder": ["config.json", "model.fp16.safetensors", "model.safetensors"],
    "tokenizer": _TOKENIZER,
}
HUB_LAYOUTS: dict[str, tuple[list[str], dict]] = {
    "stabilityai/sd-turbo": (
        _layout(
            [
                ".gitattributes",
                "README.md",
                "model_index.json",
                "sd_turbo.safetensors",
                "scheduler/scheduler_config.json",
            ],
            _SD2_WEIGHTS,
        ),
        _index("StableDiffusionPipeline", "EulerDiscreteScheduler", _SD2_WEIGHTS, _NO_EXTRAS),
    ),
    "stabilityai/sdxl-turbo": (
        _layout(
            [
                ".gitattributes",
                "README.md",
                "model_index.json",
                "sd_xl_turbo_1.0.safetensors",
                "sd_xl_turbo_1.0_fp16.safetensors",
                "scheduler/scheduler_config.json",
            ],
            {**_SD2_WEIGHTS, "text_encoder_2": _SD2_WEIGHTS["text_encoder"], "tokenizer_2": _TOKENIZER},
        ),
        _index(
            "StableDiffusionXLPipeline",
            "EulerAncestralDiscreteScheduler",
            {**_SD2_WEIGHTS, "text_encoder_2": [], "tokenizer_2": []},
            _NO_EXTRAS,
        ),
    ),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": (
        _layout(
            [
                "README.md",
                "model_index.json",
                "v1-5-pruned-emaonly.safetensors",
                "v1-5-pruned.ckpt",
                "v1-inference.yaml",
                "feature_extractor/preprocessor_config.json",
                "scheduler/scheduler_config.json",
            ],
            {
                "safety_checker": ["config.json", "model.fp16.safetensors", "model.safetensors", "pytorch_model.bin"],
                "text_encoder": ["config.json", "model.fp16.safetensors", "model.safetensors", "pytorch_model.bin"],
                "tokenizer": _TOKENIZER,
                "unet": [
                    "config.json",
                    "diffusion_pytorch_model.bin",
                    "diffusion_pytorch_model.fp16.bin",
                    "diffusion_pytorch_model.fp16.safetensors",
                    "diffusion_pytorch_model.non_ema.safetensors",
                    "diffusion_pytorch_model.safetensors",
                ],
                "vae": [
                    "config.json",
                    "diffusion_pytorch_model.bin",
                    "diffusion_pytorch_model.fp16.safetensors",
                    "diffusion_pytorch_model.safetensors",
                ],
            },
        ),
        _index("StableDiffusionPipeline", "PNDMScheduler", _SD2_WEIGHTS, {**_SAFETY, **_EXTRACTOR}),
    ),
    "SimianLuo/LCM_Dreamshaper_v7": (
        _layout(
            [
                "README.md",
                "model_index.json",
                "LCM_Dreamshaper_v7_4k.safetensors",
                "feature_extractor/preprocessor_config.json",
                "scheduler/scheduler_config.json",
                "text_encoder/model.onnx",
                "unet/model.onnx",
                "unet/model.onnx_data",
                "vae_decoder/model.onnx",
            ],
            {
                "safety_checker": ["config.json", "model.safetensors"],
                "text_encoder": ["config.json", "model.safetensors"],
                "tokenizer": _TOKENIZER,
                "unet": ["config.json", "diffusion_pytorch_model.safetensors"],
                "vae": ["config.json", "diffusion_pytorch_model.safetensors"],
            },
        ),
        _index("LatentConsistencyModelPipeline", "LCMScheduler", _SD2_WEIGHTS, {**_SAFETY, **_EXTRACTOR}),
    ),
    "timbrooks/instruct-pix2pix": (
        _layout(
            [
                "README.md",
                "model_index.json",
                "instruct-pix2pix-00-22000.ckpt",
                "instruct-pix2pix-00-22000.safetensors",
                "feature_extractor/preprocessor_config.json",
                "scheduler/scheduler_config.json",
            ],
            {
                "safety_checker": ["config.json", "model.safetensors", "pytorch_model.bin"],
                "text_encoder": ["config.json", "model.safetensors", "pytorch_model.bin"],
                "tokenizer": _TOKENIZER,
                "unet": ["config.json", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"],
                "vae": ["config.json", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors"],
            },
        ),
        _index(
            "StableDiffusionInstructPix2PixPipeline",
            "EulerAncestralDiscreteScheduler",
            _SD2_WEIGHTS,
            {**_SAFETY, **_EXTRACTOR},
        ),
    ),
}
IMAGE_ENTRIES = [e for e in CATALOG if e.kind == "image"]


def _expected_pull(entry) -> list[str]:
    """What a loadable folder of ``entry`` holds: the index, the scheduler, every listed component's
    config and weights (in the entry's variant), the tokenizers whole; never the safety checker."""
    paths, index = HUB_LAYOUTS[entry.repo_id]
    suffix = f".{entry.variant}.safetensors" if entry.variant else ".safetensors"
    wanted = ["model_index.json", "scheduler/scheduler_config.json"]
    for component, spec in index.items():
        if component.startswith("_") or component in ("scheduler", "safety_checker") or spec[0] is None:
            continue
        mine = [p for p in paths if p.startswith(component + "/")]
        if component.startswith("tokenizer"):
            wanted += mine
        elif component == "feature_extractor":
            wanted += ["feature_extractor/preprocessor_config.json"]
        else:
            weights = [p for p in mine if p.endswith(suffix) and p.count(".") == suffix.count(".")]
            assert len(weights) == 1, (component, mine)
            wanted += [f"{component}/config.json", *weights]
    return sorted(wanted)


@pytest.fixture
def layouts(tmp_path, monkeypatch):
    """The fake hub serving every catalog image repo in its real layout, tiny."""
    folders = {}
    for repo_id, (paths, index) in HUB_LAYOUTS.items():
        folders[repo_id] = tmp_path / "layouts" / repo_id
        write_layout(folders[repo_id], paths, index)
    with FakeHub(folders) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@pytest.mark.parametrize("entry", IMAGE_ENTRIES, ids=lambda e: e.id)
def test_each_image_entry_pulls_a_loadable_folder_from_its_repos_layout(layouts, entry, tmp_path):
    folder = pull(entry, tmp_path / "models")
    pulled = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    assert pulled == _expected_pull(entry)
    assert not any(p.startswith("safety_checker/") for p in pulled)


def _fp16_weights():
    for entry in IMAGE_ENTRIES:
        if entry.variant:
            for path in _expected_pull(entry):
                if path.endswith(f".{entry.variant}.safetensors"):
                    yield pytest.param(entry, path, id=f"{entry.id}:{path}")


@pytest.mark.parametrize(("entry", "missing"), list(_fp16_weights()))
def test_a_missing_fp16_file_of_any_component_fails_the_pull_before_the_weights(
    layouts, entry, missing, tmp_path, monkeypatch
):
    paths, index = HUB_LAYOUTS[entry.repo_id]
    shutil.rmtree(tmp_path / "layouts" / entry.repo_id)
    write_layout(tmp_path / "layouts" / entry.repo_id, [p for p in paths if p != missing], index)

    with pytest.raises(PullError) as err:
        pull(entry, tmp_path / "models")

    assert f"has nothing matching {missing}; the catalog entry '{entry.id}' is out of date" in err.value.message
    assert [r.path for r in layouts.requests if r.body_bytes] == []  # not one byte downloaded


def test_a_component_in_model_index_that_the_entry_does_not_pull_stops_the_pull(layouts, tmp_path):
    """A repo that gained a component (here an image encoder for IP-Adapter) would give a folder that
    fails to load: the pull stops after model_index.json, before any weights."""
    paths, index = HUB_LAYOUTS["stabilityai/sd-turbo"]
    index = {**index, "image_encoder": ["transformers", "CLIPVisionModelWithProjection"]}
    write_layout(
        tmp_path / "layouts" / "stabilityai/sd-turbo",
        [*paths, "image_encoder/config.json", "image_encoder/model.fp16.safetensors"],
        index,
    )

    with pytest.raises(PullError) as err:
        pull(find("sd-turbo"), tmp_path / "models")

    assert err.value.message.startswith(
        f"model_index.json of stabilityai/sd-turbo@main on {layouts.url} lists components that the catalog "
        "entry 'sd-turbo' does not pull in full: image_encoder (no file of it). The pull stopped before the "
        "weights, since the folder would not load as the catalog describes it"
    )
    assert [r.path.rsplit("/", 1)[-1] for r in layouts.requests if r.body_bytes] == ["model_index.json"]


def test_an_entry_pulling_other_weights_than_its_variant_is_refused(layouts, tmp_path):
    fp32_unet = CatalogEntry(
        id="sd-turbo-mixed",
        kind="image",
        engine="diffusers",
        repo_id="stabilityai/sd-turbo",
        allow_patterns=tuple(
            p.replace("unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors")
            for p in find("sd-turbo").allow_patterns
        ),
        variant="fp16",
        size_bytes=1,
        license="",
        description="",
    )
    with pytest.raises(PullError, match=r"unet \(no fp16 weights, only unet/diffusion_pytorch_model\.safetensors\)"):
        pull(fp32_unet, tmp_path / "models")


# -- a hostile hub ---------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file and link under ``folder``, byte for byte."""
    return {
        p.relative_to(folder).as_posix(): (f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


@pytest.fixture
def home(tmp_path) -> Path:
    """A studio home: the models folder pulls go into, another model beside, a file above."""
    home = tmp_path / "home"
    write_safetensors(home / "models" / "other-model" / "unet" / "diffusion_pytorch_model.safetensors", {"w": 500})
    (home / "models" / "other-model" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (home / "config.toml").write_text("port = 7860\n")
    return home


HOSTILE = [
    ("tokenizer/../../evil.txt", "a '..' or '.' segment"),
    ("ABSOLUTE", "an absolute path"),
    ("tokenizer\\..\\..\\evil.txt", "a backslash"),
    ("C:/evil.txt", "a ':' (a drive letter"),
    ("tokenizer/C:evil.txt", "a ':' (a drive letter"),
    ("tokenizer//evil.txt", "an empty segment"),
    ("tokenizer/", "an empty segment"),
    ("tokenizer/./vocab.json", "a '..' or '.' segment"),
]


@pytest.mark.parametrize(("listed", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hub_listing_a_path_outside_the_folder_is_refused(repos, home, listed, reason, monkeypatch):
    listed = str(home / "evil.txt") if listed == "ABSOLUTE" else listed
    before = _snapshot(home)
    with FakeHub(repos, extra={SD_REPO: {listed: b"pwned\n"}}) as hostile:
        monkeypatch.setenv("HF_ENDPOINT", hostile.url)
        with pytest.raises(PullError) as err:
            pull(find("sd-turbo"), home / "models")

    assert err.value.message.startswith(
        f"{SD_REPO}@main on {hostile.url} lists the file {listed!r}, which has {reason}"
    )
    assert f"it could be written outside {home / 'models' / 'sd-turbo'}, so nothing was downloaded" in err.value.message
    assert _snapshot(home) == before  # the parent, the sibling model, the file above: untouched
    assert not (home / "models" / "sd-turbo").exists()
    assert [r for r in hostile.requests if r.body_bytes] == []


@pytest.mark.parametrize(
    ("link", "points_to", "first_hit"),
    [
        ("unet", "models/other-model/unet", "unet/config.json"),
        (".cache", "models/other-model", "model_index.json"),
        ("model_index.json", "models/other-model/model_index.json", "model_index.json"),
        ("text_encoder", "..", "text_encoder/config.json"),
    ],
    ids=["folder-link", "bookkeeping-link", "file-link", "link-to-parent"],
)
def test_a_symlink_inside_the_folder_cannot_lead_a_write_outside(hub, home, link, points_to, first_hit):
    target = home / "models" / "sd-turbo"
    target.mkdir(parents=True)
    (target / link).symlink_to(home / points_to)
    before = _snapshot(home)

    with pytest.raises(PullError) as err:
        pull(find("sd-turbo"), home / "models")

    assert err.value.message.startswith(
        f"{first_hit} would be written through the symbolic link {target / link} (to {(home / points_to).resolve()}), "
        f"which leads outside {target}; nothing was written there. Remove the link and run the pull again"
    )
    assert _snapshot(home) == before
    assert [r for r in hub.requests if r.body_bytes] == []


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
    qwen = studio.registry.resolve("qwen2.5-0.5b-instruct")
    assert qwen.kind == "text" and qwen.languages[:2] == ["zh", "en"]  # from the catalog, for language fit
    r = CliRunner().invoke(cli, ["models", "pull", "gpt-5"])
    assert r.exit_code == 1 and "sd-turbo" in r.output
