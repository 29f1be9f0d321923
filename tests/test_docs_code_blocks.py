"""
Runs the Python examples of the documentation, so that a page never shows code that fails.

Every fenced block opened with ```python in README.md or a Markdown file under docs/ is executed; the blocks of
one page run in order in one fresh namespace (a later block may use what an earlier one defined),
in a temporary working directory, after ``torch.manual_seed(0)``. Other fences (```, ```bash, ...)
are not run. Tracebacks point at the page and the line of the Markdown file.

A page whose code needs an optional package says so with a comment such as
``<!-- requires: lightning -->`` (several modules separated by commas); its test is skipped, with
that reason, when one of them cannot be imported.
"""

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from pytest import MonkeyPatch, importorskip, mark, raises

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

_REQUIRES = re.compile(r"<!--\s*requires:\s*(?P<modules>[\w.,\s]+?)\s*-->")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class CodeBlock:
    code: str
    first_line: int  # 1-based line number, in the Markdown file, of the block's first code line


def extract_python_blocks(markdown: str) -> list[CodeBlock]:
    """Returns the ```python blocks of a Markdown text, dedented, in order."""

    blocks = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        language = opening["info"].split()[0].lower() if opening["info"].strip() else ""
        start = index + 1
        end = start
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if closing is not None and closing["fence"].startswith(fence) and not closing["info"]:
                break
            end += 1
        else:
            raise ValueError(f"The code fence opened on line {index + 1} is never closed.")
        if language in ("python", "py"):
            code = textwrap.dedent("\n".join(lines[start:end]))
            blocks.append(CodeBlock(code=code, first_line=start + 1))
        index = end + 1
    return blocks


def required_modules(markdown: str) -> list[str]:
    """Returns the modules named by the ``<!-- requires: ... -->`` comments of a Markdown text."""

    return [
        module.strip()
        for match in _REQUIRES.finditer(markdown)
        for module in match["modules"].split(",")
        if module.strip()
    ]


def run_page(page: Path) -> None:
    """Executes the Python blocks of ``page`` in order, in one fresh namespace."""

    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    for block in extract_python_blocks(page.read_text(encoding="utf-8")):
        # Leading newlines make the line numbers of tracebacks those of the Markdown file.
        source = "\n" * (block.first_line - 1) + block.code
        exec(compile(source, str(page), "exec"), namespace)


ROOT = DOCS_DIR.parent
PAGES = [ROOT / "README.md", *sorted(DOCS_DIR.rglob("*.md"))]


@mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_docs_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: MonkeyPatch):
    for module in required_modules(page.read_text(encoding="utf-8")):
        importorskip(module, reason=f"{page.name} needs the optional package `{module}`")
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    run_page(page)


def test_extract_python_blocks_keeps_only_python_fences_in_order():
    markdown = "\n".join(
        [
            "Text",
            "```python",
            "x = 1",
            "```",
            "```",
            "not run",
            "```",
            "```bash",
            "echo no",
            "```",
            "- item",
            "  ```py",
            "  if x:",
            "      y = 2",
            "  ```",
        ]
    )
    blocks = extract_python_blocks(markdown)
    assert blocks == [
        CodeBlock(code="x = 1", first_line=3),
        CodeBlock(code="if x:\n    y = 2", first_line=13),
    ]


def test_extract_python_blocks_handles_longer_fences_and_empty_pages():
    markdown = "````python\nprint('```')\n```\nstill code\n````\n"
    assert extract_python_blocks(markdown) == [
        CodeBlock(code="print('```')\n```\nstill code", first_line=2)
    ]
    assert extract_python_blocks("# Title\n\nNo code.\n") == []


def test_extract_python_blocks_rejects_unclosed_fences():
    with raises(ValueError, match="line 2"):
        extract_python_blocks("text\n```python\nx = 1\n")


def test_run_page_reports_the_markdown_line_of_a_failure(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n```python\nvalue = 1\n```\n\n```python\nassert value == 2\n```\n")
    with raises(AssertionError) as info:
        run_page(page)
    frame = info.traceback[-1]
    assert Path(str(frame.path)) == page
    assert frame.lineno + 1 == 8  # pytest's line numbers are 0-based


def test_required_modules_reads_every_requires_comment():
    markdown = "<!-- requires: lightning -->\n# Title\n<!--requires: a.b, c -->\n<!-- other -->\n"
    assert required_modules(markdown) == ["lightning", "a.b", "c"]
    assert required_modules("# Title\n\nNo requirement.\n") == []
