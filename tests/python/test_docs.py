"""Every ```python block in README.md and docs/*.md runs as written.

The blocks of one markdown file build on each other, the way a reader would
paste them into one session: they run in order in one fresh namespace, with a
temporary directory as the working directory and matplotlib drawing to files.
A failure names the markdown file and the line where the failing block starts.
There is no way to mark a block as not-to-run: a block that cannot run as
written is a bug in the docs.
"""

from __future__ import annotations

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


@dataclass
class CodeBlock:
    line: int  # 1-based line number of the opening fence
    source: str


def markdown_files() -> list[Path]:
    files = [REPO_ROOT / "README.md"] + sorted((REPO_ROOT / "docs").glob("*.md"))
    return [path for path in files if path.is_file()]


def python_blocks(text: str) -> list[CodeBlock]:
    """The fenced blocks whose info string starts with python (or py), in order."""
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
        info_words = opening["info"].split()
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
        if info_words and info_words[0].lower() in PYTHON_INFO_WORDS:
            blocks.append(CodeBlock(line=opening_index + 1, source="\n".join(body) + "\n"))
        index += 1
    return blocks


class DocBlockError(AssertionError):
    pass


def run_markdown(path: Path, display_name: str | None = None) -> int:
    """Run the file's python blocks in one namespace; returns how many ran."""
    display_name = display_name or str(path)
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    for block in blocks:
        label = f"{display_name}:{block.line}"
        try:
            code = compile(block.source, label, "exec")
            exec(code, namespace)  # noqa: S102 - running the docs is the point
        except BaseException as err:  # SystemExit from a block is a failure too
            detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            raise DocBlockError(
                f"python block starting at {label} failed: {type(err).__name__}: {err}\n{detail}"
            ) from err
        finally:
            plt.close("all")
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


def test_finetuners_guide_has_code_to_run():
    # Guards the runner itself: a parser that found nothing would pass every file.
    blocks = python_blocks((REPO_ROOT / "docs" / "finetuners.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 5, f"only {len(blocks)} python blocks found in docs/finetuners.md"


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


def test_runner_reports_unclosed_fence(tmp_path):
    broken = tmp_path / "broken.md"
    broken.write_text("intro\n\n```python\nprint('never closed')\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3 is never closed"):
        run_markdown(broken)
