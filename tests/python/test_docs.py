"""Every ```python block in README.md and docs/*.md runs as written.

The blocks of one markdown file build on each other, the way a reader would
paste them into one session: they run in order in one fresh namespace, with a
temporary directory as the working directory and matplotlib drawing to files.
A failure names the markdown file and the line where the failing block starts.
There is no way to mark a block as not-to-run: a block that cannot run as
written is a bug in the docs.

A python block directly followed (blank lines aside) by a block fenced as
```text output is checked against it: what the block prints must match that
text, with decimal numbers allowed to differ by 0.01 (a BLAS that sums in
another order can move the last digit) and everything else exact.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

# Fence openings per CommonMark: up to three spaces (more inside list items,
# which we accept and dedent), then ``` or ~~~ and an info string.
FENCE_OPEN = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
PYTHON_INFO_WORDS = {"python", "py"}
OUTPUT_INFO_WORDS = ["text", "output"]
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
DECIMAL_TOLERANCE = 0.01


@dataclass
class CodeBlock:
    line: int  # 1-based line number of the opening fence
    source: str
    expected_output: str | None = None
    expected_line: int | None = None


@dataclass
class _Fenced:
    line: int  # 1-based, opening fence
    end_line: int  # 1-based, closing fence
    info_words: list
    source: str


def markdown_files() -> list[Path]:
    files = [REPO_ROOT / "README.md"] + sorted((REPO_ROOT / "docs").glob("*.md"))
    return [path for path in files if path.is_file()]


def fenced_blocks(text: str) -> list[_Fenced]:
    """Every fenced code block, in order."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE_OPEN.match(lines[index])
        if not opening:
            index += 1
            continue
        fence = opening["fence"]
        indent = len(opening["indent"])
        opening_index = index
        body = []
        index += 1
        while index < len(lines):
            line = lines[index]
            stripped = line.strip()
            # A closing fence uses the same character, at least as many, and nothing else.
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            index += 1
        else:
            raise ValueError(f"code fence opened at line {opening_index + 1} is never closed")
        blocks.append(_Fenced(opening_index + 1, index + 1, opening["info"].split(), "\n".join(body) + "\n"))
        index += 1
    return blocks


def python_blocks(text: str) -> list[CodeBlock]:
    """The fenced blocks whose info string starts with python (or py), in order,
    each with the ```text output block that follows it, if any."""
    lines = text.splitlines()
    fenced = fenced_blocks(text)
    blocks = []
    for position, block in enumerate(fenced):
        if not (block.info_words and block.info_words[0].lower() in PYTHON_INFO_WORDS):
            continue
        code = CodeBlock(line=block.line, source=block.source)
        if position + 1 < len(fenced):
            following = fenced[position + 1]
            between = lines[block.end_line : following.line - 1]
            if [w.lower() for w in following.info_words] == OUTPUT_INFO_WORDS and not "".join(between).strip():
                code.expected_output = following.source
                code.expected_line = following.line
        blocks.append(code)
    return blocks


def output_mismatch(printed: str, expected: str) -> str | None:
    """Why printed does not match expected, or None when it does."""
    def skeleton(text):
        return " ".join(NUMBER.sub("#", text).split())

    if skeleton(printed) != skeleton(expected):
        return "the text differs"
    for got, want in zip(NUMBER.findall(printed), NUMBER.findall(expected)):
        if "." in want:
            if "." not in got or abs(float(got) - float(want)) > DECIMAL_TOLERANCE + 1e-9:
                return f"{got} where the docs say {want}"
        elif got != want:
            return f"{got} where the docs say {want}"
    return None


class DocBlockError(AssertionError):
    pass


def run_markdown(path: Path, display_name: str | None = None) -> int:
    """Run the file's python blocks in one namespace; returns how many ran."""
    display_name = display_name or str(path)
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    for block in blocks:
        label = f"{display_name}:{block.line}"
        printed = io.StringIO()
        try:
            code = compile(block.source, label, "exec")
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)  # noqa: S102 - running the docs is the point
        except BaseException as err:  # SystemExit from a block is a failure too
            detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            raise DocBlockError(
                f"python block starting at {label} failed: {type(err).__name__}: {err}\n{detail}"
            ) from err
        finally:
            plt.close("all")
        if block.expected_output is not None:
            problem = output_mismatch(printed.getvalue(), block.expected_output)
            if problem:
                raise DocBlockError(
                    f"python block starting at {label} printed other output than the text output block "
                    f"at line {block.expected_line} ({problem}):\n--- printed\n{printed.getvalue()}"
                    f"--- documented\n{block.expected_output}"
                )
    return len(blocks)


@pytest.fixture
def in_temp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize(
    "markdown", markdown_files(), ids=lambda path: os.path.relpath(path, REPO_ROOT)
)
def test_markdown_python_blocks_run(markdown, in_temp_dir):
    ran = run_markdown(markdown, os.path.relpath(markdown, REPO_ROOT))
    print(f"{os.path.relpath(markdown, REPO_ROOT)}: {ran} python blocks ran")


def test_finetuners_guide_has_code_to_run_and_outputs_to_check():
    # Guards the runner itself: a parser that found nothing would pass every file.
    blocks = python_blocks((REPO_ROOT / "docs" / "finetuners.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 5, f"only {len(blocks)} python blocks found in docs/finetuners.md"
    checked = [block for block in blocks if block.expected_output is not None]
    assert len(checked) >= 8, f"only {len(checked)} python blocks of docs/finetuners.md have their output checked"


SAMPLE = """\
# Title

```python
x = 1
```

Some prose with `inline` code.

```bash
exit 1
```

1. A list item:

   ```python
   y = x + 1
   ```

~~~py
z = y * 10
~~~

````python
# a fence of four holds ``` lines
text = '''
```
'''
````

```python
assert z == 20
raise RuntimeError("boom")
```
"""


def test_parser_finds_python_blocks_with_their_line_numbers():
    blocks = python_blocks(SAMPLE)
    assert [block.line for block in blocks] == [3, 15, 19, 23, 30]
    assert blocks[0].source == "x = 1\n"
    assert blocks[1].source == "y = x + 1\n"  # list indentation removed
    assert blocks[2].source == "z = y * 10\n"
    assert "```" in blocks[3].source  # shorter fence inside did not close it


def test_runner_shares_namespace_and_names_the_failing_block(tmp_path, in_temp_dir):
    sample = tmp_path / "sample.md"
    sample.write_text(SAMPLE, encoding="utf-8")
    with pytest.raises(DocBlockError) as failure:
        run_markdown(sample, "sample.md")
    message = str(failure.value)
    # x, y and z came through the earlier blocks, so only the last one failed.
    assert "python block starting at sample.md:30 failed" in message
    assert "RuntimeError: boom" in message


OUTPUT_SAMPLE = """\
```python
values = [0.5004, 1 / 3]
print("scores:", [round(v, 3) for v in values], "rows", 200)
```

```text output
scores: [0.5, 0.333] rows 200
```

```python
print("accuracy", 0.75)
```

```text output
accuracy 0.7
```
"""


def test_runner_checks_printed_output_against_text_output_blocks(tmp_path, in_temp_dir):
    blocks = python_blocks(OUTPUT_SAMPLE)
    assert [(b.line, b.expected_line) for b in blocks] == [(1, 6), (10, 14)]
    sample = tmp_path / "outputs.md"
    sample.write_text(OUTPUT_SAMPLE, encoding="utf-8")
    with pytest.raises(DocBlockError) as failure:
        run_markdown(sample, "outputs.md")
    # The first block matches; the second prints 0.75 where the docs say 0.7.
    assert "python block starting at outputs.md:10 printed other output" in str(failure.value)
    assert "0.75 where the docs say 0.7" in str(failure.value)


def test_output_comparison_rules():
    assert output_mismatch("acc 0.583  n 2000\n", "acc 0.580 n 2000") is None  # within 0.01, spacing free
    assert output_mismatch("acc 0.600\n", "acc 0.580") == "0.600 where the docs say 0.580"
    assert output_mismatch("n 2001", "n 2000") == "2001 where the docs say 2000"  # counts are exact
    assert output_mismatch("loss 1.7", "gain 1.7") == "the text differs"
    assert output_mismatch("a 1 b 2", "a 1") == "the text differs"


def test_only_text_output_blocks_right_after_python_are_expectations():
    text = "```python\nx = 1\n```\n\nprose\n\n```text output\nnot attached\n```\n\n```python\ny = 2\n```\n\n```text\nplain\n```\n"
    assert [b.expected_output for b in python_blocks(text)] == [None, None]


def test_runner_reports_unclosed_fence(tmp_path):
    broken = tmp_path / "broken.md"
    broken.write_text("intro\n\n```python\nprint('never closed')\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3 is never closed"):
        run_markdown(broken)
