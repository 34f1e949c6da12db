"""`aigc code` and `aigc run` as a user types them (echo engine with its test-only canned replies; the
real sandbox)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.engines.echo import clear_replies, queue_replies

SORT_JS = "function bubbleSort(a) {\n  return a.slice().sort((x, y) => x - y);\n}\n"
WRONG_JS = "function bubbleSort(a) {\n  return a;\n}\n"
SHORT_JS = "const bubbleSort = (a) => a.slice().sort((x, y) => x - y);\n"


def answer(code: str, tag: str = "js") -> str:
    return f"Here it is:\n```{tag}\n{code}```\nDone."


@pytest.fixture(autouse=True)
def no_canned_replies():
    clear_replies()
    yield
    clear_replies()


def aigc(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def session_of(stderr: str) -> str:
    return stderr.split("[session ")[1].split(";")[0].split("]")[0]


def test_code_streams_the_answer_runs_it_and_continues_the_session(aigc_home):
    queue_replies(answer(SORT_JS))
    r = aigc(
        "code",
        "write a JavaScript bubble sort",
        "-m",
        "echo",
        "--run",
        "bubbleSort([5,2,8,1,9,3])",
        "--expect",
        "[1,2,3,5,8,9]",
    )
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(answer(SORT_JS))
    assert "[ 1, 2, 3, 5, 8, 9 ]" in r.stdout  # the program's output
    assert "[version 1 of block 1 (javascript), id 1: generated]" in r.stderr
    assert "exit 0 · wall " in r.stderr and "no limit hit · output matches; run 1, version 1]" in r.stderr
    session = session_of(r.stderr)

    queue_replies(answer(SHORT_JS))
    r = aigc("code", "-c", "make it more concise", "-m", "echo", "--run", "bubbleSort([3,1,2])")
    assert r.exit_code == 0, r.stderr
    assert "[version 2 of block 1 (javascript), id 2: refined: make it more concise]" in r.stderr
    assert "[ 1, 2, 3 ]" in r.stdout
    assert session_of(r.stderr) == session

    listing = aigc("code", "list")
    assert listing.stdout.startswith(f"{session}  javascript   2 versions   2 runs  write a JavaScript bubble sort")
    shown = aigc("code", "show", session).stdout
    assert "id 1     block 1 v1   javascript generated" in shown
    assert "id 2     block 1 v2   javascript refined: make it more concise" in shown
    assert "run 1     version id 1     exit 0 · " in shown and " · matches" in shown
    assert shown.endswith("block 1, v2 (javascript):\n" + SHORT_JS)
    diff = aigc("code", "diff", "1", "2").stdout.splitlines()
    assert diff[:2] == ["--- v1", "+++ v2"]
    assert "+" + SHORT_JS.rstrip("\n") in diff and "-function bubbleSort(a) {" in diff


def test_repair_attempts_are_shown_and_a_run_that_still_fails_exits_nonzero(aigc_home):
    queue_replies(answer(WRONG_JS), answer(WRONG_JS), answer(WRONG_JS))
    r = aigc(
        "code",
        "write a JavaScript bubble sort",
        "-m",
        "echo",
        "--run",
        "bubbleSort([2,1])",
        "--expect",
        "[1,2]",
        "--repair",
        "2",
    )
    assert r.exit_code == 1
    assert "[repair attempt 1/2]" in r.stderr and "[repair attempt 2/2]" in r.stderr
    assert r.stderr.count("output does NOT match the expected") == 3
    assert "version 3 of block 1 (javascript), id 3: repair 2/2]" in r.stderr


def test_json_output_lists_versions_and_runs(aigc_home):
    queue_replies(answer("print(6 * 7)\n", tag="python"))
    r = aigc("code", "a python answer", "-m", "echo", "-x", "--json")
    assert r.exit_code == 0, r.stderr
    events = json.loads(r.stdout)
    assert [e["kind"] for e in events] == ["version", "run", "done"]
    assert events[1]["run"]["result"]["stdout"] == "42\n"


def test_a_prompt_that_is_a_subcommand_name_goes_through_ask(aigc_home):
    queue_replies(answer("print('listed')\n", tag="python"))
    r = aigc("code", "ask", "list", "-m", "echo", "-x")
    assert r.exit_code == 0, r.stderr
    assert "listed" in r.stdout
    assert aigc("code", "list").stdout.split("  ")[-1] == "list\n"


def test_code_errors_are_one_line(aigc_home):
    r = aigc("code", "-c", "make it shorter", "-m", "echo")
    assert r.exit_code == 1 and "no code session to continue" in r.stderr
    r = aigc("code", "x", "-m", "echo", "--wall-seconds", "999")
    assert r.exit_code == 2 and "wall_seconds: Input should be less than or equal to 600" in r.stderr
    r = aigc("code", "x", "-m", "echo", "--wall-seconds", "100")
    assert r.exit_code == 1
    assert "limits.wall_seconds must be at most 60 (setting run_max_wall_seconds), got 100" in r.stderr
    r = aigc("code", "x", "-m", "echo", "--lang", "bash", "-x")
    assert r.exit_code == 1 and "bash code cannot be run" in r.stderr
    r = aigc("code", "show", "conv-0")
    assert r.exit_code == 1 and "no code session with id 'conv-0'" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_a_file_passes_args_and_stdin_and_exits_with_the_programs_status(aigc_home, tmp_path):
    script = tmp_path / "greet.py"
    script.write_text("import sys\nprint('hi', sys.argv[1:], sys.stdin.read().strip())\nsys.exit(3)\n")
    r = aigc("run", str(script), "--", "-a", "--b", input="from stdin\n")
    assert r.exit_code == 3
    assert r.stdout == "hi ['-a', '--b'] from stdin\n"
    assert "[exit 3 · wall " in r.stderr
    listed = aigc("code", "list").stdout
    assert "python       1 versions   1 runs  greet.py" in listed


def test_run_a_file_that_hits_a_limit_exits_124_and_says_which(aigc_home, tmp_path):
    script = tmp_path / "spin.js"
    script.write_text("while (true) {}\n")
    r = aigc("run", str(script), "--wall-seconds", "1", "--cpu-seconds", "5")
    assert r.exit_code == 124
    assert "killed by SIGKILL" in r.stderr and "limit hit: wall" in r.stderr


def test_run_a_file_language_from_extension_or_lang(aigc_home, tmp_path):
    script = tmp_path / "program.txt"
    script.write_text("console.log(1 + 1)\n")
    r = aigc("run", str(script))
    assert r.exit_code == 2 and "give --lang python or --lang js" in r.stderr
    r = aigc("run", str(script), "--lang", "js", "--expect", "2")
    assert r.exit_code == 0 and r.stdout == "2\n" and "output matches" in r.stderr
    r = aigc("run", str(script), "--lang", "js", "--expect", "3")
    assert r.exit_code == 1 and "output does NOT match the expected" in r.stderr
