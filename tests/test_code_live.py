"""The real path: the embedded SmolLM2 is asked for a JavaScript bubble sort through `aigc code`, its code
is extracted and run in the sandbox on [5, 2, 8, 1, 9, 3], and with --repair 2 every attempt is kept.

SmolLM2 (135M) often writes wrong code; the test asserts what was recorded, not that the sort is right:
the run's stored output and exit status are what running that stored code gives, and each repair
attempt has its prompt, its answer, its version and its run."""

from __future__ import annotations

from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.config import load_config
from aigc_studio.services.code import RunSpec
from aigc_studio.studio import Studio

CALL = "bubbleSort([5, 2, 8, 1, 9, 3])"


def test_smollm2_writes_a_bubble_sort_that_runs_and_each_repair_attempt_is_recorded(aigc_home, smollm_path):
    ask = ["code", "write a JavaScript bubble sort", "-m", "smollm2-135m"]
    run = ["--run", CALL, "--expect", "[1,2,3,5,8,9]", "--repair", "2"]
    sampling = ["--max-tokens", "300", "--temperature", "0", "--seed", "1"]
    r = CliRunner().invoke(cli, [*ask, *run, *sampling], catch_exceptions=False)
    assert "Traceback" not in r.stderr
    studio = Studio(load_config())
    try:
        [listed] = studio.code.sessions()
        session = studio.code.session(listed["id"])
        versions, runs, messages = session["versions"], session["runs"], session["messages"]
        assert versions, f"the model's answer held no code: {messages[-1]['content']!r}"
        first = versions[0]
        assert (first["block"], first["version"], first["note"].split(";")[0]) == (1, 1, "generated")
        # The code is what the model wrote (a fenced block of its answer, or the whole answer).
        answer = next(m["content"] for m in messages if m["role"] == "assistant")
        assert first["code"].strip() in answer
        assert first["language"] == "javascript"

        # Each run records what running its version really gives: run the stored code again.
        for run in runs:
            again = studio.code.run(run["version_id"], RunSpec(**run["spec"]))
            assert again.result.exit_code == run["result"]["exit_code"]
            assert again.result.stdout == run["result"]["stdout"]
            assert again.matched == run["matched"]
        # The CLI said the same: the exit status and the first run's output.
        assert f"run {runs[0]['id']}, version {runs[0]['version_id']}]" in r.stderr
        assert runs[0]["result"]["stdout"] in r.stdout

        # Repair: a run that failed was followed by an attempt, up to 2; every attempt is in history
        # (its repair prompt and the answer) and, where the answer held code, a version and its run.
        attempts = [m for m in messages if m["role"] == "user"][1:]
        assert len(attempts) <= 2
        for n, prompt in enumerate(attempts, 1):
            assert prompt["content"].startswith("This JavaScript code failed when it ran:")
            assert f"[repair attempt {n}/2]" in r.stderr
        assert [v["note"].split(";")[0] for v in versions[1:]] == [f"repair {n}/2" for n in range(1, len(versions))]
        assert [run["version_id"] for run in runs] == [v["id"] for v in versions][: len(runs)]
        if runs[-1]["matched"]:
            assert r.exit_code == 0
        else:
            assert r.exit_code != 0
            if len(runs) == len(versions):  # every answer held code: all attempts ran
                assert len(attempts) == 2 and len(runs) == 3
    finally:
        studio.close()
