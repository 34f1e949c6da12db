"""`aigc prompt` (expand, styles, wildcards) and the image commands' --style and --dynamic, with the echo and
plain test engines; what a user sees in the terminal and in the files."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aigc_studio.cli.main import cli
from aigc_studio.images.infotext import parse_infotext, read_infotext


def aigc(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_styles_from_the_terminal_round_trip_a1111s_file(aigc_home, tmp_path):
    aigc("prompt", "styles", "add", "Cinematic", "-p", "cinematic still of {prompt}, film grain", "-n", "cartoon")
    aigc("prompt", "styles", "add", "Multi", "-p", 'line one, "quoted"\nline two')
    listed = json.loads(aigc("prompt", "styles", "list", "--json").output)
    assert [s["name"] for s in listed] == ["Cinematic", "Multi"]
    assert aigc("prompt", "styles", "show", "Multi").output == (
        'name: Multi\nprompt: line one, "quoted"\nline two\nnegative_prompt: \n'
    )
    out = tmp_path / "styles.csv"
    aigc("prompt", "styles", "export", "-o", str(out))
    assert out.read_bytes().startswith(b"\xef\xbb\xbfname,prompt,negative_prompt\r\n")
    aigc("prompt", "styles", "rm", "Cinematic", "Multi")
    assert "no styles" in aigc("prompt", "styles", "list").output
    assert "imported 2 style(s): Cinematic, Multi" in aigc("prompt", "styles", "import", str(out)).output
    applied = aigc("prompt", "styles", "apply", "Cinematic", "-p", "a cat", "-n", "text").output
    assert applied == "cinematic still of a cat, film grain\nNegative prompt: text, cartoon\n"


def test_bad_styles_input_is_one_line_and_changes_nothing(aigc_home, tmp_path):
    aigc("prompt", "styles", "add", "Keep", "-p", "kept")
    bad = tmp_path / "bad.csv"
    bad.write_text('name,prompt\nx,"never closed\n', encoding="utf-8")
    result = aigc("prompt", "styles", "import", str(bad), "--replace", ok=False)
    assert result.exit_code == 1 and f"{bad}: line 2" in result.output and "Traceback" not in result.output
    assert [s["name"] for s in json.loads(aigc("prompt", "styles", "list", "--json").output)] == ["Keep"]
    result = aigc("prompt", "styles", "apply", "Nope", "-p", "x", ok=False)
    assert result.exit_code == 1 and "no style 'Nope'; the styles are: Keep" in result.output


def test_wildcards_list_and_preview(aigc_home):
    (aigc_home / "wildcards").mkdir(parents=True)
    (aigc_home / "wildcards" / "colors.txt").write_text("red\nblue\n", encoding="utf-8")
    assert aigc("prompt", "wildcards", "list").output == "__colors__\t2\tblue, red\n"
    combos = aigc("prompt", "wildcards", "preview", "{big|small} __colors__", "--combinatorial").output.split("\n")
    assert sorted(filter(None, combos)) == ["big blue", "big red", "small blue", "small red"]
    first = aigc("prompt", "wildcards", "preview", "__colors__ {a|b|c|d}", "-n", "6", "--seed", "3").output
    assert aigc("prompt", "wildcards", "preview", "__colors__ {a|b|c|d}", "-n", "6", "--seed", "3").output == first
    result = aigc("prompt", "wildcards", "preview", "a __gone__", ok=False)
    assert result.exit_code == 1 and "no wildcard file for __gone__" in result.output


def test_expand_with_the_echo_model(aigc_home):
    result = aigc("prompt", "expand", "a red fox", "-m", "echo", "--seed", "5", "--json")
    body = json.loads(result.output)
    assert body["model"] == "echo" and body["seed"] == 5 and body["template"] == "sd-expand.en"
    zh = json.loads(aigc("prompt", "expand", "一只狐狸", "-m", "echo", "--json").output)
    assert zh["template"] == "sd-expand.zh"


def test_image_with_style_and_dynamic_prompts(aigc_home, tmp_path):
    (aigc_home / "wildcards").mkdir(parents=True)
    (aigc_home / "wildcards" / "colors.txt").write_text("red\nblue\n", encoding="utf-8")
    aigc("prompt", "styles", "add", "Oil", "-p", "oil painting")
    out = tmp_path / "car.png"
    small = ["-m", "plain", "--steps", "1", "--size", "64x64", "--seed", "10"]
    result = aigc("image", "a __colors__ car", *small, "--style", "Oil", "--dynamic", "combinatorial", "-o", str(out))
    written = sorted(tmp_path.glob("car*.png"))
    assert [p.name for p in written] == ["car-2.png", "car.png"]
    prompts = sorted(parse_infotext(read_infotext(p)).prompt for p in written)
    assert prompts == ["a blue car, oil painting", "a red car, oil painting"]
    assert parse_infotext(read_infotext(out)).params["Template"] == "a __colors__ car, oil painting"
    assert "10: a red car, oil painting" in result.output or "10: a blue car, oil painting" in result.output
    bad = aigc("image", "a {red|blue car", *small, "--dynamic", ok=False)
    assert bad.exit_code == 1 and "unbalanced braces" in bad.output
