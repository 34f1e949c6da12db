"""Code blocks in model answers, and the language a request names (pure functions, no model)."""

from __future__ import annotations

import pytest

from aigc_studio.services.code import assign_blocks, normalise_output, output_matches, program_with_call
from aigc_studio.services.code_blocks import canonical_language, extract_blocks, language_in_request, sniff_language


def test_a_tagged_fence_gives_its_code_and_language():
    answer = "Here is the sort:\n\n```javascript\nfunction sort(a) {\n  return a;\n}\n```\n\nIt sorts."
    [block] = extract_blocks(answer)
    assert block.code == "function sort(a) {\n  return a;\n}\n"
    assert (block.language, block.tag, block.closed, block.fenced) == ("javascript", "javascript", True, True)


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("js", "javascript"),
        ("node", "javascript"),
        ("JavaScript", "javascript"),
        ("jsx", "javascript"),
        ("py", "python"),
        ("python3", "python"),
        ("Python", "python"),
        ("bash", "bash"),
        ("C++", "c++"),
    ],
)
def test_fence_tags_are_aliases_of_the_run_languages_or_kept_as_written(tag, language):
    [block] = extract_blocks(f"```{tag}\nx\n```")
    assert block.language == language


def test_tilde_fences_untagged_fences_and_info_strings():
    answer = '~~~\nprint(1)\n~~~\n\n```js title="sort.js"\nconsole.log(2)\n```\n\n```{.python}\nprint(3)\n```'
    blocks = extract_blocks(answer)
    assert [(b.code, b.language) for b in blocks] == [
        ("print(1)\n", None),
        ("console.log(2)\n", "javascript"),
        ("print(3)\n", "python"),
    ]


def test_an_unclosed_fence_at_the_end_of_a_cut_off_answer_is_taken():
    [block] = extract_blocks("Sure:\n```python\ndef f(x):\n    return x *")
    assert block.code == "def f(x):\n    return x *\n"
    assert block.closed is False and block.language == "python"


def test_a_fence_indented_in_a_list_is_dedented_and_inner_backticks_do_not_close_a_longer_fence():
    answer = "1. Save this:\n   ```py\n   if x:\n       print(x)\n   ```\n2. Run it."
    [block] = extract_blocks(answer)
    assert block.code == "if x:\n    print(x)\n"
    [outer] = extract_blocks("````markdown\n```js\nx\n```\n````")
    assert outer.code == "```js\nx\n```\n" and outer.language == "markdown"


def test_several_blocks_keep_their_order_and_empty_ones_are_skipped():
    answer = "```js\nlet a = 1;\n```\n```\n\n```\ntext\n```bash\nnode main.js\n```"
    assert [(b.language, b.code) for b in extract_blocks(answer)] == [
        ("javascript", "let a = 1;\n"),
        ("bash", "node main.js\n"),
    ]


def test_an_answer_without_fences_that_is_plainly_code_is_taken_whole():
    answer = "def bubble(a):\n    for i in range(len(a)):\n        pass\n    return a\n\nprint(bubble([3, 1]))"
    [block] = extract_blocks(answer)
    assert block.fenced is False and block.code == answer + "\n"
    assert sniff_language(block.code) == "python"


@pytest.mark.parametrize(
    "answer",
    [
        "Bubble sort compares neighbours and swaps them. It repeats until nothing moves.",
        "冒泡排序会比较相邻元素并交换它们。重复直到没有元素移动。",
        "x = 1",  # one line is not plainly a program
        "Here is how:\nconst a = 1;\nThat is all you need to know about it.",
    ],
)
def test_prose_gives_no_block(answer):
    assert extract_blocks(answer) == []


def test_chinese_answers_with_code():
    answer = (
        "好的，下面是用 JavaScript 写的冒泡排序：\n\n"
        "```js\nconst s = (a) => a.sort((x, y) => x - y);\n```\n希望有帮助。"
    )
    [block] = extract_blocks(answer)
    assert block.language == "javascript" and block.code.startswith("const s")


@pytest.mark.parametrize(
    ("request_text", "language"),
    [
        ("write a JavaScript bubble sort", "javascript"),
        ("write it in JS please", "javascript"),
        ("a node.js script that lists files", "javascript"),
        ("用 Python 写一个冒泡排序", "python"),
        ("用Python写一个冒泡排序", "python"),
        ("用JS实现快速排序", "javascript"),
        ("write a python3 script", "python"),
        ("write a bubble sort", None),
        ("write it in Java", None),
        ("explain numpy", None),
        ("translate this Python into JavaScript", None),  # both named: the fences tell
    ],
)
def test_the_language_a_request_names(request_text, language):
    assert language_in_request(request_text) == language


def test_sniffing_code_and_canonical_names():
    assert sniff_language("function f() {\n  return 1;\n}\nconsole.log(f());") == "javascript"
    assert sniff_language("def f():\n    return None\nprint(f())") == "python"
    assert sniff_language("echo hi") is None
    assert canonical_language(" NodeJS ") == "javascript"
    assert canonical_language("") is None


def test_output_matching_ignores_how_a_runtime_spaces_a_value():
    assert normalise_output("[ 1, 2, 3, 5, 8, 9 ]\n") == "[1,2,3,5,8,9]"
    assert output_matches("[ 1, 2, 3, 5, 8, 9 ]\n", "[1,2,3,5,8,9]")
    assert output_matches("[1, 2, 3]\n", " [1,2,3] ")
    assert output_matches("hello   world\n\n", "hello world")
    assert not output_matches("hello world", "helloworld")
    assert not output_matches("[1,2,3]", "[1,3,2]")


def test_a_call_is_printed_after_the_program():
    assert program_with_call("javascript", "let a = 1;\n", "a + 1") == "let a = 1;\n\nconsole.log(a + 1);\n"
    assert program_with_call("python", "a = 1", "a + 1") == "a = 1\n\nprint(a + 1)\n"
    assert program_with_call("python", "a = 1\n", None) == "a = 1\n"


def test_an_answers_blocks_continue_the_session_blocks_of_their_language():
    assert assign_blocks({}, ["javascript", "bash"]) == [1, 2]
    assert assign_blocks({1: "javascript", 2: "bash"}, ["javascript"]) == [1]
    assert assign_blocks({1: "javascript", 2: "bash"}, ["bash", "javascript"]) == [2, 1]
    assert assign_blocks({1: "javascript"}, ["python"]) == [2]
    assert assign_blocks({1: "javascript"}, ["javascript", "javascript"]) == [1, 2]
