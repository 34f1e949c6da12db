"""The transformers text engine: a tiny Llama built here from transformers' own classes, with a real
word-level tokenizer and a chat template, saved to a folder and added like a user's model; and the
embedded SmolLM2 GGUF, which transformers de-quantizes (Q4_1) and runs.

The tiny model's weights are random, so its words are noise; what is checked is what the engine does
with them: streaming, stop strings, max_tokens, seeds, cancellation, the context limit, logit_bias.
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from click.testing import CliRunner

from aigc_studio.api.app import create_app
from aigc_studio.cli.main import cli
from aigc_studio.contracts import Message, ResponseFormat, TextOptions
from aigc_studio.errors import ContextLengthExceeded, InvalidRequest

from .conftest import LiveServer, make_studio

pytestmark = pytest.mark.timeout(120)

CONTEXT = 1024
SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    *["system", "user", "assistant", "tell", "me", "a", "story", "about", "the", "sun", "moon", "star", "sea"],
    *(f"w{i}" for i in range(200)),
]
EOS = SPECIAL.index("<|im_end|>")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A 2-layer Llama (hidden size 32) and its tokenizer, saved as a transformers folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="</s>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
        "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=EOS,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # A zero row gives the end token a logit of 0, the middle of the others: never the greedy pick
        # nor among the top 40 of 218, so every answer runs to max_tokens unless it is stopped.
        model.lm_head.weight[EOS] = 0
    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_folder):
    studio = make_studio(tmp_path_factory.mktemp("home"), model="echo")
    studio.registry.add(tiny_folder, model_id="tiny")
    yield studio
    studio.close()


def ask(studio, text: str = "tell me a story about the sun", **options):
    prepared = studio.chat.prepare(
        [Message(role="user", content=text)], model="tiny", options=TextOptions(**options), store=False
    )
    return studio.chat.complete(prepared)


def test_a_transformers_folder_is_added_as_a_text_model_with_its_trained_context(studio, tiny_folder):
    info = studio.registry.resolve("tiny")
    assert (info.kind, info.engine, info.path, info.context_length) == ("text", "transformers", str(tiny_folder), 1024)
    assert studio.registry.engine("tiny").context_length == CONTEXT
    assert studio.registry.engine("tiny").device == "cpu"  # this machine has no GPU


def test_the_answer_streams_and_max_tokens_ends_it_with_length(studio):
    prepared = studio.chat.prepare(
        [Message(role="user", content="tell me a story")], model="tiny", options=TextOptions(max_tokens=6, seed=3)
    )
    chunks = list(studio.chat.start(prepared))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 3  # word by word, not one block at the end
    final = chunks[-1]
    assert final.finish_reason == "length" and final.usage.completion_tokens == 6
    assert final.seed == 3 and final.sampling == {
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }
    # The template's tokens: <|im_start|> user tell me a story <|im_end|> <|im_start|> assistant
    assert final.usage.prompt_tokens == 9
    assert "".join(texts).split() and all(w in WORDS for w in "".join(texts).split())


def test_the_same_seed_gives_the_same_text_and_another_seed_another(studio):
    first, again, other = (ask(studio, max_tokens=12, seed=s).text for s in (7, 7, 8))
    assert first == again
    assert first != other
    greedy = {ask(studio, max_tokens=12, temperature=0).text for _ in range(2)}
    assert len(greedy) == 1


def test_a_stop_string_ends_the_answer_before_it(studio):
    full = ask(studio, max_tokens=20, seed=11).text.split()
    stop = full[5]
    expected = " ".join(full)[: " ".join(full).find(stop)]
    result = ask(studio, max_tokens=20, seed=11, stop=[stop])
    assert result.text == expected and result.finish_reason == "stop"
    assert stop not in result.text


def test_cancelling_ends_the_generation_part_way(studio):
    prepared = studio.chat.prepare(
        [Message(role="user", content="tell me a story")], model="tiny", options=TextOptions(max_tokens=1000)
    )
    run = studio.chat.start(prepared)
    chunks = []
    for chunk in run:
        chunks.append(chunk)
        if len(chunks) == 1:
            run.cancel()
    assert run.result.finish_reason == "cancelled"
    assert run.result.usage.completion_tokens < 1000


def test_a_prompt_longer_than_the_context_is_refused(studio):
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 1024 tokens"):
        ask(studio, text="the sun " * 600)


def test_logit_bias_is_honoured_and_a_json_answer_refused(studio):
    moon = len(SPECIAL) + WORDS.index("moon")
    messages = [Message(role="user", content="tell me a story")]
    options = TextOptions(max_tokens=5, temperature=0)
    prepared = studio.chat.prepare(messages, model="tiny", options=options, logit_bias={moon: 100}, store=False)
    assert studio.chat.complete(prepared).text.split() == ["moon"] * 5
    with pytest.raises(InvalidRequest, match=r"outside this model's vocabulary \(0..217\): 5000"):
        studio.chat.prepare(messages, model="tiny", options=options, logit_bias={5000: 1}, store=False)
    with pytest.raises(InvalidRequest, match="cannot constrain its answer to JSON"):
        studio.chat.prepare(
            messages, model="tiny", options=options, response_format=ResponseFormat(type="json_object"), store=False
        )


def test_v1_streams_the_tiny_model_to_the_openai_client(studio):
    expected = ask(studio, max_tokens=8, seed=21)
    with LiveServer(create_app(studio, load_default=False)) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused")
        assert "tiny" in [m.id for m in client.models.list()]
        stream = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "tell me a story about the sun"}],
            max_tokens=8,
            seed=21,
            stream=True,
        )
        chunks = [c for c in stream if c.choices]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
        assert chunks[-1].choices[0].finish_reason == "length"
        stopped = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "tell me a story about the sun"}],
            max_tokens=8,
            seed=21,
            stop=[expected.text.split()[3]],
        )
        assert stopped.choices[0].finish_reason == "stop"
        assert stopped.choices[0].message.content == expected.text[: expected.text.find(expected.text.split()[3])]
        with pytest.raises(openai.BadRequestError, match="maximum context length is 1024 tokens"):
            client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "the sun " * 600}])
        # A raw completion: special-token text in the prompt stays text (<| im_end |> are 3 unknown words).
        raw = client.completions.create(model="tiny", prompt="the sun <|im_end|>", max_tokens=4, seed=2)
        assert raw.usage.prompt_tokens == 5 and raw.usage.completion_tokens == 4
        assert raw.choices[0].finish_reason == "length"
        refused = httpx.post(
            live.url + "/v1/chat/completions",
            json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "logprobs": True},
        )
        assert refused.status_code == 400 and "gives no log probabilities" in refused.json()["error"]["message"]


def test_the_cli_adds_a_folder_and_refuses_what_is_not_a_causal_lm(tmp_path, tiny_folder):
    runner = CliRunner()
    env = {"AIGC_HOME": str(tmp_path / "home")}
    added = runner.invoke(cli, ["models", "add", str(tiny_folder), "--name", "tiny"], env=env)
    assert added.exit_code == 0, added.output
    assert f"from {tiny_folder}" in added.output
    listed = runner.invoke(cli, ["models", "list"], env=env)
    line = next(line for line in listed.output.splitlines() if "tiny" in line)
    assert line.split()[:3] == ["tiny", "text", "transformers"]
    shown = runner.invoke(cli, ["models", "info", "tiny"], env=env)
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert (info["engine"], info["context_length"]) == ("transformers", 1024)
    assert info["metadata"]["architecture"] == "LlamaForCausalLM" and info["metadata"]["device"] == "cpu"
    assert info["metadata"]["dtype"] == "float32" and info["metadata"]["vocab_size"] == "218"

    wrong_engine = runner.invoke(cli, ["models", "add", str(tiny_folder), "--engine", "llamacpp"], env=env)
    assert wrong_engine.exit_code != 0 and "is a transformers model; engine llamacpp takes a GGUF file" in (
        wrong_engine.output
    )
    encoder = tmp_path / "bert"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    refused = runner.invoke(cli, ["models", "add", str(encoder)], env=env)
    assert refused.exit_code != 0
    assert "config.json names no causal language model" in refused.output
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    refused = runner.invoke(cli, ["models", "add", str(no_weights)], env=env)
    assert refused.exit_code != 0 and "has a config.json but no weights" in refused.output
    # Nothing refused was stored.
    listed = runner.invoke(cli, ["models", "list"], env=env)
    assert "bert" not in listed.output and "no-weights" not in listed.output


@pytest.mark.slow
def test_the_embedded_q4_1_gguf_runs_through_transformers(tmp_path, smollm_path):
    """transformers de-quantizes the Q4_1 GGUF to float32 (with the gguf package) and answers with it."""
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        info = studio.registry.add(smollm_path, model_id="smol-hf", engine="transformers")
        assert (info.engine, info.path) == ("transformers", str(smollm_path))
        prepared = studio.chat.prepare(
            [Message(role="user", content="What is the capital of France?")],
            model="smol-hf",
            options=TextOptions(temperature=0, max_tokens=12),
            store=False,
        )
        result = studio.chat.complete(prepared)
        assert "Paris" in result.text
        assert studio.registry.engine("smol-hf").context_length == 8192
    finally:
        studio.close()


def test_a_template_that_refuses_the_messages_is_a_400_saying_so(tmp_path, tiny_folder):
    import shutil

    strict = tmp_path / "strict"
    shutil.copytree(tiny_folder, strict)
    template = (strict / "chat_template.jinja").read_text()
    (strict / "chat_template.jinja").write_text(
        "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('the first message must be the user') }}"
        "{% endif %}" + template
    )
    studio = make_studio(tmp_path / "home", model="echo")
    try:
        studio.registry.add(strict, model_id="strict")
        with pytest.raises(InvalidRequest, match="chat template refuses these messages: the first message must"):
            studio.chat.prepare([Message(role="assistant", content="hi")], model="strict", store=False)
        assert (
            studio.chat.complete(
                studio.chat.prepare(
                    [Message(role="user", content="hi")], model="strict", options=TextOptions(max_tokens=2)
                )
            ).usage.completion_tokens
            == 2
        )
    finally:
        studio.close()


def test_a_cuda_device_without_a_gpu_is_refused_when_the_model_loads(tmp_path, tiny_folder):
    from aigc_studio.config import load_config
    from aigc_studio.errors import ModelLoadError, SettingError

    with pytest.raises(SettingError, match=r"device must be auto, cpu, cuda or cuda:N \(N a GPU index\), got 'gpu'"):
        load_config(device="gpu")
    studio = make_studio(tmp_path / "home", model="echo", device="cuda")
    try:
        studio.registry.add(tiny_folder, model_id="tiny")
        with pytest.raises(ModelLoadError, match="device is 'cuda' but torch sees no CUDA GPU here"):
            studio.chat.prepare([Message(role="user", content="hi")], model="tiny", store=False)
    finally:
        studio.close()


@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
def test_the_models_tab_adds_a_transformers_folder_and_lists_its_engine(browser, tmp_path, tiny_folder):
    from .ui_helpers import off_loopback, open_tab, wait_until

    studio = make_studio(tmp_path / "home", model="echo")
    requested: list[str] = []
    try:
        with LiveServer(create_app(studio)) as live:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.on("request", lambda request: requested.append(request.url))
            page = context.new_page()
            page.goto(live.url + "/")
            page.wait_for_selector("#chat-input textarea")
            open_tab(page, "Models")
            table = page.locator("#models-table")
            wait_until(lambda: "echo" in table.inner_text(), what="the model table")
            page.fill("#models-path textarea, #models-path input", str(tiny_folder))
            page.click("#models-add")
            wait_until(lambda: "tiny-llama" in table.inner_text(), timeout=30, what="the added model")
            assert re.search(r"tiny-llama\s+text\s+transformers\s", table.inner_text()), table.inner_text()
            assert "Added tiny-llama" in page.locator("#models-add-note").inner_text()
            context.close()
        assert studio.registry.resolve("tiny-llama").engine == "transformers"
        assert off_loopback(requested) == []
    finally:
        studio.close()


def test_presence_and_frequency_penalties_count_the_answer_tokens_only():
    import torch

    from aigc_studio.engines.transformers_engine import _OpenAIPenalties

    penalties = _OpenAIPenalties(prompt_length=2, presence=0.5, frequency=0.25)
    input_ids = torch.tensor([[3, 1, 3, 3, 4]])  # prompt 3 1; the answer so far 3 3 4
    scores = penalties(input_ids, torch.zeros(1, 6))
    assert scores.tolist() == [[0.0, 0.0, 0.0, -1.0, -0.75, 0.0]]
