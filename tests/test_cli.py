"""The `aigc` command: chat, history, models, as a user types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from aigc_studio.cli.main import cli


def aigc(*args, input=None, env=None):
    result = CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
    return result


def test_one_shot_chat_streams_the_answer(aigc_home):
    r = aigc("chat", "hello from the terminal", "-m", "echo")
    assert r.exit_code == 0 and r.output == "hello from the terminal\n"


def test_model_from_environment_variable(aigc_home):
    r = aigc("chat", "env works", env={"AIGC_MODEL": "echo"})
    assert r.output == "env works\n"
    r = aigc("chat", "two words", "-m", "echo", env={"AIGC_CHAT_MAX_TOKENS": "1"})
    assert r.output == "two \n"


def test_continue_and_history_commands(aigc_home, tmp_path):
    aigc("chat", "first question", "-m", "echo")
    aigc("chat", "follow up", "--continue")  # model comes from the conversation
    listing = aigc("history", "list")
    assert listing.output.count("conv-") == 1 and "4 msgs" in listing.output
    cid = listing.output.split()[0]
    shown = aigc("history", "show", cid)
    assert "first question" in shown.output and "follow up" in shown.output
    assert "first question" in aigc("history", "search", "question").output
    out = tmp_path / "h.json"
    aigc("history", "export", "-o", str(out))
    assert json.loads(out.read_text())["conversations"][0]["id"] == cid
    assert aigc("history", "rm", cid).exit_code == 0
    assert aigc("history", "list").output == ""
    r = aigc("history", "import", str(out))
    assert "imported 1" in r.output
    assert aigc("history", "show", "conv-nope").exit_code == 1


def test_interactive_chat_is_multi_turn(aigc_home):
    r = aigc("chat", "-i", "-m", "echo", "-s", "be brief", input="one\ntwo\nexit\n")
    assert r.exit_code == 0
    assert "one\n" in r.output and "two\n" in r.output
    cid = aigc("history", "list").output.split()[0]
    conv = json.loads(aigc("history", "show", cid, "--json").output)
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_bad_options_are_refused_with_the_range(aigc_home):
    r = CliRunner().invoke(cli, ["chat", "x", "-m", "echo", "--temperature", "5"])
    assert r.exit_code == 2 and "less than or equal to 2" in r.output
    r = CliRunner().invoke(cli, ["chat", "x", "-m", "nope"])
    assert r.exit_code == 1 and "does not exist" in r.output and "smollm2-135m" in r.output
    assert "[0..2]" in aigc("chat", "--help").output


def test_models_add_list_info_rm(aigc_home, smollm_path, tmp_path):
    r = aigc("models", "add", str(smollm_path), "--name", "my-smol", "--alias", "tiny")
    assert r.exit_code == 0 and "added my-smol" in r.output
    listing = aigc("models", "list").output
    assert "* smollm2-135m" in listing and "my-smol" in listing and "tiny" in listing
    info = json.loads(aigc("models", "info", "tiny").output)
    # Each of the model's parallel slots gets its trained length (8192), up to 4096 unless `context` says more.
    assert info["context_length"] == 4096 and info["metadata"]["llama.context_length"] == 8192
    assert info["parallel"] == 4
    assert info["metadata"]["general.architecture"] == "llama"
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    r = aigc("models", "add", str(not_gguf))
    assert r.exit_code == 1 and "not a GGUF file" in r.output
    assert aigc("models", "rm", "my-smol").exit_code == 0
    assert "my-smol" not in aigc("models", "list").output
    assert aigc("models", "rm", "smollm2-135m").exit_code == 1


def test_real_model_through_the_installed_command(aigc_home, smollm_path):
    exe = Path(sys.executable).parent / "aigc"
    env = {**os.environ, "AIGC_HOME": str(aigc_home)}
    out = subprocess.run(
        [str(exe), "chat", "Say hello.", "--max-tokens", "12", "--seed", "4", "--stats"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "tok/s" in out.stderr and "seed 4" in out.stderr
    again = subprocess.run(
        [str(exe), "chat", "Say hello.", "--max-tokens", "12", "--seed", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert again.stdout == out.stdout
